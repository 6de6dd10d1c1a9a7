"""An Antigravity account's Cloud Code project, discovered once (loadCodeAssist against the fake
cloud), is written into the account's file as ``project_id`` (CLIProxyAPI's field) and read from
there after a restart: no second discovery. The account's other fields survive the write."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from crossroute.auth.tokens import AccountToken

from .conftest import CLIENT_KEY
from .fake_cloud import PROJECT, TOKEN, FakeCloud
from .gateway_process import GatewayProcess
from .test_matrix import CALL, expected

pytestmark = pytest.mark.skipif(
    not hasattr(AccountToken, "remember"),
    reason="needs the credential-store hook AccountToken.remember / Refresher.remember (helper A's request)")

NAME = "antigravity-p@example.com.json"


def served(gw: GatewayProcess, model: str, timeout: float = 10.0) -> None:
    req = urllib.request.Request(gw.url + "/v1/models", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(req, timeout=5) as r:
            if model in {m["id"] for m in json.loads(r.read())["data"]}:
                return
        time.sleep(0.1)
    raise AssertionError(f"{model} not served:\n{gw.log()[-2000:]}")


def kept_project(path: Path, timeout: float = 5.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        obj = json.loads(path.read_text())
        if obj.get("project_id") or time.monotonic() > deadline:
            return obj  # type: ignore[no-any-return]
        time.sleep(0.05)


def test_a_discovered_project_is_kept_in_the_account_file_across_a_restart(tmp_path: Path) -> None:
    fake = FakeCloud(project=PROJECT).start()
    gw: GatewayProcess | None = None
    try:
        fake.force_encoding = "gzip"  # (the discovery answers decoded too)
        auth = tmp_path / "auth"
        auth.mkdir(mode=0o700)
        far = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
        account = {"type": "antigravity", "email": "p@example.com", "access_token": TOKEN,
                   "refresh_token": "ag-refresh", "expired": far, "base_url": fake.base,
                   "model_aliases": {"gemini-3-flash": "ag-flash"}, "note": "kept as written"}
        path = auth / NAME
        path.write_text(json.dumps(account))
        os.chmod(path, 0o600)
        cfg = {"api-keys": [CLIENT_KEY], "auth-dir": str(auth), "read-timeout-seconds": 10,
               "connect-timeout-seconds": 2, "disable-cooling": True}

        (tmp_path / "first").mkdir()
        (tmp_path / "second").mkdir()
        gw = GatewayProcess(cfg, tmp_path / "first").start()
        served(gw, "ag-flash")
        assert CALL["openai"](gw, "ag-flash", False).text == expected("gemini", "text", False).text
        assert [s.path for s in fake.of("discovery")] == ["/v1internal:loadCodeAssist"]
        written = kept_project(path)
        assert written == {**account, "project_id": PROJECT}  # the other fields as they were
        assert os.stat(path).st_mode & 0o777 == 0o600
        gw.stop()

        gw = GatewayProcess(cfg, tmp_path / "second").start()  # a restart on the same auth dir
        served(gw, "ag-flash")
        assert CALL["openai"](gw, "ag-flash", True).text == expected("gemini", "text", True).text
        assert [s.path for s in fake.of("discovery")] == ["/v1internal:loadCodeAssist"]  # not again
        assert fake.of("antigravity")[-1].body["project"] == PROJECT
        assert fake.of("antigravity")[-1].problems == []
    finally:
        if gw is not None:
            gw.stop()
        fake.stop()
