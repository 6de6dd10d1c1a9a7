"""The usage store: records of real calls (the pipeline with the built-in mock upstream), batched
writes off the loop, migrations, queries, and a full or broken store that never fails a request.
SQLite always; PostgreSQL with a real server (tests/postgres_server.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from crossroute.call import Call
from crossroute.config import parse
from crossroute.dispatch import execute
from crossroute.gateway import Gateway
from crossroute.observe import CallEnded
from crossroute.providers.mock import answer_text, usage
from crossroute.usage import queries
from crossroute.usage.backends import PostgresBackend, SQLiteBackend
from crossroute.usage.records import FIELDS, key_id
from crossroute.usage.schema import VERSION
from crossroute.usage.store import UsageStore
from tests.postgres_server import PostgresServer

MOCK = "mock: [{name: m, models: [{name: mock-model, alias: local}]}, {name: n, models: [{name: other}]}]\n"
BODY = {"model": "local", "messages": [{"role": "user", "content": "How tall is the tallest tree in the world?"}]}


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def _settings(tmp_path: Path, url: str | None = None, extra: str = "") -> Any:
    url_line = f"usage-database-url: {url}\n" if url else ""
    return parse(f"usage-statistics-enabled: true\n{url_line}data-dir: {tmp_path}/data\nlogs-dir: {tmp_path}/logs\n"
                 f"error-logs-max-files: 0\n{extra}{MOCK}")


async def _call(gw: Gateway, model: str = "local", key: str = "client-key-abcdef", stream: bool = False,
                headers: dict[str, str] | None = None) -> CallEnded:
    call = Call("openai", model, {**BODY, "model": model}, {"authorization": f"Bearer {key}", **(headers or {})},
                client_key=key, stream=stream)
    reply = await execute(gw, call)
    if hasattr(reply, "chunks"):
        async for _ in reply.chunks:
            pass
    ev = CallEnded("POST", "/v1/chat/completions", "openai", reply.status, call, call.started, time.monotonic())
    gw.observers.call_ended(ev)
    return ev


@asynccontextmanager
async def _running(settings: Any) -> AsyncIterator[Gateway]:
    """A started gateway, stopped on the way out."""
    gw = Gateway(settings)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def _until(cond: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)


def _backends(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("pg")
        return server.url
    return None


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    return _backends(request, tmp_path)


async def _fresh_pg(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    await conn.close()


def test_records_match_the_answers_tokens(tmp_path: Path, url: str | None) -> None:
    async def go() -> None:
        if url:
            await _fresh_pg(url)
        async with _running(_settings(tmp_path, url)) as gw:
            store = gw.observers.named["usage"]
            evs = [await _call(gw), await _call(gw, stream=True), await _call(gw, key="second-key-123456"),
                   await _call(gw, model="other")]
            bad = await _call(gw, model="no-such-model")
            assert bad.status == 400
            rows = await queries.recent(gw, 10)
            assert len(rows) == 5 and set(rows[0]) == set(FIELDS)
            text = answer_text(BODY)
            expect = usage(BODY, text)
            by_id = {r["request_id"]: r for r in rows}
            first = by_id[evs[0].request_id]
            assert (first["input_tokens"], first["output_tokens"]) == (expect["prompt_tokens"],
                                                                       expect["completion_tokens"])
            assert first["client_key"] == key_id("client-key-abcdef") and "abcdef" not in str(first)
            assert first["provider"] == "mock:m" and first["credential"].startswith("mock:m")
            assert first["model"] == "local" and first["upstream_model"] == "mock-model"
            assert first["status"] == 200 and first["attempt"] == 1 and first["latency_ms"] >= 0
            assert first["ttft_ms"] is not None and first["endpoint"] == "/v1/chat/completions"
            assert by_id[evs[1].request_id]["stream"] == 1
            assert by_id[evs[1].request_id]["output_tokens"] == expect["completion_tokens"]
            miss = by_id[bad.request_id]
            assert miss["status"] == 400 and miss["attempt"] == 0 and miss["input_tokens"] == 0

            by_model = {r["key"]: r for r in await queries.totals(gw, "model")}
            assert by_model["local"]["requests"] == 3
            assert by_model["local"]["input_tokens"] == 3 * expect["prompt_tokens"]
            assert by_model["no-such-model"]["failures"] == 1
            by_key = {r["key"]: r["requests"] for r in await queries.totals(gw, "client_key")}
            assert by_key == {key_id("client-key-abcdef"): 4, key_id("second-key-123456"): 1}
            days = await queries.totals(gw, "day")
            assert [d["key"] for d in days] == [time.strftime("%Y-%m-%d", time.gmtime())]
            creds = await queries.totals(gw, "credential", where={"model": "local"})
            assert sum(r["requests"] for r in creds) == 3
            series = await queries.series(gw, "model", bucket=60)
            assert sum(r["requests"] for r in series) == 5 and all(r["t"] % 60 == 0 for r in series)
            one = await queries.series(gw, None, bucket=3600, since=time.time() - 3600)
            assert len(one) == 1 and one[0]["requests"] == 5
            assert await queries.totals(gw, "model", since=time.time() + 60) == []
            ratio = await queries.cache_hit_ratio(gw, "credential")
            assert all(r["ratio"] == 0 for r in ratio) and sum(r["requests"] for r in ratio) == 4
            with pytest.raises(ValueError, match="group by"):
                await queries.totals(gw, "password")
            with pytest.raises(ValueError, match="bucket"):
                await queries.series(gw, "model", bucket=1)
            assert store.dropped == 0

    asyncio.run(go())


def test_cache_hit_ratio_per_session_source(tmp_path: Path, url: str | None) -> None:
    async def go() -> None:
        if url:
            await _fresh_pg(url)
        async with _running(_settings(tmp_path, url)) as gw:
            store: UsageStore = gw.observers.named["usage"]
            now = time.time()

            def rec(cred: str, source: str | None, inp: int, cached: int) -> tuple[Any, ...]:
                r = dict.fromkeys(FIELDS, None)
                r.update(ts=now, request_id="r", status=200, stream=0, attempt=1, credential=cred, model="m",
                         session_source=source, input_tokens=inp, output_tokens=1, cached_tokens=cached,
                         cache_creation_tokens=0, reasoning_tokens=0)
                return tuple(r[f] for f in FIELDS)

            store.add([rec("a", "claude", 1000, 900), rec("a", "claude", 1000, 700), rec("b", "msg", 1000, 0),
                       rec("b", None, 0, 0)])
            by_source = {r["key"]: r["ratio"] for r in await queries.cache_hit_ratio(gw, "session_source")}
            assert by_source == {"claude": 0.8, "msg": 0.0, None: None}
            by_cred = {r["key"]: r["ratio"] for r in await queries.cache_hit_ratio(gw, "credential")}
            assert by_cred == {"a": 0.8, "b": 0.0}

    asyncio.run(go())


def test_session_source_is_recorded_not_the_id(tmp_path: Path) -> None:
    async def go() -> None:
        async with _running(_settings(tmp_path, extra="routing: {session-affinity: true}\n")) as gw:
            ev = await _call(gw, headers={"x-session-id": "my-secret-session-1"})
            rows = await queries.recent(gw, 1)
            assert rows[0]["request_id"] == ev.request_id
            assert rows[0]["session_source"] and "my-secret-session-1" not in str(rows[0])

    asyncio.run(go())


def test_migrations_are_versioned(tmp_path: Path, url: str | None) -> None:
    async def prep() -> None:
        if url:
            await _fresh_pg(url)

    asyncio.run(prep())
    old = PostgresBackend(url, upto=1) if url else SQLiteBackend(str(tmp_path / "u.sqlite3"), upto=1)
    old.open()
    assert old.version() == 1
    cols = ("ts", "request_id", "model", "status", "stream", "attempt")
    old.query(f"INSERT INTO usage_records ({', '.join(cols)}) VALUES (?, ?, ?, ?, ?, ?)",
              [time.time(), "old", "m", 200, 0, 1])
    old.close()
    new = PostgresBackend(url) if url else SQLiteBackend(str(tmp_path / "u.sqlite3"))
    new.open()
    assert new.version() == VERSION == 3
    rows = new.query("SELECT request_id, model FROM usage_records", [])
    assert rows == [{"request_id": "old", "model": "m"}]  # kept through the upgrades (3: into a segment)
    assert new.query("SELECT day FROM usage_records", []) == [{"day": None}]  # migration 2 added the column
    rollup = new.query("SELECT model, credential, status, requests, failures FROM usage_rollup", [])
    assert rollup == [{"model": "m", "credential": "", "status": 200, "requests": 1, "failures": 0}]
    new.close()
    again = PostgresBackend(url) if url else SQLiteBackend(str(tmp_path / "u.sqlite3"))
    again.open()  # nothing left to apply
    assert again.version() == 3
    again.close()


def test_batches_are_written_off_the_loop_and_survive_restart(tmp_path: Path) -> None:
    async def go() -> None:
        gw = Gateway(_settings(tmp_path))
        await gw.start()
        store: UsageStore = gw.observers.named["usage"]
        for _ in range(20):
            await _call(gw)
        assert store.queued > 0  # queued, not written by the request
        await _until(lambda: store.written >= 20)
        assert store.written == 20
        await gw.stop()
        async with _running(_settings(tmp_path)) as gw2:
            assert sum(r["requests"] for r in await queries.totals(gw2, "model")) == 20

    asyncio.run(go())
    conn = sqlite3.connect(tmp_path / "data" / "usage.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    async def go() -> None:
        async with _running(_settings(tmp_path)) as gw:
            store: UsageStore = gw.observers.named["usage"]
            store.max_queue = 3
            store.flush_seconds = 5.0
            evs = [await _call(gw) for _ in range(6)]
            assert all(e.status == 200 for e in evs)
            assert store.dropped >= 1

    asyncio.run(go())


def test_an_unwritable_store_never_fails_a_request(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "data").write_text("a file where the data directory should be")

    async def go() -> None:
        async with _running(_settings(tmp_path)) as gw:
            store: UsageStore = gw.observers.named["usage"]
            evs = [await _call(gw) for _ in range(3)]
            assert all(e.status == 200 for e in evs)
            with pytest.raises(RuntimeError, match="not available"):
                await queries.totals(gw, "model")
            assert store.queued == 3 and store.dropped == 0 and store.written == 0  # kept for a retry
            stores.append(store)

    stores: list[UsageStore] = []
    asyncio.run(go())
    assert stores[0].dropped == 3  # stopped with the database still missing: counted and logged
    assert any("usage store" in r.getMessage() for r in caplog.records)


def test_off_means_no_store(tmp_path: Path) -> None:
    async def go() -> None:
        async with _running(parse(f"data-dir: {tmp_path}/data\nerror-logs-max-files: 0\n{MOCK}")) as gw:
            assert not gw.observers.enabled and not queries.enabled(gw)
            with pytest.raises(queries.UsageUnavailable):
                await queries.totals(gw, "model")
            gw2 = _settings(tmp_path)
            await gw.apply(gw2)  # turned on by a reload
            assert queries.enabled(gw)
            await gw.apply(parse(f"data-dir: {tmp_path}/data\nerror-logs-max-files: 0\n{MOCK}"))
            assert not queries.enabled(gw) and not gw.observers.enabled

    asyncio.run(go())


class _SlowBackend(SQLiteBackend):
    """A database that takes 2 s per batch (a disk or a server that stalls)."""

    def insert(self, rows: Any) -> None:
        time.sleep(2.0)
        super().insert(rows)


def test_a_stalled_database_never_slows_a_request(tmp_path: Path) -> None:
    async def go() -> None:
        gw = Gateway(_settings(tmp_path, extra="usage-statistics-enabled: false\n"))
        await gw.start()
        store = UsageStore(gw, _SlowBackend(str(tmp_path / "slow.sqlite3")), flush_seconds=0.05)
        gw.observers.add(store)
        try:
            await _call(gw)
            await asyncio.sleep(0.2)  # the writer is now inside its 2 s insert
            t = time.perf_counter()
            evs = [await _call(gw) for _ in range(30)]
            elapsed = time.perf_counter() - t
            assert all(e.status == 200 for e in evs)
            assert elapsed < 1.0, elapsed  # nothing waited for the store
            assert store.queued >= 25
        finally:
            gw.observers.remove(store)
            await store.stop()
            await gw.stop()
        assert store.written == 31 and store.dropped == 0  # all written once the database came back

    asyncio.run(go())


def test_an_unreachable_postgres_never_fails_a_request(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there

    async def go() -> None:
        async with _running(_settings(tmp_path, f"postgresql://nobody@127.0.0.1:{port}/none")) as gw:
            store: UsageStore = gw.observers.named["usage"]
            evs = [await _call(gw) for _ in range(3)]
            assert all(e.status == 200 for e in evs)
            await _until(lambda: store.failures >= 1)
            assert store.queued == 3 and store.written == 0 and store.dropped == 0
            stores.append(store)

    stores: list[UsageStore] = []
    asyncio.run(go())
    assert stores[0].dropped == 3


class _FlakyBackend(SQLiteBackend):
    """A database that cannot be opened twice, then refuses one batch as locked, then works
    (another worker holding the file while it switches it to WAL, then writing)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.opens = 0
        self.inserts = 0

    def open(self) -> None:
        self.opens += 1
        if self.opens <= 2:
            raise sqlite3.OperationalError("database is locked")
        super().open()

    def insert(self, rows: Any) -> None:
        self.inserts += 1
        if self.inserts == 1:
            raise sqlite3.OperationalError("database is locked")
        super().insert(rows)


def test_a_database_locked_for_a_while_loses_no_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crossroute.usage import store as store_mod

    monkeypatch.setattr(store_mod, "_REOPEN_AFTER", 0.05)

    async def go() -> None:
        gw = Gateway(_settings(tmp_path, extra="usage-statistics-enabled: false\n"))
        await gw.start()
        backend = _FlakyBackend(str(tmp_path / "flaky.sqlite3"))
        store = UsageStore(gw, backend, flush_seconds=0.02)
        gw.observers.add(store)
        try:
            for _ in range(12):
                await _call(gw)
            await _until(lambda: store.written >= 12)
        finally:
            gw.observers.remove(store)
            await store.stop()
            await gw.stop()
        assert backend.opens >= 3 and backend.inserts >= 2
        assert store.written == 12 and store.dropped == 0

    asyncio.run(go())


def _open_in_process(path: str, results: Any, barrier: Any) -> None:
    barrier.wait(10)
    try:
        SQLiteBackend(path).open()
        results.put("ok")
    except Exception as exc:
        results.put(repr(exc))


def test_workers_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Switching a new file to WAL does not wait on the busy timeout: without a retry, one of
    several workers starting together failed with "database is locked" and lost its records."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for i in range(20):
        path = str(tmp_path / f"race{i}.sqlite3")
        results = ctx.Queue()
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_open_in_process, args=(path, results, barrier)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        got = [results.get(timeout=5) for _ in procs]
        assert got == ["ok"] * 4, got


def test_rows_sharing_columns_are_stored_as_given(tmp_path: Path) -> None:
    """The SQLite backend binds the columns rows share once per INSERT: every row, whatever its
    group and however many (groups of 1 to 150 rows, interleaved), comes back exactly."""
    backend = SQLiteBackend(str(tmp_path / "groups.sqlite3"))
    backend.open()
    try:
        rows = []
        for i in range(300):
            r = dict.fromkeys(FIELDS, None)
            g = 0 if i % 2 else (1 + i % 7)
            r.update(ts=1000.0 + i * 0.25, request_id=f"{i:08x}", client_key=f"key-{g}", client_format="openai",
                     endpoint="/v1/chat/completions", operation="chat", provider="p", credential=f"c#{g % 3}",
                     model=f"m{g}", upstream_model="um", stream=g % 2, transport="http", status=200 + g,
                     error=None if g else "boom", latency_ms=i * 1.5, ttft_ms=None if g else 0.5,
                     input_tokens=i, output_tokens=2 * i, cached_tokens=g, cache_creation_tokens=1,
                     reasoning_tokens=0, session_source=None if g else "codex", attempt=1 + g % 2)
            rows.append(tuple(r[f] for f in FIELDS))
        backend.insert(rows)
        got = backend.query(f"SELECT {', '.join(FIELDS)} FROM usage_records ORDER BY ts", [])
        assert [tuple(g[f] for f in FIELDS) for g in got] == rows
    finally:
        backend.close()
