"""Session id extraction: which conversation a request belongs to.

The ids feed session affinity (routing/affinity.py). Sources are tried in a fixed order and the
first usable value wins; every value is trimmed and rejected when empty, longer than 256 bytes or
containing a control character, and a rejected value does not end the search. Each id carries a
namespace naming its source (``claude:``, ``codex:``, ``header:`` ...), so two sources can never
collide. When no explicit signal exists, the id is a 64-bit FNV-1a hash of the conversation's start
(``msg:``), with a fallback id that lets the binding made on the first turn carry over to later turns.

``Idempotency-Key`` is deliberately not a source: it identifies one request, not a conversation.

This runs on every request, so it does no per-call regex compilation and never serialises the body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

__all__ = ["SessionIds", "clean_id", "extract_session_ids", "fnv1a64", "message_hash_ids"]

_MAX_ID_BYTES = 256
_HASH_PART_BYTES = 100
# C0 controls, DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Claude Code's legacy metadata.user_id: user_<hash>_account_<uuid>_session_<uuid>
_LEGACY_CLAUDE_USER = re.compile(r"_session_([a-f0-9-]+)$")

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = 0xFFFFFFFFFFFFFFFF


class SessionIds(NamedTuple):
    """``primary`` is looked up first; ``fallback`` (when set) is tried on a primary miss.
    Immutable, so one instance may be shared by every request of a conversation."""

    primary: str
    fallback: str | None = None


def clean_id(value: Any) -> str | None:
    """Trim ``value``; None unless it is a non-empty string of at most 256 bytes without controls."""
    if not isinstance(value, str):
        return None
    v = value.strip()
    if not v:
        return None
    if len(v) > _MAX_ID_BYTES or (not v.isascii() and len(v.encode()) > _MAX_ID_BYTES):
        return None
    if _CONTROL.search(v) is not None:
        return None
    return v


def fnv1a64(data: bytes) -> int:
    """64-bit FNV-1a. Four bytes per step with one mask: the bits above 64 that the unmasked
    products carry never reach the low 64 bits, so masking once per step gives the same hash."""
    p = _FNV_PRIME
    h = _FNV_OFFSET
    it = iter(data)
    for a, b, c, d in zip(it, it, it, it, strict=False):
        h = ((((((((h ^ a) * p) ^ b) * p) ^ c) * p) ^ d) * p) & _MASK64
    for x in data[len(data) & ~3 :]:
        h = ((h ^ x) * p) & _MASK64
    return h


def _msg_id(data: bytes) -> str:
    return f"msg:{fnv1a64(data):016x}"


# The start of a conversation repeats on every turn: remember the ids of recent starts, keyed by
# the (system, user, assistant) texts cut to 100 characters (which fix the 100 hashed bytes).
_IDS_CACHE: dict[tuple[str, str, str], SessionIds | None] = {}
_IDS_CACHE_MAX = 8192


# ---------------------------------------------------------------- text of a conversation's start


def _join_text(content: Any) -> str:
    """Text of a message's content: a string, or the ``text`` of its parts joined with spaces.

    Only about the first 100 bytes are hashed, so joining stops once that much text is gathered.
    Gemini parts marked ``thought`` are skipped.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    out: list[str] = []
    size = 0
    for part in content:
        if not isinstance(part, dict):
            continue
        t = part.get("text")
        if not isinstance(t, str) or not t or part.get("thought") is True:
            continue
        out.append(t)
        size += len(t) + 1
        if size > _HASH_PART_BYTES:
            break
    return " ".join(out)


def _openai_start(body: dict[str, Any]) -> tuple[str, str, str]:
    """First system/developer, user and assistant texts of a chat-style ``messages`` list."""
    system = ""
    user = ""
    assistant = ""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return system, user, assistant
    for m in messages:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        if role == "user":
            if not user:
                content = m.get("content")
                user = content if isinstance(content, str) else _join_text(content)
        elif role == "assistant":
            if not assistant:
                assistant = _join_text(m.get("content"))
        elif role == "system" or role == "developer":
            if not system:
                system = _join_text(m.get("content"))
        if user and assistant:
            # a system message after the first exchange does not count: stop scanning here so
            # long conversations cost the same as short ones
            break
    return system, user, assistant


def _claude_start(body: dict[str, Any]) -> tuple[str, str, str]:
    system = ""
    raw = body.get("system")
    if isinstance(raw, str):
        system = raw
    elif isinstance(raw, list):
        for block in raw:
            if isinstance(block, dict):
                t = block.get("text")
                if isinstance(t, str) and t:
                    system = t
                    break
    s, u, a = _openai_start(body)
    # a system message inside messages (OpenAI style) comes first, else Claude's top-level system
    return (s or system), u, a


def _gemini_start(body: dict[str, Any]) -> tuple[str, str, str]:
    system = ""
    si = body.get("systemInstruction")
    if si is None:
        si = body.get("system_instruction")
    if isinstance(si, dict):
        system = _join_text(si.get("parts"))
    elif isinstance(si, str):
        system = si
    user = ""
    model = ""
    contents = body.get("contents")
    if isinstance(contents, list):
        for c in contents:
            if not isinstance(c, dict):
                continue
            role = c.get("role") or "user"
            if role == "user":
                if not user:
                    user = _join_text(c.get("parts"))
            elif role == "model" and not model:
                model = _join_text(c.get("parts"))
            if user and model:
                break
    return system, user, model


def _responses_start(body: dict[str, Any]) -> tuple[str, str, str]:
    system = ""
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        system = instructions
    user = ""
    assistant = ""
    inp = body.get("input")
    if isinstance(inp, str):
        return system, inp, assistant
    if not isinstance(inp, list):
        return system, user, assistant
    for item in inp:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        # messages are typed "message" or, inline, carry a role and no type; the rest
        # (reasoning, function calls and outputs, ...) is skipped
        if kind is not None and kind != "message":
            continue
        role = item.get("role")
        if role == "user":
            if not user:
                user = _join_text(item.get("content"))
        elif role == "assistant":
            if not assistant:
                assistant = _join_text(item.get("content"))
        elif (role == "system" or role == "developer") and not system:
            system = _join_text(item.get("content"))
        if user and assistant:
            break
    return system, user, assistant


_START_READERS = {
    "openai": _openai_start,
    "claude": _claude_start,
    "gemini": _gemini_start,
    "responses": _responses_start,
}


def _guess_reader(body: dict[str, Any]) -> Any:
    if "contents" in body:
        return _gemini_start
    if "input" in body or "instructions" in body:
        return _responses_start
    if "system" in body:
        return _claude_start
    return _openai_start


def _part(tag: bytes, text: str) -> bytes:
    return tag + text.encode()[:_HASH_PART_BYTES] + b"\n"


def _hash_ids(system: str, user: str, assistant: str) -> SessionIds | None:
    base = b""
    if system:
        base += _part(b"sys:", system)
    if user:
        base += _part(b"usr:", user)
    if assistant:
        return SessionIds(_msg_id(base + _part(b"ast:", assistant)), _msg_id(base) if base else None)
    return SessionIds(_msg_id(base)) if base else None


def message_hash_ids(body: dict[str, Any], fmt: str) -> SessionIds | None:
    """The ``msg:`` ids from the conversation's start, or None when it has no text at all."""
    reader = _START_READERS.get(fmt) or _guess_reader(body)
    system, user, assistant = reader(body)
    # 100 characters encode to at least 100 bytes, so the cut strings decide the hashed bytes
    key = (system[:_HASH_PART_BYTES], user[:_HASH_PART_BYTES], assistant[:_HASH_PART_BYTES])
    try:
        return _IDS_CACHE[key]
    except KeyError:
        pass
    ids = _hash_ids(*key)
    if len(_IDS_CACHE) >= _IDS_CACHE_MAX:
        del _IDS_CACHE[next(iter(_IDS_CACHE))]  # the oldest entry (dicts keep insertion order)
    _IDS_CACHE[key] = ids
    return ids


# ---------------------------------------------------------------- explicit sources

_HEADER_SOURCES: tuple[tuple[str, str], ...] = (
    ("session-id", "codex:"),
    ("session_id", "codex:"),
    ("x-session-id", "header:"),
    ("x-session-affinity", "affinity:"),
    ("x-client-request-id", "clientreq:"),
)


def _claude_user_session(user_id: str) -> str | None:
    """Session id inside Claude Code's ``metadata.user_id`` (JSON or legacy form), else None."""
    raw = user_id.strip()
    if raw.startswith("{"):
        # the JSON form may exceed the 256-byte bound as a whole: parse first, bound the field
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if isinstance(parsed, dict):
            return clean_id(parsed.get("session_id"))
        return None
    if "_session_" not in raw:
        return None
    m = _LEGACY_CLAUDE_USER.search(raw)
    return clean_id(m.group(1)) if m is not None else None


def _conversation_id(body: dict[str, Any]) -> str | None:
    conv = body.get("conversation")
    if isinstance(conv, dict):
        return clean_id(conv.get("id"))
    return clean_id(conv)


# Body fields that carry an explicit session signal; most requests have none of them.
_BODY_SOURCES = frozenset({"metadata", "session_id", "sessionId", "conversation", "prompt_cache_key",
                           "conversation_id"})


def extract_session_ids(headers: Mapping[str, str], body: dict[str, Any], fmt: str) -> SessionIds | None:
    """Session ids of a request. ``headers`` has lower-case names; ``fmt`` is the client format
    ("openai", "responses", "claude" or "gemini"). None only when the request carries no explicit
    signal and no conversation text to hash."""
    if not isinstance(body, dict):
        body = {}
    get = headers.get
    # Absent sources are skipped before clean_id: most requests carry none of them.
    raw = get("x-claude-code-session-id")
    if raw and (v := clean_id(raw)) is not None:
        return SessionIds("claude:" + v)

    in_body = not _BODY_SOURCES.isdisjoint(body)
    user_id: Any = None
    if in_body:
        metadata = body.get("metadata")
        if isinstance(metadata, dict):
            user_id = metadata.get("user_id")
            if isinstance(user_id, str):
                v = _claude_user_session(user_id)
                if v is not None:
                    return SessionIds("claude:" + v)

    for name, ns in _HEADER_SOURCES:
        raw = get(name)
        if raw and (v := clean_id(raw)) is not None:
            return SessionIds(ns + v)

    if in_body:
        found = _body_ids(body, user_id)
        if found is not None:
            return found
    return message_hash_ids(body, fmt)


def _body_ids(body: dict[str, Any], user_id: Any) -> SessionIds | None:
    """The body's explicit sources after the headers, in their order; ``user_id`` is
    ``metadata.user_id`` (already found not to be in Claude Code's form)."""
    bget = body.get
    for name in ("session_id", "sessionId"):
        raw = bget(name)
        if raw and (v := clean_id(raw)) is not None:
            return SessionIds("session:" + v)

    conv = _conversation_id(body) if "conversation" in body else None
    raw = bget("prompt_cache_key")
    if raw and (v := clean_id(raw)) is not None:
        return SessionIds("pck:" + v, "conv:" + conv if conv is not None else None)
    if conv is not None:
        return SessionIds("conv:" + conv)

    if user_id and (v := clean_id(user_id)) is not None:
        return SessionIds("user:" + v)

    raw = bget("conversation_id")
    if raw and (v := clean_id(raw)) is not None:
        return SessionIds("conv:" + v)
    return None
