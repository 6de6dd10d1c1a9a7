"""GET /v1/models: OpenAI's list shape, or Anthropic's for Claude clients."""

from __future__ import annotations

import time

from ..gateway import Gateway
from ..replies import Reply, error_reply, json_reply
from .request import Request

_CREATED = int(time.time())


def _is_claude_client(req: Request) -> bool:
    return "anthropic-version" in req.headers or req.headers.get("user-agent", "").startswith("claude-cli")


async def list_models(gw: Gateway, req: Request) -> Reply:
    models = gw.registry.models()
    if _is_claude_client(req):
        data = [
            {"type": "model", "id": m.id, "display_name": m.id, "created_at": "1970-01-01T00:00:00Z"}
            for m in models
        ]
        return json_reply({
            "data": data, "has_more": False,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None,
        })
    return json_reply({
        "object": "list",
        "data": [{"id": m.id, "object": "model", "created": _CREATED, "owned_by": m.owned_by} for m in models],
    })


async def get_model(gw: Gateway, req: Request) -> Reply:
    """GET /v1/models/{id}: OpenAI's retrieve shape, or Gemini's for google-genai clients."""
    from . import gemini

    if gemini.is_gemini_client(req):
        return await gemini.get_model(gw, req)
    name = req.path_params["rest"]
    for m in gw.registry.models():
        if m.id.lower() == name.lower():
            return json_reply({"id": m.id, "object": "model", "created": _CREATED, "owned_by": m.owned_by})
    return error_reply("openai", 404, f"model '{name}' is not served by any configured upstream", param="model")
