"""A simulated day over 4 subscription accounts with different limits: the upstream 429s seen,
and the requests no account could serve, with and without ``routing.quota-aware``.

Nothing is sent over a network: the real Router, MemoryState and QuotaBook run on a simulated
clock, and each account is a small model of a subscription upstream. An account allows ``limit``
requests per 5-hour window; the window starts with the first request after the previous one
ended (as Claude's and Codex's do). Every answer carries Codex-style headers
(``x-codex-primary-used-percent`` rounded to whole percent, ``-window-minutes``, ``-reset-at``);
a refused request gets 429 with the same headers (100 %) and ``Retry-After``.

Sessions arrive through the day (Poisson, three times as often from 09:00 to 18:00), each sends a
geometric number of requests (mean ``--turns``) about ``--gap`` seconds apart, with session
affinity on (as coding agents are used). A request is picked like dispatch does: on a 429 the
router is told and the next credential is tried; when every account is cooling down the client
gets the gateway's 429 ("unserved"). Three runs, same sessions:

- ``quota signals off``: no QuotaBook attached; Codex announces its reset in headers and the error
  body, not in ``Retry-After``, so 429s cool by the 1 s doubling ladder (up to 30 min);
- ``signals, quota-aware off``: 429s cool exactly until the announced reset (issue 9), sessions
  placed round-robin;
- ``signals, quota-aware on``: also new sessions to the account with the most headroom, bound
  sessions moved off a nearly exhausted account.

    python bench/quota_sim.py [--seed 1] [--seeds 5] [--sessions 140] [--turns 20] [--gap 40]
                              [--limits 60,120,240,480]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crossroute.config import ProviderEntry
from crossroute.registry import Candidate
from crossroute.routing.quota import QuotaBook
from crossroute.routing.router import AllCoolingDown, Router, RoutingSettings
from crossroute.routing.session_ids import SessionIds
from crossroute.state.memory import MemoryState

WINDOW = 5 * 3600.0
DAY = 86400.0
DAY0 = 1_780_000_000.0 - (1_780_000_000.0 % DAY)  # a midnight (UTC)
MODEL = "gpt-5-codex"


class SimClock:
    def __init__(self) -> None:
        self.t = DAY0

    def __call__(self) -> float:
        return self.t


@dataclass
class Account:
    entry: ProviderEntry
    limit: int
    used: int = 0
    reset_at: float | None = None  # end of the current window; None: no window running
    served: int = 0
    refused: int = 0

    def headers(self, now: float) -> dict[str, str]:
        reset = self.reset_at if self.reset_at is not None else now + WINDOW
        return {"x-codex-primary-used-percent": str(round(100 * self.used / self.limit)),
                "x-codex-primary-window-minutes": "300", "x-codex-primary-reset-at": str(int(reset))}

    def answer(self, now: float) -> tuple[int, dict[str, str], float | None]:
        if self.reset_at is not None and now >= self.reset_at:
            self.used, self.reset_at = 0, None
        if self.reset_at is None:
            self.reset_at = now + WINDOW
        if self.used >= self.limit:
            self.refused += 1
            return 429, self.headers(now), max(1.0, self.reset_at - now)
        self.used += 1
        self.served += 1
        return 200, self.headers(now), None


@dataclass(order=True)
class Event:
    t: float
    seq: int
    session: int = field(compare=False)
    left: int = field(compare=False)


def sessions(seed: int, count: int, turns: float, gap: float) -> list[tuple[float, int, list[float]]]:
    """(start, id, gaps between its requests) for ``count`` sessions over one day."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        while True:  # thinning: three times the rate during working hours
            t = rng.uniform(0, DAY)
            hour = t / 3600
            if rng.random() < (1.0 if 9 <= hour < 18 else 1 / 3):
                break
        n = 1
        while rng.random() > 1 / turns:
            n += 1
        out.append((DAY0 + t, i, [rng.expovariate(1 / gap) for _ in range(n - 1)]))
    return out


async def run(limits: list[int], plan: list[tuple[float, int, list[float]]], signals: bool,
              quota_aware: bool) -> dict[str, float]:
    clock = SimClock()
    state = MemoryState(clock=clock)
    router = Router(RoutingSettings(strategy="round-robin", session_affinity=True, session_affinity_ttl=3600,
                                    quota_aware=quota_aware), state, clock=clock)
    book = QuotaBook(clock=clock)
    if signals:
        book.attach(router, None)
    accounts = []
    for i, limit in enumerate(limits):
        e = ProviderEntry("codex-oauth", "codex", f"codex-acct{i}.json", "", "http://127.0.0.1:9",
                          cred_id=f"auth:codex-acct{i}.json")
        accounts.append(Account(e, limit))
    by_id = {a.entry.id: a for a in accounts}
    cands = [Candidate(a.entry, MODEL) for a in accounts]
    heap: list[Event] = []
    gaps: dict[int, list[float]] = {}
    seq = 0
    for start, sid, g in plan:
        gaps[sid] = g
        heapq.heappush(heap, Event(start, seq, sid, len(g) + 1))
        seq += 1
    stats = {"requests": 0, "upstream_429": 0, "unserved": 0, "moved": 0}
    last_cred: dict[int, str] = {}
    while heap:
        ev = heapq.heappop(heap)
        clock.t = ev.t
        stats["requests"] += 1
        session = SessionIds(f"s{ev.session}")
        tried: set[str] = set()
        while True:
            try:
                cand = router.pick_now(cands, MODEL, session, tried)
            except (AllCoolingDown, LookupError):
                stats["unserved"] += 1
                break
            tried.add(cand.credential_id)
            acct = by_id[cand.credential_id]
            status, headers, retry_after = acct.answer(clock.t)
            book.note(acct.entry, status, headers)
            if status == 429:
                stats["upstream_429"] += 1
                # Codex says when its window resets in headers (and the error body), not in Retry-After
                await router.report_failure(cand, MODEL, session, 429, retry_after if signals else None, "codex",
                                            kind="model")
                continue
            router.report_success_now(cand, MODEL)
            prev = last_cred.get(ev.session)
            if prev is not None and prev != cand.credential_id:
                stats["moved"] += 1  # the session changed account: its prompt cache is lost
            last_cred[ev.session] = cand.credential_id
            break
        if ev.left > 1:
            g = gaps[ev.session][len(gaps[ev.session]) - ev.left + 1]
            heapq.heappush(heap, Event(ev.t + g, seq, ev.session, ev.left - 1))
            seq += 1
    stats["served"] = sum(a.served for a in accounts)
    for a in accounts:
        stats[f"served_{a.limit}"] = a.served
    return stats


ROWS = (("quota signals off", False, False), ("signals, quota-aware off", True, False),
        ("signals, quota-aware on", True, True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=5, help="how many days (seeds seed, seed+1, ...)")
    ap.add_argument("--sessions", type=int, default=140)
    ap.add_argument("--turns", type=float, default=20.0, help="mean requests per session")
    ap.add_argument("--gap", type=float, default=40.0, help="mean seconds between a session's requests")
    ap.add_argument("--limits", default="60,120,240,480", help="requests per 5-hour window of each account")
    args = ap.parse_args()
    limits = [int(x) for x in args.limits.split(",")]
    totals = {name: {"requests": 0.0, "upstream_429": 0.0, "unserved": 0.0, "moved": 0.0, "served": 0.0}
              for name, _, _ in ROWS}
    print(f"accounts: {limits} requests per 5 h window; {args.sessions} sessions/day, "
          f"~{args.turns:g} requests each, ~{args.gap:g} s apart; {args.seeds} simulated day(s)")
    print(f"{'seed':>4}  {'run':<26} {'requests':>8} {'served':>7} {'429 seen':>9} {'unserved':>9} {'moved':>6}")
    for seed in range(args.seed, args.seed + args.seeds):
        plan = sessions(seed, args.sessions, args.turns, args.gap)
        for name, signals, qa in ROWS:
            st = asyncio.run(run(limits, plan, signals, qa))
            for k in totals[name]:
                totals[name][k] += st[k]
            print(f"{seed:>4}  {name:<26} {st['requests']:>8} {st['served']:>7} {st['upstream_429']:>9} "
                  f"{st['unserved']:>9} {st['moved']:>6}")
    print()
    print(f"{'total':<32} {'requests':>8} {'served':>7} {'429 seen':>9} {'unserved':>9} {'moved':>6}")
    for name, _, _ in ROWS:
        t = totals[name]
        print(f"{name:<32} {int(t['requests']):>8} {int(t['served']):>7} {int(t['upstream_429']):>9} "
              f"{int(t['unserved']):>9} {int(t['moved']):>6}")


if __name__ == "__main__":
    main()
