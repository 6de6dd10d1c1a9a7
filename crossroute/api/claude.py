"""POST /v1/messages and /v1/messages/count_tokens (Anthropic Messages)."""

from __future__ import annotations

from typing import Any

from ..dispatch import Call, count_tokens, execute
from ..gateway import Gateway
from ..replies import Reply, StreamReply
from .request import Request, bad_request, check_body, require_model


def _validate(body: dict[str, Any]) -> str:
    model = require_model("claude", body)
    check_body("claude", body)
    return model


async def messages(gw: Gateway, req: Request) -> Reply | StreamReply:
    body = req.json_object("claude")
    model = _validate(body)
    if not body.get("messages"):
        raise bad_request("claude", "messages: at least one message is required", "messages")
    default_max = gw.settings.default_max_tokens
    if "max_tokens" not in body and default_max is None:
        raise bad_request("claude", "max_tokens: Field required (or set default-max-tokens in the gateway config)",
                          "max_tokens")
    max_tokens = body.get("max_tokens", default_max)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise bad_request("claude", "max_tokens: must be a positive integer", "max_tokens")
    stream = body.get("stream") is True
    call = Call("claude", model, body, req.headers, stream=stream, client_key=req.client_key,
                options={"default_max_tokens": default_max})
    return await execute(gw, call)


async def messages_count_tokens(gw: Gateway, req: Request) -> Reply:
    body = req.json_object("claude")
    model = _validate(body)
    call = Call("claude", model, body, req.headers, operation="count_tokens", client_key=req.client_key,
                options={"default_max_tokens": gw.settings.default_max_tokens or 1024})
    return await count_tokens(gw, call)
