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
    """The rollup rows of a batch (in ``UPSERT_COLUMNS`` order), one per minute and group."""
    acc: dict[tuple[Any, ...], list[Any]] = {}
    get = acc.get
    for r in rows:
        key = (int(r[_TS] // BUCKET) * BUCKET, *_dims(r))
        status = r[_STATUS]
        failed = 1 if (status is not None and status >= 400) or r[_ERROR] is not None else 0
        a = get(key)
        if a is None:
            acc[key] = [1, failed, r[_IN] or 0, r[_OUT] or 0, r[_CACHED] or 0, r[_CREATED] or 0, r[_REASONING] or 0,
                        r[_LATENCY] or 0.0]
        else:
            a[0] += 1
            a[1] += failed
            a[2] += r[_IN] or 0
            a[3] += r[_OUT] or 0
            a[4] += r[_CACHED] or 0
            a[5] += r[_CREATED] or 0
            a[6] += r[_REASONING] or 0
            a[7] += r[_LATENCY] or 0.0
    out = []
    for key, sums in acc.items():
        dims = ["" if v is None else v for v in key]
        if key[1 + _STATUS_DIM] is None:
            dims[1 + _STATUS_DIM] = 0
        out.append((*dims, *sums))
    return out
