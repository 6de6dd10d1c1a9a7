"""OpenAI Chat Completions wire format.

Usage extraction for passthrough (same-format) traffic lives at the top; the neutral
translator (request/response/stream, see ``neutral.py``) follows.
"""

from __future__ import annotations

from typing import Any

from .neutral import Usage

FORMAT = "openai"


def usage_from_chat(usage: dict[str, Any] | None) -> Usage | None:
    """Neutral usage from a chat ``usage`` object (prompt/completion/cached/reasoning)."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    pd = usage.get("prompt_tokens_details")
    cd = usage.get("completion_tokens_details")
    cached = pd.get("cached_tokens") or 0 if isinstance(pd, dict) else 0
    reasoning = cd.get("reasoning_tokens") or 0 if isinstance(cd, dict) else 0
    return Usage(
        input_tokens=int(prompt),
        output_tokens=int(completion),
        cached_tokens=int(cached),
        reasoning_tokens=int(reasoning),
    )


def usage_to_chat(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }
