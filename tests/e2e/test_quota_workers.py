"""Quota readings shared by the workers of one ``crossroute serve --workers 2``, end to end.

One worker (X) serves a request whose upstream answer carries Codex's usage headers; the other
worker (Y), which never talked to that account, then answers ``GET /backend-api/wham/usage`` (read
from its own quota book) with the reading X took. Each request goes over a keep-alive connection whose
worker is known from /proc (``worker_conn.py``), so the answer is known to come from Y.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from .lifecycle_support import CLIENT_KEY, Gateway
from .test_quota_gateway import QuotaUpstream, codex_config
from .worker_conn import WorkerConnection, connections_to_each

USAGE = "/backend-api/wham/usage"
SHARE_WAIT = 15.0  # the workers exchange readings about once a second; this only bounds a failure


@pytest.fixture
def workers(quota_up: QuotaUpstream, tmp_path: Path) -> Iterator[Gateway]:
    cfg = {**codex_config(quota_up, ("cx-solo",)), "api-keys": [CLIENT_KEY]}
    gw = Gateway(cfg, tmp_path, ("--workers", "2")).start()
    deadline = time.monotonic() + 15
    while gw.log().count(" ready") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(gw.children) == 2, gw.log()
    yield gw
    gw.stop()


def usage(conn: WorkerConnection) -> dict[str, Any]:
    status, body = conn.request("GET", USAGE)
    assert status == 200, body
    return dict(orjson.loads(body))


def test_a_reading_taken_by_one_worker_is_served_by_the_other(workers: Gateway, qup: QuotaUpstream) -> None:
    pids = workers.children
    held = connections_to_each(workers.port, pids, CLIENT_KEY)
    try:
        x, y = (held[p] for p in pids)
        assert usage(y)["rate_limit"] is None  # nothing heard from the account yet
        assert usage(x)["rate_limit"] is None

        reset = int(time.time()) + 2 * 3600
        qup.quota["cx-solo"] = {"used": 0.37, "reset_at": reset, "refuse": False, "week": 0.12}
        body = orjson.dumps({"model": "x-text", "messages": [{"role": "user", "content": "hi"}]})
        status, answer = x.request("POST", "/v1/chat/completions", body)
        assert status == 200, answer
        assert len(qup.requests) == 1  # the one answer with the usage headers, served through X

        learned = usage(x)["rate_limit"]  # X read it from its own answer
        assert learned is not None and learned["primary_window"]["used_percent"] == 37

        deadline = time.monotonic() + SHARE_WAIT
        seen = usage(y)["rate_limit"]
        while seen is None and time.monotonic() < deadline:
            time.sleep(0.2)
            seen = usage(y)["rate_limit"]
        assert seen is not None, f"worker {y.worker} never learned what worker {x.worker} read\n{workers.log()}"
        p, s = seen["primary_window"], seen["secondary_window"]
        assert p["used_percent"] == 37 and p["reset_at"] == reset and p["limit_window_seconds"] == 18000
        assert s["used_percent"] == 12 and s["limit_window_seconds"] == 604800
        assert s["reset_at"] == learned["secondary_window"]["reset_at"]
        assert usage(y)["plan_type"] == "pro"
        # the answers above came from the workers their connections were accepted by
        assert (x.current_worker(), y.current_worker()) == (x.worker, y.worker) and x.worker != y.worker
        assert len(qup.requests) == 1  # Y learned it without asking the upstream
    finally:
        for c in held.values():
            c.close()
