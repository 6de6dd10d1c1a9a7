"""Anthropic Messages by API key: ``x-api-key`` on the official host, Bearer on a custom base-url."""

from __future__ import annotations

from ..config import ProviderEntry
from .base import HttpExecutor, Outbound, UpstreamRequest, config_headers, join_versioned

API_VERSION = "2023-06-01"
OFFICIAL_HOST = "api.anthropic.com"
_PATHS = {"generate": "/messages", "count_tokens": "/messages/count_tokens"}


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
        beta = out.client_headers.get("anthropic-beta")
        if beta:
            headers["anthropic-beta"] = beta
        headers.update(config_headers(entry, out.client_headers))
        return UpstreamRequest(join_versioned(entry.base_url, "v1", _PATHS[out.operation]), headers, out.body)
