"""Replies and body checks shared by the management handlers (CLIProxyAPI's ``{"error": ...}`` shape)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from .. import __version__
from ..replies import Reply

if TYPE_CHECKING:
    from ..api.request import Request

__all__ = ["HEADERS", "BadInput", "error", "ok", "reply", "text_reply"]

HEADERS = [("content-type", "application/json"), ("cache-control", "no-store"),
           ("x-content-type-options", "nosniff"), ("x-cpa-version", f"crossroute-{__version__}")]


class BadInput(Exception):
    """A management request the handler refuses: status, message, and the field it is about."""

    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


def reply(obj: Any, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS), HEADERS)


def ok(**extra: Any) -> Reply:
    return reply({"status": "ok", **extra})


def error(status: int, message: str, field: str | None = None, **extra: Any) -> Reply:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return reply(body, status)


def text_reply(text: str | bytes, content_type: str = "text/plain; charset=utf-8", status: int = 200) -> Reply:
    data = text.encode() if isinstance(text, str) else text
    return Reply(status, data, [("content-type", content_type), *HEADERS[1:]])


def json_body(req: Request) -> Any:
    """The body as JSON (any value); BadInput naming the problem."""
    if not req.body.strip():
        raise BadInput("request body is empty; expected JSON", "body")
    try:
        return orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"request body is not valid JSON: {exc}", "body") from None


def json_object(req: Request) -> dict[str, Any]:
    obj = json_body(req)
    if not isinstance(obj, dict):
        raise BadInput(f"request body must be a JSON object, got {type(obj).__name__}", "body")
    return obj


def query_int(req: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = req.query(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(f"query parameter {name!r} must be an integer, got {raw!r}", name) from None
    if not lo <= value <= hi:
        raise BadInput(f"query parameter {name!r} must be between {lo} and {hi}, got {value}", name)
    return value


def query_float(req: Request, name: str) -> float | None:
    raw = req.query(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadInput(f"query parameter {name!r} must be a number (Unix seconds), got {raw!r}", name) from None
