"""OpenAI Chat Completions wire format.

Usage extraction for passthrough (same-format) traffic lives at the top; the neutral
translator (request/response, see ``neutral.py``) follows. The stream classes live in
``openai_chat_stream.py`` and are re-exported here (``StreamDecoder``, ``StreamEncoder``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from .neutral import (
    Audio,
    BadRequest,
    File,
    FinishReason,
    Image,
    Message,
    Part,
    Reasoning,
    Request,
    Response,
    ResponseFormat,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Unsupported,
    Usage,
)
from .responses_tools import drop_hosted
from .thinking import effective_effort
from .usage_tokens import tokens_of_raw

FORMAT = "openai"


def usage_from_chat(usage: dict[str, Any] | None) -> Usage | None:
    """Neutral usage from a chat ``usage`` object (prompt/completion/cached/reasoning)."""
    if usage.__class__ is not dict:
        return None
    prompt = usage.get("prompt_tokens") or 0  # type: ignore[union-attr]
    completion = usage.get("completion_tokens") or 0  # type: ignore[union-attr]
    pd = usage.get("prompt_tokens_details")  # type: ignore[union-attr]
    cd = usage.get("completion_tokens_details")  # type: ignore[union-attr]
    cached = (pd.get("cached_tokens") or 0) if pd.__class__ is dict else 0
    reasoning = (cd.get("reasoning_tokens") or 0) if cd.__class__ is dict else 0
    # counts are ints on the wire; anything else (a float, a numeric string) is converted
    return Usage(
        prompt if prompt.__class__ is int else int(prompt),
        completion if completion.__class__ is int else int(completion),
        cached if cached.__class__ is int else int(cached),
        0,
        reasoning if reasoning.__class__ is int else int(reasoning),
    )


def usage_from_chat_json(raw: bytes | memoryview) -> Usage | None:
    """``usage_from_chat`` of a ``usage`` object's raw JSON, decoded straight into its counts
    (``usage_tokens.tokens_of_raw``: about a tenth of the work of parsing it into dicts; a usage of
    another shape goes to ``usage_from_chat``); None when it is not JSON or not an object."""
    t = tokens_of_raw(FORMAT, raw)
    return None if t is None else Usage(*t)


def usage_to_chat(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


# ---------------------------------------------------------------- shared small helpers

FINISH_FROM_CHAT: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
FINISH_TO_CHAT: dict[str, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "stop_sequence": "stop",
    "error": "stop",
}


def finish_from_chat(reason: Any) -> FinishReason:
    return FINISH_FROM_CHAT.get(reason, "stop") if isinstance(reason, str) else "stop"


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def _data_url(mime: str | None, data: str) -> str:
    return f"data:{mime or 'application/octet-stream'};base64,{data}"


def _split_data_url(url: str) -> tuple[str | None, str] | None:
    """``data:<mime>;base64,<data>`` -> (mime, data); None when not a base64 data URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url.partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    mime = head[5:-7].split(";", 1)[0]
    return (mime or None), data


def _args_text(args: Any) -> str:
    if isinstance(args, str):
        return args
    if args is None:
        return "{}"
    return orjson.dumps(args).decode()


# ---------------------------------------------------------------- request: chat -> neutral

_ROLES = frozenset(("system", "developer", "user", "assistant", "tool", "function"))
# Top-level keys modelled by the neutral Request; everything else goes to extra["openai"].
_MODELLED = frozenset(
    (
        "model", "messages", "tools", "functions", "tool_choice", "function_call", "parallel_tool_calls",
        "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "reasoning_effort",
        "response_format", "stream", "stream_options", "user", "metadata",
    )
)  # fmt: skip
_MESSAGE_KEYS = frozenset(
    ("role", "content", "tool_calls", "reasoning_content", "refusal", "function_call", "tool_call_id", "name")
)


def _texts(content: Any, where: str) -> list[Text]:
    """System/developer/tool content: a string or a list of text parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)]
    if isinstance(content, list):
        out: list[Text] = []
        for j, p in enumerate(content):
            if isinstance(p, str):
                out.append(Text(p))
            elif isinstance(p, dict) and p.get("type", "text") == "text" and isinstance(p.get("text"), str):
                out.append(Text(p["text"], cache_control=p.get("cache_control")))
            else:
                raise BadRequest("only text content parts are allowed here", param=f"{where}.content[{j}]")
        return out
    raise BadRequest("content must be a string or an array of parts", param=f"{where}.content")


def _image_part(p: dict[str, Any], where: str) -> Image:
    iu = p.get("image_url")
    detail = None
    if isinstance(iu, dict):
        detail = iu.get("detail")
        iu = iu.get("url")
    if not isinstance(iu, str) or not iu:
        raise BadRequest("image_url.url is required", param=f"{where}.image_url.url")
    split = _split_data_url(iu)
    if split is not None:
        return Image(data=split[1], mime_type=split[0], detail=detail)
    return Image(url=iu, detail=detail)


def _file_part(p: dict[str, Any], where: str) -> File:
    f = p.get("file")
    if not isinstance(f, dict):
        raise BadRequest("file must be an object", param=f"{where}.file")
    fd = f.get("file_data")
    out = File(file_id=f.get("file_id"), filename=f.get("filename"))
    if isinstance(fd, str) and fd:
        split = _split_data_url(fd)
        if split is not None:
            out.mime_type, out.data = split
        else:
            out.data = fd
    if out.data is None and out.file_id is None:
        raise BadRequest("file needs file_data or file_id", param=f"{where}.file")
    return out


def _user_parts(content: Any, where: str) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)]
    if not isinstance(content, list):
        raise BadRequest("content must be a string or an array of parts", param=f"{where}.content")
    out: list[Part] = []
    for j, p in enumerate(content):
        pw = f"{where}.content[{j}]"
        if isinstance(p, str):
            out.append(Text(p))
            continue
        if not isinstance(p, dict):
            raise BadRequest("content part must be an object", param=pw)
        t = p.get("type")
        if t == "text":
            text = p.get("text")
            if not isinstance(text, str):
                raise BadRequest("text part needs a string 'text'", param=f"{pw}.text")
            out.append(Text(text, cache_control=p.get("cache_control")))
        elif t == "image_url":
            out.append(_image_part(p, pw))
        elif t == "input_audio":
            a = p.get("input_audio")
            if not isinstance(a, dict) or not isinstance(a.get("data"), str):
                raise BadRequest("input_audio needs data and format", param=f"{pw}.input_audio")
            out.append(Audio(data=a["data"], format=str(a.get("format") or "wav")))
        elif t == "file":
            out.append(_file_part(p, pw))
        elif t == "refusal" and isinstance(p.get("refusal"), str):
            out.append(Text(p["refusal"]))
        else:
            raise BadRequest(f"unsupported content part type {t!r}", param=f"{pw}.type")
    return out


def _tool_call(tc: Any, where: str) -> ToolCall:
    if not isinstance(tc, dict):
        raise BadRequest("tool call must be an object", param=where)
    if tc.get("type") == "custom" and isinstance(tc.get("custom"), dict):
        c = tc["custom"]
        return ToolCall(id=str(tc.get("id") or ""), name=str(c.get("name") or ""), arguments=str(c.get("input") or ""))
    fn = tc.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise BadRequest("tool call needs function.name", param=f"{where}.function.name")
    return ToolCall(id=str(tc.get("id") or new_id("call_")), name=fn["name"], arguments=_args_text(fn.get("arguments")))


def _messages(msgs: list[Any], req: Request) -> None:
    out = req.messages
    legacy_ids: dict[str, list[str]] = {}  # legacy function_call name -> synthetic ids awaiting a result
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise BadRequest("each message must be an object", param=where)
        role = m.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise BadRequest(f"invalid role {role!r}", param=f"{where}.role")
        content = m.get("content")
        if role in ("system", "developer"):
            req.system.extend(_texts(content, where))
            continue
        if role in ("tool", "function"):
            if role == "tool":
                call_id = m.get("tool_call_id")
                if not isinstance(call_id, str):
                    raise BadRequest("tool message needs tool_call_id", param=f"{where}.tool_call_id")
                name = m.get("name")
            else:
                name = m.get("name")
                pending = legacy_ids.get(name or "")
                call_id = pending.pop(0) if pending else new_id("call_")
            tc: str | list[Text | Image] = content if isinstance(content, str) else list(_texts(content, where))
            result = ToolResult(call_id=call_id, content=tc, name=name if isinstance(name, str) else None)
            last = out[-1] if out else None
            if last is not None and last.role == "user" and last.extra.get("_tool_group"):
                last.content.append(result)
            else:
                out.append(Message("user", [result], extra={"_tool_group": True}))
            continue
        leftovers = {k: v for k, v in m.items() if k not in _MESSAGE_KEYS}
        if isinstance(m.get("name"), str):
            leftovers["name"] = m["name"]
        extra: dict[str, Any] = {"openai": leftovers} if leftovers else {}
        if role == "user":
            out.append(Message("user", _user_parts(content, where), extra=extra))
            continue
        parts: list[Part] = []
        rc = m.get("reasoning_content")
        if isinstance(rc, str) and rc:
            parts.append(Thinking(text=rc, source="openai"))
        if content is not None:
            parts.extend(_user_parts(content, where))
        refusal = m.get("refusal")
        if isinstance(refusal, str) and refusal:
            parts.append(Text(refusal))
        calls = m.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise BadRequest("tool_calls must be an array", param=f"{where}.tool_calls")
            parts.extend(_tool_call(tc, f"{where}.tool_calls[{j}]") for j, tc in enumerate(calls))
        fc = m.get("function_call")
        if isinstance(fc, dict) and isinstance(fc.get("name"), str):
            cid = new_id("call_")
            legacy_ids.setdefault(fc["name"], []).append(cid)
            parts.append(ToolCall(id=cid, name=fc["name"], arguments=_args_text(fc.get("arguments"))))
        out.append(Message("assistant", parts, extra=extra))
    for msg in out:
        msg.extra.pop("_tool_group", None)


def _tools(tools: Any, param: str, legacy: bool = False) -> list[Tool]:
    if not isinstance(tools, list):
        raise BadRequest(f"'{param}' must be an array", param=param)
    out: list[Tool] = []
    for i, t in enumerate(tools):
        where = f"{param}[{i}]"
        if not isinstance(t, dict):
            raise BadRequest("tool must be an object", param=where)
        if legacy:
            fn, fwhere = t, where
        elif t.get("type", "function") == "function":
            fn, fwhere = t.get("function"), f"{where}.function"
            if not isinstance(fn, dict):
                raise BadRequest("function tool needs a 'function' object", param=fwhere)
        else:
            out.append(Tool(name=str(t.get("type")), raw=t, raw_format=FORMAT))
            continue
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("function name is required", param=f"{fwhere}.name")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise BadRequest("function parameters must be a JSON schema object", param=f"{fwhere}.parameters")
        strict = fn.get("strict")
        desc = fn.get("description")
        cc = t.get("cache_control") or fn.get("cache_control")  # beside "function" or inside it
        out.append(
            Tool(
                name=name,
                description=desc if isinstance(desc, str) else None,
                parameters=params,
                strict=strict if isinstance(strict, bool) else None,
                cache_control=cc if isinstance(cc, dict) else None,
            )
        )
    return out


def _tool_choice(tc: Any, extra: dict[str, Any]) -> ToolChoice | None:
    if tc is None:
        return None
    if tc in ("auto", "none", "required"):
        return ToolChoice(mode=tc)
    if isinstance(tc, dict):
        fn = tc.get("function")
        if tc.get("type") == "function" and isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return ToolChoice(mode="tool", name=fn["name"])
        extra["tool_choice"] = tc  # allowed_tools, custom...: kept raw
        return None
    raise BadRequest(f"invalid tool_choice {tc!r}", param="tool_choice")


def _response_format(rf: Any) -> ResponseFormat | None:
    if rf is None:
        return None
    if not isinstance(rf, dict):
        raise BadRequest("response_format must be an object", param="response_format")
    t = rf.get("type")
    if t in ("text", "json_object"):
        return ResponseFormat(type=t)
    if t == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict):
            raise BadRequest("json_schema is required", param="response_format.json_schema")
        schema = js.get("schema")
        if schema is not None and not isinstance(schema, dict):
            raise BadRequest("schema must be an object", param="response_format.json_schema.schema")
        strict = js.get("strict")
        name, desc = js.get("name"), js.get("description")
        return ResponseFormat(
            type="json_schema",
            schema=schema,
            name=name if isinstance(name, str) else None,
            strict=strict if isinstance(strict, bool) else None,
            description=desc if isinstance(desc, str) else None,
        )
    raise BadRequest(f"invalid response_format type {t!r}", param="response_format.type")


def request_to_neutral(body: dict[str, Any], model: str | None = None) -> Request:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    msgs = body.get("messages")
    if msgs is None:
        raise BadRequest("'messages' is required", param="messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    m = body.get("model")
    req = Request(model=m if isinstance(m, str) and m else (model or ""), stream=stream)
    extra = {k: v for k, v in body.items() if k not in _MODELLED}
    _messages(msgs, req)

    if body.get("tools") is not None:
        req.tools = _tools(body["tools"], "tools")
    elif body.get("functions") is not None:
        req.tools = _tools(body["functions"], "functions", legacy=True)
    req.tool_choice = _tool_choice(body.get("tool_choice"), extra)
    fc = body.get("function_call")
    if req.tool_choice is None and fc is not None:
        if isinstance(fc, dict) and isinstance(fc.get("name"), str):
            req.tool_choice = ToolChoice(mode="tool", name=fc["name"])
        elif fc in ("auto", "none"):
            req.tool_choice = ToolChoice(mode=fc)
    ptc = body.get("parallel_tool_calls")
    req.parallel_tool_calls = ptc if isinstance(ptc, bool) else None

    mt, mct = body.get("max_tokens"), body.get("max_completion_tokens")
    req.max_tokens = mt if isinstance(mt, int) else mct if isinstance(mct, int) else None
    if mt is None and isinstance(mct, int):
        extra["max_completion_tokens"] = mct  # remember the client's key for an OpenAI upstream
    for key in ("temperature", "top_p"):
        v = body.get(key)
        if v is not None:
            if not isinstance(v, int | float) or isinstance(v, bool):
                raise BadRequest(f"'{key}' must be a number", param=key)
            setattr(req, key, float(v))
    stop = body.get("stop")
    if isinstance(stop, str):
        req.stop = [stop]
    elif isinstance(stop, list):
        req.stop = [s for s in stop if isinstance(s, str)]
    effort = body.get("reasoning_effort")
    if isinstance(effort, str) and effort:
        req.reasoning = Reasoning(effort=effort.lower())
    req.response_format = _response_format(body.get("response_format"))
    so = body.get("stream_options")
    if isinstance(so, dict):
        req.include_usage = so.get("include_usage") is True
        rest = {k: v for k, v in so.items() if k != "include_usage"}
        if rest:
            extra["stream_options"] = rest
    user = body.get("user")
    req.user = user if isinstance(user, str) else None
    md = body.get("metadata")
    if isinstance(md, dict):
        req.metadata = md
        extra["metadata"] = md  # OpenAI metadata is only sent back to an OpenAI upstream
    if extra:
        req.extra[FORMAT] = extra
    return req


# ---------------------------------------------------------------- request: neutral -> chat

_EFFORT_TO_CHAT = {"max": "xhigh", "auto": None}


def _image_to_chat(p: Image) -> dict[str, Any]:
    url = p.url if p.url else _data_url(p.mime_type or "image/png", p.data or "")
    iu: dict[str, Any] = {"url": url}
    if p.detail:
        iu["detail"] = p.detail
    return {"type": "image_url", "image_url": iu}


def _part_to_chat(p: Part, where: str) -> dict[str, Any]:
    if isinstance(p, Text):
        # cache_control (Anthropic-style hints some clients send) is not sent on: OpenAI caches
        # prompts by itself and strict servers reject unknown keys in content parts.
        return {"type": "text", "text": p.text}
    if isinstance(p, Image):
        return _image_to_chat(p)
    if isinstance(p, Audio):
        return {"type": "input_audio", "input_audio": {"data": p.data, "format": p.format}}
    if isinstance(p, File):
        f: dict[str, Any] = {}
        if p.file_id:
            f["file_id"] = p.file_id
        elif p.data is not None:
            f["file_data"] = _data_url(p.mime_type or "application/pdf", p.data)
        else:
            raise Unsupported("file input by URL is not supported by openai upstreams", param=where)
        if p.filename:
            f["filename"] = p.filename
        return {"type": "file", "file": f}
    raise Unsupported(f"{p.kind} content is not supported here by openai upstreams", param=where)


def _content_to_chat(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _tool_result_text(r: ToolResult) -> tuple[str, list[Image]]:
    if isinstance(r.content, str):
        return r.content, []
    texts = [p.text for p in r.content if isinstance(p, Text)]
    images = [p for p in r.content if isinstance(p, Image)]
    return "\n".join(texts), images


def _user_to_chat(msg: Message, i: int, out: list[dict[str, Any]]) -> None:
    pending: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []  # tool-result images: chat tool messages carry text only
    extra = msg.extra.get(FORMAT) or {}

    def flush() -> None:
        if pending:
            out.append({**extra, "role": "user", "content": _content_to_chat(pending[:])})
            pending.clear()

    for j, p in enumerate(msg.content):
        if isinstance(p, ToolResult):
            flush()
            text, imgs = _tool_result_text(p)
            out.append({"role": "tool", "tool_call_id": p.call_id, "content": text})
            images.extend(_image_to_chat(im) for im in imgs)
        elif isinstance(p, Thinking | ToolCall):
            raise Unsupported(
                f"{p.kind} parts in a user message are not supported", param=f"messages[{i}].content[{j}]"
            )
        else:
            if images:
                pending.extend(images)
                images = []
            pending.append(_part_to_chat(p, f"messages[{i}].content[{j}]"))
    pending.extend(images)
    flush()


def _assistant_to_chat(msg: Message, i: int) -> dict[str, Any]:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    for j, p in enumerate(msg.content):
        if isinstance(p, Text):
            texts.append(p.text)
        elif isinstance(p, Thinking):
            if p.source in ("openai", None) and p.text:
                reasoning.append(p.text)  # foreign (signed) thinking is not replayed
        elif isinstance(p, ToolCall):
            calls.append({"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments}})
        elif isinstance(p, Image):
            images.append(_image_to_chat(p))
        else:
            raise Unsupported(
                f"{p.kind} parts in an assistant message are not supported by openai upstreams",
                param=f"messages[{i}].content[{j}]",
            )
    d: dict[str, Any] = {**(msg.extra.get(FORMAT) or {}), "role": "assistant"}
    if images:
        raise Unsupported(
            "image output in assistant history is not supported by openai upstreams",
            param=f"messages[{i}].content",
        )
    d["content"] = "".join(texts) if texts or not calls else None
    if reasoning:
        d["reasoning_content"] = "".join(reasoning)
    if calls:
        d["tool_calls"] = calls
    return d


def _hosted(tools: list[Tool]) -> set[int]:
    if not any(t.raw_format == "responses" for t in tools):
        return set()
    return {i for i, _, _ in drop_hosted(tools, "openai-compatible")}


def request_from_neutral(req: Request, model: str) -> dict[str, Any]:
    extra = dict(req.extra.get(FORMAT) or {})
    body: dict[str, Any] = {"model": model}
    msgs: list[dict[str, Any]] = []
    if req.system:
        # several system texts stay separate parts of one system message
        msgs.append({"role": "system", "content": _content_to_chat([_part_to_chat(t, "system") for t in req.system])})
    for i, msg in enumerate(req.messages):
        if msg.role == "user":
            _user_to_chat(msg, i, msgs)
        elif msg.role == "system":
            # a mid-conversation system instruction stays a system message at its place (one
            # string: compatible servers that take parts in user turns often do not here)
            text = "\n\n".join(t.text for t in msg.content if isinstance(t, Text) and t.text)
            if text:
                msgs.append({"role": "system", "content": text})
        else:
            msgs.append(_assistant_to_chat(msg, i))
    body["messages"] = msgs
    if req.tools:
        tools: list[dict[str, Any]] = []
        hosted = _hosted(req.tools)
        for i, t in enumerate(req.tools):
            if t.raw is not None:
                if i in hosted:
                    continue  # a Responses hosted tool: chat has no equivalent (dropped, logged)
                if t.raw_format != FORMAT:
                    raise Unsupported(f"the {t.name} tool is not supported by openai upstreams", param=f"tools[{i}]")
                tools.append(t.raw)
                continue
            fn: dict[str, Any] = {"name": t.name}
            if t.description is not None:
                fn["description"] = t.description
            fn["parameters"] = t.parameters if t.parameters is not None else {"type": "object", "properties": {}}
            if t.strict is not None:
                fn["strict"] = t.strict
            tools.append({"type": "function", "function": fn})
        body["tools"] = tools
    tc = req.tool_choice
    if tc is not None:
        if tc.mode == "tool":
            body["tool_choice"] = {"type": "function", "function": {"name": tc.name}}
        else:
            body["tool_choice"] = tc.mode
    if req.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.max_tokens is not None:
        key = "max_completion_tokens" if "max_completion_tokens" in extra else "max_tokens"
        extra.pop("max_completion_tokens", None)
        body[key] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop"] = list(req.stop)
    if req.reasoning is not None:
        effort = effective_effort(req.reasoning)
        effort = _EFFORT_TO_CHAT.get(effort, effort) if effort else None
        if effort:
            body["reasoning_effort"] = effort
    rf = req.response_format
    if rf is not None:
        if rf.type == "json_schema":
            js: dict[str, Any] = {"name": rf.name or "response", "schema": rf.schema or {}}
            if rf.description:
                js["description"] = rf.description
            if rf.strict is not None:
                js["strict"] = rf.strict
            body["response_format"] = {"type": "json_schema", "json_schema": js}
        else:
            body["response_format"] = {"type": rf.type}
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {**(extra.pop("stream_options", None) or {}), "include_usage": True}
    else:
        extra.pop("stream_options", None)
    if req.user is not None:
        body["user"] = req.user
    elif isinstance(req.metadata, dict) and isinstance(req.metadata.get("user_id"), str):
        body["user"] = req.metadata["user_id"]
    for k, v in extra.items():
        body.setdefault(k, v)
    return body


# ---------------------------------------------------------------- responses


def _message_parts(msg: dict[str, Any]) -> list[Part]:
    parts: list[Part] = []
    rc = msg.get("reasoning_content")
    if not isinstance(rc, str) or not rc:
        rc = msg.get("reasoning")
    if isinstance(rc, str) and rc:
        parts.append(Thinking(text=rc, source="openai"))
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            parts.append(Text(content))
    elif isinstance(content, list):
        for p in content:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(Text(p["text"]))
    refusal = msg.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(Text(refusal))
    for im in msg.get("images") or ():
        if isinstance(im, dict) and im.get("type") == "image_url":
            parts.append(_image_part(im, "images"))
    for tc in msg.get("tool_calls") or ():
        if isinstance(tc, dict):
            fn = tc.get("function") or {}
            parts.append(
                ToolCall(
                    id=str(tc.get("id") or new_id("call_")),
                    name=str(fn.get("name") or ""),
                    arguments=_args_text(fn.get("arguments")),
                )
            )
    fc = msg.get("function_call")
    if isinstance(fc, dict) and fc.get("name"):
        parts.append(ToolCall(id=new_id("call_"), name=str(fc["name"]), arguments=_args_text(fc.get("arguments"))))
    return parts


def response_to_neutral(body: dict[str, Any]) -> Response:
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    msg = choice.get("message")
    parts = _message_parts(msg) if isinstance(msg, dict) else []
    created = body.get("created")
    extra = {k: body[k] for k in ("system_fingerprint", "service_tier") if body.get(k) is not None}
    return Response(
        id=str(body.get("id") or new_id("chatcmpl-")),
        model=str(body.get("model") or ""),
        content=parts,
        finish_reason=finish_from_chat(choice.get("finish_reason")),
        usage=usage_from_chat(body.get("usage")) or Usage(),
        created=created if isinstance(created, int) else None,
        extra={FORMAT: extra} if extra else {},
    )


def response_from_neutral(resp: Response, model: str) -> dict[str, Any]:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    for p in resp.content:
        if isinstance(p, Text):
            texts.append(p.text)
        elif isinstance(p, Thinking):
            if p.text:
                reasoning.append(p.text)
        elif isinstance(p, ToolCall):
            calls.append({"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments}})
        elif isinstance(p, Image):
            images.append(_image_to_chat(p))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    if images:
        message["images"] = images  # the OpenRouter-style field compatible clients read
    message["refusal"] = None
    rid = resp.id if resp.id.startswith("chatcmpl-") else "chatcmpl-" + (resp.id or os.urandom(12).hex())
    return {
        "id": rid,
        "object": "chat.completion",
        "created": resp.created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": FINISH_TO_CHAT.get(resp.finish_reason, "stop"),
                "logprobs": None,
            }
        ],
        "usage": usage_to_chat(resp.usage),
    }


# Stream classes (they import the helpers above; kept last so either module can be imported first).
from .openai_chat_stream import StreamDecoder, StreamEncoder  # noqa: E402

__all__ = [
    "FORMAT",
    "StreamDecoder",
    "StreamEncoder",
    "request_from_neutral",
    "request_to_neutral",
    "response_from_neutral",
    "response_to_neutral",
    "usage_from_chat",
    "usage_to_chat",
]
