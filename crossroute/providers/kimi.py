"""Kimi Code by a subscription account (kind ``kimi``): ``https://api.kimi.com/coding``.

Anthropic-format clients are spoken to in Anthropic Messages (``POST {base}/v1/messages``,
``/v1/messages/count_tokens``, ``anthropic-version``), every other format in OpenAI chat
completions (``POST {base}/v1/chat/completions``). Both carry ``Authorization: Bearer`` (the
account's access token, or its ``api_key``) and the account's ``X-Msh-*`` device headers: the ones
``crossroute login kimi`` stored in the file (``headers``), else made from its ``device_id``. They
name crossroute as the platform; nothing imitates Kimi's own CLI. The client's own ``User-Agent``
(and for Anthropic clients ``anthropic-beta``, ``x-app``, ``X-Claude-Code-Session-Id``) passes
through as it was sent.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import __version__
from ..config import ProviderEntry
from .anthropic import API_VERSION, client_headers
from .base import HttpExecutor, Outbound, UpstreamRequest, config_headers

__all__ = ["KimiExecutor", "device_headers"]

_PATHS = {("claude", "generate"): "/v1/messages", ("claude", "count_tokens"): "/v1/messages/count_tokens",
          ("openai", "generate"): "/v1/chat/completions"}
_MSH = ("X-Msh-Platform", "X-Msh-Version", "X-Msh-Device-Name", "X-Msh-Device-Model", "X-Msh-Device-Id")


def device_headers(account: Any) -> dict[str, str]:
    """The ``X-Msh-*`` headers of a Kimi account (stored by the login, else from ``device_id``)."""
    if account is None:
        return {}
    stored = {k: v for k, v in (account.headers or {}).items() if k.lower().startswith("x-msh-")}
    if stored:
        return stored
    device_id = account.raw.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        return {}
    from ..auth.logins import kimi_headers  # the one definition of these headers (the login's)

    return kimi_headers(device_id)


class KimiExecutor(HttpExecutor):
    kind = "kimi"
    supports = frozenset({"generate", "count_tokens"})
    default_base_url = "https://api.kimi.com/coding"
    # the model id Kimi's documentation gives for the Kimi Code subscription
    models: ClassVar[tuple[str, ...]] = ("kimi-for-coding",)

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "claude" if client_format == "claude" else "openai"

    def _fixed(self, entry: ProviderEntry, out: Outbound) -> tuple[str, dict[str, str]]:
        key = ("kimi", out.wire, out.operation, out.stream)
        fixed = entry.derived.get(key)
        if fixed is None:
            path = _PATHS.get((out.wire, out.operation))
            if path is None:
                raise ValueError(f"Kimi has no {out.operation} endpoint for wire format {out.wire}")
            base = (entry.base_url or self.default_base_url).rstrip("/")
            headers = {"Content-Type": "application/json",
                       "Accept": "text/event-stream" if out.stream else "application/json"}
            if out.wire == "claude":
                headers["anthropic-version"] = API_VERSION
            headers.update(device_headers(entry.derived.get("account")))
            fixed = entry.derived[key] = (base + path, headers)
        return fixed  # type: ignore[no-any-return]

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        url, fixed = self._fixed(entry, out)
        headers = dict(fixed)
        if out.wire == "claude":
            client_headers(headers, out.client_headers)
        headers["User-Agent"] = out.client_headers.get("user-agent") or f"crossroute/{__version__}"
        headers["Authorization"] = "Bearer " + self.token_source(entry).token()
        if entry.headers:
            headers.update(config_headers(entry, out.client_headers))
        return UpstreamRequest(url, headers, out.body)
