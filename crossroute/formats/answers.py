"""Is a whole upstream answer (a 2xx body) really an answer in its wire format?

An upstream can say 200 and still not answer: an error object, ``{}``, JSON without content (no
``choices`` / ``content`` / ``candidates`` / ``output``), a web page, broken JSON. Such a body must
never reach the client as a success, nor as bytes that are not JSON. ``problem`` parses the body
once and names what is wrong (None when it is an answer); the parsed object is returned so that a
caller that translates it need not parse it again.

``passthrough`` is the same check for an answer relayed unchanged (same wire format as the
client), where nothing but "is it valid JSON, and an answer" and its usage is needed: msgspec
validates the whole document as JSON but decodes only the few fields that decide (the content
list's items kept raw, the usage kept as raw bytes for later), about a third of the instructions
of ``orjson.loads`` into dicts. msgspec does not check the UTF-8 of the strings it skips, so a
body that is not ASCII is decoded as UTF-8 first. Anything the fast path cannot decide (an error
field, no content, a document msgspec refuses) goes to ``problem``, so the verdicts and messages
are the same as ``problem``'s.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from .errors import upstream_error_message

__all__ = ["check", "passthrough", "problem"]


def _content_problem(wire: str, obj: dict[str, Any], operation: str) -> str | None:
    if wire == "openai":
        choices = obj.get("choices")
        if not isinstance(choices, list) or not choices:
            return "an answer without choices"
        return None
    if wire == "claude":
        if not isinstance(obj.get("content"), list):
            return "an answer without content"
        return None
    if wire == "gemini":
        cands = obj.get("candidates")
        if isinstance(cands, list) and cands:
            return None
        feedback = obj.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            return None  # a blocked prompt is an answer (with no candidates)
        return "an answer without candidates"
    # responses (and its compaction)
    if not isinstance(obj.get("output"), list):
        return "an answer without output"
    return None


# the field whose list makes an answer, per wire format (the fast path of ``problem``); the
# formats where an empty list still is an answer
_CONTENT = {"openai": "choices", "claude": "content", "gemini": "candidates", "responses": "output"}
_EMPTY_OK = frozenset(("claude", "responses"))


def problem(wire: str, raw: bytes, operation: str = "generate") -> tuple[str | None, Any]:
    """``(None, parsed)`` for a real answer, else ``(what is wrong, None)``."""
    if raw[:1] != b"{":  # (every answer seen from a real upstream starts with its brace)
        head = raw.lstrip()[:1]
        if head == b"<":
            return "a web page instead of an answer", None
        if not head:
            return "an empty answer", None
        if head != b"{":
            return "an answer that is not a JSON object", None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "an answer that is not valid JSON", None
    if type(obj) is not dict or not obj:
        return "an empty JSON object instead of an answer", None
    if obj.get("error") or obj.get("type") == "error":
        message, _ = upstream_error_message(raw)
        return f"an error with status 200: {message}", None
    value = obj.get(_CONTENT.get(wire, "output"))
    if type(value) is list and (value or wire in _EMPTY_OK):
        return None, obj  # the common case, without the call below
    what = _content_problem(wire, obj, operation)
    if what is not None:
        return what, None
    return None, obj


def check(wire: str, raw: bytes, operation: str = "generate") -> str | None:
    """What is wrong with ``raw`` as an answer in format ``wire``; None when it is one."""
    return problem(wire, raw, operation)[0]


# ---------------------------------------------------------------- same-format fast path
# (``error`` and ``type`` as Any: absent costs nothing, and present they are judged as ``problem``
# judges them; ``items``: the list that makes an answer, its elements validated but not decoded;
# ``usage`` raw, ``_NO_USAGE`` when absent: msgspec cannot union Raw with None)
_NO_USAGE = msgspec.Raw(b"null")


# where each format keeps its usage (what ``translate.usage_of`` reads)
USAGE_FIELD = {"openai": "usage", "claude": "usage", "gemini": "usageMetadata", "responses": "usage"}


def _decoder(wire: str) -> Any:
    """The decode function of ``wire``'s shape: ``items``, ``usage``, ``error``, ``type``."""
    shape = msgspec.defstruct(f"_{wire.capitalize()}Shape", [
        ("items", list[msgspec.Raw] | None, msgspec.field(default=None, name=_CONTENT[wire])),
        ("usage", msgspec.Raw, msgspec.field(default=_NO_USAGE, name=USAGE_FIELD[wire])),
        ("error", Any, None),
        ("type", Any, None),
    ])
    return msgspec.json.Decoder(shape).decode


_SHAPES: dict[str, Any] = {wire: _decoder(wire) for wire in _CONTENT}


def passthrough(wire: str, raw: bytes, operation: str = "generate") -> tuple[str | None, Any]:
    """``(None, the usage field's JSON or None)`` for a real answer, else ``(what is wrong, None)``.
    The usage's JSON is a buffer (``bytes`` or a ``msgspec.Raw`` slice of ``raw``): read it with
    ``orjson.loads(memoryview(usage))``."""
    decode = _SHAPES.get(wire)
    if decode is not None and raw[:1] == b"{":
        try:
            if not raw.isascii():
                raw.decode()  # UTF-8 (msgspec checks only the strings it decodes)
            shape = decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            pass  # (ValidationError is a DecodeError) problem() names it
        else:
            items = shape.items
            if items is not None and (items or wire in _EMPTY_OK) and not shape.error and shape.type != "error":
                usage = shape.usage
                return None, None if usage is _NO_USAGE else usage
    what, obj = problem(wire, raw, operation)
    if what is not None:
        return what, None
    usage = obj.get(USAGE_FIELD.get(wire, "usage"))
    return None, None if usage is None else orjson.dumps(usage)
