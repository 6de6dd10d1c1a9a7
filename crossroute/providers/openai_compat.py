"""Any OpenAI-compatible server (vLLM, Ollama, llama.cpp, OpenRouter...): chat completions with a
Bearer key, and the Responses API (and its compaction) when the entry says the server serves it
natively."""

from __future__ import annotations

from ..config import ProviderEntry
from .base import HttpExecutor, Outbound, UpstreamRequest, config_headers, join_versioned

_PATHS = {("openai", "generate"): "/chat/completions", ("responses", "generate"): "/responses",
          ("responses", "compact"): "/responses/compact"}


class OpenAICompatExecutor(HttpExecutor):
    kind = "openai"
    supports = frozenset({"generate", "compact"})

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        if client_format == "responses" and entry.responses_native:
            return "responses"
        return "openai"

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        # URL and fixed headers are derived once per entry, operation and stream mode; the headers
        # dict is shared, so it is copied before anything is added to it
        key = (out.wire, out.stream, out.operation)
        derived = entry.derived.get(key)
        if derived is None:
            path = _PATHS.get((out.wire, out.operation))
            if path is None:
                raise ValueError(f"no {out.operation} endpoint for wire format {out.wire}")
            fixed = {"Content-Type": "application/json",
                     "Accept": "text/event-stream" if out.stream else "application/json"}
            token = self.token_source(entry).token()
            if token:
                fixed["Authorization"] = "Bearer " + token
            derived = entry.derived[key] = (join_versioned(entry.base_url, "v1", path), fixed)
        url, headers = derived
        if entry.headers:
            headers = {**headers, **config_headers(entry, out.client_headers)}
        return UpstreamRequest(url, headers, out.body)
