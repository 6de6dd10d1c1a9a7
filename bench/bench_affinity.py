"""Micro-benchmark: cost of Router.pick + report_success with session affinity on and off.

MemoryState, 10,000 live sessions, 4 credentials of one provider. Prints microseconds per
pick+report_success pair and the extra cost of affinity; no thresholds are asserted.

    python bench/bench_affinity.py [--sessions 10000] [--requests 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crossroute.routing.router import Router, RoutingSettings
from crossroute.routing.session_ids import SessionIds
from crossroute.state.memory import MemoryState


@dataclass(slots=True, frozen=True)
class Cand:
    credential_id: str
    provider: str = "claude"
    priority: int = 0
    weight: int = 1
    disabled: bool = False


async def run(affinity: bool, sessions: int, requests: int, strategy: str) -> float:
    state = MemoryState()
    router = Router(RoutingSettings(strategy=strategy, session_affinity=affinity), state)
    await router.start()
    cands = [Cand(f"cred-{i}") for i in range(4)]
    ids = [SessionIds(f"claude:{i:08x}-session") for i in range(sessions)]
    model = "claude-sonnet-4-5"
    # first turn of every session: binds all of them
    for s in ids:
        c = await router.pick(cands, model, s)
        await router.report_success(c, model, s)
    rng = random.Random(7)
    order = [ids[rng.randrange(sessions)] for _ in range(requests)]
    pick, ok = router.pick, router.report_success
    t0 = time.perf_counter()
    for s in order:
        c = await pick(cands, model, s)
        await ok(c, model, s)
    elapsed = time.perf_counter() - t0
    if affinity:
        assert state.binding_count() == sessions
    await router.stop()
    return elapsed / requests * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--strategy", default="round-robin")
    args = ap.parse_args()
    off = await run(False, args.sessions, args.requests, args.strategy)
    on = await run(True, args.sessions, args.requests, args.strategy)
    print(f"strategy={args.strategy} sessions={args.sessions} requests={args.requests} (MemoryState)")
    print(f"affinity off: {off:6.2f} us per pick+report_success")
    print(f"affinity on : {on:6.2f} us per pick+report_success")
    print(f"affinity adds {on - off:6.2f} us per request")


if __name__ == "__main__":
    asyncio.run(main())
