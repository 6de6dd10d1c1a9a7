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
from typing import Any, Protocol

from .rollup import UPSERT_COLUMNS, fold, segment
from .schema import COMPONENT, MIGRATIONS, ROLLUP_DIMS, ROLLUP_SUMS, migration_sql

__all__ = ["Backend", "PostgresBackend", "SQLiteBackend", "open_backend"]

_PG_LOCK = 727011  # advisory lock id held while migrating

_SEGMENT = "INSERT INTO usage_segments (first_ts, last_ts, n, records) VALUES (?, ?, ?, ?)"
_UPSERT = (
    f"INSERT INTO usage_rollup ({', '.join(UPSERT_COLUMNS)}) VALUES ({', '.join('?' * len(UPSERT_COLUMNS))}) "
    f"ON CONFLICT (bucket, {', '.join(ROLLUP_DIMS)}) DO UPDATE SET "
    + ", ".join(f"{c} = usage_rollup.{c} + excluded.{c}" for c in ROLLUP_SUMS)
)


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
        """One transaction: the batch's segment and its rollup rows."""
        if not rows:
            return
        conn = self.conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_SEGMENT, segment(rows))
            conn.executemany(_UPSERT, fold(rows))
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


_PG_SEGMENT = _numbered(_SEGMENT)
_PG_UPSERT = _numbered(_UPSERT)


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
        if rows:
            self._run(self._insert(segment(rows), fold(rows)))

    async def _insert(self, seg: tuple[Any, ...], rollups: list[tuple[Any, ...]]) -> None:
        conn = self.conn
        async with conn.transaction():
            await conn.execute(_PG_SEGMENT, *seg)
            await conn.executemany(_PG_UPSERT, rollups)

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
