"""Anthropic Messages by API key: ``x-api-key`` on the official host, Bearer on a custom base-url.

The client's own headers that Anthropic reads (``anthropic-beta``, and Claude Code's ``x-app``,
``X-Claude-Code-Session-Id`` and ``User-Agent``) go to the upstream as the client sent them
(``client_headers``); crossroute adds none of them itself. ``claude_code.py`` shares this.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config import ProviderEntry
from .base import HttpExecutor, Outbound, UpstreamRequest, config_headers, join_versioned

__all__ = ["API_VERSION", "PASSED_THROUGH", "AnthropicExecutor", "client_headers"]

API_VERSION = "2023-06-01"
OFFICIAL_HOST = "api.anthropic.com"
_PATHS = {"generate": "/messages", "count_tokens": "/messages/count_tokens"}
# the client headers passed on unchanged (names as the edge gives them: lower case)
PASSED_THROUGH = ("anthropic-beta", "x-app", "x-claude-code-session-id", "user-agent")


def client_headers(headers: dict[str, str], client: Mapping[str, str]) -> dict[str, str]:
    """``headers`` plus the client's own Anthropic and Claude Code headers, when it sent them."""
    for name in PASSED_THROUGH:
        value = client.get(name)
        if value:
            headers[name] = value
    return headers


class AnthropicExecutor(HttpExecutor):
    kind = "claude"
    supports = frozenset({"generate", "count_tokens"})

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "claude"

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if out.stream else "application/json",
            "anthropic-version": API_VERSION,
        }
        token = self.token_source(entry).token()
        if OFFICIAL_HOST in entry.base_url:
            headers["x-api-key"] = token
        else:
            headers["Authorization"] = f"Bearer {token}"
        client_headers(headers, out.client_headers)
        if entry.headers:
            headers.update(config_headers(entry, out.client_headers))
        return UpstreamRequest(join_versioned(entry.base_url, "v1", _PATHS[out.operation]), headers, out.body)
