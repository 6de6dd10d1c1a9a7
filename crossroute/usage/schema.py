"""The usage store's schema, as numbered migrations applied in order (SQLite and PostgreSQL).

``crossroute_schema`` holds one row per component with the last migration applied. Opening a
store applies the missing ones inside one transaction that holds the database's write lock
(SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), so two worker processes starting at once
migrate once. A database newer than this code (a later version wrote it) is used as it is if its
``usage_records`` columns are a superset; it is never downgraded.
"""

from __future__ import annotations

__all__ = ["COMPONENT", "MIGRATIONS", "VERSION", "migration_sql"]

COMPONENT = "usage"

# (version, statements); ``{id}`` is the dialect's auto-increment key column
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE usage_records (
            id {id},
            ts DOUBLE PRECISION NOT NULL,
            request_id TEXT,
            client_key TEXT,
            client_format TEXT,
            endpoint TEXT,
            operation TEXT,
            provider TEXT,
            credential TEXT,
            model TEXT,
            upstream_model TEXT,
            stream INTEGER NOT NULL DEFAULT 0,
            transport TEXT,
            status INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            latency_ms DOUBLE PRECISION,
            ttft_ms DOUBLE PRECISION,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            cached_tokens BIGINT NOT NULL DEFAULT 0,
            cache_creation_tokens BIGINT NOT NULL DEFAULT 0,
            reasoning_tokens BIGINT NOT NULL DEFAULT 0,
            session_source TEXT,
            attempt INTEGER NOT NULL DEFAULT 1
        )""",
        "CREATE INDEX usage_records_ts ON usage_records (ts)",
    ]),
    (2, [
        # ``day`` is not written by the store (the UTC day is an expression of ``ts`` in queries);
        # the column stays so rows written by earlier code and by tools that fill it still load
        "ALTER TABLE usage_records ADD COLUMN day TEXT",
    ]),
]
VERSION = MIGRATIONS[-1][0]
# One index on purpose: each costs every insert. Grouped queries over a time range use the ts index.

_ID = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgres": "BIGSERIAL PRIMARY KEY"}


def migration_sql(dialect: str, statements: list[str]) -> list[str]:
    return [s.replace("{id}", _ID[dialect]) for s in statements]
