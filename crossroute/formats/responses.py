"""OpenAI Responses wire format (``POST /v1/responses``): request and whole-response translation.

Streams live in ``responses_stream.py`` (``StreamDecoder``, ``StreamEncoder``, re-exported here);
the same-format passthrough framer in ``responses_framer.py``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .neutral import (
    Audio,
    BadRequest,
    File,
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
)
from .responses_framer import is_codex_client, usage_from_responses, usage_to_responses
from .responses_stream import (
    StreamDecoder,
    StreamEncoder,
    base_response,
    finish_from_status,
    function_call_item,
    message_item,
    new_id,
    reasoning_item,
)
from .responses_tools import (
    HOSTED_ITEMS,
    ORIGINS,
    call_item,
    custom_call,
    flat_name,
    local_shell_call,
    tools_to_neutral,
)
from .thinking import effective_effort

__all__ = [
    "FORMAT",
    "StreamDecoder",
    "StreamEncoder",
    "is_codex_client",
    "request_from_neutral",
    "request_to_neutral",
    "response_from_neutral",
    "response_to_neutral",
    "usage_from_responses",
    "usage_to_responses",
]

FORMAT = "responses"

# Top-level request fields the neutral form models; everything else goes to extra["responses"].
_MODELED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "reasoning",
        "text",
        "stream",
        "user",
        "metadata",
    }
)
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


# ---------------------------------------------------------------- request: Responses -> neutral


def _data_url(url: str) -> tuple[str, str] | None:
    """("image/png", base64) from ``data:image/png;base64,...``."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    return head[: -len(";base64")] or "application/octet-stream", data


def _image_part(part: dict[str, Any], path: str) -> Image | File:
    url = part.get("image_url")
    detail = part.get("detail") if isinstance(part.get("detail"), str) else None
    if isinstance(url, dict):  # tolerate the chat shape {"url": ...}
        detail = url.get("detail") or detail
        url = url.get("url")
    if isinstance(url, str) and url:
        inline = _data_url(url)
        if inline is not None:
            return Image(data=inline[1], mime_type=inline[0], detail=detail)
        return Image(url=url, detail=detail)
    fid = part.get("file_id")
    if isinstance(fid, str) and fid:
        return File(file_id=fid, mime_type="image/*")
    raise BadRequest("input_image needs 'image_url' or 'file_id'", param=path)


def _file_part(part: dict[str, Any], path: str) -> File:
    name = part.get("filename") if isinstance(part.get("filename"), str) else None
    fdata = part.get("file_data")
    if isinstance(fdata, str) and fdata:
        inline = _data_url(fdata)
        if inline is not None:
            return File(data=inline[1], mime_type=inline[0], filename=name)
        return File(data=fdata, mime_type="application/pdf", filename=name)
    if isinstance(part.get("file_url"), str):
        return File(url=part["file_url"], filename=name)
    if isinstance(part.get("file_id"), str):
        return File(file_id=part["file_id"], filename=name)
    raise BadRequest("input_file needs 'file_data', 'file_url' or 'file_id'", param=path)


def _content_parts(content: Any, path: str) -> list[Part]:
    if isinstance(content, str):
        return [Text(content)] if content else []
    if not isinstance(content, list):
        raise BadRequest(f"Invalid type for '{path}': expected a string or an array of content parts", param=path)
    parts: list[Part] = []
    for i, part in enumerate(content):
        p = f"{path}[{i}]"
        if not isinstance(part, dict):
            raise BadRequest(f"Invalid type for '{p}': expected an object", param=p)
        t = part.get("type")
        if t in ("input_text", "output_text", "text", "summary_text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise BadRequest(f"'{p}.text' must be a string", param=f"{p}.text")
            parts.append(Text(text))
        elif t == "refusal":
            parts.append(Text(part.get("refusal") or ""))
        elif t == "input_image":
            parts.append(_image_part(part, p))
        elif t == "input_file":
            parts.append(_file_part(part, p))
        elif t == "input_audio":
            audio = part.get("input_audio")
            if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
                raise BadRequest("input_audio needs 'input_audio.data'", param=f"{p}.input_audio")
            parts.append(Audio(data=audio["data"], format=str(audio.get("format") or "wav")))
        else:
            raise Unsupported(f"content part type '{t}' is not supported across API formats", param=f"{p}.type")
    return parts


def _tool_output(output: Any, path: str) -> str | list[Text | Image]:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        out: list[Text | Image] = []
        for part in _content_parts(output, path):
            if isinstance(part, Text | Image):
                out.append(part)
            else:
                raise Unsupported(f"{part.kind} parts are not supported in function_call_output", param=path)
        return out
    if output is None:
        return ""
    raise BadRequest(f"Invalid type for '{path}': expected a string or an array", param=path)


def _assistant(messages: list[Message]) -> Message:
    if messages and messages[-1].role == "assistant":
        return messages[-1]
    msg = Message("assistant", [])
    messages.append(msg)
    return msg


def _items(items: list[Any], req: Request, more: list[Any]) -> None:
    """Input items into ``req``; tool definitions met in ``additional_tools`` items go to ``more``."""
    msgs = req.messages
    for i, item in enumerate(items):
        path = f"input[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"Invalid type for '{path}': expected an input item object", param=path)
        t = item.get("type")
        if t is None and "role" in item:
            t = "message"
        if t == "message":
            role = item.get("role")
            parts = _content_parts(item.get("content"), f"{path}.content")
            if role in ("system", "developer"):
                for p in parts:
                    if not isinstance(p, Text):
                        raise Unsupported(f"{p.kind} parts are not supported in {role} messages", param=path)
                    req.system.append(p)
            elif role == "user":
                msgs.append(Message("user", parts))
            elif role == "assistant":
                _assistant(msgs).content.extend(parts)
            else:
                raise BadRequest(
                    f"Invalid value for '{path}.role': expected user, assistant, system or developer",
                    param=f"{path}.role",
                )
        elif t == "function_call":
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise BadRequest(f"'{path}.name' is required", param=f"{path}.name")
            call_id = item.get("call_id") or item.get("id")
            if not isinstance(call_id, str) or not call_id:
                raise BadRequest(f"'{path}.call_id' is required", param=f"{path}.call_id")
            args = item.get("arguments")
            if not isinstance(args, str):
                args = "{}" if args is None else _dumps(args)
            ns = item.get("namespace")
            if isinstance(ns, str) and ns:
                name = flat_name(ns, name)
            _assistant(msgs).content.append(ToolCall(id=call_id, name=name, arguments=args or "{}"))
        elif t == "custom_tool_call":
            _assistant(msgs).content.append(custom_call(item, path))
        elif t == "local_shell_call":
            _assistant(msgs).content.append(local_shell_call(item, path))
        elif t in HOSTED_ITEMS:
            continue  # a hosted tool's server-side history: nothing another upstream can use
        elif t == "additional_tools":  # Codex's Responses Lite: tool definitions inside input
            tools = item.get("tools")
            if not isinstance(tools, list):
                raise BadRequest(f"Invalid type for '{path}.tools': expected an array", param=f"{path}.tools")
            more.extend(tools)
        elif t in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            call_id = item.get("call_id") or (item.get("id") if t == "local_shell_call_output" else None)
            if not isinstance(call_id, str) or not call_id:
                raise BadRequest(f"'{path}.call_id' is required", param=f"{path}.call_id")
            result = ToolResult(call_id=call_id, content=_tool_output(item.get("output"), f"{path}.output"))
            last = msgs[-1] if msgs else None
            if last is not None and last.role == "user" and last.content and isinstance(last.content[-1], ToolResult):
                last.content.append(result)
            else:
                msgs.append(Message("user", [result]))
        elif t == "reasoning":
            enc = item.get("encrypted_content")
            summary = item.get("summary")
            texts = [
                p["text"]
                for p in (summary if isinstance(summary, list) else [])
                if isinstance(p, dict) and isinstance(p.get("text"), str)
            ]
            thinking = Thinking(
                text="\n\n".join(texts), redacted=enc if isinstance(enc, str) and enc else None, source="openai"
            )
            if thinking.text or thinking.redacted:
                _assistant(msgs).content.append(thinking)
        else:
            raise Unsupported(f"input item type '{t}' is not supported across API formats", param=f"{path}.type")


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _tools(tools: Any, req: Request) -> list[Tool]:
    if not isinstance(tools, list):
        raise BadRequest("Invalid type for 'tools': expected an array", param="tools")
    origins: dict[str, dict[str, Any]] = {}
    out = tools_to_neutral(tools, origins)
    if origins:
        req.extra[ORIGINS] = origins
    return out


def _tool_choice(tc: Any, extra: dict[str, Any]) -> ToolChoice | None:
    if tc is None:
        return None
    if tc in ("auto", "none", "required"):
        return ToolChoice(mode=tc)
    if isinstance(tc, dict):
        if tc.get("type") in ("function", "custom") and isinstance(tc.get("name"), str):
            ns = tc.get("namespace")
            name = flat_name(ns, tc["name"]) if isinstance(ns, str) and ns else tc["name"]
            return ToolChoice(mode="tool", name=name)
        extra["tool_choice"] = tc  # hosted-tool / allowed_tools choices, kept for Responses upstreams
        return ToolChoice(mode="required" if tc.get("mode") == "required" else "auto")
    raise BadRequest("Invalid value for 'tool_choice'", param="tool_choice")


def _text_format(text: Any, extra: dict[str, Any]) -> ResponseFormat | None:
    if not isinstance(text, dict):
        if text is not None:
            raise BadRequest("Invalid type for 'text': expected an object", param="text")
        return None
    rest = {k: v for k, v in text.items() if k != "format"}
    if rest:
        extra["text"] = rest  # verbosity...
    fmt = text.get("format")
    if not isinstance(fmt, dict):
        return None
    t = fmt.get("type")
    if t == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise BadRequest("'text.format.schema' must be an object", param="text.format.schema")
        strict = fmt.get("strict")
        name = fmt.get("name")
        desc = fmt.get("description")
        return ResponseFormat(
            type="json_schema",
            schema=schema,
            name=name if isinstance(name, str) else None,
            strict=strict if isinstance(strict, bool) else None,
            description=desc if isinstance(desc, str) else None,
        )
    if t == "json_object":
        return ResponseFormat(type="json_object")
    if t == "text":
        return ResponseFormat(type="text")
    raise BadRequest(f"Invalid value for 'text.format.type': {t!r}", param="text.format.type")


def _num(body: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, kind):
        raise BadRequest(f"Invalid type for '{key}'", param=key)
    return v


def request_to_neutral(body: dict[str, Any], model: str | None = None) -> Request:
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object")
    m = body.get("model", model)
    if not isinstance(m, str) or not m:
        raise BadRequest("Missing required parameter: 'model'", param="model")
    req = Request(model=m)
    extra: dict[str, Any] = {k: v for k, v in body.items() if k not in _MODELED}

    instructions = body.get("instructions")
    if isinstance(instructions, str):
        if instructions:
            req.system.append(Text(instructions))
    elif instructions is not None:
        raise BadRequest("Invalid type for 'instructions': expected a string", param="instructions")

    inp = body.get("input")
    more_tools: list[Any] = []
    if isinstance(inp, str):
        req.messages.append(Message("user", [Text(inp)]))
    elif isinstance(inp, list):
        _items(inp, req, more_tools)
    elif inp is not None:
        raise BadRequest("Invalid type for 'input': expected a string or an array of input items", param="input")

    tools = body.get("tools")
    if more_tools:
        tools = [*(tools if isinstance(tools, list) else ()), *more_tools]
    if tools is not None:
        req.tools = _tools(tools, req)
    req.tool_choice = _tool_choice(body.get("tool_choice"), extra)
    ptc = body.get("parallel_tool_calls")
    req.parallel_tool_calls = ptc if isinstance(ptc, bool) else None
    req.max_tokens = _num(body, "max_output_tokens", int)
    req.temperature = _num(body, "temperature", (int, float))
    req.top_p = _num(body, "top_p", (int, float))
    r = body.get("reasoning")
    if isinstance(r, dict):
        effort = r.get("effort") if isinstance(r.get("effort"), str) else None
        summary = r.get("summary") if isinstance(r.get("summary"), str) else None
        if effort is not None or summary is not None:
            req.reasoning = Reasoning(
                effort=effort,
                summary=summary,
                include_thoughts=(summary != "none") if summary is not None else None,
            )
    elif r is not None:
        raise BadRequest("Invalid type for 'reasoning': expected an object", param="reasoning")
    req.response_format = _text_format(body.get("text"), extra)
    req.stream = body.get("stream") is True
    if isinstance(body.get("user"), str):
        req.user = body["user"]
    if isinstance(body.get("metadata"), dict):
        req.metadata = body["metadata"]
    if extra:
        req.extra[FORMAT] = extra
    return req


# ---------------------------------------------------------------- request: neutral -> Responses


def _image_out(p: Image) -> dict[str, Any]:
    url = p.url if p.url else f"data:{p.mime_type or 'image/png'};base64,{p.data or ''}"
    return {"type": "input_image", "image_url": url, "detail": p.detail or "auto"}


def _file_out(p: File) -> dict[str, Any]:
    if p.file_id:
        if p.mime_type and p.mime_type.startswith("image/"):
            return {"type": "input_image", "file_id": p.file_id, "detail": "auto"}
        out: dict[str, Any] = {"type": "input_file", "file_id": p.file_id}
    elif p.data is not None:
        mime = p.mime_type or "application/pdf"
        out = {"type": "input_file", "file_data": f"data:{mime};base64,{p.data}"}
        out["filename"] = p.filename or "file" + _ext(mime)
    elif p.url:
        out = {"type": "input_file", "file_url": p.url}
    else:
        raise BadRequest("a file part needs data, a URL or a file id")
    if p.filename and "filename" not in out:
        out["filename"] = p.filename
    return out


def _ext(mime: str) -> str:
    return {"application/pdf": ".pdf", "text/plain": ".txt"}.get(mime, "")


def _user_part(p: Part, path: str) -> dict[str, Any]:
    if isinstance(p, Text):
        return {"type": "input_text", "text": p.text}
    if isinstance(p, Image):
        return _image_out(p)
    if isinstance(p, File):
        return _file_out(p)
    if isinstance(p, Audio):
        return {"type": "input_audio", "input_audio": {"data": p.data, "format": p.format}}
    raise Unsupported(f"{p.kind} parts are not supported in user messages by responses upstreams", param=path)


def _result_output(content: str | list[Text | Image]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return [{"type": "input_text", "text": c.text} if isinstance(c, Text) else _image_out(c) for c in content]


def _assistant_items(msg: Message, path: str, items: list[dict[str, Any]]) -> None:
    texts: list[dict[str, Any]] = []

    def flush() -> None:
        if texts:
            items.append({"type": "message", "role": "assistant", "content": list(texts)})
            texts.clear()

    for pi, p in enumerate(msg.content):
        if isinstance(p, Text):
            texts.append({"type": "output_text", "text": p.text, "annotations": []})
        elif isinstance(p, ToolCall):
            flush()
            items.append({"type": "function_call", "call_id": p.id, "name": p.name, "arguments": p.arguments})
        elif isinstance(p, Thinking):
            # only OpenAI's own encrypted reasoning can be replayed; foreign thinking is dropped
            if p.source == "openai" and p.redacted:
                flush()
                item: dict[str, Any] = {
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": p.text}] if p.text else [],
                    "encrypted_content": p.redacted,
                }
                items.append(item)
        else:
            raise Unsupported(
                f"{p.kind} parts are not supported in assistant messages by responses upstreams",
                param=f"{path}.content[{pi}]",
            )
    flush()


def _input_items(req: Request) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for mi, msg in enumerate(req.messages):
        path = f"messages[{mi}]"
        if msg.role == "system":
            # a mid-conversation system instruction: a developer message at its place
            texts = [{"type": "input_text", "text": t.text} for t in msg.content if isinstance(t, Text) and t.text]
            if texts:
                items.append({"type": "message", "role": "developer", "content": texts})
            continue
        if msg.role == "user":
            pending: list[dict[str, Any]] = []
            for pi, p in enumerate(msg.content):
                if isinstance(p, ToolResult):
                    if pending:
                        items.append({"type": "message", "role": "user", "content": pending})
                        pending = []
                    items.append(
                        {"type": "function_call_output", "call_id": p.call_id, "output": _result_output(p.content)}
                    )
                elif isinstance(p, Thinking):
                    continue  # thinking never comes from the user side
                else:
                    pending.append(_user_part(p, f"{path}.content[{pi}]"))
            if pending:
                items.append({"type": "message", "role": "user", "content": pending})
            continue
        _assistant_items(msg, path, items)
    return items


def _tool_out(t: Tool, i: int) -> dict[str, Any]:
    if t.raw is not None:
        if t.raw_format == FORMAT:
            return t.raw
        raise Unsupported(
            f"tool '{t.name}' ({t.raw_format} built-in tool) is not supported by responses upstreams",
            param=f"tools[{i}]",
        )
    return {
        "type": "function",
        "name": t.name,
        "description": t.description,
        "parameters": t.parameters if t.parameters is not None else {"type": "object", "properties": {}},
        "strict": bool(t.strict),
    }


def request_from_neutral(req: Request, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model}
    if req.system:
        body["instructions"] = "\n\n".join(t.text for t in req.system)
    body["input"] = _input_items(req)
    if req.tools:
        body["tools"] = [_tool_out(t, i) for i, t in enumerate(req.tools)]
    if req.tool_choice is not None:
        tc = req.tool_choice
        body["tool_choice"] = {"type": "function", "name": tc.name} if tc.mode == "tool" else tc.mode
    if req.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.reasoning is not None:
        reasoning: dict[str, Any] = {}
        effort = effective_effort(req.reasoning)
        if effort == "max":
            effort = "xhigh"
        if effort in _EFFORTS:
            reasoning["effort"] = effort
        summary = req.reasoning.summary
        if summary is None and req.reasoning.include_thoughts:
            summary = "auto"
        if summary is not None:
            reasoning["summary"] = summary
        if reasoning:
            body["reasoning"] = reasoning
    rf = req.response_format
    if rf is not None:
        if rf.type == "json_schema":
            fmt: dict[str, Any] = {"type": "json_schema", "name": rf.name or "response", "schema": rf.schema or {}}
            if rf.description:
                fmt["description"] = rf.description
            if rf.strict is not None:
                fmt["strict"] = rf.strict
        else:
            fmt = {"type": rf.type}
        body["text"] = {"format": fmt}
    if req.max_tokens is not None:
        body["max_output_tokens"] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    body["stream"] = req.stream
    if req.user is not None:
        body["user"] = req.user
    if req.metadata:
        body["metadata"] = req.metadata
    extra = req.extra.get(FORMAT)
    if isinstance(extra, dict):
        for k, v in extra.items():
            if k == "text" and isinstance(v, dict):
                body["text"] = {**v, **body.get("text", {})}
            elif k == "tool_choice":
                body[k] = v
            elif k not in body:
                body[k] = v
    body.setdefault("store", False)
    if body["store"] is False and "reasoning" in body and "include" not in body:
        # stateless: ask for encrypted reasoning so the next turn can replay it
        body["include"] = ["reasoning.encrypted_content"]
    return body


# ---------------------------------------------------------------- responses


def response_to_neutral(body: dict[str, Any]) -> Response:
    if not isinstance(body, dict):
        raise BadRequest("upstream response is not a JSON object")
    content: list[Part] = []
    others: list[Any] = []
    saw_tool = False
    for item in body.get("output") or []:
        if not isinstance(item, dict):
            continue
        t = item.get("type")
        if t == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict):
                    txt = part.get("text") if part.get("type") == "output_text" else part.get("refusal")
                    if isinstance(txt, str):
                        content.append(Text(txt))
        elif t == "function_call":
            saw_tool = True
            content.append(
                ToolCall(
                    id=item.get("call_id") or item.get("id") or new_id("call_"),
                    name=item.get("name") or "",
                    arguments=item.get("arguments") or "{}",
                )
            )
        elif t == "reasoning":
            texts = [
                p["text"]
                for p in (item.get("summary") or item.get("content") or [])
                if isinstance(p, dict) and isinstance(p.get("text"), str)
            ]
            enc = item.get("encrypted_content")
            content.append(
                Thinking(
                    text="\n\n".join(texts), redacted=enc if isinstance(enc, str) and enc else None, source="openai"
                )
            )
        else:
            others.append(item)
    created = body.get("created_at")
    resp = Response(
        id=body.get("id") or new_id("resp_"),
        model=body.get("model") or "",
        content=content,
        finish_reason=finish_from_status(body.get("status", "completed"), body.get("incomplete_details"), saw_tool),
        usage=usage_from_responses(body.get("usage")),
        created=int(created) if isinstance(created, int | float) else None,
    )
    if others:
        resp.extra[FORMAT] = {"output": others}
    return resp


def response_from_neutral(resp: Response, model: str, *, tools: dict[str, dict[str, Any]] | None = None
                          ) -> dict[str, Any]:
    """``tools``: the request's tool origins (responses_tools.ORIGINS), to restore custom,
    namespaced and local_shell calls."""
    output: list[dict[str, Any]] = []
    texts: list[str] = []

    def flush() -> None:
        if texts:
            output.append(message_item(new_id("msg_"), list(texts)))
            texts.clear()

    for p in resp.content:
        if isinstance(p, Text):
            texts.append(p.text)
        elif isinstance(p, ToolCall):
            flush()
            if tools:
                output.append(call_item(tools.get(p.name), new_id("fc_"), p.id, p.name, p.arguments or "{}"))
            else:
                output.append(function_call_item(new_id("fc_"), p.id, p.name, p.arguments or "{}"))
        elif isinstance(p, Thinking):
            flush()
            enc = p.redacted if p.source == "openai" else None
            output.append(reasoning_item(new_id("rs_"), [p.text] if p.text else [], enc))
    flush()
    status, details = "completed", None
    if resp.finish_reason == "length":
        status, details = "incomplete", {"reason": "max_output_tokens"}
    elif resp.finish_reason == "content_filter":
        status, details = "incomplete", {"reason": "content_filter"}
    rid = resp.id if resp.id.startswith("resp_") else new_id("resp_")
    return base_response(
        rid,
        model,
        resp.created or int(time.time()),
        status,
        output,
        usage_to_responses(resp.usage),
        incomplete_details=details,
    )
