"""The worker side of a whole-server ``/metrics`` (observe/metrics_share.py) without processes:
a worker adds the other workers' snapshots, counts gauges only from fresh ones, carries on from
its predecessor's snapshot (counters never go down when granian starts a worker again), starts
counting when another worker was scraped, and publishes its own snapshot."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crossroute.api.metrics import scrape
from crossroute.config import parse
from crossroute.gateway import Gateway
from crossroute.observe import metrics_share

CFG = ("openai-compatibility:\n  - name: up\n    base-url: http://127.0.0.1:9/v1\n"
       "    api-key-entries: [{api-key: sk-aaaaaaaa}]\n    models: [{name: m, alias: local}]\n")
ROW = ["openai", "openai-compatibility:up", "local", 200, "http"]


def _snap(n: int, gauges: dict[str, float]) -> bytes:
    return orjson.dumps({"pid": 1, "counts": {"requests": [[*ROW, n]], "attempts": [], "latency": [], "ttft": [],
                                              "tokens": [["openai-compatibility:up", "local", 10 * n, n, 0, 0, 0]],
                                              "retries": [], "failovers": []}, "gauges": gauges})


def _values(body: bytes) -> dict[str, float]:
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if s.name in ("crossroute_requests_total", "crossroute_active_streams", "crossroute_usage_written_total"):
                out[s.name] = out.get(s.name, 0) + s.value
            if s.name == "crossroute_tokens_total" and s.labels["kind"] == "input":
                out["input"] = s.value
    return out


def test_worker_sums_and_carries_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "m"
    folder.mkdir(mode=0o700)
    (folder / "worker-0.json").write_bytes(_snap(5, {"active_streams": 9, "usage_written": 7}))  # predecessor
    (folder / "worker-1.json").write_bytes(_snap(3, {"active_streams": 2, "usage_written": 4}))  # the other one
    monkeypatch.setenv(metrics_share.DIR_ENV, str(folder))
    monkeypatch.setenv(metrics_share.INDEX_ENV, "0")

    async def go() -> None:
        gw = Gateway(parse(f"logs-dir: {tmp_path}/logs\nerror-logs-max-files: 0\n{CFG}"))
        share = metrics_share.join(gw)
        assert share is not None and metrics_share.join(gw) is share  # once per gateway
        try:
            assert "metrics" not in gw.observers.named
            (folder / metrics_share.MARKER).write_bytes(b"")  # another worker was scraped
            await share.tick()
            assert "metrics" in gw.observers.named  # counting here too now
            mine = orjson.loads((folder / "worker-0.json").read_bytes())
            assert mine["counts"]["requests"] == [[*ROW, 5]] and mine["gauges"]["usage_written"] == 7
            got = _values((await scrape(gw, None)).body)
            assert got == {"crossroute_requests_total": 8, "input": 80, "crossroute_active_streams": 2,
                           "crossroute_usage_written_total": 11}
            old = time.time() - 60  # the other worker stopped publishing: its counters stay, its gauges go
            os.utime(folder / "worker-1.json", (old, old))
            got = _values((await scrape(gw, None)).body)
            assert got["crossroute_requests_total"] == 8 and got["crossroute_active_streams"] == 0
            assert got["crossroute_usage_written_total"] == 11
        finally:
            await share.stop()

    asyncio.run(go())


def test_no_share_outside_a_worker_or_in_an_open_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = Gateway(parse(f"logs-dir: {tmp_path}/logs\n{CFG}"))
    monkeypatch.delenv(metrics_share.INDEX_ENV, raising=False)
    assert metrics_share.join(gw) is None
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o755)
    monkeypatch.setenv(metrics_share.DIR_ENV, str(folder))
    monkeypatch.setenv(metrics_share.INDEX_ENV, "1")
    assert metrics_share.join(gw) is None  # others could read or plant snapshots there
