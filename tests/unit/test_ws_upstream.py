"""The WebSocket upstream (crossroute/providers/ws_upstream.py): what a turn tells the quota book
(``codex.rate_limits`` events, usage-limit failures, one answer per turn), and the service's leading
``codex.rate_limits`` events read past when looking at a turn's first event."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson

from crossroute.providers.ws_upstream import MAX_LEADING, QuotaFeed, WsExecutor, WsUpstream

LIMITS = {"type": "codex.rate_limits", "plan_type": "plus",
          "rate_limits": {"allowed": True, "limit_reached": False,
                          "primary": {"used_percent": 25.0, "window_minutes": 300, "reset_at": 1770690000}}}
CREATED = {"type": "response.created", "response": {"id": "resp_1", "output": []}}
USAGE_LIMIT = {"type": "response.failed", "response": {"id": "resp_1", "error": {
    "type": "usage_limit_reached", "code": "usage_limit_reached", "message": "The usage limit has been reached",
    "resets_in_seconds": 60}}}


class Book:
    """A quota book that records what it is told."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail

    def account(self, cred_id: str) -> None:
        self.calls.append(("account", cred_id))

    def note(self, entry: Any, status: int, headers: Any) -> None:
        self.calls.append(("note", status, dict(headers)))

    def note_event(self, entry: Any, event: dict[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("the book is broken")
        self.calls.append(("note_event", event["type"]))

    def note_error(self, entry: Any, status: int, body: bytes) -> None:
        self.calls.append(("note_error", status, orjson.loads(body)["type"]))


ENTRY = SimpleNamespace(name="codex-ws.json")


def text(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj).decode()


class FakeWs:
    def __init__(self, *messages: str) -> None:
        self.messages = deque(messages)
        self.close_code = None

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:  # noqa: ASYNC109 (aiohttp's signature)
        if not self.messages:
            return aiohttp.WSMessage(aiohttp.WSMsgType.CLOSED, None, None)
        return aiohttp.WSMessage(aiohttp.WSMsgType.TEXT, self.messages.popleft(), None)


class Pool:
    def __init__(self) -> None:
        self.released: list[bool] = []

    def release(self, conn: Any, reuse: bool) -> None:
        self.released.append(reuse)


IO = SimpleNamespace(settings=SimpleNamespace(read_timeout=5.0))


def test_feed_hands_events_and_usage_limits_to_the_book() -> None:
    book = Book()
    feed = QuotaFeed(book, ENTRY, "auth:codex-ws.json")
    feed(LIMITS, text(LIMITS))
    feed(USAGE_LIMIT, text(USAGE_LIMIT))
    feed(CREATED, text(CREATED))  # nothing to say
    feed.turn()
    assert book.calls == [("account", "auth:codex-ws.json"), ("note_event", "codex.rate_limits"),
                          ("account", "auth:codex-ws.json"), ("note_error", 429, "response.failed"),
                          ("account", "auth:codex-ws.json"), ("note", 200, {})]


def test_a_broken_book_never_breaks_the_turn() -> None:
    QuotaFeed(Book(fail=True), ENTRY, "c")(LIMITS, text(LIMITS))
    QuotaFeed(object(), ENTRY, "c")(LIMITS, text(LIMITS))  # a book that takes nothing
    QuotaFeed(object(), ENTRY, "c").turn()


def test_first_event_is_read_past_leading_rate_limits() -> None:
    book = Book()
    feed = QuotaFeed(book, ENTRY, "c")
    error = {"type": "error", "status": 400, "error": {"code": "previous_response_not_found", "message": "gone"}}
    conn = SimpleNamespace(ws=FakeWs(text(LIMITS), text(LIMITS), text(error)))
    got = asyncio.run(WsExecutor._first(conn, IO, feed))  # type: ignore[arg-type]
    assert [orjson.loads(m)["type"] for m in got] == ["codex.rate_limits", "codex.rate_limits", "error"]
    assert [c for c in book.calls if c[0] == "note_event"] == [("note_event", "codex.rate_limits")] * 2
    # bounded: past MAX_LEADING such events the next one counts as the first event
    conn = SimpleNamespace(ws=FakeWs(*[text(LIMITS)] * (MAX_LEADING + 3)))
    got = asyncio.run(WsExecutor._first(conn, IO, None))  # type: ignore[arg-type]
    assert len(got) == MAX_LEADING + 1


def test_turn_feeds_each_event_once_and_passes_it_on() -> None:
    """Leading events (noted by ``_first``) are framed without noting them again; those read later
    are noted as they come, and a usage-limit failure goes to note_error."""
    book = Book()
    feed = QuotaFeed(book, ENTRY, "c")
    conn = SimpleNamespace(ws=FakeWs(text(LIMITS), text(USAGE_LIMIT)), memory=None, last_response_id=None)
    pool = Pool()

    async def read_all() -> list[bytes]:
        nonlocal up
        up = WsUpstream(pool, conn, None, [text(LIMITS), text(CREATED)], "up", 5.0, 1 << 20, {}, feed)  # type: ignore[arg-type]
        out = []
        while chunk := await up.read_chunk():
            out.append(chunk)
        return out

    up: Any = None
    chunks = asyncio.run(read_all())
    assert [c.split(b"\n", 1)[0] for c in chunks] == [b"event: codex.rate_limits", b"event: response.created",
                                                       b"event: codex.rate_limits", b"event: response.failed"]
    kinds = [c[0] for c in book.calls if c[0] != "account"]
    assert kinds == ["note_event", "note_error"]
    up.close(True)
    assert pool.released == [False]  # a failed turn's connection is not reused


# ------------------------------------------------------------------ a turn that sends only its new items
HISTORY = [{"type": "message", "role": "user", "content": "one"},
           {"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]}]
NEW = [{"type": "message", "role": "user", "content": "two"}]


class SendWs(FakeWs):
    def __init__(self) -> None:
        done = {"type": "response.completed", "response": {"id": "resp_2", "output": []}}
        super().__init__(text(CREATED), text(done))
        self.sent: list[dict[str, Any]] = []
        self._response = SimpleNamespace(headers={})

    async def send_str(self, data: str) -> None:
        self.sent.append(orjson.loads(data))


class OnePool:
    """Hands out one connection (its memory as given) and records how it comes back."""

    def __init__(self, memory: list[Any] | None, last_id: str | None) -> None:
        self.conn = SimpleNamespace(ws=SendWs(), memory=memory, last_response_id=last_id, turns=1)
        self.released: list[bool] = []

    async def acquire(self, key: Any, cred: str, dial: Any) -> Any:
        return self.conn

    def release(self, conn: Any, reuse: bool) -> None:
        self.released.append(reuse)


class Inner:
    kind = "codex"
    supports = frozenset({"generate"})

    def __init__(self) -> None:
        self.http: list[dict[str, Any]] = []

    def build(self, entry: Any, out: Any) -> Any:
        return SimpleNamespace(url="https://up.example/v1/responses", headers={"Authorization": "Bearer k"})

    async def send(self, entry: Any, out: Any, io: Any) -> Any:
        self.http.append(orjson.loads(out.body))
        return "http answer"


class Refusing(dict[str, Any]):
    def get(self, *a: Any) -> Any:
        raise AssertionError("the session's history was read")


def turn_with(pool: OnePool, contexts: Any, inner: Inner | None = None) -> tuple[Any, Inner]:
    from crossroute.providers import ws_upstream
    from crossroute.providers.base import Outbound

    inner = inner or Inner()
    executor = WsExecutor(inner)  # type: ignore[arg-type]
    io = SimpleNamespace(settings=SimpleNamespace(read_timeout=5.0, max_upstream_body=1 << 20, connect_timeout=1.0,
                                                  proxy_url=None),
                         quota=None, component=lambda name, cls: pool)
    entry = SimpleNamespace(derived={}, id="cred-1", name="up", proxy_url=None)
    headers = {ws_upstream.SESSION_HEADER: "sess-1", ws_upstream.SUFFIX_HEADER: f"resp_1 {len(HISTORY)}"}
    body = orjson.dumps({"model": "m", "input": NEW, "stream": True})
    ws_upstream.CONTEXTS["sess-1"] = contexts
    try:
        up = asyncio.run(executor.send(entry, Outbound("generate", "responses", "m", body, True, headers), io))
    finally:
        ws_upstream.CONTEXTS.pop("sess-1", None)
    return up, inner


def test_new_items_go_alone_on_the_connection_that_holds_the_history() -> None:
    pool = OnePool(list(HISTORY), "resp_1")
    up, _ = turn_with(pool, Refusing())  # the history is never looked up, parsed or written
    (msg,) = pool.conn.ws.sent
    assert msg["type"] == "response.create" and msg["input"] == NEW and msg["previous_response_id"] == "resp_1"
    assert isinstance(up, WsUpstream)


def test_a_connection_without_that_history_gets_the_turn_in_full() -> None:
    pool = OnePool(None, None)
    turn_with(pool, {"resp_1": HISTORY})
    (msg,) = pool.conn.ws.sent
    assert msg["input"] == [*HISTORY, *NEW] and "previous_response_id" not in msg
    pool = OnePool([{"type": "message", "role": "user", "content": "other"}], "resp_0")  # another history
    turn_with(pool, {"resp_1": HISTORY})
    assert pool.conn.ws.sent[0]["input"] == [*HISTORY, *NEW] and "previous_response_id" not in pool.conn.ws.sent[0]
    pool = OnePool([HISTORY[0]], "resp_0")  # a prefix of it: what follows, as before
    turn_with(pool, {"resp_1": HISTORY})
    (msg,) = pool.conn.ws.sent
    assert msg["input"] == [HISTORY[1], *NEW] and msg["previous_response_id"] == "resp_0"


def test_http_fallback_and_a_gone_session() -> None:
    import pytest

    from crossroute.providers.base import UpstreamError

    pool = OnePool(None, None)
    inner = Inner()

    async def refuse(*a: Any) -> Any:
        raise UpstreamError(405, "no websockets")

    pool.acquire = refuse  # type: ignore[method-assign]
    up, inner = turn_with(pool, {"resp_1": HISTORY}, inner)
    assert up == "http answer" and inner.http[0]["input"] == [*HISTORY, *NEW]
    with pytest.raises(UpstreamError) as err:
        turn_with(OnePool(None, None), {})
    assert err.value.status == 500 and err.value.scope == "request"


class HangingWs(FakeWs):
    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:  # noqa: ASYNC109
        await asyncio.sleep(60)
        raise AssertionError("not reached")


def test_a_read_waits_at_most_the_read_timeout() -> None:
    """One timer per turn: a message that does not come within the timeout is a TimeoutError (the
    connection is not reused) and the task is not left cancelled; steady messages never time out."""
    async def main() -> None:
        conn = SimpleNamespace(ws=HangingWs(), memory=None, last_response_id=None)
        pool = Pool()
        up = WsUpstream(pool, conn, None, [text(CREATED)], "up", 0.1, 1 << 20, {})  # type: ignore[arg-type]
        assert (await up.read_chunk()).startswith(b"event: response.created")
        t0 = time.monotonic()
        try:
            await up.read_chunk()
        except TimeoutError as exc:
            assert "sent nothing for 0.1 s" in str(exc)
        else:
            raise AssertionError("no timeout")
        assert 0.09 <= time.monotonic() - t0 < 1.0
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # not left cancelled (an outer timeout still works)
        await asyncio.sleep(0)
        up.close(True)
        assert pool.released == [False]

        class Slow(FakeWs):  # a message every 0.06 s, a timeout of 0.1 s: never stalled
            async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:  # noqa: ASYNC109
                await asyncio.sleep(0.06)
                return await super().receive()

        events = [text({"type": "response.output_text.delta", "delta": "x"})] * 4
        conn = SimpleNamespace(ws=Slow(*events, text({"type": "response.completed", "response": {"id": "r"}})),
                               memory=None, last_response_id=None)
        up = WsUpstream(Pool(), conn, None, [text(CREATED)], "up", 0.1, 1 << 20, {})  # type: ignore[arg-type]
        n = 0
        while await up.read_chunk():
            n += 1
        assert n == 6 and up._watch is None
        up.close(True)

    asyncio.run(main())
