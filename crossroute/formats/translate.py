"""Per-request translation: the client body is converted to each upstream format at most once,
whole responses are converted back, and stream pipes are chosen by (upstream, client) format."""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

import orjson

from .neutral import BadRequest, Reasoning, Request, Usage
from .pipes import ChatPassthrough, ClaudePassthrough, GeminiPassthrough, Pipe, ResponsesPassthrough, TranslatePipe
from .responses_tools import ORIGINS
from .thinking import apply_to_body

_MODULE_NAMES = {"openai": "openai_chat", "responses": "responses", "claude": "claude", "gemini": "gemini"}
_modules: dict[str, ModuleType] = {}
log = logging.getLogger("crossroute")
# What a translator raises when a client body has a shape it did not expect. Each is a bug to fix
# in that translator (the log line says where), but never a 500 for the client.
_SHAPE_ERRORS = (TypeError, AttributeError, KeyError, ValueError, IndexError, RecursionError)


def _unreadable(exc: Exception, fmt: str) -> BadRequest:
    log.warning("a %s request body could not be translated (%s: %s)", fmt, type(exc).__name__, exc,
                exc_info=exc)
    return BadRequest(f"the request body could not be translated ({type(exc).__name__}); check the types "
                      "of its fields")


def module(fmt: str) -> ModuleType:
    mod = _modules.get(fmt)
    if mod is None:
        mod = _modules[fmt] = importlib.import_module(f"{__package__}.{_MODULE_NAMES[fmt]}")
    return mod


def usage_of(fmt: str, obj: Any) -> Usage | None:
    """Usage out of a whole (non-stream) response of format ``fmt``."""
    if not isinstance(obj, dict):
        return None
    if fmt == "openai":
        return module("openai").usage_from_chat(obj.get("usage"))
    if fmt == "claude":
        raw = obj.get("usage")
        return module("claude").usage_from_claude(raw) if isinstance(raw, dict) else None
    if fmt == "gemini":
        raw = obj.get("usageMetadata")
        return module("gemini").usage_from_gemini(raw) if isinstance(raw, dict) else None
    raw = obj.get("usage")
    return module("responses").usage_from_responses(raw) if isinstance(raw, dict) else None


_FIELD_READERS: dict[str, tuple[str, str]] = {
    "openai": ("openai", "usage_from_chat"), "claude": ("claude", "usage_from_claude"),
    "gemini": ("gemini", "usage_from_gemini"), "responses": ("responses", "usage_from_responses"),
}
_field_readers: dict[str, Any] = {}


def usage_of_field(fmt: str, raw: Any) -> Usage | None:
    """Usage out of the usage field alone (``usage`` / ``usageMetadata``) of a format ``fmt`` answer."""
    if not isinstance(raw, dict):
        return None
    reader = _field_readers.get(fmt)
    if reader is None:
        mod, name = _FIELD_READERS.get(fmt, _FIELD_READERS["responses"])
        reader = _field_readers[fmt] = getattr(module(mod), name)
    return reader(raw)  # type: ignore[no-any-return]


def usage_of_raw(fmt: str, raw: bytes | memoryview) -> Usage | None:
    """Usage out of the raw JSON of a format ``fmt`` answer's usage field (None when unreadable)."""
    if fmt == "openai":
        return module("openai").usage_from_chat_json(raw)  # type: ignore[no-any-return]
    try:
        return usage_of_field(fmt, orjson.loads(raw))
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError, KeyError):
        return None


class PendingUsage:
    """The usage of an answer passed through unchanged, read from it only when asked for (the
    usage log or store); parsing every answer just in case would cost each request."""

    __slots__ = ("fmt", "raw")

    def __init__(self, fmt: str, raw: bytes) -> None:
        self.fmt = fmt
        self.raw = raw

    def resolve(self) -> Usage | None:
        try:
            return usage_of(self.fmt, orjson.loads(self.raw))
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
            return None


class Prepared:
    """The client's request, ready to be sent in any upstream format."""

    __slots__ = ("_bodies", "_neutral", "body", "client_format", "options", "reasoning")

    def __init__(self, client_format: str, body: dict[str, Any], reasoning: Reasoning | None,
                 options: dict[str, Any]) -> None:
        self.client_format = client_format
        self.body = body
        self.reasoning = reasoning
        self.options = options
        self._neutral: Request | None = None
        self._bodies: dict[tuple[str, str, bool], bytes] = {}

    def neutral(self) -> Request:
        """The neutral form (raises BadRequest when the body is wrong for its API)."""
        if self._neutral is None:
            kwargs = {}
            if self.client_format == "claude" and self.options.get("default_max_tokens"):
                kwargs["default_max_tokens"] = self.options["default_max_tokens"]
            try:
                self._neutral = module(self.client_format).request_to_neutral(
                    self.body, self.options.get("model"), **kwargs
                )
            except BadRequest:
                raise
            except _SHAPE_ERRORS as exc:
                raise _unreadable(exc, self.client_format) from None
        return self._neutral

    def body_for(self, wire: str, upstream_model: str, stream: bool) -> bytes:
        key = (wire, upstream_model, stream)
        cached = self._bodies.get(key)
        if cached is None:
            try:
                cached = self._bodies[key] = orjson.dumps(self.body_dict(wire, upstream_model, stream))
            except BadRequest:
                raise
            except _SHAPE_ERRORS as exc:  # orjson.JSONEncodeError is a TypeError
                raise _unreadable(exc, self.client_format) from None
        return cached

    def body_dict(self, wire: str, upstream_model: str, stream: bool) -> dict[str, Any]:
        """The request body for an upstream of format ``wire`` (a new dict each call)."""
        try:
            return self._body_dict(wire, upstream_model, stream)
        except BadRequest:
            raise
        except _SHAPE_ERRORS as exc:
            raise _unreadable(exc, self.client_format) from None

    def _body_dict(self, wire: str, upstream_model: str, stream: bool) -> dict[str, Any]:
        if wire == self.client_format:
            body = dict(self.body)
            if wire != "gemini":
                body["model"] = upstream_model
            if self.reasoning is not None:
                apply_to_body(wire, body, self.reasoning, upstream_model)
            if wire == "claude" and "max_tokens" not in body and self.options.get("default_max_tokens"):
                body["max_tokens"] = self.options["default_max_tokens"]
        else:
            req = self.neutral()
            req.stream = stream
            if self.reasoning is not None:
                req.reasoning = self.reasoning
            body = module(wire).request_from_neutral(req, upstream_model)
        if wire == "openai" and stream:
            opts = body.get("stream_options")
            body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        return body

    def response(
        self, wire: str, raw: bytes, model: str, operation: str, parsed: Any = None
    ) -> tuple[bytes, Usage | PendingUsage | None]:
        """The client's answer and its usage. Raises ValueError (orjson's included) when the
        upstream's answer is not a JSON object. ``parsed``: ``raw`` already parsed (by the
        answer check), so that it is not parsed again."""
        if wire == self.client_format:
            # passed through as it is; a page that is not JSON (an HTML error page sent with 200
            # by a wrong base-url, say) must not reach the client as its answer
            head = raw[:1] if raw[:1] == b"{" else raw.lstrip()[:1]
            if head != b"{":
                raise ValueError("the answer is not a JSON object")
            return raw, PendingUsage(wire, raw)
        obj = orjson.loads(raw) if parsed is None else parsed
        resp = module(wire).response_to_neutral(obj)
        if self.client_format == "responses" and (tools := self.neutral().extra.get(ORIGINS)):
            answer = module("responses").response_from_neutral(resp, model, tools=tools)
        else:
            answer = module(self.client_format).response_from_neutral(resp, model)
        return orjson.dumps(answer), resp.usage

    def client_wants_usage(self) -> bool:
        opts = self.body.get("stream_options")
        return isinstance(opts, dict) and opts.get("include_usage") is True

    def pipe(self, wire: str, model: str) -> Pipe:
        client = self.client_format
        if wire == client:
            if wire == "openai":
                return ChatPassthrough(self.client_wants_usage())
            if wire == "claude":
                return ClaudePassthrough()
            if wire == "gemini":
                return GeminiPassthrough(sse=not self.options.get("json_array"))
            return ResponsesPassthrough(codex_client=bool(self.options.get("codex_client")))
        decoder = module(wire).StreamDecoder(model)
        encoder_opts: dict[str, Any] = {}
        if client == "openai":
            encoder_opts["include_usage"] = self.client_wants_usage()
        elif client == "gemini":
            encoder_opts["sse"] = not self.options.get("json_array")
        elif client == "claude":
            encoder_opts["upstream_family"] = "gemini" if wire == "gemini" else "openai"
        elif client == "responses":
            encoder_opts["codex_client"] = bool(self.options.get("codex_client"))
            tools = self.neutral().extra.get(ORIGINS)
            if tools:
                encoder_opts["tools"] = tools
        encoder = module(client).StreamEncoder(model, **encoder_opts)
        return TranslatePipe(decoder, encoder)
