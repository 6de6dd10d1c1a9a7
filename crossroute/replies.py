"""What a handler returns to the server edge: a whole body, or a stream of bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from .formats import errors

JSON_HEADERS = [("content-type", "application/json")]
SSE_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache"), ("x-accel-buffering", "no")]


class Reply:
    """A whole reply. ``call`` is the Call that produced it, if any (the access log reads its model
    and credential id)."""

    __slots__ = ("body", "call", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else JSON_HEADERS
        self.call: Any = None


class StreamReply:
    """A streamed reply. ``terminal(status, message)``, when set, renders the client format's
    terminal error event (the edge ends a stream with it on shutdown); ``call`` as for Reply."""

    __slots__ = ("call", "chunks", "headers", "status", "terminal")

    def __init__(self, status: int, chunks: AsyncIterator[bytes], headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.chunks = chunks
        self.headers = headers if headers is not None else SSE_HEADERS
        self.terminal: Callable[[int, str], bytes] | None = None
        self.call: Any = None


def json_reply(obj: object, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, orjson.dumps(obj), headers)


def error_reply(
    fmt: str, status: int, message: str, *, param: str | None = None, headers: list[tuple[str, str]] | None = None
) -> Reply:
    """An HTTP error in the client's format (openai, responses, claude, gemini)."""
    extra = headers or []
    return Reply(status, errors.error_bytes(fmt, status, message, param=param), [*JSON_HEADERS, *extra])
