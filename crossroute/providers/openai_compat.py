"""Any OpenAI-compatible server (vLLM, Ollama, llama.cpp, OpenRouter...): chat completions with a
Bearer key, and the Responses API when the entry says the server serves it natively."""

from __future__ import annotations

from collections.abc import Mapping

from ..config import ProviderEntry
from .base import UpstreamRequest, config_headers, join_versioned

_PATHS = {"openai": "/chat/completions", "responses": "/responses"}


class OpenAICompatProvider:
    kind = "openai"

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        if client_format == "responses" and entry.responses_native:
            return "responses"
        return "openai"

    def generate(
        self, entry: ProviderEntry, model: str, body: bytes, stream: bool, client_headers: Mapping[str, str],
        wire_format: str,
    ) -> UpstreamRequest:
        # URL and fixed headers are derived once per entry; the headers dict is shared, so it is
        # copied before anything is added to it (here and by the dispatcher)
        derived = entry.derived.get((wire_format, stream))
        if derived is None:
            accept = "text/event-stream" if stream else "application/json"
            fixed = {"Content-Type": "application/json", "Accept": accept}
            if entry.api_key:
                fixed["Authorization"] = "Bearer " + entry.api_key
            derived = entry.derived[(wire_format, stream)] = (
                join_versioned(entry.base_url, "v1", _PATHS[wire_format]), fixed)
        url, headers = derived
        if entry.headers:
            headers = {**headers, **config_headers(entry, client_headers)}
        return UpstreamRequest(url, headers, body)

    def compact(self, entry: ProviderEntry, body: bytes, client_headers: Mapping[str, str]) -> UpstreamRequest:
        req = self.generate(entry, "", body, False, client_headers, "responses")
        req.url += "/compact"
        return req

    def count_tokens(
        self, entry: ProviderEntry, model: str, body: bytes, client_headers: Mapping[str, str]
    ) -> UpstreamRequest | None:
        return None
