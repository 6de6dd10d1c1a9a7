"""Upstream providers, by the ``kind`` of a configured credential."""

from __future__ import annotations

from .anthropic import AnthropicProvider
from .base import Provider, UpstreamRequest
from .codex import CodexProvider
from .gemini import GeminiProvider
from .openai_compat import OpenAICompatProvider

PROVIDERS: dict[str, Provider] = {
    "openai": OpenAICompatProvider(),
    "claude": AnthropicProvider(),
    "gemini": GeminiProvider(),
    "codex": CodexProvider(),
}

__all__ = ["PROVIDERS", "Provider", "UpstreamRequest"]
