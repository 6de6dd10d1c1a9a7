"""What every upstream provider module supplies: URLs, headers and auth for its wire format.

A provider speaks exactly one upstream wire format per operation and knows nothing of client
formats; ``dispatch`` asks it for an ``UpstreamRequest`` and sends it with the shared client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from ..config import ProviderEntry


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]  # may be shared by many requests: replace it, never change it in place
    body: bytes
    proxy: str | None = None


class Provider(Protocol):
    kind: str

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        """The upstream format this credential will be spoken to in, for a client of that format."""
        ...

    def generate(
        self, entry: ProviderEntry, model: str, body: bytes, stream: bool, client_headers: Mapping[str, str],
        wire_format: str,
    ) -> UpstreamRequest: ...

    def count_tokens(
        self, entry: ProviderEntry, model: str, body: bytes, client_headers: Mapping[str, str]
    ) -> UpstreamRequest | None:
        """The upstream's own count endpoint, or None when it has none."""
        ...


def config_headers(entry: ProviderEntry, client_headers: Mapping[str, str]) -> dict[str, str]:
    """Configured extra headers; a value ``$Name`` copies the client's header ``Name``."""
    if not entry.headers:
        return {}
    out: dict[str, str] = {}
    for name, value in entry.headers.items():
        if value.startswith("$"):
            copied = client_headers.get(value[1:].lower())
            if copied:
                out[name] = copied
        else:
            out[name] = value
    return out


def proxy_for(entry: ProviderEntry, global_proxy: str | None) -> str | None:
    proxy = entry.proxy_url or global_proxy
    if proxy in (None, "", "direct", "none") or (proxy and proxy.startswith("direct")):
        return None
    return proxy


@lru_cache(maxsize=4096)
def join_versioned(base: str, version: str, path: str) -> str:
    """``base`` + ``path``, adding ``/<version>`` only when ``base`` has no path of its own.

    http://h:11434 -> http://h:11434/v1/chat/completions; http://h/v1 -> http://h/v1/chat/completions;
    https://h/api/paas/v4 -> https://h/api/paas/v4/chat/completions (a custom path is used as given).
    """
    base = base.rstrip("/")
    tail = base.split("://", 1)[-1]
    has_path = "/" in tail
    if not has_path:
        base = f"{base}/{version}"
    return base + path
