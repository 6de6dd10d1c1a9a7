"""Usage queries for the management API and the panel: totals and time series grouped by model,
credential, client key, day ...; the prompt-cache hit ratio (cached / input tokens) per credential
and per session source; the newest records.

Totals, series and ratios read the per-minute rollups (``usage_rollup``): ``since`` and ``until``
select whole minutes (a minute counts when it starts in ``[since, until)``, ``since`` taken back to
its minute's start). The newest records are read from the newest segments.
Every function is async and runs its SQL on the store's writer thread (after the queued records
are committed), so it never blocks the gateway's loop. ``UsageUnavailable`` when the store is off.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from .rollup import BUCKET
from .schema import FIELDS

if TYPE_CHECKING:
    from ..gateway import Gateway
    from .backends import Backend
    from .store import UsageStore

__all__ = ["GROUPS", "UsageUnavailable", "cache_hit_ratio", "enabled", "recent", "series", "store_of", "totals"]

GROUPS = ("model", "credential", "client_key", "day", "provider", "session_source", "client_format",
          "upstream_model", "endpoint", "transport", "status")
_SUMS = ("input_tokens", "output_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens")
_SELECT_SUMS = ("SUM(requests) AS requests, SUM(failures) AS failures, SUM(latency_ms) AS latency_ms, "
                + ", ".join(f"SUM({c}) AS {c}" for c in _SUMS))
MIN_BUCKET, MAX_BUCKET = 60, 86400 * 31
MAX_RECENT = 1000
RECENT_SEGMENTS = 500  # segments (batches) ``recent`` looks back through, at most


class UsageUnavailable(RuntimeError):
    """The usage store is off (``usage-statistics-enabled: false``)."""


def store_of(gw: Gateway) -> UsageStore:
    store = gw.observers.named.get("usage")
    if store is None:
        raise UsageUnavailable("usage statistics are off (usage-statistics-enabled: false)")
    return store  # type: ignore[no-any-return]


def enabled(gw: Gateway) -> bool:
    return "usage" in gw.observers.named


_DAY = {"sqlite": "strftime('%Y-%m-%d', bucket, 'unixepoch')",
        "postgres": "to_char(to_timestamp(bucket) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"}


def _col(by: str, dialect: str) -> str:
    """The SQL expression of a group read back (``day``: the UTC date of the minute; a missing
    value, stored as '' in a rollup key, as NULL)."""
    if by == "day":
        return _DAY[dialect]
    return by if by == "status" else f"NULLIF({by}, '')"


def _where(since: float | None, until: float | None, where: dict[str, Any] | None,
           dialect: str = "sqlite") -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    if since is not None:
        parts.append("bucket >= ?")
        params.append(int(float(since) // BUCKET) * BUCKET)
    if until is not None:
        parts.append("bucket < ?")
        params.append(float(until))
    for col, value in (where or {}).items():
        if col not in GROUPS:
            raise ValueError(f"cannot filter by {col!r} (one of {', '.join(GROUPS)})")
        if col == "day":
            expr = _DAY[dialect]
            if value is None:
                parts.append("FALSE" if dialect == "postgres" else "0")
                continue
        else:
            expr = col
            if value is None:
                value = 0 if col == "status" else ""
        parts.append(f"{expr} = ?")
        params.append(int(value) if col == "status" else str(value))
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


def _group(by: str) -> str:
    if by not in GROUPS:
        raise ValueError(f"cannot group by {by!r} (one of {', '.join(GROUPS)})")
    return by


def _row(r: dict[str, Any]) -> dict[str, Any]:
    out = {"key": r.get("key"), "requests": int(r["requests"] or 0), "failures": int(r["failures"] or 0)}
    for c in _SUMS:
        out[c] = int(r[c] or 0)
    out["total_tokens"] = out["input_tokens"] + out["output_tokens"]
    out["cache_hit_ratio"] = (out["cached_tokens"] / out["input_tokens"]) if out["input_tokens"] else None
    out["avg_latency_ms"] = round(float(r["latency_ms"] or 0) / out["requests"], 3) if out["requests"] else None
    return out


async def totals(gw: Gateway, by: str, *, since: float | None = None, until: float | None = None,
                 where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per value of ``by``: request and failure counts and token sums, most requests first."""
    _group(by)
    _where(since, until, where)  # bad filters fail here, before the store is asked

    def go(b: Backend) -> list[dict[str, Any]]:
        col = _col(by, b.dialect)
        cond, params = _where(since, until, where, b.dialect)
        sql = (f"SELECT {col} AS key, {_SELECT_SUMS} FROM usage_rollup{cond} GROUP BY {col} "
               "ORDER BY requests DESC, key")
        return b.query(sql, params)

    return [_row(r) for r in await store_of(gw).run(go)]


async def series(gw: Gateway, by: str | None, *, bucket: int = 3600, since: float | None = None,
                 until: float | None = None, where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Sums per time bucket (``bucket`` seconds, UTC-aligned, whole minutes) and value of ``by``
    (None: one row per bucket)."""
    bucket = int(bucket)
    if not MIN_BUCKET <= bucket <= MAX_BUCKET:
        raise ValueError(f"bucket must be between {MIN_BUCKET} and {MAX_BUCKET} seconds")
    if by is not None:
        _group(by)
    _where(since, until, where)

    def go(b: Backend) -> list[dict[str, Any]]:
        col = _col(by, b.dialect) if by is not None else None
        cond, params = _where(since, until, where, b.dialect)
        key = col if col is not None else "NULL"
        group = f"t, {col}" if col is not None else "t"
        sql = (f"SELECT (bucket / ?) * ? AS t, {key} AS key, {_SELECT_SUMS} FROM usage_rollup{cond} "
               f"GROUP BY {group} ORDER BY t, key")
        return b.query(sql, [bucket, bucket, *params])

    rows = await store_of(gw).run(go)
    out = []
    for r in rows:
        row = _row(r)
        row["t"] = int(r["t"])
        out.append(row)
    return out


async def cache_hit_ratio(gw: Gateway, by: str = "credential", *, since: float | None = None,
                          until: float | None = None) -> list[dict[str, Any]]:
    """Prompt-cache hit ratio (cached / input tokens) of successful attempts per ``by`` value."""
    _group(by)

    def go(b: Backend) -> list[dict[str, Any]]:
        col = _col(by, b.dialect)
        cond, params = _where(since, until, None, b.dialect)
        cond = (cond + " AND " if cond else " WHERE ") + "status = 200"
        sql = (f"SELECT {col} AS key, SUM(requests) AS requests, SUM(input_tokens) AS input_tokens, "
               f"SUM(cached_tokens) AS cached_tokens FROM usage_rollup{cond} GROUP BY {col} ORDER BY key")
        return b.query(sql, params)

    rows = await store_of(gw).run(go)
    out = []
    for r in rows:
        inp, cached = int(r["input_tokens"] or 0), int(r["cached_tokens"] or 0)
        out.append({"key": r["key"], "requests": int(r["requests"]), "input_tokens": inp, "cached_tokens": cached,
                    "ratio": cached / inp if inp else None})
    return out


_INDEX = {f: i for i, f in enumerate(FIELDS)}


def _matcher(where: dict[str, Any] | None) -> list[tuple[int, Any]] | None:
    """(field index, value) pairs a record must match (``day``: index -1, the UTC date of ``ts``)."""
    if not where:
        return None
    out = []
    for col, value in where.items():
        if col == "day":
            out.append((-1, None if value is None else str(value)))
        else:
            out.append((_INDEX[col], None if value is None else int(value) if col == "status" else str(value)))
    return out


def _matches(r: list[Any], match: list[tuple[int, Any]]) -> bool:
    for i, value in match:
        got = time.strftime("%Y-%m-%d", time.gmtime(r[0])) if i < 0 else r[i]
        if got != value:
            return False
    return True


async def recent(gw: Gateway, limit: int = 100, *, where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The newest records, newest first (``limit`` 1..1000; the newest ``RECENT_SEGMENTS`` batches
    are searched)."""
    limit = max(1, min(int(limit), MAX_RECENT))
    _where(None, None, where)
    match = _matcher(where)

    def go(b: Backend) -> list[dict[str, Any]]:
        found: list[list[Any]] = []
        last_id: int | None = None
        seen, enough = 0, False
        while seen < RECENT_SEGMENTS:
            cond, params = ("", []) if last_id is None else (" WHERE id < ?", [last_id])
            page = b.query(f"SELECT id, records FROM usage_segments{cond} ORDER BY id DESC LIMIT 20", params)
            if not page:
                break
            for seg in page:
                seen += 1
                last_id = seg["id"]
                records = orjson.loads(seg["records"])
                found.extend(records if match is None else [r for r in records if _matches(r, match)])
            # segments are committed in order of time, but two workers' batches may overlap by a
            # second or so: once enough are found, one more page settles the newest
            if enough:
                break
            enough = len(found) >= limit
        found.sort(key=lambda r: r[0], reverse=True)
        return [dict(zip(FIELDS, r, strict=True)) for r in found[:limit]]

    return await store_of(gw).run(go)  # type: ignore[no-any-return]
