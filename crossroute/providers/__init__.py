"""Upstream executors, by the ``kind`` of a configured credential.

Adding a kind is one line in ``_builtin`` (or ``register(kind, executor)`` at import time).
"""

from __future__ import annotations

from .anthropic import AnthropicExecutor
from .base import BadAnswer, Executor, Outbound, Upstream, UpstreamError
from .codex import CodexExecutor
from .gemini import GeminiExecutor
from .openai_compat import OpenAICompatExecutor

EXECUTORS: dict[str, Executor] = {}


def register(kind: str, executor: Executor) -> None:
    EXECUTORS[kind] = executor


def executor_for(kind: str) -> Executor:
    try:
        return EXECUTORS[kind]
    except KeyError:
        raise ValueError(f"no executor for upstream kind {kind!r}") from None


def _builtin() -> None:
    for ex in (OpenAICompatExecutor(), AnthropicExecutor(), GeminiExecutor(), CodexExecutor()):
        register(ex.kind, ex)
    try:
        from .mock import MockExecutor  # the built-in canned upstream (kind "mock")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.mock":
            raise
    else:
        register("mock", MockExecutor())


_builtin()

__all__ = ["EXECUTORS", "BadAnswer", "Executor", "Outbound", "Upstream", "UpstreamError", "executor_for", "register"]
