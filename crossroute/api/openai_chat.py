"""POST /v1/chat/completions."""

from __future__ import annotations

from collections.abc import Awaitable

from ..dispatch import Call, execute
from ..gateway import Gateway
from ..replies import Reply, StreamReply
from .request import Request, bad_request, optional_bool, require_model


def chat_completions(gw: Gateway, req: Request) -> Awaitable[Reply | StreamReply]:
    body = req.json_object("openai")
    model = require_model("openai", body)
    messages = body.get("messages")
    if messages is None:
        raise bad_request("openai", "'messages' is required", "messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("openai", "'messages' must be a non-empty array of message objects", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise bad_request("openai", f"'messages[{i}]' must be an object", f"messages[{i}]")
    stream = optional_bool("openai", body, "stream")
    call = Call("openai", model, body, req.headers, stream=stream, client_key=req.client_key)
    return execute(gw, call)
