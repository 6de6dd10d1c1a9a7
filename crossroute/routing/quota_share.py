"""Sharing the quota book's readings between the processes that share a State.

One process learns from an upstream answer that a credential is nearly spent; the other replicas
(on one Redis) and the other workers (of one ``serve --workers N``) should not keep sending new
sessions there. ``QuotaSharing`` runs beside the Router, off the request path: every ``every``
seconds (1 s) it reads the answers not read yet, publishes the readings this process took since
the last round (one record per credential: its windows, plan, credits and measured costs, JSON,
expiring at its latest reset within ``HORIZON``, at least ``MIN_KEEP`` away), and takes in the
records of the others that are newer than what the book holds. With Redis, an idle round costs one
``GET``; the workers of one serve send their records over the peer links (no I/O at all to read).
A request never waits for any of it: picks read the book as it is.

A record taken in replaces the credential's windows, plan and credits and keeps its ``updated``
time, so it is not published again; measured costs fill in only the windows this process has not
measured itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from ..background import Background
from ..providers.quota_signals import Window
from ..state.base import State
from .quota import HORIZON, Account, QuotaBook

__all__ = ["MIN_KEEP", "SHARE_EVERY", "QuotaSharing", "publish", "share_once", "take_in"]

log = logging.getLogger("crossroute.quota")

SHARE_EVERY = 1.0
MIN_KEEP = 300.0  # a record lives at least this long after it was published
_MAX_RECORD = 64 * 1024  # a record larger than this (not one of ours) is ignored


def _record(acct: Account, now: float) -> tuple[str, float]:
    resets = [w.reset_at for w in acct.windows.values() if w.reset_at is not None and w.reset_at > now]
    expires = min(max(max(resets, default=now), now + MIN_KEEP), now + HORIZON)
    obj: dict[str, Any] = acct.to_json()
    obj.update(name=acct.name, kind=acct.kind, updated=acct.updated)  # unrounded: an echo compares equal
    if acct.costs:
        obj["costs"] = {k: round(v, 6) for k, v in acct.costs.items()}
    return orjson.dumps(obj).decode(), expires


def publish(book: QuotaBook, now: float) -> dict[str, tuple[str, float]]:
    """The records of the readings this process took since it last published; marks them sent."""
    book.read_pending()
    out: dict[str, tuple[str, float]] = {}
    for acct in list(book.accounts.values()):
        if acct.updated > acct.shared and (acct.windows or acct.plan):
            out[acct.id] = _record(acct, now)
            acct.shared = acct.updated
    return out


def take_in(book: QuotaBook, records: dict[str, str]) -> int:
    """Apply the records newer than the book's readings; returns how many were."""
    n = 0
    for cid, text in records.items():
        if len(text) > _MAX_RECORD:
            continue
        try:
            obj = orjson.loads(text)
            updated = float(obj["updated"])
            windows = [Window.from_json(d) for d in obj.get("windows") or () if isinstance(d, dict)]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.debug("quota record of %s from another process skipped", cid)
            continue
        acct = book.accounts.get(cid)
        if acct is None:
            acct = book.accounts[cid] = Account(cid, str(obj.get("name") or cid), str(obj.get("provider") or ""),
                                                str(obj.get("kind") or ""))
        if updated <= acct.updated:
            continue  # ours (echoed back), or older than what this process read itself
        acct.windows = {w.name: w for w in windows}
        plan = obj.get("plan")
        acct.plan = plan if isinstance(plan, str) else acct.plan
        credits = obj.get("credits")
        acct.credits = credits if isinstance(credits, dict) else acct.credits
        acct.updated = acct.shared = updated
        costs = obj.get("costs")
        if isinstance(costs, dict):
            for name, cost in costs.items():
                if isinstance(cost, int | float) and cost > 0:
                    acct.costs.setdefault(str(name), float(cost))
        n += 1
    return n


async def share_once(book: QuotaBook, state: State, now: float | None = None) -> int:
    """One round: publish this process's new readings, take in the others'. Returns how many
    records were taken in."""
    if now is None:
        now = book.now()
    mine = publish(book, now)
    if mine:
        await state.put_quota(mine)
    theirs = await state.get_quota()
    book.read_pending()  # an answer read before the records are compared: its reading is newer
    return take_in(book, theirs) if theirs else 0


class QuotaSharing:
    """The background round, started and stopped with the Router. ``book_of()``: the gateway's
    QuotaBook (None until attached). Idle (no I/O) while the State shares nothing."""

    def __init__(self, state: State, book_of: Callable[[], QuotaBook | None], every: float = SHARE_EVERY) -> None:
        self._state = state
        self._book_of = book_of
        self.every = every
        self._round = Background("crossroute-quota-share")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            book = self._book_of()
            if book is None or not self._state.shares_quota:
                continue
            try:
                await share_once(book, self._state)
            except Exception:  # a bad round must not end the sharing
                log.debug("sharing quota readings failed", exc_info=True)

    def start(self) -> None:
        self._round.start(self._loop)

    async def stop(self) -> None:
        await self._round.stop()
