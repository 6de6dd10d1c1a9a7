"""Gemini ``generateContent`` wire format <-> neutral.

Requests: ``contents`` (roles user/model) of parts (text, inlineData, fileData, functionCall,
functionResponse, thought parts, thoughtSignature on any part), ``systemInstruction``, ``tools``
(functionDeclarations and built-in tools), ``toolConfig`` and ``generationConfig``. camelCase and
snake_case field names are both accepted, as the REST API does. Streams live in
``gemini_stream.py``; JSON-schema cleaning for tool parameters in ``schema.py``.

Where the neutral form has no field for something a Gemini client sent, it goes to
``extra["gemini"]`` (top-level fields, unknown generationConfig keys, toolConfig details) or to
``Message.extra`` (thoughtSignature on a text part: ``gemini_text_signatures`` {part index:
signature}; parts with no neutral type: ``gemini_raw_parts`` [[index, part], ...]).
"""

from __future__ import annotations

import mimetypes
import secrets
import time
from typing import Any

import orjson

from .gemini_stream import (
    StreamDecoder,
    StreamEncoder,
    finish_from_gemini,
    finish_to_gemini,
    gget,
    new_call_id,
    usage_from_gemini,
    usage_to_gemini,
)
from .neutral import (
    Audio,
    BadRequest,
    File,
    Image,
    Message,
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
from .schema import clean_schema, from_gemini_schema, schema_with_description
from .thinking import effective_budget, effective_effort

__all__ = [
    "FORMAT",
    "SKIP_SIGNATURE",
    "StreamDecoder",
    "StreamEncoder",
    "request_from_neutral",
    "request_to_neutral",
    "response_from_neutral",
    "response_to_neutral",
    "usage_from_gemini",
    "usage_to_gemini",
]

FORMAT = "gemini"
# Google's documented placeholder for functionCall parts the model did not produce itself
# (history from another model): Gemini 3 rejects a function call turn without a signature.
SKIP_SIGNATURE = "skip_thought_signature_validator"

TEXT_SIGS = "gemini_text_signatures"
# How a mid-conversation system message (Anthropic's role "system" inside messages) is marked
# when it becomes user text in contents.
MID_SYSTEM_OPEN = "<system-instruction>\n"
MID_SYSTEM_CLOSE = "\n</system-instruction>"
RAW_PARTS = "gemini_raw_parts"

_KNOWN_TOP = frozenset(
    {
        "contents",
        "systemInstruction",
        "system_instruction",
        "tools",
        "toolConfig",
        "tool_config",
        "generationConfig",
        "generation_config",
        "model",
    }
)
_KNOWN_GEN = frozenset(
    {
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "thinkingConfig",
    }
)
_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none", "VALIDATED": "auto"}
_EXT_MIME = {
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".mp3": "audio/mp3",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".aac": "audio/aac",
    ".aiff": "audio/aiff",
    ".md": "text/markdown",
}
_AUDIO_FORMATS = {"mpeg": "mp3", "mp3": "mp3", "x-wav": "wav", "wave": "wav", "wav": "wav"}


def _camel_keys(d: dict[str, Any]) -> dict[str, Any]:
    """Top-level keys of ``d`` with snake_case spelled camelCase."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if "_" in k:
            head, *rest = k.split("_")
            k = head + "".join(w[:1].upper() + w[1:] for w in rest)
        out[k] = v
    return out


# ================================================================ request: Gemini -> neutral


def request_to_neutral(body: dict[str, Any], model: str | None = None) -> Request:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    contents = body.get("contents")
    if contents is None:
        raise BadRequest("'contents' is required", param="contents")
    if not isinstance(contents, list):
        raise BadRequest("'contents' must be a list", param="contents")
    body_model = body.get("model")
    req = Request(model=model or (body_model if isinstance(body_model, str) else "") or "")
    if req.model.startswith("models/"):
        req.model = req.model[7:]

    calls: dict[str, list[str]] = {}  # function name -> ids of calls not yet answered
    counter = [0]
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            raise BadRequest(f"contents[{i}] must be an object", param=f"contents.{i}")
        parts = content.get("parts")
        if parts is None:
            parts = []
        if not isinstance(parts, list):
            raise BadRequest(f"contents[{i}].parts must be a list", param=f"contents.{i}.parts")
        role = content.get("role")
        msg = Message(role="assistant" if role == "model" else "user", content=[])
        for j, part in enumerate(parts):
            if not isinstance(part, dict):
                raise BadRequest(
                    f"contents[{i}].parts[{j}] must be an object", param=f"contents.{i}.parts.{j}"
                )
            _part_to_neutral(part, msg, calls, counter, f"contents.{i}.parts.{j}")
        if msg.content or msg.extra:
            req.messages.append(msg)

    sys = gget(body, "systemInstruction")
    if isinstance(sys, str):
        req.system.append(Text(text=sys))
    elif isinstance(sys, dict):
        sys_parts = sys.get("parts")
        if not isinstance(sys_parts, list):
            raise BadRequest("systemInstruction.parts must be a list", param="systemInstruction.parts")
        for p in sys_parts:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                req.system.append(Text(text=p["text"]))
    elif sys is not None:
        raise BadRequest("systemInstruction must be an object", param="systemInstruction")

    extra: dict[str, Any] = {k: v for k, v in body.items() if k not in _KNOWN_TOP}
    _tools_to_neutral(body, req)
    _tool_config_to_neutral(body, req, extra)
    _generation_config_to_neutral(body, req, extra)
    if extra:
        req.extra[FORMAT] = extra
    return req


def _part_to_neutral(
    part: dict[str, Any], msg: Message, calls: dict[str, list[str]], counter: list[int], where: str
) -> None:
    sig = gget(part, "thoughtSignature")
    sig = sig if isinstance(sig, str) and sig else None
    text = part.get("text")
    if isinstance(text, str):
        if part.get("thought") is True:
            msg.content.append(Thinking(text=text, signature=sig, source="gemini"))
            return
        if sig is not None:
            msg.extra.setdefault(TEXT_SIGS, {})[len(msg.content)] = sig
        msg.content.append(Text(text=text))
        return
    fc = gget(part, "functionCall")
    if isinstance(fc, dict):
        cid = fc.get("id")
        if not isinstance(cid, str) or not cid:
            cid = f"call_{counter[0]}"
            counter[0] += 1
        name = str(fc.get("name") or "")
        args = fc.get("args")
        calls.setdefault(name, []).append(cid)
        msg.content.append(
            ToolCall(
                id=cid,
                name=name,
                arguments=orjson.dumps(args if args is not None else {}).decode(),
                signature=sig,
            )
        )
        return
    fr = gget(part, "functionResponse")
    if isinstance(fr, dict):
        name = str(fr.get("name") or "")
        cid = fr.get("id")
        pending = calls.get(name)
        if isinstance(cid, str) and cid:
            if pending and cid in pending:
                pending.remove(cid)
        elif pending:
            cid = pending.pop(0)
        else:
            cid = f"call_{counter[0]}"
            counter[0] += 1
        response = fr.get("response")
        content = orjson.dumps(response if response is not None else {}).decode()
        msg.content.append(ToolResult(call_id=cid, content=content, name=name))
        return
    inline = gget(part, "inlineData")
    if isinstance(inline, dict):
        mime = str(gget(inline, "mimeType") or "")
        data = inline.get("data")
        if not isinstance(data, str):
            raise BadRequest("inlineData.data must be a base64 string", param=f"{where}.inlineData.data")
        if mime.startswith("image/"):
            msg.content.append(Image(data=data, mime_type=mime))
        elif mime.startswith("audio/"):
            sub = mime[6:].split(";")[0]
            msg.content.append(Audio(data=data, format=_AUDIO_FORMATS.get(sub, sub)))
        else:
            msg.content.append(File(data=data, mime_type=mime or None))
        return
    fd = gget(part, "fileData")
    if isinstance(fd, dict):
        uri = gget(fd, "fileUri")
        if not isinstance(uri, str):
            raise BadRequest("fileData.fileUri must be a string", param=f"{where}.fileData.fileUri")
        mime = gget(fd, "mimeType")
        mime = mime if isinstance(mime, str) and mime else None
        if mime and mime.startswith("image/"):
            msg.content.append(Image(url=uri, mime_type=mime))
        else:
            msg.content.append(File(url=uri, mime_type=mime or _guess_mime(uri)))
        return
    if sig is not None and len(part) == 1:  # a signature-only part
        msg.content.append(Thinking(text="", signature=sig, source="gemini"))
        return
    # executableCode, codeExecutionResult, ... : no neutral type; kept for a Gemini upstream
    msg.extra.setdefault(RAW_PARTS, []).append([len(msg.content), part])


def _tools_to_neutral(body: dict[str, Any], req: Request) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be a list", param="tools")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise BadRequest(f"tools[{i}] must be an object", param=f"tools.{i}")
        for key, value in tool.items():
            if key not in ("functionDeclarations", "function_declarations"):
                req.tools.append(Tool(name=key, raw={key: value}, raw_format=FORMAT))
                continue
            if not isinstance(value, list):
                raise BadRequest(
                    "functionDeclarations must be a list", param=f"tools.{i}.functionDeclarations"
                )
            for j, fd in enumerate(value):
                where = f"tools.{i}.functionDeclarations.{j}"
                if not isinstance(fd, dict) or not isinstance(fd.get("name"), str) or not fd["name"]:
                    raise BadRequest("a function declaration needs a name", param=f"{where}.name")
                params: Any = None
                js = gget(fd, "parametersJsonSchema")
                legacy = fd.get("parameters")
                if js is not None:
                    if not isinstance(js, dict):
                        raise BadRequest(
                            "parametersJsonSchema must be an object", param=f"{where}.parametersJsonSchema"
                        )
                    params = js
                elif legacy is not None:
                    if not isinstance(legacy, dict):
                        raise BadRequest("parameters must be an object", param=f"{where}.parameters")
                    params = from_gemini_schema(legacy)
                desc = fd.get("description")
                req.tools.append(
                    Tool(
                        name=fd["name"],
                        description=desc if isinstance(desc, str) else None,
                        parameters=params,
                    )
                )


def _tool_config_to_neutral(body: dict[str, Any], req: Request, extra: dict[str, Any]) -> None:
    tc = gget(body, "toolConfig")
    if not isinstance(tc, dict):
        return
    fcc = gget(tc, "functionCallingConfig")
    simple = True
    if isinstance(fcc, dict):
        mode = str(fcc.get("mode") or "AUTO").upper()
        names = gget(fcc, "allowedFunctionNames")
        if mode == "ANY" and isinstance(names, list) and len(names) == 1 and isinstance(names[0], str):
            req.tool_choice = ToolChoice(mode="tool", name=names[0])
        else:
            req.tool_choice = ToolChoice(mode=_MODES.get(mode, "auto"))  # type: ignore[arg-type]
            simple = not names and mode in ("AUTO", "ANY", "NONE")
        simple = simple and len(fcc) <= 2
    if not simple or any(k not in ("functionCallingConfig", "function_calling_config") for k in tc):
        extra["toolConfig"] = tc


def _generation_config_to_neutral(body: dict[str, Any], req: Request, extra: dict[str, Any]) -> None:
    gc = gget(body, "generationConfig")
    if gc is None:
        return
    if not isinstance(gc, dict):
        raise BadRequest("generationConfig must be an object", param="generationConfig")
    gc = _camel_keys(gc)
    mx = gc.get("maxOutputTokens")
    if isinstance(mx, int):
        req.max_tokens = mx
    if isinstance(gc.get("temperature"), (int, float)):
        req.temperature = float(gc["temperature"])
    if isinstance(gc.get("topP"), (int, float)):
        req.top_p = float(gc["topP"])
    if isinstance(gc.get("topK"), (int, float)):
        req.top_k = int(gc["topK"])
    stops = gc.get("stopSequences")
    if isinstance(stops, list):
        req.stop = [s for s in stops if isinstance(s, str)]
    elif isinstance(stops, str):
        req.stop = [stops]
    mime = gc.get("responseMimeType")
    js = gc.get("responseJsonSchema")
    legacy = gc.get("responseSchema")
    rest = {k: v for k, v in gc.items() if k not in _KNOWN_GEN}
    if mime == "application/json" or js is not None or legacy is not None:
        if isinstance(js, dict):
            req.response_format = ResponseFormat(type="json_schema", schema=js)
        elif isinstance(legacy, dict):
            req.response_format = ResponseFormat(type="json_schema", schema=from_gemini_schema(legacy))
        else:
            req.response_format = ResponseFormat(type="json_object")
    elif isinstance(mime, str) and mime and mime != "text/plain":
        rest["responseMimeType"] = mime  # text/x.enum and friends
    tcfg = gc.get("thinkingConfig")
    if isinstance(tcfg, dict):
        tcfg = _camel_keys(tcfg)
        r = Reasoning()
        budget = tcfg.get("thinkingBudget")
        level = tcfg.get("thinkingLevel")
        if isinstance(budget, int):
            r.budget = budget
        if isinstance(level, str) and level:
            lv = level.lower()
            r.effort = "minimal" if lv == "thinking_level_unspecified" else lv
        if isinstance(tcfg.get("includeThoughts"), bool):
            r.include_thoughts = tcfg["includeThoughts"]
        req.reasoning = r
    if rest:
        extra["generationConfig"] = rest


# ================================================================ request: neutral -> Gemini


def request_from_neutral(req: Request, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    messages = list(req.messages)
    if messages and messages[-1].role == "assistant":
        messages.pop()  # a trailing assistant prefill: Gemini has no prefill

    names: dict[str, str] = {}  # tool call id -> function name
    contents: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if msg.role == "system":
            # Gemini has no system turn inside contents: the nearest form is the instruction as
            # user text at its place, marked as coming from the system
            parts = [{"text": f"{MID_SYSTEM_OPEN}{t.text}{MID_SYSTEM_CLOSE}"}
                     for t in msg.content if isinstance(t, Text) and t.text]
        else:
            parts = _parts_from_neutral(msg, names, f"messages.{i}")
        if not parts:
            continue
        role = "model" if msg.role == "assistant" else "user"
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)  # e.g. several tool results for one call turn
        else:
            contents.append({"role": role, "parts": parts})
    body["contents"] = contents

    sys_parts = [{"text": t.text} for t in req.system if t.text]
    if sys_parts:
        body["systemInstruction"] = {"parts": sys_parts}

    tools = _tools_from_neutral(req)
    if tools:
        body["tools"] = tools
    if req.tool_choice is not None:
        tc = req.tool_choice
        if tc.mode == "tool" and tc.name:
            fcc: dict[str, Any] = {"mode": "ANY", "allowedFunctionNames": [tc.name]}
        else:
            fcc = {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}.get(tc.mode, "AUTO")}
        body["toolConfig"] = {"functionCallingConfig": fcc}

    gen = _generation_config_from_neutral(req, model)
    if gen:
        body["generationConfig"] = gen

    extra = req.extra.get(FORMAT)
    if isinstance(extra, dict):
        _merge_missing(body, extra)
    return body


def _merge_missing(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Fill ``dst`` with what ``src`` has and ``dst`` lacks (nested dicts merge; dst wins)."""
    for k, v in src.items():
        cur = dst.get(k)
        if cur is None:
            dst[k] = v
        elif isinstance(cur, dict) and isinstance(v, dict):
            _merge_missing(cur, v)


def _parts_from_neutral(msg: Message, names: dict[str, str], where: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    trailing: list[dict[str, Any]] = []  # images returned by tools go after the responses
    text_sigs = msg.extra.get(TEXT_SIGS) or {}
    raw = msg.extra.get(RAW_PARTS) or []
    raw_at: dict[int, list[dict[str, Any]]] = {}
    for pos, rp in raw:
        raw_at.setdefault(int(pos), []).append(rp)
    first_call = True
    for j, p in enumerate(msg.content):
        if j in raw_at:
            parts.extend(raw_at.pop(j))
        kind = p.kind
        if kind == "text":
            if p.text:  # type: ignore[union-attr]
                part: dict[str, Any] = {"text": p.text}  # type: ignore[union-attr]
                sig = text_sigs.get(j, text_sigs.get(str(j)))
                if sig:
                    part["thoughtSignature"] = sig
                parts.append(part)
        elif kind == "thinking":
            th: Thinking = p  # type: ignore[assignment]
            if th.source == "gemini" and (th.text or th.signature):
                part = {"text": th.text, "thought": True}
                if th.signature:
                    part["thoughtSignature"] = th.signature
                parts.append(part)
            # thinking from another family cannot be verified by Gemini: dropped
        elif kind == "tool_call":
            tc: ToolCall = p  # type: ignore[assignment]
            names[tc.id] = tc.name
            part = {
                "functionCall": {"name": tc.name, "args": _args_object(tc.arguments, f"{where}.content.{j}")}
            }
            if tc.signature:
                part["thoughtSignature"] = tc.signature
            elif first_call:
                part["thoughtSignature"] = SKIP_SIGNATURE
            first_call = False
            parts.append(part)
        elif kind == "tool_result":
            tr: ToolResult = p  # type: ignore[assignment]
            response, images = _tool_response(tr, f"{where}.content.{j}")
            name = tr.name or names.get(tr.call_id) or tr.call_id
            parts.append({"functionResponse": {"name": name, "response": response}})
            trailing.extend(images)
        elif kind in ("image", "file"):
            parts.append(_media_part(p, f"{where}.content.{j}"))  # type: ignore[arg-type]
        elif kind == "audio":
            au: Audio = p  # type: ignore[assignment]
            fmt = au.format.lower()
            parts.append(
                {"inlineData": {"mimeType": f"audio/{'mp3' if fmt == 'mpeg' else fmt}", "data": au.data}}
            )
    for rest in raw_at.values():
        parts.extend(rest)
    return parts + trailing


def _args_object(arguments: str, where: str) -> dict[str, Any]:
    if not arguments or not arguments.strip():
        return {}
    try:
        args = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise BadRequest("tool call arguments are not valid JSON", param=where) from None
    if not isinstance(args, dict):
        raise BadRequest("tool call arguments must be a JSON object", param=where)
    return args


def _tool_response(tr: ToolResult, where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    images: list[dict[str, Any]] = []
    if isinstance(tr.content, str):
        text = tr.content
    else:
        texts = []
        for q in tr.content:
            if q.kind == "text":
                texts.append(q.text)  # type: ignore[union-attr]
            else:
                images.append(_media_part(q, where))  # type: ignore[arg-type]
        text = "\n".join(texts)
    value: Any = text
    s = text.strip()
    if s[:1] in ("{", "[", '"') or s in ("true", "false", "null") or s[:1].isdigit() or s[:1] == "-":
        try:
            value = orjson.loads(s)
        except orjson.JSONDecodeError:
            value = text
    if isinstance(value, dict):
        return value, images
    return ({"error": value} if tr.is_error else {"result": value}), images


def _guess_mime(url: str) -> str | None:
    path = url.split("?", 1)[0].split("#", 1)[0]
    dot = path.rfind(".")
    if dot < 0 or "/" in path[dot:]:
        return None
    ext = path[dot:].lower()
    return _EXT_MIME.get(ext) or mimetypes.types_map.get(ext)


def _media_part(p: Image | File, where: str) -> dict[str, Any]:
    default = "image/png" if p.kind == "image" else "application/pdf"
    if p.data:
        return {"inlineData": {"mimeType": p.mime_type or default, "data": p.data}}
    url = p.url
    if url is None and isinstance(p, File) and p.file_id:
        if p.file_id.startswith(("https://", "http://", "gs://", "files/")):
            url = p.file_id
        else:
            raise Unsupported("file ids are not supported by gemini upstreams", param=where)
    if not url:
        raise BadRequest(f"{p.kind} part has neither data nor url", param=where)
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        if not sep or ";base64" not in head:
            raise BadRequest("data URLs must be base64 encoded", param=where)
        mime = head[5:].split(";", 1)[0] or p.mime_type or default
        return {"inlineData": {"mimeType": mime, "data": data}}
    mime = p.mime_type or _guess_mime(url) or default
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _tools_from_neutral(req: Request) -> list[dict[str, Any]]:
    decls: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    hosted: dict[int, dict[str, Any] | None] = {}
    if any(t.raw_format == "responses" for t in req.tools):
        # Gemini refuses built-in tools beside function declarations, so Google Search stands in
        # for web_search only in a request without functions
        functions = any(t.raw is None for t in req.tools)
        hosted = {i: repl for i, _, repl in drop_hosted(req.tools, "gemini", None if functions else _HOSTED)}
    for i, t in enumerate(req.tools):
        if i in hosted:
            if hosted[i] is not None:
                others.append(hosted[i])  # type: ignore[arg-type]
            continue
        if t.raw is not None:
            others.append(_raw_tool(t, f"tools.{i}"))
            continue
        d: dict[str, Any] = {"name": t.name}
        if t.description:
            d["description"] = t.description
        if t.parameters:
            d["parametersJsonSchema"] = clean_schema(t.parameters)
        decls.append(d)
    out: list[dict[str, Any]] = [{"functionDeclarations": decls}] if decls else []
    return out + others


_HOSTED: dict[str, dict[str, Any]] = {"web_search": {"googleSearch": {}}, "web_search_preview": {"googleSearch": {}}}


def _raw_tool(t: Tool, where: str) -> dict[str, Any]:
    raw = t.raw or {}
    if t.raw_format == FORMAT:
        return raw
    kind = str(raw.get("type") or t.name or "")
    if kind.startswith("web_search") or kind == "google_search":
        return {"googleSearch": {}}
    if kind.startswith(("code_interpreter", "code_execution")):
        return {"codeExecution": {}}
    if kind.startswith("url_context") or kind.startswith("web_fetch"):
        return {"urlContext": {}}
    raise Unsupported(f"tool type '{kind}' is not supported by gemini upstreams", param=where)


def _generation_config_from_neutral(req: Request, model: str) -> dict[str, Any]:
    gen: dict[str, Any] = {}
    if req.max_tokens is not None:
        gen["maxOutputTokens"] = req.max_tokens
    if req.temperature is not None:
        gen["temperature"] = req.temperature
    if req.top_p is not None:
        gen["topP"] = req.top_p
    if req.top_k is not None:
        gen["topK"] = req.top_k
    if req.stop:
        gen["stopSequences"] = list(req.stop)
    rf = req.response_format
    if rf is not None and rf.type != "text":
        gen["responseMimeType"] = "application/json"
        if rf.type == "json_schema" and rf.schema:
            gen["responseJsonSchema"] = clean_schema(schema_with_description(rf))
    if req.reasoning is not None:
        cfg = _thinking_config(req.reasoning, model)
        if cfg:
            gen["thinkingConfig"] = cfg
    return gen


def _thinking_config(r: Reasoning, model: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    effort = effective_effort(r)
    off = effort == "none"
    if "gemini-3" in model.lower():
        if effort in ("none", "minimal", "low"):
            cfg["thinkingLevel"] = "low"
        elif effort is not None and effort != "auto":
            cfg["thinkingLevel"] = "high"
        off = False  # Gemini 3 cannot switch thinking off; "none" asks for the least
    else:
        budget = effective_budget(r)
        if budget is not None:
            cfg["thinkingBudget"] = budget
    if r.include_thoughts is not None:
        cfg["includeThoughts"] = r.include_thoughts and not off
    elif not off and (effort is not None or r.summary):
        cfg["includeThoughts"] = True
    return cfg


# ================================================================ responses


def response_to_neutral(body: dict[str, Any]) -> Response:
    if not isinstance(body, dict):
        raise BadRequest("upstream response is not a JSON object")
    rid = gget(body, "responseId")
    mv = gget(body, "modelVersion")
    resp = Response(
        id=rid if isinstance(rid, str) and rid else new_call_id()[5:],
        model=mv if isinstance(mv, str) else "",
        created=int(time.time()),
        usage=usage_from_gemini(gget(body, "usageMetadata")),
    )
    cands = body.get("candidates")
    cand = cands[0] if isinstance(cands, list) and cands and isinstance(cands[0], dict) else None
    if cand is None:
        fb = gget(body, "promptFeedback")
        blocked = isinstance(fb, dict) and gget(fb, "blockReason")
        resp.finish_reason = "content_filter" if blocked else "stop"
        return resp
    content = cand.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    saw_tool = False
    sigs: dict[int, str] = {}
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        sig = gget(part, "thoughtSignature")
        sig = sig if isinstance(sig, str) and sig else None
        fc = gget(part, "functionCall")
        text = part.get("text")
        if isinstance(fc, dict):
            saw_tool = True
            cid = fc.get("id")
            args = fc.get("args")
            resp.content.append(
                ToolCall(
                    id=cid if isinstance(cid, str) and cid else new_call_id(),
                    name=str(fc.get("name") or ""),
                    arguments=orjson.dumps(args if isinstance(args, dict) else {}).decode(),
                    signature=sig,
                )
            )
        elif isinstance(text, str):
            if part.get("thought") is True:
                resp.content.append(Thinking(text=text, signature=sig, source="gemini"))
            elif text or sig:
                if sig:
                    sigs[len(resp.content)] = sig
                resp.content.append(Text(text=text))
        elif isinstance(gget(part, "inlineData"), dict):
            inline = gget(part, "inlineData")
            mime = str(gget(inline, "mimeType") or "")
            if mime.startswith("image/"):
                resp.content.append(Image(data=str(inline.get("data") or ""), mime_type=mime))
            else:
                resp.content.append(File(data=str(inline.get("data") or ""), mime_type=mime or None))
        elif isinstance(gget(part, "executableCode"), dict):
            code = gget(part, "executableCode")
            lang = str(code.get("language") or "").lower()
            resp.content.append(Text(text=f"\n```{lang}\n{code.get('code') or ''}\n```\n"))
        elif isinstance(gget(part, "codeExecutionResult"), dict):
            res = gget(part, "codeExecutionResult")
            resp.content.append(Text(text=f"\n```\n{res.get('output') or ''}\n```\n"))
        elif sig:
            resp.content.append(Thinking(text="", signature=sig, source="gemini"))
    reason = gget(cand, "finishReason")
    resp.finish_reason = finish_from_gemini(reason if isinstance(reason, str) else None, saw_tool)
    extra: dict[str, Any] = {}
    if sigs:
        extra[TEXT_SIGS] = sigs
    for key in ("finishMessage", "groundingMetadata", "citationMetadata", "safetyRatings"):
        if key in cand:
            extra[key] = cand[key]
    if extra:
        resp.extra[FORMAT] = extra
    return resp


def response_from_neutral(resp: Response, model: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    extra = resp.extra.get(FORMAT) if isinstance(resp.extra.get(FORMAT), dict) else {}
    sigs = extra.get(TEXT_SIGS) or {}
    for j, p in enumerate(resp.content):
        kind = p.kind
        if kind == "text":
            part: dict[str, Any] = {"text": p.text}  # type: ignore[union-attr]
            sig = sigs.get(j, sigs.get(str(j)))
            if sig:
                part["thoughtSignature"] = sig
            parts.append(part)
        elif kind == "thinking":
            th: Thinking = p  # type: ignore[assignment]
            if not th.text and not (th.signature and th.source == FORMAT):
                continue
            part = {"text": th.text, "thought": True}
            if th.signature and th.source == FORMAT:
                part["thoughtSignature"] = th.signature
            parts.append(part)
        elif kind == "tool_call":
            tc: ToolCall = p  # type: ignore[assignment]
            try:
                args = orjson.loads(tc.arguments) if tc.arguments.strip() else {}
            except orjson.JSONDecodeError:
                args = {}
            fc: dict[str, Any] = {"name": tc.name, "args": args if isinstance(args, dict) else {}}
            if tc.id:
                fc["id"] = tc.id
            part = {"functionCall": fc}
            if tc.signature:
                part["thoughtSignature"] = tc.signature
            parts.append(part)
        elif kind in ("image", "file") and p.data:  # type: ignore[union-attr]
            default = "image/png" if kind == "image" else "application/octet-stream"
            parts.append({"inlineData": {"mimeType": p.mime_type or default, "data": p.data}})  # type: ignore[union-attr]
    cand: dict[str, Any] = {
        "content": {"parts": parts, "role": "model"},
        "finishReason": finish_to_gemini(resp.finish_reason),
        "index": 0,
    }
    out: dict[str, Any] = {
        "candidates": [cand],
        "usageMetadata": usage_to_gemini(resp.usage),
        "modelVersion": model,
        "responseId": resp.id or secrets.token_urlsafe(16),
    }
    return out
