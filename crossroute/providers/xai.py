"""xAI (kind ``xai``): the OpenAI-compatible API at ``https://api.x.ai/v1``, by ``xai-api-key``
entries or xAI account files.

Every client format is spoken to in the Responses API (``/responses``, ``/responses/compact``),
which xAI's documentation recommends (its chat completions endpoint is marked deprecated, and
returns reasoning for one model only); translated requests go with ``store: false``.
``Authorization: Bearer``; the account's token is read per request (a refreshed OAuth token is used
at once). Nothing imitates xAI's own CLI: requests go to the public API with the client's own
``User-Agent``. (``/chat/completions`` stays buildable for an ``openai`` wire.)
"""

from __future__ import annotations

from typing import ClassVar

from ..config import ProviderEntry
from .base import HttpExecutor, Outbound, UpstreamError, UpstreamRequest, config_headers, join_versioned

__all__ = ["XaiExecutor"]

_PATHS = {("openai", "generate"): "/chat/completions", ("responses", "generate"): "/responses",
          ("responses", "compact"): "/responses/compact"}


class XaiExecutor(HttpExecutor):
    kind = "xai"
    supports = frozenset({"generate", "compact"})
    default_base_url = "https://api.x.ai/v1"
    models: ClassVar[tuple[str, ...]] = (
        "grok-4.7", "grok-4.6", "grok-4.5", "grok-4.3", "grok-4.20-0309-reasoning", "grok-4.20-0309-non-reasoning",
        "grok-3-mini",
    )

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "responses"

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        key = ("xai", out.wire, out.operation, out.stream)
        fixed = entry.derived.get(key)
        if fixed is None:
            path = _PATHS.get((out.wire, out.operation))
            if path is None:
                raise UpstreamError(400, f"xAI has no {out.operation} endpoint for {out.wire} requests",
                                    scope="request")
            headers = {"Content-Type": "application/json",
                       "Accept": "text/event-stream" if out.stream else "application/json"}
            fixed = entry.derived[key] = (join_versioned(entry.base_url or self.default_base_url, "v1", path),
                                          headers)
        url, headers = fixed
        headers = {**headers, "Authorization": "Bearer " + self.token_source(entry).token()}
        if ua := out.client_headers.get("user-agent"):
            headers["user-agent"] = ua
        if entry.headers:
            headers.update(config_headers(entry, out.client_headers))
        return UpstreamRequest(url, headers, out.body)
