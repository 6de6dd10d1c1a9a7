"""An OpenAI Responses upstream by API key (``codex-api-key``): ``{base-url}/responses`` and
``/responses/compact``.

The Codex client's own headers (``session_id``/``session-id``, ``thread-id``, ``x-codex-*``,
``originator``, ``version``, its ``User-Agent``...) go to the upstream as the client sent them
(``client_headers``); crossroute invents none of them. ``codex_account.py`` shares this.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config import ProviderEntry
from .base import HttpExecutor, Outbound, UpstreamRequest, config_headers

__all__ = ["CodexExecutor", "client_headers"]

_PATHS = {"generate": "/responses", "compact": "/responses/compact"}
# client headers passed on unchanged (lower case, as the edge gives them), by name and by prefix
_NAMES = ("originator", "version", "session_id", "session-id", "thread_id", "thread-id", "conversation_id",
          "x-client-request-id", "user-agent", "openai-beta")
_CODEX_MARKS = ("originator", "session_id", "session-id", "thread-id", "version")
_PREFIXES = ("x-codex-", "x-openai-")


def client_headers(headers: dict[str, str], client: Mapping[str, str]) -> dict[str, str]:
    """``headers`` plus the Codex client's own headers, when it sent them.

    The ``x-codex-*`` / ``x-openai-*`` scan over all headers runs only for a client that sent one of
    Codex's own headers, so other clients pay a few lookups."""
    codex = False
    for name in _NAMES:
        value = client.get(name)
        if value:
            headers[name] = value
            if name in _CODEX_MARKS:
                codex = True
    if codex:
        for name, value in client.items():
            if value and name.startswith(_PREFIXES):
                headers[name] = value
    return headers


class CodexExecutor(HttpExecutor):
    kind = "codex"
    supports = frozenset({"generate", "compact"})

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "responses"

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if out.stream else "application/json",
            "Authorization": f"Bearer {self.token_source(entry).token()}",
        }
        client_headers(headers, out.client_headers)
        if entry.headers:
            headers.update(config_headers(entry, out.client_headers))
        return UpstreamRequest(entry.base_url.rstrip("/") + _PATHS[out.operation], headers, out.body)
