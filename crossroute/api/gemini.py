"""Gemini: POST /v1beta/models/{model}:generateContent | :streamGenerateContent | :countTokens,
GET /v1beta/models and /v1beta/models/{model}; the same under /v1/models/ (google-genai's default)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from ..dispatch import Call, count_tokens, execute
from ..gateway import Gateway
from ..replies import Reply, StreamReply, error_reply, json_reply
from .request import Request, bad_request, check_body

_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]


def _split(rest: str) -> tuple[str, str]:
    model, sep, action = unquote(rest).rpartition(":")
    if not sep or not model:
        raise bad_request("gemini", f"expected models/{{model}}:{{method}}, got models/{rest}", status=404)
    return model.removeprefix("models/"), action


def _validate(body: dict[str, Any]) -> None:
    contents = body.get("contents")
    if contents is None and "generateContentRequest" not in body:
        raise bad_request("gemini", "contents is required: an array of Content objects", "contents")
    check_body("gemini", body)


async def model_action(gw: Gateway, req: Request) -> Reply | StreamReply:
    model, action = _split(req.path_params["rest"])
    body = req.json_object("gemini")
    if action == "countTokens":
        inner = body.get("generateContentRequest")
        if inner is not None and not isinstance(inner, dict):
            raise bad_request("gemini", "generateContentRequest must be a GenerateContentRequest object",
                              "generateContentRequest")
        if inner is not None:
            body = {k: v for k, v in inner.items() if k != "model"}
        _validate(body)
        call = Call("gemini", model, body, req.headers, operation="count_tokens", client_key=req.client_key,
                    options={"model": model})
        return await count_tokens(gw, call)
    if action not in ("generateContent", "streamGenerateContent"):
        return error_reply("gemini", 404, f"method {action!r} is not supported; use one of {', '.join(_METHODS)}")
    _validate(body)
    stream = action == "streamGenerateContent"
    alt = req.query("alt") or req.query("$alt")
    options = {"model": model, "json_array": stream and alt != "sse"}
    call = Call("gemini", model, body, req.headers, stream=stream, client_key=req.client_key, options=options)
    return await execute(gw, call)


def _model_obj(name: str) -> dict[str, Any]:
    return {
        "name": f"models/{name}", "version": "001", "displayName": name, "description": f"{name} via crossroute",
        "supportedGenerationMethods": _METHODS,
    }


async def list_models(gw: Gateway, req: Request) -> Reply:
    return json_reply({"models": [_model_obj(m.id) for m in gw.registry.models()]})


async def get_model(gw: Gateway, req: Request) -> Reply:
    name = unquote(req.path_params["rest"]).removeprefix("models/")
    for m in gw.registry.models():
        if m.id.lower() == name.lower():
            return json_reply(_model_obj(m.id))
    return error_reply("gemini", 404, f"model {name!r} is not served by any configured upstream")


def is_gemini_client(req: Request) -> bool:
    h = req.headers
    return "x-goog-api-key" in h or "x-goog-api-client" in h or req.query("key") is not None
