"""Anthropic Messages wire format (``POST /v1/messages``): requests and whole responses to and
from the neutral form. Streaming lives in ``claude_stream.py`` (re-exported here).

Thinking signatures from another family: a Claude client can only carry a ``signature`` string
on a thinking block, so when a non-Claude upstream's reasoning is shown to a Claude client the
signature is tagged ``"<family>:<signature>"`` (Claude's own signatures are base64 and never
contain ``:``). When that block comes back in the next request it becomes
``Thinking(source=<family>, signature=<untagged>)`` again, so the upstream family gets its own
signature back and Claude never sees a foreign one.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from .claude_stream import (
    StreamDecoder,
    StreamEncoder,
    finish_from_claude,
    finish_to_claude,
    new_message_id,
    sanitize_tool_id,
    usage_from_claude,
    usage_to_claude,
)
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
from .responses_tools import drop_hosted
from .schema import schema_with_description
from .thinking import effective_budget, effective_effort

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_THINKING_BUDGET",
    "FORMAT",
    "StreamDecoder",
    "StreamEncoder",
    "request_from_neutral",
    "request_to_neutral",
    "response_from_neutral",
    "response_to_neutral",
    "usage_from_claude",
]

FORMAT = "claude"
DEFAULT_MAX_TOKENS = 32000
DEFAULT_THINKING_BUDGET = 8192  # "auto" effort: Claude's manual thinking needs a number
MIN_THINKING_BUDGET = 1024

_KNOWN_FIELDS = frozenset({
    "model", "messages", "system", "max_tokens", "temperature", "top_p", "top_k",
    "stop_sequences", "stream", "thinking", "tools", "tool_choice", "metadata", "output_config",
    "output_format",
})
_FOREIGN_FAMILIES = ("gemini", "openai")
# Responses hosted tools Anthropic runs itself (server tools)
_WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}
_HOSTED_EQUIVALENTS: dict[str, dict[str, Any]] = {"web_search": _WEB_SEARCH, "web_search_preview": _WEB_SEARCH}

# ---------------------------------------------------------------- small helpers


def _tag_signature(sig: str | None, source: str | None) -> str | None:
    if not sig:
        return sig
    if source and source != "claude":
        return f"{source}:{sig}"
    return sig


def _untag_signature(sig: str) -> tuple[str, str]:
    """(source, signature) of a signature a client sent back."""
    head, sep, rest = sig.partition(":")
    if sep and head in _FOREIGN_FAMILIES:
        return head, rest
    return "claude", sig


def _json_args(obj: Any) -> str:
    return orjson.dumps(obj if obj is not None else {}).decode()


def _parse_args(text: str) -> dict[str, Any]:
    if not text or not text.strip():
        return {}
    try:
        val = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"raw_arguments": text}
    return val if isinstance(val, dict) else {"value": val}


_MAGIC = (
    ("iVBOR", "image/png"),
    ("/9j/", "image/jpeg"),
    ("R0lGOD", "image/gif"),
    ("UklGR", "image/webp"),
    ("JVBER", "application/pdf"),
)


def _sniff_mime(data: str, default: str) -> str:
    for prefix, mime in _MAGIC:
        if data.startswith(prefix):
            return mime
    return default


def _split_data_url(url: str) -> tuple[str, str] | None:
    """``data:<mime>;base64,<data>`` -> (mime, data); None if not a base64 data URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    return head[: -len(";base64")] or "application/octet-stream", data


# ---------------------------------------------------------------- request: client -> neutral


def _content_list(content: Any, param: str) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    raise BadRequest(f"'{param}' must be a string or a list of content blocks", param=param)


def _source_to_image(src: Any, param: str) -> Image:
    if not isinstance(src, dict):
        raise BadRequest("image 'source' must be an object", param=f"{param}.source")
    stype = src.get("type")
    if stype == "base64":
        data = src.get("data")
        if not isinstance(data, str):
            raise BadRequest("image source 'data' must be a string", param=f"{param}.source.data")
        mt = src.get("media_type")
        return Image(data=data, mime_type=mt if isinstance(mt, str) else _sniff_mime(data, "image/png"))
    if stype == "url":
        url = src.get("url")
        if not isinstance(url, str):
            raise BadRequest("image source 'url' must be a string", param=f"{param}.source.url")
        return Image(url=url)
    raise Unsupported(f"image source type {stype!r} cannot be translated to another API format",
                      param=f"{param}.source.type")


def _document_to_parts(block: dict[str, Any], param: str) -> list[Part]:
    src = block.get("source")
    title = block.get("title") if isinstance(block.get("title"), str) else None
    if not isinstance(src, dict):
        raise BadRequest("document 'source' must be an object", param=f"{param}.source")
    stype = src.get("type")
    mt = src.get("media_type") if isinstance(src.get("media_type"), str) else None
    if stype == "base64" and isinstance(src.get("data"), str):
        return [File(data=src["data"], mime_type=mt or "application/pdf", filename=title)]
    if stype == "text" and isinstance(src.get("data"), str):
        encoded = base64.b64encode(src["data"].encode()).decode()
        return [File(data=encoded, mime_type=mt or "text/plain", filename=title)]
    if stype == "url" and isinstance(src.get("url"), str):
        return [File(url=src["url"], mime_type=mt, filename=title)]
    if stype == "file" and isinstance(src.get("file_id"), str):
        return [File(file_id=src["file_id"], filename=title)]
    if stype == "content" and isinstance(src.get("content"), (str, list)):
        out: list[Part] = []
        for j, sub in enumerate(_content_list(src["content"], f"{param}.source.content")):
            if isinstance(sub, dict) and sub.get("type") == "text" and isinstance(sub.get("text"), str):
                out.append(Text(sub["text"]))
            elif isinstance(sub, dict) and sub.get("type") == "image":
                out.append(_source_to_image(sub.get("source"), f"{param}.source.content[{j}]"))
        return out
    raise BadRequest(f"unsupported document source {stype!r}", param=f"{param}.source")


def _tool_result_to_neutral(block: dict[str, Any], param: str) -> ToolResult:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest("'tool_use_id' is required", param=f"{param}.tool_use_id")
    raw = block.get("content", "")
    content: str | list[Text | Image]
    if raw is None:
        content = ""
    elif isinstance(raw, str):
        content = raw
    elif isinstance(raw, list):
        parts: list[Text | Image] = []
        for j, sub in enumerate(raw):
            p = f"{param}.content[{j}]"
            if not isinstance(sub, dict):
                raise BadRequest("tool_result content blocks must be objects", param=p)
            st = sub.get("type")
            if st == "text":
                text = sub.get("text")
                if not isinstance(text, str):
                    raise BadRequest("text block 'text' must be a string", param=f"{p}.text")
                parts.append(Text(text, cache_control=sub.get("cache_control")))
            elif st == "image":
                parts.append(_source_to_image(sub.get("source"), p))
            elif st == "document":
                for dp in _document_to_parts(sub, p):
                    if isinstance(dp, (Text, Image)):
                        parts.append(dp)
                    else:
                        raise Unsupported("documents inside tool_result cannot be translated to "
                                          "another API format", param=p)
            else:
                raise Unsupported(f"tool_result content block type {st!r} cannot be translated",
                                  param=f"{p}.type")
        content = parts
    else:
        raise BadRequest("tool_result 'content' must be a string or a list", param=f"{param}.content")
    return ToolResult(call_id=call_id, content=content, is_error=block.get("is_error") is True)


def _block_to_parts(block: Any, param: str) -> list[Part] | None:
    """Parts for one content block; None for a block the neutral form cannot model (kept raw)."""
    if not isinstance(block, dict):
        raise BadRequest("content blocks must be objects", param=param)
    btype = block.get("type")
    if btype == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise BadRequest("text block 'text' must be a string", param=f"{param}.text")
        return [Text(text, cache_control=block.get("cache_control"))]
    if btype == "image":
        return [_source_to_image(block.get("source"), param)]
    if btype == "document":
        return _document_to_parts(block, param)
    if btype == "tool_use":
        tid = block.get("id")
        name = block.get("name")
        if not isinstance(tid, str) or not isinstance(name, str):
            raise BadRequest("tool_use blocks need string 'id' and 'name'", param=param)
        return [ToolCall(id=tid, name=name, arguments=_json_args(block.get("input")))]
    if btype == "tool_result":
        return [_tool_result_to_neutral(block, param)]
    if btype == "thinking":
        text = block.get("thinking")
        sig = block.get("signature")
        source, signature = _untag_signature(sig) if isinstance(sig, str) and sig else ("claude", None)
        return [Thinking(text=text if isinstance(text, str) else "", signature=signature, source=source)]
    if btype == "redacted_thinking":
        data = block.get("data")
        if not isinstance(data, str):
            raise BadRequest("redacted_thinking 'data' must be a string", param=f"{param}.data")
        source, data = _untag_signature(data)
        return [Thinking(redacted=data, source=source)]
    if isinstance(btype, str):
        return None  # server_tool_use, web_search_tool_result, search_result, container_upload...
    raise BadRequest("content block 'type' is required", param=f"{param}.type")


def _messages_to_neutral(messages: Any) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list", param="messages")
    out: list[Message] = []
    for i, m in enumerate(messages):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            raise BadRequest("each message must be an object", param=p)
        role = m.get("role")
        if role not in ("user", "assistant", "system"):
            raise BadRequest("message 'role' must be 'user', 'assistant' or 'system'", param=f"{p}.role")
        if "content" not in m:
            raise BadRequest("message 'content' is required", param=f"{p}.content")
        if role == "system":
            out.append(_mid_system_to_neutral(m, p))
            continue
        blocks = _content_list(m["content"], f"{p}.content")
        parts: list[Part] = []
        raw_blocks: list[list[Any]] = []
        for j, block in enumerate(blocks):
            got = _block_to_parts(block, f"{p}.content[{j}]")
            if got is None:
                raw_blocks.append([len(parts), block])
            else:
                parts.extend(got)
        msg = Message(role=role, content=parts)
        if raw_blocks:
            msg.extra[FORMAT] = {"blocks": raw_blocks}
        out.append(msg)
    return out


def _mid_system_to_neutral(m: dict[str, Any], p: str) -> Message:
    """A mid-conversation ``{"role": "system"}`` message: text blocks only."""
    texts: list[Part] = []
    for j, b in enumerate(_content_list(m["content"], f"{p}.content")):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise BadRequest("system messages may hold text blocks only", param=f"{p}.content[{j}]")
        texts.append(Text(b["text"], cache_control=b.get("cache_control")))
    msg = Message(role="system", content=texts)
    cc = m.get("cache_control")
    if isinstance(cc, dict):
        msg.extra[FORMAT] = {"cache_control": cc}
    return msg


def _system_to_neutral(system: Any) -> list[Text]:
    if system is None:
        return []
    if isinstance(system, str):
        return [Text(system)] if system else []
    if not isinstance(system, list):
        raise BadRequest("'system' must be a string or a list of text blocks", param="system")
    out: list[Text] = []
    for i, b in enumerate(system):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise BadRequest("system blocks must be text blocks", param=f"system[{i}]")
        out.append(Text(b["text"], cache_control=b.get("cache_control")))
    return out


def _tools_to_neutral(tools: Any) -> list[Tool]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be a list", param="tools")
    out: list[Tool] = []
    for i, t in enumerate(tools):
        p = f"tools[{i}]"
        if not isinstance(t, dict):
            raise BadRequest("each tool must be an object", param=p)
        name = t.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("tool 'name' is required", param=f"{p}.name")
        ttype = t.get("type")
        if ttype not in (None, "custom"):
            out.append(Tool(name=name, raw=t, raw_format=FORMAT))
            continue
        schema = t.get("input_schema")
        if not isinstance(schema, dict):
            raise BadRequest("tool 'input_schema' must be an object", param=f"{p}.input_schema")
        desc = t.get("description")
        strict = t.get("strict")
        cc = t.get("cache_control")
        out.append(Tool(name=name, description=desc if isinstance(desc, str) else None,
                        parameters=schema, strict=strict if isinstance(strict, bool) else None,
                        cache_control=cc if isinstance(cc, dict) else None))
    return out


def _tool_choice_to_neutral(tc: Any) -> tuple[ToolChoice | None, bool | None]:
    if tc is None:
        return None, None
    if not isinstance(tc, dict):
        raise BadRequest("'tool_choice' must be an object", param="tool_choice")
    ttype = tc.get("type")
    parallel = None if tc.get("disable_parallel_tool_use") is None else not tc["disable_parallel_tool_use"]
    if ttype == "auto":
        return ToolChoice("auto"), parallel
    if ttype == "any":
        return ToolChoice("required"), parallel
    if ttype == "none":
        return ToolChoice("none"), parallel
    if ttype == "tool":
        name = tc.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("tool_choice 'name' is required for type 'tool'", param="tool_choice.name")
        return ToolChoice("tool", name=name), parallel
    raise BadRequest(f"unknown tool_choice type {ttype!r}", param="tool_choice.type")


def _reasoning_to_neutral(thinking: Any, output_config: dict[str, Any]) -> Reasoning | None:
    effort = output_config.get("effort")
    effort = effort if isinstance(effort, str) else None
    if thinking is None:
        return Reasoning(effort=effort) if effort else None
    if not isinstance(thinking, dict):
        raise BadRequest("'thinking' must be an object", param="thinking")
    ttype = thinking.get("type")
    include = thinking.get("display") != "omitted"
    if ttype == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise BadRequest("thinking 'budget_tokens' must be an integer", param="thinking.budget_tokens")
        return Reasoning(effort=effort, budget=budget, include_thoughts=include)
    if ttype == "adaptive":
        return Reasoning(effort=effort or "auto", include_thoughts=include)
    if ttype == "disabled":
        return Reasoning(effort="none", budget=0, include_thoughts=False)
    raise BadRequest(f"unknown thinking type {ttype!r}", param="thinking.type")


def request_to_neutral(body: dict[str, Any], model: str | None = None, *,
                       default_max_tokens: int | None = None) -> Request:
    """A Messages request body -> neutral. ``max_tokens`` is required by the API: when the body
    has none and ``default_max_tokens`` is None, BadRequest(param="max_tokens")."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    m = body.get("model", model)
    if not isinstance(m, str) or not m:
        raise BadRequest("'model' is required", param="model")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        if default_max_tokens is None:
            raise BadRequest("'max_tokens' is required", param="max_tokens")
        max_tokens = default_max_tokens
    elif not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest("'max_tokens' must be a positive integer", param="max_tokens")

    req = Request(model=m, messages=_messages_to_neutral(body.get("messages")), max_tokens=max_tokens)
    req.system = _system_to_neutral(body.get("system"))
    req.tools = _tools_to_neutral(body.get("tools"))
    req.tool_choice, req.parallel_tool_calls = _tool_choice_to_neutral(body.get("tool_choice"))
    for key in ("temperature", "top_p"):
        v = body.get(key)
        if v is not None:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise BadRequest(f"'{key}' must be a number", param=key)
            setattr(req, key, float(v))
    top_k = body.get("top_k")
    if top_k is not None:
        if not isinstance(top_k, int) or isinstance(top_k, bool):
            raise BadRequest("'top_k' must be an integer", param="top_k")
        req.top_k = top_k
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise BadRequest("'stop_sequences' must be a list of strings", param="stop_sequences")
        req.stop = list(stops)
    req.stream = body.get("stream") is True

    output_config = body.get("output_config")
    if output_config is None:
        output_config = {}
    if not isinstance(output_config, dict):
        raise BadRequest("'output_config' must be an object", param="output_config")
    req.reasoning = _reasoning_to_neutral(body.get("thinking"), output_config)
    fmt = output_config.get("format") or body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise BadRequest("output format 'schema' must be an object", param="output_config.format.schema")
        req.response_format = ResponseFormat(type="json_schema", schema=schema, strict=True)

    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise BadRequest("'metadata' must be an object", param="metadata")
        req.metadata = dict(metadata)
        uid = metadata.get("user_id")
        if isinstance(uid, str) and uid:
            req.user = uid

    extra = {k: v for k, v in body.items() if k not in _KNOWN_FIELDS}
    rest = {k: v for k, v in output_config.items() if k not in ("effort", "format")}
    if rest:
        extra["output_config"] = rest
    if extra:
        req.extra[FORMAT] = extra
    return req


# ---------------------------------------------------------------- request: neutral -> upstream


def _image_block(img: Image, param: str) -> dict[str, Any]:
    if img.data:
        mime = img.mime_type or _sniff_mime(img.data, "image/png")
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": img.data}}
    if img.url:
        split = _split_data_url(img.url)
        if split is not None:
            mime, data = split
            return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
        return {"type": "image", "source": {"type": "url", "url": img.url}}
    raise BadRequest("image has neither data nor url", param=param)


def _file_block(f: File, param: str) -> dict[str, Any]:
    mime = f.mime_type
    data = f.data
    url = f.url
    if url and url.startswith("data:"):
        split = _split_data_url(url)
        if split is not None:
            mime, data = split
            url = None
    if mime and mime.startswith("image/") and (data or url):
        return _image_block(Image(url=url, data=data, mime_type=mime), param)
    block: dict[str, Any]
    if data:
        mime = mime or _sniff_mime(data, "application/pdf")
        if mime == "application/pdf":
            block = {"type": "document",
                     "source": {"type": "base64", "media_type": "application/pdf", "data": data}}
        elif mime.startswith("text/"):
            try:
                text = base64.b64decode(data, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as e:
                raise BadRequest(f"file data is not valid base64 text: {e}", param=param) from e
            block = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
        else:
            raise Unsupported(f"{mime} file input is not supported by claude upstreams", param=param)
    elif url:
        block = {"type": "document", "source": {"type": "url", "url": url}}
    elif f.file_id:
        block = {"type": "document", "source": {"type": "file", "file_id": f.file_id}}
    else:
        raise BadRequest("file has no data, url or file_id", param=param)
    if f.filename:
        block["title"] = f.filename
    return block


def _text_block(t: Text) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": t.text}
    if t.cache_control:
        block["cache_control"] = t.cache_control
    return block


def _tool_result_block(r: ToolResult, param: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": sanitize_tool_id(r.call_id)}
    if isinstance(r.content, str):
        block["content"] = r.content
    else:
        blocks: list[dict[str, Any]] = []
        for j, p in enumerate(r.content):
            if isinstance(p, Text):
                if p.text:
                    blocks.append(_text_block(p))
            elif isinstance(p, Image):
                blocks.append(_image_block(p, f"{param}.content[{j}]"))
            else:
                raise Unsupported(f"{p.kind} inside a tool result is not supported by claude upstreams",
                                  param=f"{param}.content[{j}]")
        block["content"] = blocks
    if r.is_error:
        block["is_error"] = True
    return block


def _part_block(part: Part, param: str) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return _text_block(part) if part.text else None
    if isinstance(part, Image):
        return _image_block(part, param)
    if isinstance(part, File):
        return _file_block(part, param)
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": sanitize_tool_id(part.id), "name": part.name,
                "input": _parse_args(part.arguments)}
    if isinstance(part, ToolResult):
        return _tool_result_block(part, param)
    if isinstance(part, Thinking):
        if part.source != "claude":
            return None  # another family's reasoning: Claude cannot verify it
        if part.redacted:
            return {"type": "redacted_thinking", "data": part.redacted}
        if part.signature:
            return {"type": "thinking", "thinking": part.text, "signature": part.signature}
        return None  # unsigned thinking is rejected by the API
    if isinstance(part, Audio):
        raise Unsupported("audio input is not supported by claude upstreams", param=param)
    raise Unsupported(f"{part.kind} content is not supported by claude upstreams", param=param)


def _messages_from_neutral(messages: list[Message]) -> list[dict[str, Any]]:
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    system_turns: dict[int, dict[str, Any]] = {}  # turn position -> message-level fields
    for i, msg in enumerate(messages):
        if msg.role == "system":
            texts = [_text_block(t) for t in msg.content if isinstance(t, Text) and t.text]
            if texts:
                raw = msg.extra.get(FORMAT)
                if isinstance(raw, dict) and raw.get("cache_control"):
                    system_turns[len(turns)] = {"cache_control": raw["cache_control"]}
                turns.append(("system", texts))  # never merged with a neighbour
            continue
        blocks: list[dict[str, Any]] = []
        for j, part in enumerate(msg.content):
            b = _part_block(part, f"messages[{i}].content[{j}]")
            if b is not None:
                blocks.append(b)
        raw = msg.extra.get(FORMAT)
        if isinstance(raw, dict) and isinstance(raw.get("blocks"), list):
            # server-tool blocks from a Claude client, back at their positions
            for pos, blk in reversed(raw["blocks"]):
                blocks.insert(min(pos, len(blocks)), blk)
        if not blocks:
            continue
        if turns and turns[-1][0] == msg.role and msg.role != "system":
            turns[-1][1].extend(blocks)
        else:
            turns.append((msg.role, blocks))

    out: list[dict[str, Any]] = []
    for pos, (role, blocks) in enumerate(turns):
        if role == "system":
            out.append({"role": "system", "content": blocks, **system_turns.get(pos, {})})
            continue
        if role == "user":
            # tool results first (right after the assistant's tool_use turn), duplicates dropped
            results: list[dict[str, Any]] = []
            others: list[dict[str, Any]] = []
            seen: set[str] = set()
            for b in blocks:
                if b["type"] == "tool_result":
                    if b["tool_use_id"] in seen:
                        continue
                    seen.add(b["tool_use_id"])
                    results.append(b)
                else:
                    others.append(b)
            blocks = results + others
        out.append({"role": role, "content": blocks})
    if not out:
        out.append({"role": "user", "content": [{"type": "text", "text": "."}]})
    return out


def _tool_from_neutral(t: Tool, i: int) -> dict[str, Any]:
    if t.raw is not None:
        if t.raw_format == FORMAT:
            return t.raw
        raise Unsupported(f"the {t.raw_format} built-in tool {t.name!r} is not supported by claude upstreams",
                          param=f"tools[{i}]")
    schema = dict(t.parameters) if t.parameters else {"type": "object", "properties": {}}
    schema.setdefault("type", "object")
    out: dict[str, Any] = {"name": t.name}
    if t.description:
        out["description"] = t.description
    out["input_schema"] = schema
    if t.strict:
        out["strict"] = True
    if t.cache_control:
        out["cache_control"] = t.cache_control
    return out


def _thinking_from_neutral(
    req: Request, max_tokens: int, forced_tool: bool
) -> tuple[dict[str, Any] | None, int]:
    r = req.reasoning
    if r is None:
        return None, max_tokens
    effort = effective_effort(r)
    budget = effective_budget(r)
    if effort is None and budget is None:
        return None, max_tokens
    if effort == "none" or budget == 0:
        return {"type": "disabled"}, max_tokens
    if forced_tool:
        return None, max_tokens  # Claude rejects thinking with a forced tool choice
    if budget is None or budget < 0:
        budget = DEFAULT_THINKING_BUDGET
    budget = max(budget, MIN_THINKING_BUDGET)
    if max_tokens <= budget:
        max_tokens = budget + (req.max_tokens if req.max_tokens else 4096)
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def request_from_neutral(req: Request, model: str) -> dict[str, Any]:
    max_tokens = req.max_tokens if req.max_tokens and req.max_tokens > 0 else DEFAULT_MAX_TOKENS
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    system = [_text_block(t) for t in req.system if t.text]
    if system:
        body["system"] = system
    body["messages"] = _messages_from_neutral(req.messages)

    tc = req.tool_choice
    forced = tc is not None and tc.mode in ("required", "tool") and bool(req.tools)
    if req.tools:
        hosted: dict[int, dict[str, Any] | None] = {}
        if any(t.raw_format == "responses" for t in req.tools):
            hosted = {i: repl for i, _, repl in drop_hosted(req.tools, "anthropic", _HOSTED_EQUIVALENTS)}
        body["tools"] = [hosted[i] if i in hosted else _tool_from_neutral(t, i)
                         for i, t in enumerate(req.tools) if i not in hosted or hosted[i] is not None]
        choice: dict[str, Any] | None = None
        if tc is not None:
            if tc.mode == "required":
                choice = {"type": "any"}
            elif tc.mode == "tool" and tc.name:
                choice = {"type": "tool", "name": tc.name}
            elif tc.mode == "none":
                choice = {"type": "none"}
            else:
                choice = {"type": "auto"}
        if req.parallel_tool_calls is False and (choice is None or choice["type"] != "none"):
            choice = choice or {"type": "auto"}
            choice["disable_parallel_tool_use"] = True
        if choice is not None:
            body["tool_choice"] = choice

    thinking, body["max_tokens"] = _thinking_from_neutral(req, max_tokens, forced)
    enabled = thinking is not None and thinking["type"] == "enabled"
    if thinking is not None:
        body["thinking"] = thinking
    if req.temperature is not None and not enabled:
        body["temperature"] = req.temperature
    # recent models reject temperature together with top_p: temperature wins (as in CLIProxyAPI)
    if req.top_p is not None and "temperature" not in body and (not enabled or req.top_p >= 0.95):
        body["top_p"] = req.top_p
    if req.top_k is not None and not enabled:
        body["top_k"] = req.top_k
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    if req.stream:
        body["stream"] = True
    rf = req.response_format
    if rf is not None and rf.type == "json_schema" and rf.schema:
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema_with_description(rf)}}
    uid = None
    if req.metadata and isinstance(req.metadata.get("user_id"), str):
        uid = req.metadata["user_id"]
    elif req.user:
        uid = req.user
    if uid:
        body["metadata"] = {"user_id": uid}

    extra = req.extra.get(FORMAT)
    if isinstance(extra, dict):
        for k, v in extra.items():
            if k == "output_config" and isinstance(v, dict):
                body["output_config"] = {**v, **body.get("output_config", {})}
            else:
                body.setdefault(k, v)
    return body


# ---------------------------------------------------------------- responses


def response_to_neutral(body: dict[str, Any]) -> Response:
    content: list[Part] = []
    raw_blocks: list[Any] = []
    for block in body.get("content") or []:
        if not isinstance(block, dict):
            continue
        btype = block.get("type")
        if btype == "text":
            content.append(Text(block.get("text") or ""))
        elif btype == "thinking":
            content.append(Thinking(text=block.get("thinking") or "",
                                    signature=block.get("signature") or None, source="claude"))
        elif btype == "redacted_thinking":
            content.append(Thinking(redacted=block.get("data") or "", source="claude"))
        elif btype == "tool_use":
            content.append(ToolCall(id=block.get("id") or "", name=block.get("name") or "",
                                    arguments=_json_args(block.get("input"))))
        else:
            raw_blocks.append(block)  # server tool blocks: no neutral equivalent
    stop_reason = body.get("stop_reason")
    seq = body.get("stop_sequence")
    resp = Response(
        id=body.get("id") or new_message_id(),
        model=body.get("model") or "",
        content=content,
        finish_reason=finish_from_claude(stop_reason),
        stop_sequence=seq if isinstance(seq, str) else None,
        usage=usage_from_claude(body.get("usage")),
    )
    if raw_blocks:
        resp.extra[FORMAT] = {"blocks": raw_blocks}
    return resp


def response_from_neutral(resp: Response, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for part in resp.content:
        if isinstance(part, Text):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, Thinking):
            if part.redacted and not part.text:
                data = _tag_signature(part.redacted, part.source) or ""
                content.append({"type": "redacted_thinking", "data": data})
            else:
                content.append({"type": "thinking", "thinking": part.text,
                                "signature": _tag_signature(part.signature, part.source) or ""})
        elif isinstance(part, ToolCall):
            content.append({"type": "tool_use", "id": sanitize_tool_id(part.id), "name": part.name,
                            "input": _parse_args(part.arguments)})
        # images/files in a model response have no Messages response block
    return {
        "id": resp.id or new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": finish_to_claude(resp.finish_reason),
        "stop_sequence": resp.stop_sequence if resp.finish_reason == "stop_sequence" else None,
        "usage": usage_to_claude(resp.usage),
    }
