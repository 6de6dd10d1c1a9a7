"""Gemini API by key (``x-goog-api-key``); streams always as SSE (``alt=sse``)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from ..config import ProviderEntry
from .base import UpstreamRequest, config_headers, join_versioned


class GeminiProvider:
    kind = "gemini"

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "gemini"

    def _url(self, entry: ProviderEntry, model: str, action: str) -> str:
        return join_versioned(entry.base_url, "v1beta", f"/models/{quote(model, safe='')}:{action}")

    def _headers(self, entry: ProviderEntry, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "x-goog-api-key": entry.api_key}
        headers.update(config_headers(entry, client_headers))
        return headers

    def generate(
        self, entry: ProviderEntry, model: str, body: bytes, stream: bool, client_headers: Mapping[str, str],
        wire_format: str,
    ) -> UpstreamRequest:
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return UpstreamRequest(self._url(entry, model, action), self._headers(entry, client_headers), body)

    def count_tokens(
        self, entry: ProviderEntry, model: str, body: bytes, client_headers: Mapping[str, str]
    ) -> UpstreamRequest | None:
        return UpstreamRequest(self._url(entry, model, "countTokens"), self._headers(entry, client_headers), body)
