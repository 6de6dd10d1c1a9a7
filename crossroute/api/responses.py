"""POST /v1/responses (JSON and SSE) and /v1/responses/compact (OpenAI Responses)."""

from __future__ import annotations

from ..dispatch import Call, execute
from ..formats.responses_framer import is_codex_client
from ..gateway import Gateway
from ..replies import Reply, StreamReply
from .request import Request, check_body, require_model


async def responses(gw: Gateway, req: Request) -> Reply | StreamReply:
    body = req.json_object("responses")
    model = require_model("responses", body)
    check_body("responses", body)
    stream = body.get("stream") is True
    codex = is_codex_client(req.headers.get("user-agent"), req.headers.get("originator"))
    call = Call("responses", model, body, req.headers, stream=stream, client_key=req.client_key,
                options={"codex_client": codex})
    return await execute(gw, call)


async def compact(gw: Gateway, req: Request) -> Reply | StreamReply:
    body = req.json_object("responses")
    model = require_model("responses", body)
    check_body("responses", body)
    call = Call("responses", model, body, req.headers, operation="compact", client_key=req.client_key)
    return await execute(gw, call)
