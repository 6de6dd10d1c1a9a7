"""Upstream executors, by the ``kind`` of a configured credential or account.

Adding a kind is one line in ``_builtin`` or ``_ACCOUNT_KINDS`` (or ``register(kind, executor)``
at import time). ``executor_for(kind, websockets=True)`` wraps a Responses executor so that it
is reached over WebSocket (``ws_upstream.py``).
"""

from __future__ import annotations

import importlib

from .anthropic import AnthropicExecutor
from .base import BadAnswer, Executor, Outbound, Upstream, UpstreamError
from .codex import CodexExecutor
from .gemini import GeminiExecutor
from .openai_compat import OpenAICompatExecutor

EXECUTORS: dict[str, Executor] = {}


def register(kind: str, executor: Executor) -> None:
    EXECUTORS[kind] = executor


_WS: dict[str, Executor] = {}


def executor_for(kind: str, websockets: bool = False) -> Executor:
    try:
        ex = EXECUTORS[kind]
    except KeyError:
        raise ValueError(f"no executor for upstream kind {kind!r}") from None
    if not websockets:
        return ex
    wrapped = _WS.get(kind)
    if wrapped is None:
        from .ws_upstream import websocket_executor

        wrapped = _WS[kind] = websocket_executor(ex)
    return wrapped


# kind -> "module:Class" of the executors of subscription and cloud accounts (and of the
# config lists vertex-api-key / xai-api-key), registered when their module is present
_ACCOUNT_KINDS = {
    "claude-oauth": "claude_code:ClaudeCodeExecutor",
    "codex-oauth": "codex_account:CodexAccountExecutor",
    "kimi": "kimi:KimiExecutor",
    "antigravity": "antigravity:AntigravityExecutor",
    "vertex": "vertex:VertexExecutor",
    "xai": "xai:XaiExecutor",
}


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
    for kind, target in _ACCOUNT_KINDS.items():
        module, cls = target.split(":")
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
            continue
        register(kind, getattr(mod, cls)())


_builtin()

__all__ = ["EXECUTORS", "BadAnswer", "Executor", "Outbound", "Upstream", "UpstreamError", "executor_for", "register"]
