"""Quota of subscription accounts end to end: two Codex (ChatGPT) account files in a real gateway's
auth dir, served by ``QuotaUpstream`` (Codex's ``x-codex-*`` headers on every answer, 429 with 100 %
once an account ran out). Codex CLI's usage request is answered from both accounts' figures, the
snapshot in the auth dir reaches ``crossroute auth list``, and a spent account rests until its reset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from crossroute.providers import EXECUTORS
from crossroute.routing.quota import SNAPSHOT_NAME, read_snapshot

from .conftest import CLIENT_KEY
from .fake_upstream import FIXTURES
from .gateway_process import GatewayProcess
from .routing_support import post, served_by
from .test_quota_gateway import QuotaUpstream, get

ROOT = Path(__file__).resolve().parents[2]
CODEX_FIXTURE = FIXTURES / "cliproxyapi_auth" / "codex-5f2b1c9e-grace@example.com-plus.json"
FILES = {"codex-1111aaaa-ann@example.com-plus.json": "tok-ann", "codex-2222bbbb-bob@example.com-pro.json": "tok-bob"}


class AccountsGateway(GatewayProcess):
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def qup() -> Iterator[QuotaUpstream]:
    u = QuotaUpstream()
    u.start()
    yield u
    u.stop()


def auth_dir(tmp: Path, up: QuotaUpstream) -> Path:
    auth = tmp / "auth"
    auth.mkdir(mode=0o700)
    base = orjson.loads(CODEX_FIXTURE.read_bytes())
    for name, token in FILES.items():
        email = name.split("-", 2)[2].rsplit("-", 1)[0]
        obj = {**base, "access_token": token, "email": email, "base_url": up.base + "/v1"}
        (auth / name).write_bytes(orjson.dumps(obj))
    return auth


def auth_list(config: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "crossroute", "auth", "list", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout


def wait_for(check: Any, what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_codex_accounts_quota_usage_auth_list_and_reset(qup: QuotaUpstream, tmp_path: Path) -> None:
    now = time.time()
    qup.quota["tok-ann"] = {"used": 0.2, "reset_at": now + 3600, "refuse": False, "week": 0.1}
    qup.quota["tok-bob"] = {"used": 0.6, "reset_at": now + 1800, "refuse": False, "week": 0.3}
    auth = auth_dir(tmp_path, qup)
    gw = AccountsGateway({"api-keys": [CLIENT_KEY], "auth-dir": str(auth),
                          "routing": {"strategy": "round-robin"}}, tmp_path)
    gw.start()
    try:
        model = EXECUTORS["codex-oauth"].models[0]  # type: ignore[attr-defined]
        oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
        for _ in range(2):
            assert oa.responses.create(model=model, input="hi").output_text
        assert sorted(served_by(r) for r in qup.requests) == ["tok-ann", "tok-bob"]

        status, body = get(gw, "/backend-api/wham/usage")
        assert status == 200, body
        assert body["plan_type"] == "pro"  # what the upstream said (x-codex-plan-type)
        assert body["rate_limit"]["primary_window"]["used_percent"] == 40
        assert body["rate_limit"]["secondary_window"]["used_percent"] == 20

        # the snapshot reaches the auth dir within a few seconds, off the request path
        wait_for(lambda: len(read_snapshot(auth)) == 2, "the quota snapshot")
        assert (auth / SNAPSHOT_NAME).stat().st_mode & 0o777 == 0o600
        listing = auth_list(gw.config_path)
        ann = next(line for line in listing.splitlines() if "ann@example.com" in line)
        bob = next(line for line in listing.splitlines() if "bob@example.com" in line)
        assert "80% left" in ann and "40% left" in bob, listing
        assert "tok-ann" not in listing and "tok-bob" not in listing

        # ann runs out: 429 with 100 % and the reset; every request goes to bob until then
        reset = int(time.time()) + 3
        qup.quota["tok-ann"].update(refuse=True, reset_at=reset)
        n = len(qup.requests)
        for i in range(3):
            st, _, headers = post(gw, {"model": model, "input": f"q{i}"}, {"X-Crossroute-Trace": "1"},
                                  path="/v1/responses")
            assert st == 200
        tried = [served_by(r) for r in qup.requests[n:]]
        assert tried.count("tok-ann") == 1 and tried.count("tok-bob") == 3  # one refusal, then it rests
        trace = json.loads(headers["x-crossroute-trace"][0])
        skip = next(s for s in trace["steps"] if s["step"] == "skip")
        assert skip["reason"] == "cooling" and skip["scope"] == "credential" and skip["until"] == reset
        status, body = get(gw, "/api/codex/usage")
        assert body["rate_limit"]["primary_window"]["used_percent"] == 80  # (100 + 60) / 2
        assert body["rate_limit"]["limit_reached"] is False  # bob still serves
        time.sleep(max(0.0, reset - time.time()) + 0.3)
        n = len(qup.requests)
        for i in range(2):
            assert oa.responses.create(model=model, input=f"after {i}").output_text
        assert "tok-ann" in [served_by(r) for r in qup.requests[n:]]  # back in rotation at its reset
    finally:
        gw.stop()
