"""The request as handlers see it, independent of the server interface underneath."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import orjson

from ..formats import validate
from ..formats.neutral import BadRequest
from ..replies import Reply, error_reply


class ApiError(Exception):
    """Raised by handlers for a client error; becomes ``reply`` in the client's format."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def bad_request(fmt: str, message: str, param: str | None = None, status: int = 400) -> ApiError:
    return ApiError(error_reply(fmt, status, message, param=param))


class Request:
    __slots__ = ("_query", "body", "client", "client_key", "headers", "method", "path", "path_params", "query_string")

    def __init__(self, method: str, path: str, query_string: str, headers: Mapping[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers  # lower-case names
        self.body = body
        self.client_key: str | None = None
        self.client: str | None = None  # the peer's "ip:port" (granian's scope.client), set by the edge
        self.path_params: dict[str, str] = {}
        self._query: dict[str, list[str]] | None = None

    def query(self, name: str) -> str | None:
        if not self.query_string:
            return None
        if self._query is None:
            self._query = parse_qs(self.query_string, keep_blank_values=True)
        values = self._query.get(name)
        return values[0] if values else None

    def json_object(self, fmt: str) -> dict[str, Any]:
        """The body as a JSON object, or a 400 in the client's format naming the problem."""
        try:
            obj = orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            if not self.body.strip():
                raise bad_request(fmt, "request body is empty; expected a JSON object") from None
            raise bad_request(fmt, f"request body is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise bad_request(fmt, f"request body must be a JSON object, got {type(obj).__name__}")
        try:
            validate.check_depth(self.body, obj)
        except BadRequest as exc:
            raise bad_request(fmt, exc.message, exc.param) from None
        return obj


def check_body(fmt: str, body: dict[str, Any]) -> None:
    """The structural check of ``body`` for API ``fmt`` (formats/validate.py), as a client error."""
    try:
        validate.CHECKS[fmt](body)
    except BadRequest as exc:
        raise bad_request(fmt, exc.message, exc.param) from None


def require_model(fmt: str, body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request(fmt, "'model' is required and must be a non-empty string", "model")
    return model.strip()
