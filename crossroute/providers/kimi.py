"""Kimi Code by a subscription account (kind ``kimi``): ``https://api.kimi.com/coding``.

Anthropic-format clients are spoken to in Anthropic Messages (``POST {base}/v1/messages``,
``/v1/messages/count_tokens``, ``anthropic-version``), every other format in OpenAI chat
completions (``POST {base}/v1/chat/completions``). Both carry ``Authorization: Bearer`` (the
account's access token, or its ``api_key``) and the account's ``X-Msh-*`` device headers: the ones
``crossroute login kimi`` stored in the file (``headers``), else made from its ``device_id``. They
name crossroute as the platform; nothing imitates Kimi's own CLI. The client's own ``User-Agent``
(and for Anthropic clients ``anthropic-beta``, ``x-app``, ``X-Claude-Code-Session-Id``) passes
through as it was sent.

Kimi's chat endpoint refuses a history its thinking models cannot continue: an assistant turn with
``tool_calls`` but no ``reasoning_content``, an empty assistant turn, a tool result without its
``tool_call_id``. ``chat_body`` repairs such histories (the latest reasoning seen, else the turn's
own text, else ``[reasoning unavailable]``; empty turns dropped; a missing id taken from
``call_id`` or from the one call still unanswered); other bodies pass unchanged, unparsed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from .. import __version__
from ..config import ProviderEntry
from .anthropic import API_VERSION, client_headers
from .base import HttpExecutor, Outbound, UpstreamError, UpstreamRequest, config_headers

__all__ = ["REASONING_UNAVAILABLE", "KimiExecutor", "chat_body", "device_headers"]

REASONING_UNAVAILABLE = "[reasoning unavailable]"

_PATHS = {("claude", "generate"): "/v1/messages", ("claude", "count_tokens"): "/v1/messages/count_tokens",
          ("openai", "generate"): "/v1/chat/completions"}


def device_headers(account: Any) -> dict[str, str]:
    """The ``X-Msh-*`` headers of a Kimi account (stored by the login, else from ``device_id``)."""
    if account is None:
        return {}
    stored = {k: v for k, v in (account.headers or {}).items() if k.lower().startswith("x-msh-")}
    if stored:
        return stored
    device_id = account.raw.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        return {}
    from ..auth.logins import kimi_headers  # the one definition of these headers (the login's)

    return kimi_headers(device_id)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        texts = [str(p.get("text", "")).strip() for p in content if isinstance(p, dict)]
        return "\n".join(t for t in texts if t)
    return ""


def _usable(reasoning: Any) -> bool:
    return isinstance(reasoning, str) and reasoning.strip() not in ("", REASONING_UNAVAILABLE)


def _empty_turn(msg: dict[str, Any]) -> bool:
    """An assistant turn with nothing in it: no calls, no reasoning, no text or other part."""
    if msg.get("tool_calls") or msg.get("function_call") or _usable(msg.get("reasoning_content")):
        return False
    content = msg.get("content")
    if content is not None and not isinstance(content, str | list):
        return False
    if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") not in (None, "text") for p in content):
        return False
    return not _text_of(content)


def chat_body(body: bytes) -> bytes:
    """A chat completions body whose history Kimi accepts (see the module docstring)."""
    if body.find(b'"assistant"') < 0 and body.find(b'"tool"') < 0:
        return body
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    messages = obj.get("messages") if isinstance(obj, dict) else None
    if not isinstance(messages, list):
        return body
    changed = False
    latest = ""
    pending: list[str] = []
    kept: list[Any] = []
    for msg in messages:
        if not isinstance(msg, dict):
            kept.append(msg)
            continue
        role = msg.get("role")
        if role == "assistant":
            if _empty_turn(msg):
                changed = True
                continue
            if _usable(msg.get("reasoning_content")):
                latest = msg["reasoning_content"]
            calls = msg.get("tool_calls")
            if isinstance(calls, list) and calls:
                if not _usable(msg.get("reasoning_content")):
                    msg = {**msg, "reasoning_content": latest or _text_of(msg.get("content")) or REASONING_UNAVAILABLE}
                    changed = True
                pending.extend(str(c["id"]) for c in calls if isinstance(c, dict) and c.get("id"))
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not call_id:
                call_id = msg.get("call_id") or (pending[0] if len(pending) == 1 else None)
                if call_id:
                    msg = {**msg, "tool_call_id": call_id}
                    changed = True
            if call_id in pending:
                pending.remove(call_id)
        kept.append(msg)
    if not changed:
        return body
    return orjson.dumps({**obj, "messages": kept})


class KimiExecutor(HttpExecutor):
    kind = "kimi"
    supports = frozenset({"generate", "count_tokens"})
    default_base_url = "https://api.kimi.com/coding"
    # the model id Kimi's documentation gives for the Kimi Code subscription
    models: ClassVar[tuple[str, ...]] = ("kimi-for-coding",)

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "claude" if client_format == "claude" else "openai"

    def _fixed(self, entry: ProviderEntry, out: Outbound) -> tuple[str, dict[str, str]]:
        key = ("kimi", out.wire, out.operation, out.stream)
        fixed = entry.derived.get(key)
        if fixed is None:
            path = _PATHS.get((out.wire, out.operation))
            if path is None:
                raise UpstreamError(400, f"Kimi has no {out.operation} endpoint for {out.wire} requests",
                                    scope="request")
            base = (entry.base_url or self.default_base_url).rstrip("/")
            headers = {"Content-Type": "application/json",
                       "Accept": "text/event-stream" if out.stream else "application/json"}
            if out.wire == "claude":
                headers["anthropic-version"] = API_VERSION
            headers.update(device_headers(entry.derived.get("account")))
            fixed = entry.derived[key] = (base + path, headers)
        return fixed  # type: ignore[no-any-return]

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        url, fixed = self._fixed(entry, out)
        headers = dict(fixed)
        if out.wire == "claude":
            client_headers(headers, out.client_headers)  # the client's user-agent among them
        if "user-agent" not in headers:
            headers["user-agent"] = out.client_headers.get("user-agent") or f"crossroute/{__version__}"
        headers["Authorization"] = "Bearer " + self.token_source(entry).token()
        if entry.headers:
            headers.update(config_headers(entry, out.client_headers))
        body = chat_body(out.body) if out.wire == "openai" else out.body
        return UpstreamRequest(url, headers, body)
