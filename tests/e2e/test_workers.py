"""``crossroute serve --workers 2``: every worker serves a config change (file watcher and
SIGHUP), and the workers share session bindings and cooldowns without Redis."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .lifecycle_support import Gateway, PacedUpstream, gateway_config, post

CHAT = "/v1/chat/completions"
REQUESTS = 40  # each on a new connection: both workers get some


@pytest.fixture(scope="module")
def paced() -> Iterator[PacedUpstream]:
    up = PacedUpstream().start()
    yield up
    up.stop()


@pytest.fixture
def workers(paced: PacedUpstream, tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(gateway_config(paced), tmp_path, ("--workers", "2")).start()
    deadline = time.monotonic() + 10
    while gw.log().count(" ready") < 2 and time.monotonic() < deadline:  # each worker says so
        time.sleep(0.05)
    assert len(gw.children) == 2, gw.log()
    yield gw
    gw.stop()


def ask(gw: Gateway, model: str) -> int:
    return post(gw.port, CHAT, {"model": model, "messages": [{"role": "user", "content": "hi"}]})[0]


def _wait_for_reloads(gw: Gateway, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while gw.log().count("config reloaded from") < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.log().count("config reloaded from") >= count, gw.log()


def _every_worker_serves(gw: Gateway, new: str, old: str) -> None:
    statuses = [ask(gw, new) for _ in range(REQUESTS)]
    assert statuses == [200] * REQUESTS, statuses
    statuses = [ask(gw, old) for _ in range(REQUESTS)]
    assert statuses == [400] * REQUESTS, statuses


def test_a_changed_alias_is_served_by_every_worker(workers: Gateway, paced: PacedUpstream) -> None:
    gw = workers
    assert ask(gw, "fast") == 200
    gw.write_config({**gw.config, **gateway_config(paced, aliases=("renamed",))})
    _wait_for_reloads(gw, 2)  # one line per worker: each watches config.yaml itself
    _every_worker_serves(gw, "renamed", "fast")


def test_sighup_reloads_every_worker(workers: Gateway, paced: PacedUpstream) -> None:
    gw = workers
    gw.write_config({**gw.config, **gateway_config(paced, aliases=("again",))})
    gw.signal(signal.SIGHUP)  # (the watchers may apply it first; SIGHUP then finds it unchanged)
    _wait_for_reloads(gw, 2)
    deadline = time.monotonic() + 10
    while gw.log().count("SIGHUP: worker") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.log().count("SIGHUP: worker") == 2, gw.log()
    assert gw.wait(0.1) is None
    _every_worker_serves(gw, "again", "fast")


@pytest.fixture
def affine(paced: PacedUpstream, tmp_path: Path) -> Iterator[Gateway]:
    cfg = gateway_config(paced, routing={"session-affinity": True})
    gw = Gateway(cfg, tmp_path, ("--workers", "2")).start()
    deadline = time.monotonic() + 10
    while gw.log().count(" ready") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(gw.children) == 2, gw.log()
    yield gw
    gw.stop()


def test_workers_share_session_bindings(affine: Gateway, paced: PacedUpstream) -> None:
    moved = []
    for s in range(12):
        served = []
        for _ in range(6):  # each on a new connection: both workers see the session
            n = len(paced.keys)
            code, _ = post(affine.port, CHAT, {"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
                           headers={"X-Session-ID": f"shared-{s}"})
            assert code == 200
            served.append(paced.keys[n])
            time.sleep(0.01)  # (a client's next turn comes much later; the change travels in microseconds)
        if len(set(served)) > 1:
            moved.append((s, served))
    assert not moved, moved
    assert "share session bindings and cooldowns" in affine.log()  # and the start-up says so


def test_workers_share_cooldowns(workers: Gateway, paced: PacedUpstream) -> None:
    paced.refuse = {"sk-up-1"}
    try:
        n = len(paced.keys)
        for _ in range(30):
            assert ask(workers, "fast") == 200  # failover to sk-up-2 when sk-up-1 answers 429
            time.sleep(0.01)
        tried = paced.keys[n:]
        assert tried.count("sk-up-1") == 1, tried  # cooled down for every worker after its first 429
    finally:
        paced.refuse = set()
