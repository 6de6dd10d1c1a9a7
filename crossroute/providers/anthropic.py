"""Anthropic Messages by API key: ``x-api-key`` on the official host, Bearer on a custom base-url."""

from __future__ import annotations

from collections.abc import Mapping

from ..config import ProviderEntry
from .base import UpstreamRequest, config_headers, join_versioned

API_VERSION = "2023-06-01"
OFFICIAL_HOST = "api.anthropic.com"


class AnthropicProvider:
    kind = "claude"

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "claude"

    def _headers(self, entry: ProviderEntry, client_headers: Mapping[str, str], stream: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "anthropic-version": API_VERSION,
        }
        if OFFICIAL_HOST in entry.base_url:
            headers["x-api-key"] = entry.api_key
        else:
            headers["Authorization"] = f"Bearer {entry.api_key}"
        beta = client_headers.get("anthropic-beta")
        if beta:
            headers["anthropic-beta"] = beta
        headers.update(config_headers(entry, client_headers))
        return headers

    def generate(
        self, entry: ProviderEntry, model: str, body: bytes, stream: bool, client_headers: Mapping[str, str],
        wire_format: str,
    ) -> UpstreamRequest:
        url = join_versioned(entry.base_url, "v1", "/messages")
        return UpstreamRequest(url, self._headers(entry, client_headers, stream), body)

    def count_tokens(
        self, entry: ProviderEntry, model: str, body: bytes, client_headers: Mapping[str, str]
    ) -> UpstreamRequest | None:
        url = join_versioned(entry.base_url, "v1", "/messages/count_tokens")
        return UpstreamRequest(url, self._headers(entry, client_headers, False), body)
