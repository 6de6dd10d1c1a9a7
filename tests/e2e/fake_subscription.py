"""Fakes of the two subscription inference services, strict and rude like the real ones.

One aiohttp server on 127.0.0.1 (own thread and loop) with:

- Anthropic with an OAuth token: ``POST /v1/messages`` and ``/v1/messages/count_tokens``. It needs
  ``Authorization: Bearer <a token it issued>`` (an expired one: 401 ``authentication_error``), the
  OAuth beta flag in ``anthropic-beta`` (else 401 "OAuth authentication is currently not
  supported."), ``anthropic-version``, no ``x-api-key``, a body with ``model`` (a known one, else
  404), ``max_tokens`` and ``messages``. Answers carry the unified rate-limit headers
  (``anthropic-ratelimit-unified-{5h,7d}-{utilization,reset,status}``); SSE events come cut at odd
  byte offsets; whole answers are gzip-compressed when the client accepts it. With
  ``claude_code_only`` it refuses a system prompt that is not Claude Code's, with the message third
  parties report for tokens scoped to Claude Code (crossroute must not rewrite the prompt to pass).
- Codex with a ChatGPT token: ``POST /backend-api/codex/responses`` and ``/responses/compact``. It
  needs the Bearer token, ``ChatGPT-Account-ID`` of that account, ``stream: true`` and
  ``store: false`` (400 ``{"detail": ...}`` otherwise, as the service answers), ``instructions``,
  no ``max_output_tokens``, tool names of at most 64 characters, a model a ChatGPT sign-in may use.
  It streams only, sends ``x-codex-*`` usage headers and a ``codex.rate_limits`` event, leaves
  ``response.completed``'s ``output`` empty (the items come in ``response.output_item.done``), and
  calls the first function tool by the name it was given when the input has no tool output yet.

``fail_next[service]`` (``"claude"`` / ``"codex"``) lists scenarios to answer first: ``"429"`` (the
usage limit, with its reset), ``"failed"`` (Codex: a ``response.failed`` event in a 200 stream),
``"overloaded"`` (Claude: 529), ``"echo"`` (Claude: a 400 that repeats the Authorization header).
Tokens in ``expired`` are answered 401 the way each service says a token expired.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from ..loopback import ThreadedApp

CLAUDE_TOKEN = "sk-ant-oat01-fake-claude-access-0123456789"
CODEX_TOKEN = "codex-fake-access-token-0123456789abcdef"
CODEX_ACCOUNT = "acct-fake-0001"
OAUTH_BETA = "oauth-2025-04-20"
CLAUDE_MODELS = frozenset({"claude-sonnet-4-6", "claude-opus-4-7", "claude-haiku-4-5", "claude-sonnet-5-5"})
CODEX_MODELS = frozenset({"gpt-5.5", "gpt-5.4", "gpt-5.4-mini", "gpt-5.3-codex"})
CLAUDE_CODE_PROMPT = "You are Claude Code"
TEXT = "Hello from the subscription fake."
RESET_IN = 120


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _cut(data: bytes, sizes: tuple[int, ...] = (7, 61, 3, 130, 1)) -> list[bytes]:
    """``data`` in pieces of odd sizes (a stream cut anywhere: inside lines, names, JSON)."""
    parts: list[bytes] = []
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        parts.append(data[i:i + n])
        i += n
        k += 1
    return parts


class FakeSubscription(ThreadedApp):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.claude_tokens = {CLAUDE_TOKEN}
        self.codex_tokens = {CODEX_TOKEN}
        self.expired: set[str] = set()
        self.account_id = CODEX_ACCOUNT
        self.claude_code_only = False
        self.fail_next: dict[str, list[str]] = {"claude": [], "codex": []}

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count)
        app.router.add_post("/backend-api/codex/responses", self._responses)
        app.router.add_post("/backend-api/codex/responses/compact", self._compact)
        return app

    @property
    def codex_base(self) -> str:
        return f"{self.base}/backend-api/codex"

    def clear(self) -> None:
        self.requests.clear()
        self.fail_next = {"claude": [], "codex": []}
        self.claude_code_only = False

    def last(self, service: str) -> dict[str, Any]:
        return [r for r in self.requests if r["service"] == service][-1]

    async def _record(self, request: web.Request, service: str) -> tuple[dict[str, Any], Any]:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        rec = {"service": service, "path": request.path, "query": request.query_string,
               "headers": {k.lower(): v for k, v in request.headers.items()}, "body": body, "raw": raw}
        self.requests.append(rec)
        return rec, body

    # ------------------------------------------------------------------ Anthropic
    def _claude_headers(self, rejected: bool = False) -> dict[str, str]:
        reset = str(int(time.time()) + RESET_IN)
        week = str(int(time.time()) + 7 * 86400)
        status = "rejected" if rejected else "allowed"
        return {
            "request-id": "req_" + uuid.uuid4().hex[:24],
            "anthropic-ratelimit-unified-status": status,
            "anthropic-ratelimit-unified-reset": reset,
            "anthropic-ratelimit-unified-representative-claim": "five_hour",
            "anthropic-ratelimit-unified-5h-utilization": "1.0" if rejected else "0.25",
            "anthropic-ratelimit-unified-5h-reset": reset,
            "anthropic-ratelimit-unified-5h-status": status,
            "anthropic-ratelimit-unified-7d-utilization": "0.4",
            "anthropic-ratelimit-unified-7d-reset": week,
            "anthropic-ratelimit-unified-7d-status": "allowed",
        }

    def _claude_error(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
                      ) -> web.Response:
        body = {"type": "error", "error": {"type": kind, "message": message},
                "request_id": "req_" + uuid.uuid4().hex[:24]}
        return web.json_response(body, status=status, headers={**self._claude_headers(), **(headers or {})})

    def _claude_check(self, rec: dict[str, Any], body: Any, count: bool) -> web.Response | None:
        h = rec["headers"]
        if "x-api-key" in h:
            return self._claude_error(401, "authentication_error", "invalid x-api-key")
        auth = h.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if not token:
            return self._claude_error(401, "authentication_error", "x-api-key header is required")
        if token in self.expired:
            return self._claude_error(401, "authentication_error", "OAuth token has expired. Please obtain a new "
                                      "token or refresh your existing token.")
        if token not in self.claude_tokens:
            return self._claude_error(401, "authentication_error", "Invalid bearer token")
        betas = [b.strip() for b in h.get("anthropic-beta", "").split(",")]
        if OAUTH_BETA not in betas:
            return self._claude_error(401, "authentication_error", "OAuth authentication is currently not supported.")
        if len(betas) != len(set(betas)):
            return self._claude_error(400, "invalid_request_error", "anthropic-beta: duplicate beta flags")
        if h.get("anthropic-version") != "2023-06-01":
            return self._claude_error(400, "invalid_request_error", "anthropic-version: header is required")
        if not isinstance(body, dict):
            return self._claude_error(400, "invalid_request_error", "There was an issue with the body: not JSON")
        for field in ("model", "messages") if count else ("model", "max_tokens", "messages"):
            if field not in body:
                return self._claude_error(400, "invalid_request_error", f"{field}: Field required")
        if body["model"] not in CLAUDE_MODELS:
            return self._claude_error(404, "not_found_error", f"model: {body['model']}")
        if self.claude_code_only and not count:
            system = body.get("system")
            first = system if isinstance(system, str) else (
                system[0].get("text", "") if isinstance(system, list) and system and isinstance(system[0], dict)
                else "")
            if not first.startswith(CLAUDE_CODE_PROMPT):
                return self._claude_error(400, "invalid_request_error", "This credential is only authorized for use "
                                          "with Claude Code and cannot be used for other API requests.")
        return None

    async def _count(self, request: web.Request) -> web.Response:
        rec, body = await self._record(request, "claude")
        problem = self._claude_check(rec, body, count=True)
        if problem is not None:
            return problem
        return web.json_response({"input_tokens": 17}, headers=self._claude_headers())

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        rec, body = await self._record(request, "claude")
        problem = self._claude_check(rec, body, count=False)
        if problem is not None:
            return problem
        if self.fail_next["claude"]:
            scenario = self.fail_next["claude"].pop(0)
            if scenario == "429":
                return self._claude_error(429, "rate_limit_error",
                                          "This request would exceed your account's rate limit.",
                                          {**self._claude_headers(rejected=True), "retry-after": str(RESET_IN)})
            if scenario == "overloaded":
                return self._claude_error(529, "overloaded_error", "Overloaded")
            if scenario == "echo":  # an upstream that repeats the credential in its error
                return self._claude_error(400, "invalid_request_error",
                                          f"bad request for {rec['headers'].get('authorization')}")
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
        answered = any(isinstance(b, dict) and b.get("type") == "tool_result"
                       for m in body["messages"] if isinstance(m.get("content"), list) for b in m["content"])
        call = tools[0]["name"] if tools and not answered else None
        msg_id = "msg_" + uuid.uuid4().hex[:24]
        usage = {"input_tokens": 21, "output_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if call:
            block: dict[str, Any] = {"type": "tool_use", "id": "toolu_01Fake", "name": call, "input": {"q": "x"}}
        else:
            block = {"type": "text", "text": TEXT}
        if not body.get("stream"):
            answer = {"id": msg_id, "type": "message", "role": "assistant", "model": body["model"], "content": [block],
                      "stop_reason": "tool_use" if call else "end_turn", "stop_sequence": None, "usage": usage}
            return self._json(request, answer, self._claude_headers())
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache", **self._claude_headers()})
        await resp.prepare(request)
        events = [_sse("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": body["model"], "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}})]
        if call:
            events.append(_sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
                **block, "input": {}}}))
            events.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                "type": "input_json_delta", "partial_json": '{"q": "x"}'}}))
        else:
            events.append(_sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
                "type": "text", "text": ""}}))
            events.append(b"event: ping\ndata: {\"type\": \"ping\"}\n\n")
            for piece in (TEXT[:9], TEXT[9:]):
                events.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                    "type": "text_delta", "text": piece}}))
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        events.append(_sse("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": "tool_use" if call else "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 9}}))
        events.append(_sse("message_stop", {"type": "message_stop"}))
        for part in _cut(b"".join(events)):
            await resp.write(part)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    def _json(self, request: web.Request, obj: Any, headers: dict[str, str]) -> web.Response:
        data = orjson.dumps(obj)
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=gzip.compress(data), headers={**headers, "Content-Type": "application/json",
                                                                    "Content-Encoding": "gzip"})
        return web.Response(body=data, headers={**headers, "Content-Type": "application/json"})

    # ------------------------------------------------------------------ Codex
    def _codex_headers(self, used: float = 12.0) -> dict[str, str]:
        now = int(time.time())
        return {
            "x-request-id": uuid.uuid4().hex,
            "x-codex-plan-type": "plus",
            "x-codex-primary-used-percent": str(used),
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-at": str(now + RESET_IN),
            "x-codex-secondary-used-percent": "30.0",
            "x-codex-secondary-window-minutes": "10080",
            "x-codex-secondary-reset-at": str(now + 7 * 86400),
        }

    @staticmethod
    def _detail(status: int, detail: str) -> web.Response:
        return web.json_response({"detail": detail}, status=status)

    def _codex_check(self, rec: dict[str, Any], body: Any, compact: bool) -> web.Response | None:
        h = rec["headers"]
        auth = h.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if token in self.expired:
            return web.json_response({"error": {"message": "Provided authentication token is expired. Please try "
                                                "signing in again.", "type": None, "code": "token_expired"}},
                                     status=401)
        if token not in self.codex_tokens:
            return web.json_response({"detail": "Could not parse your authentication token. Please try signing in "
                                      "again."}, status=401)
        if h.get("chatgpt-account-id") != self.account_id:
            return self._detail(403, "Missing or mismatched ChatGPT-Account-ID for this token")
        if not isinstance(body, dict):
            return self._detail(400, "Invalid JSON body")
        if not compact:
            if body.get("stream") is not True:
                return self._detail(400, "Stream must be set to true")
            if body.get("store") is not False:
                return self._detail(400, "Store must be set to false")
        if "instructions" not in body:
            return self._detail(400, "Instructions are required")
        if "max_output_tokens" in body:
            return self._detail(400, "Unsupported parameter: max_output_tokens")
        if body.get("model") not in CODEX_MODELS:
            return self._detail(400, f"The '{body.get('model')}' model is not supported when using Codex with a "
                                     "ChatGPT account.")
        for i, tool in enumerate(body.get("tools") or []):
            name = tool.get("name") if isinstance(tool, dict) else None
            if isinstance(name, str) and len(name) > 64:
                return web.json_response({"error": {
                    "message": f"Invalid 'tools[{i}].name': string too long. Expected a string with maximum length "
                               f"64, but got a string with length {len(name)} instead.",
                    "type": "invalid_request_error", "param": f"tools[{i}].name", "code": "string_above_max_length"}},
                    status=400)
        return None

    async def _compact(self, request: web.Request) -> web.Response:
        rec, body = await self._record(request, "codex")
        problem = self._codex_check(rec, body, compact=True)
        if problem is not None:
            return problem
        out = [i for i in body.get("input") or [] if isinstance(i, dict) and i.get("type") == "function_call"]
        out.append({"type": "compaction", "id": "cmp_1", "encrypted_content": "gAAAAfake"})
        return self._json(request, {"id": "resp_cmp_" + uuid.uuid4().hex[:8], "object": "response.compaction",
                                    "created_at": int(time.time()), "output": out,
                                    "usage": {"input_tokens": 30, "output_tokens": 4, "total_tokens": 34}},
                          self._codex_headers())

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        rec, body = await self._record(request, "codex")
        problem = self._codex_check(rec, body, compact=False)
        if problem is not None:
            return problem
        scenario = self.fail_next["codex"].pop(0) if self.fail_next["codex"] else None
        if scenario == "429":
            now = int(time.time())
            return web.json_response({"error": {"type": "usage_limit_reached", "message": "The usage limit has been "
                                                "reached", "plan_type": "plus", "resets_at": now + RESET_IN,
                                                "resets_in_seconds": RESET_IN}},
                                     status=429, headers=self._codex_headers(used=100.0))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **self._codex_headers()})
        await resp.prepare(request)
        rid = "resp_" + uuid.uuid4().hex[:16]
        base = {"id": rid, "object": "response", "created_at": int(time.time()), "model": body["model"],
                "status": "in_progress", "output": [], "store": False, "tools": body.get("tools") or []}
        seq = iter(range(1000))
        events = [_sse("response.created", {"type": "response.created", "sequence_number": next(seq),
                                            "response": base}),
                  _sse("codex.rate_limits", {"type": "codex.rate_limits", "plan_type": "plus", "rate_limits": {
                      "primary": {"used_percent": 12.0, "window_minutes": 300, "reset_at": int(time.time()) + RESET_IN},
                      "secondary": {"used_percent": 30.0, "window_minutes": 10080,
                                    "reset_at": int(time.time()) + 7 * 86400}}})]
        if scenario == "failed":
            events.append(_sse("response.failed", {"type": "response.failed", "sequence_number": next(seq),
                                                   "response": {**base, "status": "failed", "error": {
                                                       "code": "server_error",
                                                       "message": "An error occurred while processing your "
                                                                  "request."}}}))
            for part in _cut(b"".join(events)):
                await resp.write(part)
            await resp.write_eof()
            return resp
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
        items = body.get("input") if isinstance(body.get("input"), list) else []
        answered = any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in items)
        if tools and not answered:
            item: dict[str, Any] = {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
                                    "name": tools[0]["name"], "arguments": '{"q":"x"}'}
            events.append(_sse("response.output_item.added", {
                "type": "response.output_item.added", "sequence_number": next(seq), "output_index": 0,
                "item": {**item, "status": "in_progress", "arguments": ""}}))
            events.append(_sse("response.function_call_arguments.delta", {
                "type": "response.function_call_arguments.delta", "sequence_number": next(seq), "output_index": 0,
                "item_id": "fc_1", "delta": '{"q":"x"}'}))
            events.append(_sse("response.function_call_arguments.done", {
                "type": "response.function_call_arguments.done", "sequence_number": next(seq), "output_index": 0,
                "item_id": "fc_1", "name": tools[0]["name"], "arguments": '{"q":"x"}'}))
        else:
            item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": TEXT, "annotations": []}]}
            events.append(_sse("response.output_item.added", {
                "type": "response.output_item.added", "sequence_number": next(seq), "output_index": 0,
                "item": {**item, "status": "in_progress", "content": []}}))
            events.append(_sse("response.content_part.added", {
                "type": "response.content_part.added", "sequence_number": next(seq), "output_index": 0,
                "item_id": "msg_1", "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}))
            for piece in (TEXT[:6], TEXT[6:]):
                events.append(_sse("response.output_text.delta", {
                    "type": "response.output_text.delta", "sequence_number": next(seq), "output_index": 0,
                    "item_id": "msg_1", "content_index": 0, "delta": piece}))
            events.append(_sse("response.output_text.done", {
                "type": "response.output_text.done", "sequence_number": next(seq), "output_index": 0,
                "item_id": "msg_1", "content_index": 0, "text": TEXT}))
        events.append(_sse("response.output_item.done", {"type": "response.output_item.done",
                                                         "sequence_number": next(seq), "output_index": 0,
                                                         "item": item}))
        usage = {"input_tokens": 40, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 8,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 48}
        # the service's final event may leave ``output`` empty: the items were in output_item.done
        events.append(_sse("response.completed", {"type": "response.completed", "sequence_number": next(seq),
                                                  "response": {**base, "status": "completed", "usage": usage}}))
        for part in _cut(b"".join(events)):
            await resp.write(part)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp
