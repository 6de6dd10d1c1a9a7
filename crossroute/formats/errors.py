"""Each client format's error shape, before headers (an HTTP status + JSON body) and after
headers (a terminal in-stream event). All error bodies the gateway writes come from here."""

from __future__ import annotations

import html
import re
from typing import Any

import orjson

from .sse import encode_event

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_OPENAI_CODES = {
    401: "invalid_api_key",
    404: "model_not_found",
    429: "rate_limit_exceeded",
}
_CLAUDE_TYPES = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def openai_error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return _OPENAI_TYPES.get(status, "invalid_request_error")


def openai_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    error_type: str | None = None,
) -> dict[str, Any]:
    if code is None:
        code = _OPENAI_CODES.get(status, "internal_server_error" if status >= 500 else None)
    return {
        "error": {
            "message": message,
            "type": error_type or openai_error_type(status),
            "param": param,
            "code": code,
        }
    }


def claude_error_type(status: int) -> str:
    if status in _CLAUDE_TYPES:
        return _CLAUDE_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def claude_error(status: int, message: str, *, error_type: str | None = None) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type or claude_error_type(status), "message": message}}


def gemini_error(status: int, message: str, *, google_status: str | None = None) -> dict[str, Any]:
    if google_status is None:
        google_status = _GOOGLE_STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return {"error": {"code": status, "message": message, "status": google_status}}


def error_body(fmt: str, status: int, message: str, *, param: str | None = None) -> dict[str, Any]:
    """The HTTP error body for a client of format ``fmt`` (openai, responses, claude, gemini)."""
    if fmt == "claude":
        return claude_error(status, message)
    if fmt == "gemini":
        return gemini_error(status, message)
    return openai_error(status, message, param=param)


def error_bytes(fmt: str, status: int, message: str, *, param: str | None = None) -> bytes:
    return orjson.dumps(error_body(fmt, status, message, param=param))


def upstream_error_message(body: bytes, limit: int = 2048) -> tuple[str, str | None]:
    """Best-effort (message, type) out of an upstream error body of any format."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        if _looks_like_html(text):
            return html_summary(text), None
        return (text[:limit] or "upstream error"), None
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        obj = obj[0]
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict):
            msg = err.get("message") or obj.get("message")
            etype = err.get("type") or err.get("status")
            if isinstance(msg, str):
                return msg[:limit], etype if isinstance(etype, str) else None
        elif isinstance(err, str):
            return err[:limit], None
    return body.decode("utf-8", "replace")[:limit], None


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.I | re.S)
_TAGS = re.compile(r"<[^>]+>")


def _looks_like_html(text: str) -> bool:
    head = text[:512].lstrip().lower()
    return head.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in head


def html_summary(text: str) -> str:
    """An HTML error page (a proxy's or a CDN's) as one short line: its title or first heading,
    never the page itself (it may echo request details and is useless to an API client)."""
    for pattern in (_TITLE, _H1):
        m = pattern.search(text[:65536])
        if m:
            words = " ".join(html.unescape(_TAGS.sub(" ", m.group(1))).split())
            if words:
                return f"the upstream answered with a web page, not an API answer: {words[:200]}"
    return "the upstream answered with a web page, not an API answer"


# ---------------------------------------------------------------- after headers (in-stream)


def openai_stream_error(status: int, message: str, error_type: str | None = None) -> bytes:
    """OpenAI chat: a data event with a top-level ``error`` (the SDK raises on it), then [DONE]."""
    body = orjson.dumps(openai_error(status, message, error_type=error_type))
    return b"data: " + body + b"\n\ndata: [DONE]\n\n"


def claude_stream_error(status: int, message: str, error_type: str | None = None) -> bytes:
    return encode_event(orjson.dumps(claude_error(status, message, error_type=error_type)), "error")


def gemini_stream_error(status: int, message: str) -> bytes:
    """Gemini: a final data-only chunk ``{"error": {...}}`` (google-genai raises on it)."""
    return b"data: " + orjson.dumps(gemini_error(status, message)) + b"\r\n\r\n"
