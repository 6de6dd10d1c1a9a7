"""The two databases a usage store writes to. Both are used from the store's writer thread only.

``SQLiteBackend``: a file (WAL journal, ``synchronous=NORMAL``: a committed batch survives a killed
process; several worker processes may share the file, waiting up to 10 s for its lock).
``PostgresBackend``: asyncpg on an event loop private to the writer thread.
Queries are written with ``?`` placeholders; the PostgreSQL backend numbers them.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, Protocol

from .schema import COMPONENT, MIGRATIONS, migration_sql

__all__ = ["Backend", "PostgresBackend", "SQLiteBackend", "open_backend"]

COLUMNS = (
    "ts", "request_id", "client_key", "client_format", "endpoint", "operation", "provider", "credential",
    "model", "upstream_model", "stream", "transport", "status", "error", "latency_ms", "ttft_ms",
    "input_tokens", "output_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens",
    "session_source", "attempt",
)
_PG_LOCK = 727011  # advisory lock id held while migrating

# A batch's rows mostly repeat the same key, formats, endpoint, credential, model... : SQLite binds
# those ``_SHARED`` columns once per statement (one numbered parameter every row of the statement
# refers to) and only the ``_OWN`` columns per row. Binding a value costs more than SQLite's own
# work for it (a text is copied on bind), so this is about a fifth less work per row (callgrind).
_OWN = ("ts", "request_id", "status", "error", "latency_ms", "ttft_ms", "input_tokens", "output_tokens",
        "cached_tokens", "cache_creation_tokens", "reasoning_tokens", "attempt")
_SHARED = tuple(c for c in COLUMNS if c not in _OWN)
_own = itemgetter(*(COLUMNS.index(c) for c in _OWN))
_shared = itemgetter(*(COLUMNS.index(c) for c in _SHARED))
_SIZES = (16, 4, 1)  # rows per statement (few and short: each is prepared once per connection)
_statements: dict[int, str] = {}

# CPython 3.11's sqlite3 binds int, float and str directly but sends every other value, None too,
# through its adapter protocol: a lookup of (NoneType, PrepareProtocol) in the adapters table, then
# two failing attribute lookups (``__adapt__``, ``__conform__``), each raising and clearing an
# exception. A usage row has several NULLs (error, ttft, session source...): registering an adapter
# for None (``{}.get``, a C callable that returns None) makes it one dict hit, about 13% less work
# per inserted row (callgrind). The value bound is the same NULL, for every sqlite3 user in the process.
sqlite3.register_adapter(type(None), {}.get)


def _statement(n: int) -> str:
    """An INSERT of ``n`` rows sharing the ``_SHARED`` values (the last parameters)."""
    stmt = _statements.get(n)
    if stmt is None:
        own, base = len(_OWN), n * len(_OWN)
        shared = ", ".join(f"?{base + j + 1}" for j in range(len(_SHARED)))
        rows = ", ".join("(" + ", ".join(f"?{r * own + j + 1}" for j in range(own)) + ", " + shared + ")"
                         for r in range(n))
        stmt = _statements[n] = f"INSERT INTO usage_records ({', '.join(_OWN + _SHARED)}) VALUES {rows}"
    return stmt


def _grouped(rows: Sequence[tuple[Any, ...]]) -> dict[tuple[Any, ...], list[Any]]:
    """The rows by their ``_SHARED`` values (in order of first appearance), each group's ``_OWN``
    values one after another."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for r in rows:
        key = _shared(r)
        flat = groups.get(key)
        if flat is None:
            flat = groups[key] = []
        flat += _own(r)
    return groups


class Backend(Protocol):
    dialect: str

    def open(self) -> None: ...
    def insert(self, rows: Sequence[tuple[Any, ...]]) -> None: ...
    def query(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]: ...
    def version(self) -> int: ...
    def close(self) -> None: ...


def _wal(conn: sqlite3.Connection, within: float = 10.0) -> None:
    """Switch to WAL. The switch takes an exclusive lock without waiting on the busy timeout, so
    two workers opening a new file at once see "database is locked": wait and try again."""
    deadline = time.monotonic() + within
    pause = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


class SQLiteBackend:
    dialect = "sqlite"

    def __init__(self, path: str, upto: int | None = None) -> None:
        self.path = path
        self.upto = upto  # apply migrations only up to this version (tests)
        self.conn: sqlite3.Connection | None = None

    def open(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False,
                               cached_statements=256)
        try:
            _wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS crossroute_schema (component TEXT PRIMARY KEY, "
                             "version INTEGER NOT NULL)")
                row = conn.execute("SELECT version FROM crossroute_schema WHERE component = ?",
                                   (COMPONENT,)).fetchone()
                have = row[0] if row else 0
                for version, statements in MIGRATIONS:
                    if version <= have or (self.upto is not None and version > self.upto):
                        continue
                    for stmt in migration_sql(self.dialect, statements):
                        conn.execute(stmt)
                    conn.execute("INSERT INTO crossroute_schema (component, version) VALUES (?, ?) "
                                 "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                                 (COMPONENT, version))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def version(self) -> int:
        assert self.conn is not None
        row = self.conn.execute("SELECT version FROM crossroute_schema WHERE component = ?", (COMPONENT,)).fetchone()
        return int(row[0]) if row else 0

    def insert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """One transaction. Rows that share their ``_SHARED`` values go together, up to 16 to an
        INSERT that binds those values once (fewer values to bind, fewer statements to step
        through, each of which releases and takes back the GIL)."""
        conn = self.conn
        assert conn is not None
        own = len(_OWN)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for shared, flat in _grouped(rows).items():
                n, k = len(flat) // own, 0
                for size in _SIZES:
                    while n - k >= size:
                        conn.execute(_statement(size), [*flat[k * own:(k + size) * own], *shared])
                        k += size
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def query(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        assert self.conn is not None
        cur = self.conn.execute(sql, tuple(params))
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


_QMARK = re.compile(r"\?")


def _numbered(sql: str) -> str:
    n = 0

    def repl(_: re.Match[str]) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    return _QMARK.sub(repl, sql)


class PostgresBackend:
    dialect = "postgres"

    def __init__(self, url: str, upto: int | None = None) -> None:
        self.url = url
        self.upto = upto
        self.loop: asyncio.AbstractEventLoop | None = None
        self.conn: Any = None

    def _run(self, coro: Any) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30.0))

    def open(self) -> None:
        import asyncpg

        self.loop = asyncio.new_event_loop()
        try:
            self.conn = self._run(asyncpg.connect(self.url, timeout=10.0))
            self._run(self._migrate())
        except BaseException:
            self.close()
            raise

    async def _migrate(self) -> None:
        conn = self.conn
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PG_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS crossroute_schema (component TEXT PRIMARY KEY, "
                               "version INTEGER NOT NULL)")
            have = await conn.fetchval("SELECT version FROM crossroute_schema WHERE component = $1", COMPONENT) or 0
            for version, statements in MIGRATIONS:
                if version <= have or (self.upto is not None and version > self.upto):
                    continue
                for stmt in migration_sql(self.dialect, statements):
                    await conn.execute(stmt)
                await conn.execute("INSERT INTO crossroute_schema (component, version) VALUES ($1, $2) "
                                   "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                                   COMPONENT, version)

    def version(self) -> int:
        v = self._run(self.conn.fetchval("SELECT version FROM crossroute_schema WHERE component = $1", COMPONENT))
        return int(v or 0)

    def insert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        # COPY: one round trip for the batch, the cheapest way into PostgreSQL
        self._run(self.conn.copy_records_to_table("usage_records", records=rows, columns=COLUMNS))

    def query(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        rows = self._run(self.conn.fetch(_numbered(sql), *params))
        return [dict(r) for r in rows]

    def close(self) -> None:
        loop = self.loop
        if loop is None:
            return
        if self.conn is not None:
            try:
                loop.run_until_complete(asyncio.wait_for(self.conn.close(), 5.0))
            except Exception:
                self.conn.terminate()
            self.conn = None
        loop.close()
        self.loop = None


def open_backend(url: str | None, data_dir: str) -> Backend:
    """The backend for ``usage-database-url`` (PostgreSQL) or the SQLite file under ``data_dir``."""
    if url and url.startswith(("postgres://", "postgresql://")):
        return PostgresBackend(url)
    return SQLiteBackend(os.path.join(os.path.expanduser(data_dir), "usage.sqlite3"))
