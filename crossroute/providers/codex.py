"""An OpenAI Responses upstream by API key (``codex-api-key``): ``{base-url}/responses`` and
``/responses/compact``."""

from __future__ import annotations

from ..config import ProviderEntry
from .base import HttpExecutor, Outbound, UpstreamRequest, config_headers

_PATHS = {"generate": "/responses", "compact": "/responses/compact"}


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
        headers.update(config_headers(entry, out.client_headers))
        return UpstreamRequest(entry.base_url.rstrip("/") + _PATHS[out.operation], headers, out.body)
