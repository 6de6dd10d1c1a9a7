"""Legacy ``/v1/completions`` on top of chat completions.

The prompt becomes one user message of a chat request; the chat answer (whole or streamed) is
turned back into ``text_completion`` objects. Reasoning text, tool calls and ``echo``/``suffix``/
``best_of`` have no place in the legacy shape and are not carried.
"""

from __future__ import annotations

from typing import Any

from .neutral import BadRequest

DEFAULT_PROMPT = "Complete this:"
# Sampling fields copied unchanged from the completions body to the chat body.
_COPIED = (
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "seed",
    "logit_bias",
    "user",
)


def _prompt_text(prompt: Any) -> str:
    if prompt is None:
        return DEFAULT_PROMPT
    if isinstance(prompt, str):
        return prompt or DEFAULT_PROMPT
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt) or DEFAULT_PROMPT
    raise BadRequest("'prompt' must be a string or an array of strings (token arrays are not supported)",
                     param="prompt")  # fmt: skip


def request_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A completions request body -> a chat completions request body."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    chat: dict[str, Any] = {
        "model": body.get("model") or "",
        "messages": [{"role": "user", "content": _prompt_text(body.get("prompt"))}],
    }
    for key in _COPIED:
        if body.get(key) is not None:
            chat[key] = body[key]
    if stream:
        chat["stream"] = True
        so = body.get("stream_options")
        if isinstance(so, dict):
            chat["stream_options"] = so
    return chat


def _choice_text(choice: dict[str, Any], key: str) -> str:
    msg = choice.get(key)
    if isinstance(msg, dict):
        content = msg.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def response_from_chat(chat: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion object -> a text_completion object."""
    choices = []
    for i, c in enumerate(chat.get("choices") or ()):
        if isinstance(c, dict):
            choices.append(
                {
                    "text": _choice_text(c, "message"),
                    "index": c.get("index", i),
                    "logprobs": None,
                    "finish_reason": c.get("finish_reason"),
                }
            )
    out: dict[str, Any] = {
        "id": chat.get("id") or "",
        "object": "text_completion",
        "created": chat.get("created") or 0,
        "model": chat.get("model") or "",
        "choices": choices,
    }
    if chat.get("system_fingerprint"):
        out["system_fingerprint"] = chat["system_fingerprint"]
    if isinstance(chat.get("usage"), dict):
        out["usage"] = chat["usage"]
    return out


class CompletionsStream:
    """Turns chat.completion.chunk dicts into text_completion chunk dicts, one at a time.

    ``convert`` returns None for chunks that carry nothing for a legacy client (role-only,
    reasoning-only or tool-call chunks); a usage chunk (``choices: []``) is kept.
    """

    __slots__ = ("model",)

    def __init__(self, model: str | None = None) -> None:
        self.model = model  # report this model name when given

    def convert(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        choices = []
        for i, c in enumerate(chunk.get("choices") or ()):
            if not isinstance(c, dict):
                continue
            text = _choice_text(c, "delta")
            finish = c.get("finish_reason")
            if not text and not finish:
                continue
            choices.append({"text": text, "index": c.get("index", i), "logprobs": None, "finish_reason": finish})
        usage = chunk.get("usage")
        if not choices and not isinstance(usage, dict):
            return None
        out: dict[str, Any] = {
            "id": chunk.get("id") or "",
            "object": "text_completion",
            "created": chunk.get("created") or 0,
            "model": self.model or chunk.get("model") or "",
            "choices": choices,
        }
        if isinstance(usage, dict):
            out["usage"] = usage
        return out
