"""An OpenAI Responses upstream by API key (``codex-api-key``): ``{base-url}/responses``."""

from __future__ import annotations

from collections.abc import Mapping

from ..config import ProviderEntry
from .base import UpstreamRequest, config_headers


class CodexProvider:
    kind = "codex"

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "responses"

    def _headers(self, entry: ProviderEntry, client_headers: Mapping[str, str], stream: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "Authorization": f"Bearer {entry.api_key}",
        }
        headers.update(config_headers(entry, client_headers))
        return headers

    def generate(
        self, entry: ProviderEntry, model: str, body: bytes, stream: bool, client_headers: Mapping[str, str],
        wire_format: str,
    ) -> UpstreamRequest:
        return UpstreamRequest(entry.base_url.rstrip("/") + "/responses", self._headers(entry, client_headers, stream),
                               body)

    def compact(self, entry: ProviderEntry, body: bytes, client_headers: Mapping[str, str]) -> UpstreamRequest:
        return UpstreamRequest(entry.base_url.rstrip("/") + "/responses/compact",
                               self._headers(entry, client_headers, False), body)

    def count_tokens(
        self, entry: ProviderEntry, model: str, body: bytes, client_headers: Mapping[str, str]
    ) -> UpstreamRequest | None:
        return None
