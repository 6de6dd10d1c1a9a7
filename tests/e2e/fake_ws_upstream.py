"""A loopback Responses upstream over WebSocket that records what it receives and behaves like the
real service's WebSocket mode.

- ``GET /v1/responses`` (and ``/backend-api/codex/responses``) upgrades when ``Authorization:
  Bearer <key>`` is right (else 401 before the upgrade; ``refuse_status`` refuses every upgrade).
- Each ``response.create`` is one turn, answered with the same events as the SSE stream, one JSON
  object per text frame. A connection processes one response at a time and keeps its last response
  in memory: a turn with ``previous_response_id`` continues it only when that id is this
  connection's last response (otherwise an ``error`` event ``previous_response_not_found``, as
  ``store: false`` leaves nothing elsewhere). ``generate: false`` warms up: ``response.created``
  and ``response.completed`` with no output.
- ``limit_after``: a connection that already served that many turns answers the next with the
  connection-limit error (``websocket_connection_limit_reached``) and closes, as the service does
  at its 60-minute limit.
- The model name picks the answer: ``text`` (any unknown name), ``tools`` (a function call of the
  first function tool while the conversation has no tool output after its last user message, then
  text), ``cut`` (closes the connection after the first delta), ``failed`` (``response.failed``),
  ``ratelimited`` (an ``error`` event with status 429 before any output), ``many<N>`` (N one-word deltas),
  ``slow<ms>`` (waits before answering, and ``slow<ms>-mid`` in the middle), ``hang`` (sends
  ``response.created`` and nothing else).
- Every turn but a warm-up starts, as the service's do, with a ``codex.rate_limits`` event (before
  ``response.created``, and before an error event too): ``plan_type``, ``rate_limits`` with
  ``allowed``, ``limit_reached`` and the ``primary`` (300 min) and ``secondary`` (10080 min) windows'
  ``used_percent``, ``window_minutes``, ``reset_after_seconds`` and ``reset_at``, then
  ``code_review_rate_limits`` and ``credits``. ``used`` sets the percentages (None: no such event).
- Other client events (``response.steer``...) are acknowledged at once with ``<type>.accepted``,
  also while a response is in progress.
- Every connection is kept in ``connections``: its handshake headers, each message received (parsed)
  with its size in bytes, the turns answered and how it closed.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from ..loopback import ThreadedApp

TEXT = "Hello from the WebSocket upstream."
TOOL_TEXT = "The tool said so."
KEY = "sk-ws-upstream"
USED = {"primary": 25.0, "secondary": 40.0}  # the used_percent of each window in codex.rate_limits
PLAN = "plus"
WINDOW_MINUTES = {"primary": 300, "secondary": 10080}
RESET_AFTER = {"primary": 3600, "secondary": 5 * 86400}


@dataclass(eq=False)
class WsConn:
    headers: dict[str, str]
    path: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    turns: int = 0
    closed_by: str = ""
    opened: float = field(default_factory=time.monotonic)


class FakeWsUpstream(ThreadedApp):
    def __init__(self, key: str = KEY, *more_keys: str) -> None:
        super().__init__()
        self.key = key
        self.keys = {key, *more_keys}
        self.connections: list[WsConn] = []
        self.limit_after: int | None = None
        self.refuse_status: int | None = None
        self.used: dict[str, float] | None = dict(USED)
        self._ids = itertools.count(1)
        self._open: dict[WsConn, web.WebSocketResponse] = {}

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/responses", self._ws)
        app.router.add_get("/backend-api/codex/responses", self._ws)
        return app

    def clear(self) -> None:
        self.connections.clear()
        self.limit_after = None
        self.refuse_status = None
        self.used = dict(USED)

    def drop_all(self) -> None:
        """Close every open connection from this side (as a service restart or an idle cut does)."""
        async def close() -> None:
            for conn, ws in list(self._open.items()):
                conn.closed_by = "upstream (dropped)"
                await ws.close(code=1001, message=b"going away")

        self.call(close())

    def creates(self) -> list[dict[str, Any]]:
        """Every response.create received, in order, over all connections."""
        return [m for c in self.connections for m in c.messages if m.get("type") == "response.create"]

    def open_connections(self) -> int:
        return sum(1 for c in self.connections if not c.closed_by)

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_status is not None:
            return web.json_response({"error": {"message": "no websockets here"}}, status=self.refuse_status)
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.keys:
            err = {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}
            return web.json_response({"error": err}, status=401)
        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024, autoping=True)
        await ws.prepare(request)
        conn = WsConn(dict(request.headers), request.path)
        self.connections.append(conn)
        self._open[conn] = ws
        memory: dict[str, Any] = {}  # {"id": last response id, "items": its full context}
        running: asyncio.Task[bool] | None = None  # the turn in progress (one at a time)

        async def one(body: dict[str, Any]) -> bool:
            if self.limit_after is not None and conn.turns >= self.limit_after:
                await self._error(ws, 400, "websocket_connection_limit_reached",
                                  "Responses websocket connection limit reached (60 minutes). Create a new "
                                  "websocket connection to continue.")
                conn.closed_by = "upstream (limit)"
                await ws.close()
                return False
            conn.turns += 1
            if not await self._turn(ws, conn, body, memory):
                conn.closed_by = conn.closed_by or "upstream (cut)"
                await ws.close(code=1011, message=b"cut")
                return False
            return True

        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                raw = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    await self._error(ws, 400, "invalid_json", "message is not JSON")
                    continue
                conn.messages.append(body)
                conn.sizes.append(len(raw))
                if body.get("type") != "response.create":  # e.g. response.steer: acknowledged at once
                    await ws.send_str(orjson.dumps({"type": f"{body.get('type')}.accepted",
                                                    "in_progress": running is not None and not running.done()
                                                    }).decode())
                    continue
                if running is not None and not await running:
                    break
                running = asyncio.get_running_loop().create_task(one(body))
            if running is not None and not running.done():
                running.cancel()
        finally:
            self._open.pop(conn, None)
            if not conn.closed_by:
                conn.closed_by = "client"
        return ws

    @staticmethod
    async def _error(ws: web.WebSocketResponse, status: int, code: str, message: str,
                     param: str | None = None) -> None:
        await ws.send_str(orjson.dumps({"type": "error", "status": status, "error": {
            "type": "invalid_request_error", "code": code, "message": message, "param": param}}).decode())

    def rate_limits_event(self) -> dict[str, Any] | None:
        """The ``codex.rate_limits`` event a turn starts with (None when ``used`` is None)."""
        if self.used is None:
            return None
        now = int(time.time())
        windows = {name: {"used_percent": pct, "window_minutes": WINDOW_MINUTES[name],
                          "reset_after_seconds": RESET_AFTER[name], "reset_at": now + RESET_AFTER[name]}
                   for name, pct in self.used.items()}
        reached = any(pct >= 100 for pct in self.used.values())
        return {"type": "codex.rate_limits", "plan_type": PLAN,
                "rate_limits": {"allowed": not reached, "limit_reached": reached, **windows},
                "code_review_rate_limits": None,
                "credits": {"has_credits": False, "unlimited": False, "balance": None}}

    async def _turn(self, ws: web.WebSocketResponse, conn: WsConn, body: dict[str, Any], memory: dict[str, Any]
                    ) -> bool:
        """Answer one response.create; False: close the connection now."""
        if body.get("generate") is not False and (limits := self.rate_limits_event()) is not None:
            await ws.send_str(orjson.dumps(limits).decode())
        prev = body.get("previous_response_id")
        items = body.get("input") or []
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": items}]
        if prev:
            if prev != memory.get("id"):
                await self._error(ws, 400, "previous_response_not_found",
                                  f"Previous response with id '{prev}' not found.", "previous_response_id")
                return True
            context = [*memory["items"], *items]
        else:
            context = list(items)
        model = str(body.get("model") or "text")
        if model == "ratelimited":  # refused before any output, as the service's rate limit is
            await self._error(ws, 429, "rate_limit_exceeded", "Rate limit reached for requests. Try again in 20s.")
            return True
        rid = f"resp_ws{next(self._ids):06d}"
        seq = itertools.count()
        base = {"id": rid, "object": "response", "created_at": int(time.time()), "model": model,
                "previous_response_id": prev, "store": False, "tools": body.get("tools") or [], "output": []}

        async def send(obj: dict[str, Any]) -> None:
            obj["sequence_number"] = next(seq)
            await ws.send_str(orjson.dumps(obj).decode())

        delay, mid = 0.0, False
        if model.startswith("slow"):
            spec = model[4:]
            mid = spec.endswith("-mid")
            delay = int(spec.removesuffix("-mid") or 500) / 1000
            if not mid:
                await asyncio.sleep(delay)
        await send({"type": "response.created", "response": {**base, "status": "in_progress"}})
        if model == "hang":  # nothing more (the client's close cancels this)
            await asyncio.sleep(60)
            return False
        if body.get("generate") is False:
            memory.update(id=rid, items=context)
            await send({"type": "response.completed",
                        "response": {**base, "status": "completed", "usage": _usage(0, 0)}})
            return True
        await send({"type": "response.in_progress", "response": {**base, "status": "in_progress"}})
        if model == "failed":
            await send({"type": "response.failed", "response": {**base, "status": "failed", "error": {
                "code": "server_error", "message": "The model failed to answer."}}})
            memory.clear()
            return True
        tool = _tool_to_call(body, context) if model.startswith("tools") else None
        if tool is not None:
            item: dict[str, Any] = {"id": f"fc_{rid}", "type": "function_call", "status": "completed",
                                    "call_id": f"call_{rid}", "name": tool, "arguments": '{"city":"Paris"}'}
            await send({"type": "response.output_item.added", "output_index": 0,
                        "item": {**item, "status": "in_progress", "arguments": ""}})
            await send({"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": item["id"],
                        "delta": item["arguments"]})
            await send({"type": "response.function_call_arguments.done", "output_index": 0, "item_id": item["id"],
                        "arguments": item["arguments"]})
        else:
            text = TOOL_TEXT if model.startswith("tools") else TEXT
            item = {"id": f"msg_{rid}", "type": "message", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
            await send({"type": "response.output_item.added", "output_index": 0,
                        "item": {**item, "status": "in_progress", "content": []}})
            await send({"type": "response.content_part.added", "output_index": 0, "item_id": item["id"],
                        "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})
            if model.startswith("many"):  # that many deltas, one word each
                words = [f"w{i} " for i in range(int(model[4:] or 100))]
                text = "".join(words)
                item["content"][0]["text"] = text
                for w in words[:-1]:
                    await send({"type": "response.output_text.delta", "output_index": 0, "item_id": item["id"],
                                "content_index": 0, "delta": w})
                text, words = words[-1], []  # the last word goes as the second half below
                full_text = item["content"][0]["text"]
            else:
                full_text = text
            half = len(text) // 2
            await send({"type": "response.output_text.delta", "output_index": 0, "item_id": item["id"],
                        "content_index": 0, "delta": text[:half]})
            if model == "cut":
                return False
            if mid:
                await asyncio.sleep(delay)
            await send({"type": "response.output_text.delta", "output_index": 0, "item_id": item["id"],
                        "content_index": 0, "delta": text[half:]})
            await send({"type": "response.output_text.done", "output_index": 0, "item_id": item["id"],
                        "content_index": 0, "text": full_text})
            await send({"type": "response.content_part.done", "output_index": 0, "item_id": item["id"],
                        "content_index": 0, "part": item["content"][0]})
        await send({"type": "response.output_item.done", "output_index": 0, "item": item})
        cached = 10 * len(memory.get("items") or []) if prev else 0
        await send({"type": "response.completed", "response": {**base, "status": "completed", "output": [item],
                                                               "usage": _usage(10 * len(context), 7, cached)}})
        memory.update(id=rid, items=[*context, item])
        return True


def _usage(inp: int, out: int, cached: int = 0) -> dict[str, Any]:
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": inp + out}


def _tool_to_call(body: dict[str, Any], context: list[Any]) -> str | None:
    """The first function tool, unless a tool output came after the last user message."""
    names = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    if not names:
        return None
    for item in reversed(context):
        if not isinstance(item, dict):
            continue
        if item.get("type") in ("function_call_output", "custom_tool_call_output"):
            return None
        if item.get("role") == "user":
            break
    return str(names[0])
