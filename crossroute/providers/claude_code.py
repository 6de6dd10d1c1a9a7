"""Claude by a subscription account's OAuth token (kind ``claude-oauth``).

``POST {base}/v1/messages?beta=true`` and ``/v1/messages/count_tokens?beta=true`` with
``Authorization: Bearer <access token>`` and the OAuth beta flag (``oauth-2025-04-20``) added to
the ``anthropic-beta`` the client sent, if any. The client's own headers (Claude Code's ``x-app``,
``X-Claude-Code-Session-Id``, ``User-Agent``) pass through unchanged; nothing is forged for a
client that did not send them: no User-Agent, no billing header, no system prompt replaced. The
body goes as the translators made it.
"""

from __future__ import annotations

from typing import ClassVar

from ..config import ProviderEntry
from .anthropic import API_VERSION, client_headers
from .base import HttpExecutor, Outbound, UpstreamRequest, config_headers, join_versioned

__all__ = ["OAUTH_BETA", "ClaudeCodeExecutor", "merge_beta"]

OAUTH_BETA = "oauth-2025-04-20"
_PATHS = {"generate": "/messages?beta=true", "count_tokens": "/messages/count_tokens?beta=true"}


def merge_beta(client_beta: str | None, flag: str = OAUTH_BETA) -> str:
    """The client's ``anthropic-beta`` list with ``flag`` in it (kept in the client's order, no duplicates)."""
    if not client_beta:
        return flag
    seen: list[str] = []
    for part in client_beta.split(","):
        value = part.strip()
        if value and value not in seen:
            seen.append(value)
    if flag not in seen:
        seen.append(flag)
    return ",".join(seen)


class ClaudeCodeExecutor(HttpExecutor):
    kind = "claude-oauth"
    supports = frozenset({"generate", "count_tokens"})
    default_base_url = "https://api.anthropic.com"
    # the Claude API ids a Pro/Max account serves (the models overview, December 2026)
    models: ClassVar[tuple[str, ...]] = (
        "claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-fable-5-1", "claude-opus-5",
        "claude-sonnet-5", "claude-opus-4-8", "claude-opus-4-7", "claude-opus-4-6", "claude-sonnet-4-6",
        "claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-haiku-4-5-20251001",
    )

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "claude"

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        key = ("url", out.operation)
        url = entry.derived.get(key)
        if url is None:
            url = entry.derived[key] = join_versioned(entry.base_url or self.default_base_url, "v1",
                                                                 _PATHS[out.operation])
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if out.stream else "application/json",
            "anthropic-version": API_VERSION,
        }
        client_headers(headers, out.client_headers)
        headers["anthropic-beta"] = merge_beta(out.client_headers.get("anthropic-beta"))
        headers["Authorization"] = "Bearer " + self.token_source(entry).token()
        if entry.headers:
            headers.update(config_headers(entry, out.client_headers))
        return UpstreamRequest(url, headers, out.body)
