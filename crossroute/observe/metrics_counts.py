"""The settled counts behind ``GET /metrics`` (observe/metrics.py), keyed by their label values.

Plain dictionaries of ints and floats: cheap to add to, to copy into a JSON snapshot (what a
worker of ``crossroute serve --workers N`` publishes, observe/metrics_share.py) and to sum. A
histogram is kept as cumulative bucket counts (one per finite bound), the count (the ``+Inf``
bucket) and the sum.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

__all__ = ["KINDS", "LATENCY", "TTFT", "Counts", "observe"]

LATENCY = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
KINDS = ("input", "output", "cached", "cache_creation", "reasoning")

# the tables of a snapshot, in a fixed order
_TABLES = ("requests", "attempts", "latency", "ttft", "tokens", "retries", "failovers")


def observe(table: dict[str, list[float]], provider: str, bounds: tuple[float, ...], values: list[float]) -> None:
    """Add ``values`` (sorted in place) to the histogram of ``provider`` in ``table``."""
    if not values:
        return
    counts = table.get(provider)
    if counts is None:
        counts = table[provider] = [0] * (len(bounds) + 1) + [0.0]
    values.sort()
    for i, bound in enumerate(bounds):
        counts[i] += bisect_right(values, bound)  # values <= bound ("le")
    counts[-2] += len(values)
    counts[-1] += sum(values)


class Counts:
    """Counters and histograms by label values (see the module docstring)."""

    __slots__ = _TABLES

    def __init__(self) -> None:
        self.requests: dict[tuple[Any, ...], int] = {}  # (format, provider, model, status, transport)
        self.attempts: dict[tuple[Any, ...], int] = {}  # (provider, status)
        self.latency: dict[str, list[float]] = {}  # provider -> cumulative buckets, count, sum
        self.ttft: dict[str, list[float]] = {}
        self.tokens: dict[tuple[str, str], list[int]] = {}  # (provider, model) -> counts in KINDS order
        self.retries: dict[str, int] = {}  # provider
        self.failovers: dict[str, int] = {}

    def snapshot(self) -> dict[str, list[list[Any]]]:
        """JSON-able: each table as rows of label values followed by the count(s)."""
        out: dict[str, list[list[Any]]] = {}
        for name in _TABLES:
            rows: list[list[Any]] = []
            for key, value in getattr(self, name).items():
                labels = list(key) if isinstance(key, tuple) else [key]
                rows.append([*labels, *value] if isinstance(value, list) else [*labels, value])
            out[name] = rows
        return out

    def add(self, snap: dict[str, Any]) -> None:
        """Add a ``snapshot()`` (of another worker) to these counts; malformed rows are skipped."""
        for name, width in (("requests", 5), ("attempts", 2), ("retries", 1), ("failovers", 1)):
            table = getattr(self, name)
            for row in _rows(snap, name, width + 1):
                labels, n = row[:width], row[width]
                if not isinstance(n, int | float):
                    continue
                key = tuple(labels) if width > 1 else labels[0]
                table[key] = table.get(key, 0) + n
        for name, bounds in (("latency", LATENCY), ("ttft", TTFT)):
            table = getattr(self, name)
            for row in _rows(snap, name, len(bounds) + 3):
                mine = table.get(row[0])
                if mine is None:
                    mine = table[row[0]] = [0] * (len(bounds) + 1) + [0.0]
                for i, n in enumerate(row[1:]):
                    if isinstance(n, int | float):
                        mine[i] += n
        for row in _rows(snap, "tokens", 2 + len(KINDS)):
            key = (row[0], row[1])
            mine = self.tokens.get(key)
            if mine is None:
                mine = self.tokens[key] = [0] * len(KINDS)
            for i, n in enumerate(row[2:]):
                if isinstance(n, int):
                    mine[i] += n

    def merged(self, snaps: list[dict[str, Any]]) -> Counts:
        """A new Counts: these plus ``snaps``."""
        total = Counts()
        total.add(self.snapshot())
        for snap in snaps:
            total.add(snap)
        return total


def _rows(snap: dict[str, Any], name: str, width: int) -> list[list[Any]]:
    rows = snap.get(name) if isinstance(snap, dict) else None
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, list) and len(r) == width
            and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in r)]
