"""The usage store's schema, as numbered migrations applied in order (SQLite and PostgreSQL).

``crossroute_schema`` holds one row per component with the last migration applied. Opening a
store applies the missing ones inside one transaction that holds the database's write lock
(SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), so two worker processes starting at once
migrate once. It is never downgraded.

Since version 3 the records of one written batch are one row of ``usage_segments`` (a JSON array
of records, each an array in the order of ``records.FIELDS``), and ``usage_rollup`` holds their sums
per minute and per value of every grouping column (the totals, series and cache-hit queries read
it). A row per record cost the writer more than the rest of a request's observers together (a
SQLite row with its index entry is ~20k instructions; a segment costs a few hundred per record).
``usage_records`` is a view that opens the segments, one row per record with the old columns, for
ad-hoc SQL; version 3 moves the rows of the old table into segments and rollups.
"""

from __future__ import annotations

__all__ = ["COMPONENT", "FIELDS", "MIGRATIONS", "ROLLUP_DIMS", "ROLLUP_SUMS", "VERSION", "migration_sql"]

COMPONENT = "usage"

# the columns of a usage record, in the order of a segment's arrays (``records.rows_of`` makes them)
FIELDS = (
    "ts", "request_id", "client_key", "client_format", "endpoint", "operation", "provider", "credential",
    "model", "upstream_model", "stream", "transport", "status", "error", "latency_ms", "ttft_ms",
    "input_tokens", "output_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens",
    "session_source", "attempt",
)
_TYPES = {"ts": "double precision", "stream": "integer", "status": "integer", "latency_ms": "double precision",
          "ttft_ms": "double precision", "input_tokens": "bigint", "output_tokens": "bigint",
          "cached_tokens": "bigint", "cache_creation_tokens": "bigint", "reasoning_tokens": "bigint",
          "attempt": "integer"}
# what a rollup row is keyed by (with its minute, ``bucket``): NOT NULL, '' (0 for status) standing
# for a missing value, because a NULL in a key column never conflicts and would defeat the upsert
ROLLUP_DIMS = ("model", "credential", "client_key", "provider", "session_source", "client_format",
               "upstream_model", "endpoint", "transport", "status")
ROLLUP_SUMS = ("requests", "failures", "input_tokens", "output_tokens", "cached_tokens", "cache_creation_tokens",
               "reasoning_tokens", "latency_ms")
SEGMENT_STRIDE = 100_000  # the view's record id: segment id * stride + position in the segment

_ROLLUP = (
    "CREATE TABLE usage_rollup (bucket BIGINT NOT NULL, "
    + ", ".join(f"{d} INTEGER NOT NULL DEFAULT 0" if d == "status" else f"{d} TEXT NOT NULL DEFAULT ''"
                for d in ROLLUP_DIMS)
    + ", " + ", ".join(f"{s} DOUBLE PRECISION NOT NULL DEFAULT 0" if s == "latency_ms"
                       else f"{s} BIGINT NOT NULL DEFAULT 0" for s in ROLLUP_SUMS)
    + f", PRIMARY KEY (bucket, {', '.join(ROLLUP_DIMS)}))"
)


def _from_v2(minute: str, agg: str) -> list[str]:
    """Version 3's data move: the old rows into rollups and segments (of up to 1000 records)."""
    dims = ", ".join("COALESCE(status, 0)" if d == "status" else f"COALESCE({d}, '')" for d in ROLLUP_DIMS)
    return [
        f"INSERT INTO usage_rollup (bucket, {', '.join(ROLLUP_DIMS)}, {', '.join(ROLLUP_SUMS)}) "
        f"SELECT {minute}, {dims}, COUNT(*), SUM(CASE WHEN status >= 400 OR error IS NOT NULL THEN 1 ELSE 0 END), "
        "SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(cache_creation_tokens), "
        f"SUM(reasoning_tokens), SUM(COALESCE(latency_ms, 0)) FROM usage_records "
        f"GROUP BY {', '.join(str(i) for i in range(1, len(ROLLUP_DIMS) + 2))}",
        f"INSERT INTO usage_segments (first_ts, last_ts, n, records) SELECT MIN(ts), MAX(ts), COUNT(*), {agg} "
        "FROM usage_records GROUP BY (id - 1) / 1000",
        "DROP TABLE usage_records",
    ]


def _view(dialect: str) -> str:
    if dialect == "sqlite":
        cols = ", ".join(f"json_extract(j.value, '$[{i}]') AS {f}" for i, f in enumerate(FIELDS))
        return (f"CREATE VIEW usage_records AS SELECT s.id * {SEGMENT_STRIDE} + CAST(j.key AS INTEGER) AS id, "
                f"{cols}, NULL AS day FROM usage_segments s, json_each(s.records) j")
    cols = ", ".join(f"(e.v->>{i})::{_TYPES.get(f, 'text')} AS {f}" for i, f in enumerate(FIELDS))
    return (f"CREATE VIEW usage_records AS SELECT s.id * {SEGMENT_STRIDE} + e.i - 1 AS id, {cols}, "
            "NULL::text AS day FROM usage_segments s "
            "CROSS JOIN LATERAL jsonb_array_elements(s.records::jsonb) WITH ORDINALITY AS e(v, i)")


_V3 = {
    "sqlite": [
        "CREATE TABLE usage_segments (id INTEGER PRIMARY KEY AUTOINCREMENT, first_ts DOUBLE PRECISION NOT NULL, "
        "last_ts DOUBLE PRECISION NOT NULL, n INTEGER NOT NULL, records TEXT NOT NULL)",
        _ROLLUP,
        *_from_v2("CAST(ts / 60 AS INTEGER) * 60",
                  f"json_group_array(json_array({', '.join(FIELDS)}))"),
        _view("sqlite"),
    ],
    "postgres": [
        "CREATE TABLE usage_segments (id BIGSERIAL PRIMARY KEY, first_ts DOUBLE PRECISION NOT NULL, "
        "last_ts DOUBLE PRECISION NOT NULL, n INTEGER NOT NULL, records TEXT NOT NULL)",
        _ROLLUP,
        *_from_v2("CAST(floor(ts / 60) AS BIGINT) * 60",
                  f"json_agg(json_build_array({', '.join(FIELDS)}) ORDER BY id)::text"),
        _view("postgres"),
    ],
}

# (version, statements): a list for both dialects, or a dict of one list per dialect;
# ``{id}`` is the dialect's auto-increment key column
MIGRATIONS: list[tuple[int, list[str] | dict[str, list[str]]]] = [
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
        # ``day`` was never written by the store (the UTC day is an expression of the time)
        "ALTER TABLE usage_records ADD COLUMN day TEXT",
    ]),
    (3, _V3),
]
VERSION = MIGRATIONS[-1][0]

_ID = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgres": "BIGSERIAL PRIMARY KEY"}


def migration_sql(dialect: str, statements: list[str] | dict[str, list[str]]) -> list[str]:
    chosen = statements[dialect] if isinstance(statements, dict) else statements
    return [s.replace("{id}", _ID[dialect]) for s in chosen]
