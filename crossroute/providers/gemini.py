"""Gemini API by key (``x-goog-api-key``); streams always as SSE (``alt=sse``)."""

from __future__ import annotations

from urllib.parse import quote

from ..config import ProviderEntry
from .base import HttpExecutor, Outbound, UpstreamRequest, config_headers, join_versioned


class GeminiExecutor(HttpExecutor):
    kind = "gemini"
    supports = frozenset({"generate", "count_tokens"})

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "gemini"

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        if out.operation == "count_tokens":
            action = "countTokens"
        else:
            action = "streamGenerateContent?alt=sse" if out.stream else "generateContent"
        url = join_versioned(entry.base_url, "v1beta", f"/models/{quote(out.model, safe='')}:{action}")
        headers = {"Content-Type": "application/json", "x-goog-api-key": self.token_source(entry).token()}
        headers.update(config_headers(entry, out.client_headers))
        return UpstreamRequest(url, headers, out.body)
