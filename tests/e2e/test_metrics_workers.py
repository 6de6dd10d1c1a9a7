"""``GET /metrics`` of ``crossroute serve --workers 2`` reports the whole server: whichever worker
answers the scrape, the request and token counters are the sums over both workers (each of which
served some of the requests), with no ``worker`` label."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crossroute import worker

from .lifecycle_support import CLIENT_KEY, Gateway, PacedUpstream, gateway_config, post

CHAT = "/v1/chat/completions"
REQUESTS = 40  # each on a new connection: both workers get some
OAI = "openai-compatibility:paced"

# Until worker.start calls observe.metrics_share.join itself (requested from the lead), the test
# starts serve through this wrapper, which adds the call in the parent before the workers fork.
_WRAPPER = """
import sys
import crossroute.worker as w
from crossroute.observe import metrics_share
_start = w.start
def start(app, loop):
    _start(app, loop)
    metrics_share.join(app.gateway, loop)
w.start = start
from crossroute.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _hooked() -> bool:
    return "metrics_share" in Path(worker.__file__).read_text()


class _Serve(Gateway):
    def start(self, timeout: float = 20.0) -> _Serve:
        if _hooked():
            super().start(timeout)
            return self
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WRAPPER, "serve", "--config", str(self.config_path), *self.args],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"crossroute exited with {self.proc.returncode}:\n{self.log()}")
            if _get(self.port, "/healthz")[0] == 200:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"crossroute did not become ready:\n{self.log()}")


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # a new connection each time
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    except OSError:
        return 0, ""
    finally:
        conn.close()


@pytest.fixture(scope="module")
def paced() -> Iterator[PacedUpstream]:
    up = PacedUpstream().start()
    yield up
    up.stop()


@pytest.fixture
def served(paced: PacedUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[_Serve, Path]]:
    folder = tmp_path / "metrics"
    monkeypatch.setenv("CROSSROUTE_METRICS_DIR", str(folder))
    gw = _Serve(gateway_config(paced), tmp_path, ("--workers", "2")).start()
    deadline = time.monotonic() + 10
    while gw.log().count(" ready") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(gw.children) == 2, gw.log()
    yield gw, folder
    gw.stop()


def _requests(text: str, model: str) -> float:
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "crossroute_requests_total" and s.labels.get("model") == model:
                assert s.labels["provider"] == OAI and "worker" not in s.labels
                total += s.value
    return total


def _tokens(text: str, kind: str) -> float:
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == "crossroute_tokens_total" and s.labels.get("kind") == kind)


def _per_worker(folder: Path) -> list[int]:
    """Requests each worker counted, from the snapshots the workers publish."""
    out = []
    for path in sorted(folder.glob("worker-*.json")):
        snap = orjson.loads(path.read_bytes())
        out.append(sum(row[-1] for row in snap["counts"]["requests"] if row[2] == "fast"))
    return out


def test_every_scrape_reports_both_workers(served: tuple[_Serve, Path]) -> None:
    gw, folder = served
    assert _get(gw.port, "/metrics")[0] == 200  # the first scrape: every worker starts counting
    deadline = time.monotonic() + 10
    while not (folder / "counting").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # the other worker sees the marker within a second
    statuses = [post(gw.port, CHAT, {"model": "fast", "messages": [{"role": "user", "content": "hi"}]})[0]
                for _ in range(REQUESTS)]
    assert statuses == [200] * REQUESTS
    deadline = time.monotonic() + 10
    while (sum(_per_worker(folder)) < REQUESTS or len(_per_worker(folder)) < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    counts = _per_worker(folder)
    assert len(counts) == 2 and all(n > 0 for n in counts) and sum(counts) == REQUESTS, counts  # both served
    time.sleep(1.2)  # the scraping worker's own counts are live, the other's at most a second old
    for _ in range(8):  # new connections: both workers answer some of these scrapes
        status, text = _get(gw.port, "/metrics")
        assert status == 200
        assert _requests(text, "fast") == REQUESTS, text
        assert _tokens(text, "input") == 3 * REQUESTS and _tokens(text, "output") == 1 * REQUESTS
