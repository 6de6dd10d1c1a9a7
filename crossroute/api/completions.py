"""POST /v1/completions: the legacy API, served through chat completions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from ..dispatch import Call, execute
from ..formats.completions import CompletionsStream, request_to_chat, response_from_chat
from ..formats.neutral import BadRequest
from ..formats.sse import SSEParser
from ..gateway import Gateway
from ..replies import Reply, StreamReply
from .request import Request, bad_request, check_body, require_model


async def completions(gw: Gateway, req: Request) -> Reply | StreamReply:
    body = req.json_object("openai")
    model = require_model("openai", body)
    try:
        chat = request_to_chat(body)
    except BadRequest as exc:
        raise bad_request("openai", exc.message, exc.param) from None
    check_body("openai", chat)
    call = Call("openai", model, chat, req.headers, stream=bool(chat.get("stream")), client_key=req.client_key)
    reply = await execute(gw, call)
    if isinstance(reply, StreamReply):
        reply.chunks = _legacy_stream(reply.chunks, model)
        return reply
    if reply.status == 200:
        reply.body = orjson.dumps(response_from_chat(orjson.loads(reply.body)))
    return reply


async def _legacy_stream(chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
    parser = SSEParser()
    conv = CompletionsStream(model)
    try:
        async for chunk in chunks:
            out = []
            for ev in parser.feed(chunk):
                if ev.data == b"[DONE]":
                    out.append(b"data: [DONE]\n\n")
                    continue
                obj = orjson.loads(ev.data)
                if "error" in obj:
                    out.append(b"data: " + ev.data + b"\n\n")
                    continue
                legacy = conv.convert(obj)
                if legacy is not None:
                    out.append(b"data: " + orjson.dumps(legacy) + b"\n\n")
            if out:
                yield b"".join(out)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
