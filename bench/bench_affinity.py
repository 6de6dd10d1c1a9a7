"""Micro-benchmark: what session affinity adds to choosing a credential, per request.

MemoryState, 10,000 live sessions, 4 credentials of one provider. With affinity off a request
costs Router.pick + report_success; with it on, also the session id extraction from the request
(a quarter of the sessions send ``X-Session-ID``, the rest are told apart by the hash of their
conversation's start, in all four client formats, with more conversations than the hash cache
holds). Prints microseconds per request and the difference; no thresholds are asserted.

    python bench/bench_affinity.py [--sessions 10000] [--requests 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crossroute.config import ProviderEntry
from crossroute.registry import Candidate
from crossroute.routing.router import Router, RoutingSettings
from crossroute.routing.session_ids import extract_session_ids
from crossroute.state.memory import MemoryState


def candidates(n: int, model: str) -> list[Candidate]:
    """``n`` credentials of one provider, as the registry hands them to the router."""
    return [Candidate(ProviderEntry("claude", "claude", "claude", f"sk-{i}", "http://127.0.0.1:9"), model)
            for i in range(n)]


FORMATS = ("openai", "claude", "gemini", "responses")


def request(i: int) -> tuple[dict[str, str], dict, str]:
    """Session ``i``'s request on a later turn: (lower-case headers, body, client format)."""
    fmt = FORMATS[i % 4]
    headers = {"content-type": "application/json", "authorization": "Bearer k"}
    if i % 4 == 3:
        headers["x-session-id"] = f"sess-{i:08x}"
    user = f"Conversation {i}: please review the attached module and explain what it does."
    answer = "It parses the configuration and starts the server."
    if fmt == "openai":
        body = {"model": "m", "messages": [{"role": "system", "content": "You are terse."},
                                           {"role": "user", "content": user},
                                           {"role": "assistant", "content": answer},
                                           {"role": "user", "content": "And then?"}]}
    elif fmt == "claude":
        body = {"model": "m", "max_tokens": 100, "system": [{"type": "text", "text": "You are terse."}],
                "messages": [{"role": "user", "content": [{"type": "text", "text": user}]},
                             {"role": "assistant", "content": [{"type": "text", "text": answer}]},
                             {"role": "user", "content": "And then?"}]}
    elif fmt == "gemini":
        body = {"systemInstruction": {"parts": [{"text": "You are terse."}]},
                "contents": [{"role": "user", "parts": [{"text": user}]},
                             {"role": "model", "parts": [{"text": answer}]},
                             {"role": "user", "parts": [{"text": "And then?"}]}]}
    else:
        body = {"model": "m", "instructions": "You are terse.",
                "input": [{"role": "user", "content": user},
                          {"type": "message", "role": "assistant",
                           "content": [{"type": "output_text", "text": answer}]},
                          {"role": "user", "content": "And then?"}]}
    return headers, body, fmt


async def run(affinity: bool, sessions: int, requests: int, strategy: str) -> float:
    state = MemoryState()
    router = Router(RoutingSettings(strategy=strategy, session_affinity=affinity), state)
    await router.start()
    model = "claude-sonnet-4-5"
    cands = candidates(4, model)
    reqs = [request(i) for i in range(sessions)]
    # an earlier turn of every session: binds all of them
    for headers, body, fmt in reqs:
        s = extract_session_ids(headers, body, fmt) if affinity else None
        c = await router.pick(cands, model, s)
        await router.report_success(c, model, s)
    rng = random.Random(7)
    order = [reqs[rng.randrange(sessions)] for _ in range(requests)]
    pick, ok = router.pick, router.report_success
    t0 = time.perf_counter()
    if affinity:
        for headers, body, fmt in order:
            s = extract_session_ids(headers, body, fmt)
            c = await pick(cands, model, s)
            await ok(c, model, s)
    else:
        for _ in order:
            c = await pick(cands, model, None)
            await ok(c, model, None)
    elapsed = time.perf_counter() - t0
    if affinity:
        assert state.binding_count() == sessions, state.binding_count()
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
    print(f"affinity off: {off:6.2f} us per request (pick + report_success)")
    print(f"affinity on : {on:6.2f} us per request (session ids + pick + report_success)")
    print(f"affinity adds {on - off:6.2f} us per request")


if __name__ == "__main__":
    asyncio.run(main())
