"""What a handler returns to the server edge: a whole body, or a stream of bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from .formats import errors

JSON_HEADERS = [("content-type", "application/json")]
SSE_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache"), ("x-accel-buffering", "no")]


class Reply:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else JSON_HEADERS


class StreamReply:
    __slots__ = ("chunks", "headers", "status")

    def __init__(self, status: int, chunks: AsyncIterator[bytes], headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.chunks = chunks
        self.headers = headers if headers is not None else SSE_HEADERS


def json_reply(obj: object, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, orjson.dumps(obj), headers)


def error_reply(
    fmt: str, status: int, message: str, *, param: str | None = None, headers: list[tuple[str, str]] | None = None
) -> Reply:
    """An HTTP error in the client's format (openai, responses, claude, gemini)."""
    extra = headers or []
    return Reply(status, errors.error_bytes(fmt, status, message, param=param), [*JSON_HEADERS, *extra])
