"""POST /v1/chat/completions."""

from __future__ import annotations

from collections.abc import Awaitable

from ..dispatch import Call, execute
from ..gateway import Gateway
from ..replies import Reply, StreamReply
from .request import Request, check_body, require_model


def chat_completions(gw: Gateway, req: Request) -> Awaitable[Reply | StreamReply]:
    body = req.json_object("openai")
    model = require_model("openai", body)
    check_body("openai", body)
    stream = body.get("stream") is True
    call = Call("openai", model, body, req.headers, stream=stream, client_key=req.client_key)
    return execute(gw, call)
