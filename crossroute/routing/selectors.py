"""Selectors: which credential of a priority tier serves a request that has no session binding.

The Router has already filtered the candidates (disabled, tried, cooling down) and kept only the
highest priority tier, so a selector sees a non-empty list. Order is made stable by sorting on
``credential_id`` so that every process (and every config reload) agrees on it.

- ``round-robin``: one cursor per provider+model, kept in the State (shared through Redis).
- ``fill-first``: always the first credential in that stable order.
- ``weighted-round-robin``: smooth weighted round-robin (the nginx algorithm). Credits are kept
  per process and reset when a weight changes; weights <= 0 or > 1,000,000 exclude a credential.

``QuotaAwareSelector`` (``routing.quota-aware``) wraps any of them: it takes the credential with
the most quota headroom (``QuotaBook.headroom``), credentials never heard from first, and leaves
ties and the case where nothing is known to the wrapped selector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, Protocol, TypeVar

from crossroute.state.base import State

__all__ = [
    "MAX_WEIGHT",
    "STRATEGIES",
    "FillFirstSelector",
    "QuotaAwareSelector",
    "RoundRobinSelector",
    "Selector",
    "WeightedRoundRobinSelector",
    "build_selector",
    "cursor_key",
]

MAX_WEIGHT = 1_000_000
STRATEGIES = ("round-robin", "fill-first", "weighted-round-robin")
_CREDIT_CAP = 4096


class CandidateLike(Protocol):
    @property
    def credential_id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def weight(self) -> int: ...
    @property
    def disabled(self) -> bool: ...


C = TypeVar("C", bound=CandidateLike)
_by_id = attrgetter("credential_id")


def cursor_key(provider: str, model: str) -> str:
    """The key of a round-robin cursor (and of weighted credits): one per provider and model."""
    return f"{provider}::{model}"


class Selector:
    """Base selector. ``accepts`` lets a strategy exclude candidates (weights); ``start``/``stop``
    are lifecycle hooks called by the Router on start, shutdown and selector rebuilds."""

    name = "base"
    filters = False  # whether ``accepts`` can refuse a candidate (the Router skips the call if not)

    def accepts(self, cand: Any) -> bool:
        return True

    async def select(self, tier: Sequence[C], cursor_key: str) -> C:
        return self.select_now(tier, cursor_key)

    def select_now(self, tier: Sequence[C], cursor_key: str) -> C:
        """The same choice without suspending; the Router calls it only with in-process state."""
        raise NotImplementedError

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class RoundRobinSelector(Selector):
    name = "round-robin"

    def __init__(self, state: State) -> None:
        self._state = state

    async def select(self, tier: Sequence[C], cursor_key: str) -> C:
        if len(tier) == 1:
            return tier[0]
        return _nth(tier, await self._state.incr("rr:" + cursor_key))

    def select_now(self, tier: Sequence[C], cursor_key: str) -> C:
        if len(tier) == 1:
            return tier[0]
        return _nth(tier, self._state.incr_now("rr:" + cursor_key))  # type: ignore[attr-defined]  # MemoryState only


def _nth(tier: Sequence[C], n: int) -> C:
    """The ``n``-th pick (1-based) of a rotation over ``tier`` in stable order."""
    ordered = sorted(tier, key=_by_id)
    return ordered[(n - 1) % len(ordered)]


class FillFirstSelector(Selector):
    name = "fill-first"

    def select_now(self, tier: Sequence[C], cursor_key: str) -> C:
        return min(tier, key=_by_id)


class WeightedRoundRobinSelector(Selector):
    """Smooth weighted round-robin: each pick adds every weight to its credit, takes the largest
    credit (first in stable order on ties) and subtracts the total from it. Weights 5/1/1 give
    a a b a c a a."""

    name = "weighted-round-robin"
    filters = True

    def __init__(self) -> None:
        # cursor key -> credential id -> [weight, credit]
        self._credits: dict[str, dict[str, list[int]]] = {}

    def accepts(self, cand: Any) -> bool:
        w = cand.weight
        return 0 < w <= MAX_WEIGHT

    def select_now(self, tier: Sequence[C], cursor_key: str) -> C:
        if len(tier) == 1:
            return tier[0]
        ordered = sorted(tier, key=_by_id)
        credits = self._credits.get(cursor_key)
        if credits is None:
            if len(self._credits) >= _CREDIT_CAP:
                self._credits.clear()
            credits = self._credits[cursor_key] = {}
        # reset every credit when a known credential's weight changed
        for c in ordered:
            e = credits.get(c.credential_id)
            if e is not None and e[0] != c.weight:
                credits.clear()
                break
        total = 0
        best: C | None = None
        best_entry: list[int] | None = None
        for c in ordered:
            e = credits.get(c.credential_id)
            if e is None:
                e = credits[c.credential_id] = [c.weight, 0]
            e[1] += e[0]
            total += e[0]
            if best_entry is None or e[1] > best_entry[1]:
                best, best_entry = c, e
        assert best is not None and best_entry is not None
        best_entry[1] -= total
        return best


class QuotaAwareSelector(Selector):
    """``book_of()``: the gateway's QuotaBook (None until attached). Headroom: requests per
    second a credential can sustain until its tightest window resets; the largest wins, so new
    sessions drain every account at the pace its own limit and reset allow and the accounts run
    out together. Credentials that never answered come first (their figures are learnt on the
    way); ones that answer without quota signals rank with the best; an exhausted one (headroom
    0) only when nothing better is left."""

    def __init__(self, inner: Selector, book_of: Callable[[], Any]) -> None:
        self.inner = inner
        self._book_of = book_of
        self.name = f"quota-aware({inner.name})"
        self.filters = inner.filters

    def accepts(self, cand: Any) -> bool:
        return self.inner.accepts(cand)

    def narrow(self, tier: Sequence[C]) -> Sequence[C]:
        """The candidates of ``tier`` the wrapped selector should choose among."""
        book = self._book_of()
        if book is None or len(tier) == 1:
            return tier
        unknown: list[C] = []
        silent: list[C] = []  # answered, but never with quota signals: as good as the best known
        best: float = -1.0
        top: list[C] = []
        for c in tier:
            h = book.headroom(c.credential_id)
            if h is None:
                (silent if book.heard_from(c.credential_id) else unknown).append(c)
            elif h > best:
                best, top = h, [c]
            elif h == best:
                top.append(c)
        if unknown:
            return unknown
        return (top + silent) or tier

    async def select(self, tier: Sequence[C], cursor_key: str) -> C:
        narrowed = self.narrow(tier)
        return narrowed[0] if len(narrowed) == 1 else await self.inner.select(narrowed, cursor_key)

    def select_now(self, tier: Sequence[C], cursor_key: str) -> C:
        narrowed = self.narrow(tier)
        return narrowed[0] if len(narrowed) == 1 else self.inner.select_now(narrowed, cursor_key)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()


def build_selector(strategy: str, state: State) -> Selector:
    if strategy == "round-robin":
        return RoundRobinSelector(state)
    if strategy == "fill-first":
        return FillFirstSelector()
    if strategy == "weighted-round-robin":
        return WeightedRoundRobinSelector()
    raise ValueError(f"unknown routing strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
