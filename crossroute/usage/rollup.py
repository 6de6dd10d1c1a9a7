"""A batch of usage records as the database stores it: one segment (the records as one JSON text)
and its sums per minute and per value of the grouping columns (``schema.ROLLUP_DIMS``), which the
backends add to ``usage_rollup`` (one upsert per distinct group and minute, not per record)."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import orjson

from .records import FIELDS
from .schema import ROLLUP_DIMS, ROLLUP_SUMS

__all__ = ["BUCKET", "UPSERT_COLUMNS", "Batch", "fold", "segment"]

BUCKET = 60  # seconds per rollup row
UPSERT_COLUMNS = ("bucket", *ROLLUP_DIMS, *ROLLUP_SUMS)

_dims = itemgetter(*(FIELDS.index(d) for d in ROLLUP_DIMS))
_TS, _STATUS, _ERROR, _LATENCY = (FIELDS.index(f) for f in ("ts", "status", "error", "latency_ms"))
_IN, _OUT, _CACHED, _CREATED, _REASONING = (FIELDS.index(f) for f in (
    "input_tokens", "output_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens"))
_STATUS_DIM = ROLLUP_DIMS.index("status")
_ts, _error = itemgetter(_TS), itemgetter(_ERROR)
# the summed columns after ``requests`` and ``failures`` (ROLLUP_SUMS order); a missing value counts 0
_SUMMED = (*((itemgetter(i), 0) for i in (_IN, _OUT, _CACHED, _CREATED, _REASONING)), (itemgetter(_LATENCY), 0.0))

# (first ts, last ts, number of records, the records as JSON text)
Batch = tuple[float, float, int, str]


def segment(rows: Sequence[tuple[Any, ...]]) -> Batch:
    """The segment row of a batch (``rows`` not empty)."""
    first = last = rows[0][_TS]
    for r in rows:
        ts = r[_TS]
        if ts < first:
            first = ts
        elif ts > last:
            last = ts
    return (first, last, len(rows), orjson.dumps(rows).decode())


def fold(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rollup rows of a batch (in ``UPSERT_COLUMNS`` order), one per minute and group.

    The records are grouped by their grouping columns first (an ``itemgetter`` per record), then
    each group summed column by column with C-level ``map``/``sum``; a group is split by minute
    only when its records span more than one (a batch covers about a second)."""
    groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    get = groups.get
    for key, r in zip(map(_dims, rows), rows, strict=True):
        g = get(key)
        if g is None:
            groups[key] = [r]
        else:
            g.append(r)
    out = []
    for key, g in groups.items():
        dims = ["" if v is None else v for v in key]
        status = key[_STATUS_DIM]
        if status is None:
            dims[_STATUS_DIM] = 0
        every_failed = status is not None and status >= 400
        first = int(min(map(_ts, g)) // BUCKET)
        if first == int(max(map(_ts, g)) // BUCKET):
            parts: Any = ((first * BUCKET, g),)
        else:
            by_minute: dict[int, list[tuple[Any, ...]]] = {}
            for r in g:
                by_minute.setdefault(int(r[_TS] // BUCKET) * BUCKET, []).append(r)
            parts = by_minute.items()
        for bucket, part in parts:
            n = len(part)
            failed = n if every_failed else n - list(map(_error, part)).count(None)
            out.append((bucket, *dims, n, failed, *[sum(filter(None, map(col, part)), zero) for col, zero in _SUMMED]))
    return out
