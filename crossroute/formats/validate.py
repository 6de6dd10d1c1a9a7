"""Structural checks of a client's request body, per wire format, before anything else reads it.

Same-format traffic passes to the upstream without being translated, so without this a body with
a field of the wrong JSON type (a Gemini ``generationConfig`` that is a string, a ``role`` that is
an object) would be relayed as it is, or would crash code that trusts the type. The checks look
only at the known top-level fields, the messages' own fields and one level below where a wrong type
is common; they never re-parse or walk whole payloads, so their cost is a few dictionary lookups
per field. ``null`` always counts as "absent", as the providers treat it.

``check(fmt, body)`` raises :class:`BadRequest` naming the field (``param``) in the client
format's own path style. ``check_depth(raw, obj)`` refuses bodies nested deeper than
``MAX_DEPTH`` (254: orjson reads up to 1024 levels but writes at most 254, and a body the gateway
cannot write again cannot be relayed).
"""

from __future__ import annotations

from typing import Any

import orjson

from .neutral import BadRequest

MAX_DEPTH = 254  # the most orjson writes

_S = (str,)
_I = (int,)
_N = (int, float)
_B = (bool,)
_L = (list,)
_D = (dict,)
_SL = (str, list)
_SD = (str, dict)

_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array", dict: "an object"}


def _want(types: tuple[type, ...]) -> str:
    if types == _N:
        return "a number"
    return " or ".join(_NAMES[t] for t in types)


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return _NAMES.get(type(value), type(value).__name__)


def _fail(param: str, types: tuple[type, ...], value: Any) -> BadRequest:
    return BadRequest(f"'{param}' must be {_want(types)}, got {_got(value)}", param=param)


def _fields(obj: dict[str, Any], spec: dict[str, tuple[type, ...]], prefix: str = "", i: int = 0) -> None:
    """``prefix`` may hold ``{}`` for ``i`` (formatted only for the error: this runs per message)."""
    for key, value in obj.items():
        want = spec.get(key)
        if want is not None and value is not None and type(value) not in want:
            raise _fail(prefix.format(i) + key, want, value)


# ---------------------------------------------------------------- OpenAI chat completions

_CHAT_TOP: dict[str, tuple[type, ...]] = {
    "model": _S, "messages": _L, "tools": _L, "functions": _L, "tool_choice": _SD, "function_call": _SD,
    "parallel_tool_calls": _B, "max_tokens": _I, "max_completion_tokens": _I, "temperature": _N, "top_p": _N,
    "n": _I, "stop": _SL, "stream": _B, "stream_options": _D, "response_format": _D, "user": _S,
    "metadata": _D, "reasoning_effort": _S, "frequency_penalty": _N, "presence_penalty": _N, "seed": _I,
    "logprobs": _B, "top_logprobs": _I, "logit_bias": _D, "modalities": _L, "audio": _D, "prediction": _D,
    "service_tier": _S, "store": _B, "verbosity": _S, "web_search_options": _D, "prompt_cache_key": _S,
    "safety_identifier": _S,
}  # fmt: skip
_CHAT_ROLES = frozenset(("system", "developer", "user", "assistant", "tool", "function"))
_CHAT_MSG: dict[str, tuple[type, ...]] = {
    "role": _S, "content": _SL, "tool_calls": _L, "tool_call_id": _S, "name": _S, "refusal": _S,
    "reasoning_content": _S, "function_call": _D,
}  # fmt: skip


def _check_chat(body: dict[str, Any]) -> None:
    for key, value in body.items():  # _fields, inlined: this runs for every chat request
        want = _CHAT_TOP.get(key)
        if want is not None and value is not None and type(value) not in want:
            raise _fail(key, want, value)
    msgs = body.get("messages")
    if msgs is None:
        raise BadRequest("'messages' is required", param="messages")
    if not msgs:
        raise BadRequest("'messages' must be a non-empty array of message objects", param="messages")
    for i, m in enumerate(msgs):
        if type(m) is not dict:
            raise BadRequest(f"'messages[{i}]' must be an object, got {_got(m)}", param=f"messages[{i}]")
        role = m.get("role")
        if type(role) is not str or role not in _CHAT_ROLES:
            raise BadRequest(f"'messages[{i}].role' must be one of {', '.join(sorted(_CHAT_ROLES))}, got "
                             f"{role!r}", param=f"messages[{i}].role")
        if len(m) > 2 or type(m.get("content")) is not str:  # not the plain {"role", "content": "..."}
            _fields(m, _CHAT_MSG, "messages[{}].", i)
    if body.get("tools"):
        _items_are_objects(body["tools"], "tools[{}]")


# ---------------------------------------------------------------- OpenAI Responses

_RESP_TOP: dict[str, tuple[type, ...]] = {
    "model": _S, "input": _SL, "instructions": _S, "tools": _L, "tool_choice": _SD, "parallel_tool_calls": _B,
    "max_output_tokens": _I, "temperature": _N, "top_p": _N, "stream": _B, "reasoning": _D, "text": _D,
    "user": _S, "metadata": _D, "store": _B, "previous_response_id": _S, "include": _L, "prompt_cache_key": _S,
    "service_tier": _S, "truncation": _S, "background": _B, "top_logprobs": _I, "safety_identifier": _S,
    "max_tool_calls": _I, "conversation": _SD, "prompt": _D, "stream_options": _D, "client_metadata": _D,
}  # fmt: skip
_RESP_ROLES = frozenset(("user", "assistant", "system", "developer"))
_RESP_ITEM: dict[str, tuple[type, ...]] = {
    "type": _S, "role": _S, "content": _SL, "call_id": _S, "name": _S, "namespace": _S, "arguments": _SD,
    "input": _S, "id": _S,
}  # fmt: skip
_RESP_TEXT: dict[str, tuple[type, ...]] = {"format": _D, "verbosity": _S}
_RESP_FORMAT: dict[str, tuple[type, ...]] = {"type": _S, "name": _S, "schema": _D, "strict": _B, "description": _S}
_RESP_REASONING: dict[str, tuple[type, ...]] = {"effort": _S, "summary": _S, "generate_summary": _S}


def _check_responses(body: dict[str, Any]) -> None:
    _fields(body, _RESP_TOP)
    inp = body.get("input")
    if type(inp) is list:
        for i, item in enumerate(inp):
            if type(item) is not dict:
                raise BadRequest(f"'input[{i}]' must be an input item object, got {_got(item)}",
                                 param=f"input[{i}]")
            _fields(item, _RESP_ITEM, "input[{}].", i)
            role = item.get("role")
            if (role is not None or item.get("type", "message") == "message") and role not in _RESP_ROLES:
                raise BadRequest(f"'input[{i}].role' must be one of assistant, developer, system, user, got "
                                 f"{role!r}", param=f"input[{i}].role")
    _items_are_objects(body.get("tools"), "tools[{}]")
    text = body.get("text")
    if text is not None:
        _fields(text, _RESP_TEXT, "text.")
        if text.get("format") is not None:
            _fields(text["format"], _RESP_FORMAT, "text.format.")
    if body.get("reasoning") is not None:
        _fields(body["reasoning"], _RESP_REASONING, "reasoning.")


# ---------------------------------------------------------------- Anthropic Messages

_CLAUDE_TOP: dict[str, tuple[type, ...]] = {
    "model": _S, "messages": _L, "system": _SL, "max_tokens": _I, "temperature": _N, "top_p": _N, "top_k": _I,
    "stop_sequences": _L, "stream": _B, "tools": _L, "tool_choice": _D, "thinking": _D, "metadata": _D,
    "output_config": _D, "output_format": _D, "service_tier": _S, "container": _SD, "mcp_servers": _L,
    "context_management": _D,
}  # fmt: skip
# "system": a mid-conversation system message (Anthropic's mid-conversation-system messages)
_CLAUDE_ROLES = frozenset(("user", "assistant", "system"))
_CLAUDE_MSG: dict[str, tuple[type, ...]] = {"role": _S, "content": _SL, "cache_control": _D}


def _check_claude(body: dict[str, Any]) -> None:
    _fields(body, _CLAUDE_TOP)
    msgs = body.get("messages")
    if msgs is None:
        raise BadRequest("messages: Field required (an array of message objects)", param="messages")
    for i, m in enumerate(msgs):
        if type(m) is not dict:
            raise BadRequest(f"messages.{i}: must be an object with role and content", param=f"messages[{i}]")
        role = m.get("role")
        if type(role) is not str or role not in _CLAUDE_ROLES:
            raise BadRequest(f"messages.{i}.role: must be 'user', 'assistant' or 'system', got {role!r}",
                             param=f"messages[{i}].role")
        content = m.get("content")
        if content is None:
            raise BadRequest(f"messages.{i}.content: Field required", param=f"messages[{i}].content")
        if len(m) > 2 or (type(content) is not list and type(content) is not str):
            _fields(m, _CLAUDE_MSG, "messages[{}].", i)
    _items_are_objects(body.get("tools"), "tools[{}]")
    _items_are_objects(body.get("system") if type(body.get("system")) is list else None, "system[{}]")


# ---------------------------------------------------------------- Gemini

_GEMINI_TOP: dict[str, tuple[type, ...]] = {
    "contents": _L, "systemInstruction": _SD, "system_instruction": _SD, "tools": _L, "toolConfig": _D,
    "tool_config": _D, "generationConfig": _D, "generation_config": _D, "safetySettings": _L,
    "safety_settings": _L, "cachedContent": _S, "cached_content": _S, "labels": _D, "model": _S,
}  # fmt: skip
_GEMINI_CONTENT: dict[str, tuple[type, ...]] = {"role": _S, "parts": _L}
_GEMINI_GEN: dict[str, tuple[type, ...]] = {
    "maxOutputTokens": _I, "temperature": _N, "topP": _N, "topK": _N, "candidateCount": _I, "stopSequences": _SL,
    "responseMimeType": _S, "responseSchema": _D, "thinkingConfig": _D, "seed": _I, "presencePenalty": _N,
    "frequencyPenalty": _N, "responseModalities": _L, "responseLogprobs": _B, "logprobs": _I,
    "mediaResolution": _S, "speechConfig": _D,
}  # fmt: skip
_GEMINI_THINKING: dict[str, tuple[type, ...]] = {"thinkingBudget": _I, "thinkingLevel": _S, "includeThoughts": _B}


def _camel(key: str) -> str:
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _check_gemini(body: dict[str, Any]) -> None:
    _fields(body, _GEMINI_TOP)
    for i, c in enumerate(body.get("contents") or ()):
        if type(c) is not dict:
            raise BadRequest(f"contents[{i}] must be a Content object, got {_got(c)}", param=f"contents[{i}]")
        parts = c.get("parts")
        if len(c) > 2 or type(parts) is not list or type(c.get("role", "")) is not str:
            _fields(c, _GEMINI_CONTENT, "contents[{}].", i)
        _items_are_objects(parts, "contents[{}].parts[{}]", i)
    for key in ("generationConfig", "generation_config"):
        gc = body.get(key)
        if gc is not None:
            for k, v in gc.items():
                want = _GEMINI_GEN.get(_camel(k))
                if want is not None and v is not None and type(v) not in want:
                    raise _fail(f"{key}.{k}", want, v)
            tc = gc.get("thinkingConfig", gc.get("thinking_config"))
            if tc is not None:
                if type(tc) is not dict:
                    raise _fail(f"{key}.thinkingConfig", _D, tc)
                for k, v in tc.items():
                    want = _GEMINI_THINKING.get(_camel(k))
                    if want is not None and v is not None and type(v) not in want:
                        raise _fail(f"{key}.thinkingConfig.{k}", want, v)
    for key in ("systemInstruction", "system_instruction"):
        si = body.get(key)
        if type(si) is dict:
            parts = si.get("parts")
            if parts is not None and type(parts) is not list:
                raise _fail(f"{key}.parts", _L, parts)
            _items_are_objects(parts, f"{key}.parts[{{}}]")
    _items_are_objects(body.get("tools"), "tools[{}]")


def _items_are_objects(items: list[Any] | None, where: str, *outer: int) -> None:
    if items:
        for i, item in enumerate(items):
            if type(item) is not dict:
                param = where.format(*outer, i)
                raise BadRequest(f"'{param}' must be an object, got {_got(item)}", param=param)


# API -> check(body), raising BadRequest when a known field of body has the wrong JSON type
CHECKS = {"openai": _check_chat, "responses": _check_responses, "claude": _check_claude, "gemini": _check_gemini}


def check(fmt: str, body: dict[str, Any]) -> None:
    """Raise BadRequest when a known field of ``body`` has the wrong JSON type for API ``fmt``."""
    CHECKS[fmt](body)


# ---------------------------------------------------------------- nesting depth


def check_depth(raw: bytes, obj: Any) -> None:
    """Refuse ``obj`` (parsed from the body ``raw``) when nested deeper than MAX_DEPTH. A body
    cannot be deeper than it has opening brackets, so only bodies that could be are measured, and
    by the cheapest exact means at hand: orjson writing it (C speed, and the very operation the
    gateway must be able to do with the body; a walk in Python or a byte scan costs more)."""
    if len(raw) <= MAX_DEPTH or raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH:
        return
    try:
        orjson.dumps(obj)
    except orjson.JSONEncodeError:
        raise BadRequest(f"request body is nested too deeply: at most {MAX_DEPTH} levels of arrays and "
                         "objects are accepted") from None
