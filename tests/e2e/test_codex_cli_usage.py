"""The real Codex CLI reads its rate limits from crossroute.

A gateway with two Codex accounts in front of ``QuotaUpstream`` (whose answers carry Codex's
``x-codex-primary-*`` / ``x-codex-secondary-*`` usage headers) learns their quota from two requests.
Codex 0.171, logged in with ChatGPT (a made-up login, see ``cli_support.codex_chatgpt_env``) and its
``chatgpt_base_url`` at the gateway (through the recording proxy), is asked for its limits the way its
editor extensions ask: ``codex app-server``, ``account/rateLimits/read`` (``codex_app_server.py``).
It must report the gateway's pooled reading: the mean percent used, the soonest reset, the window
lengths and the plan. Codex's access token is one of the gateway's client keys, so the usage route
checks the key Codex sent. With ``/backend-api`` in the base URL Codex asks ``/backend-api/wham/usage``,
without it ``/api/codex/usage``; both are run.

Skips without the CLI (or node), except under CROSSROUTE_REQUIRE_SERVICES=1, as test_real_clis.py.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from . import cli_support as cs
from .codex_app_server import AppServerRun, read_rate_limits
from .conftest import CLIENT_KEY
from .gateway_process import GatewayProcess
from .routing_support import served_by
from .test_quota_gateway import QuotaUpstream, chat, codex_config, get
from .test_real_clis import CODEX_MODEL, need_cli

REFRESH_PATH = "/oauth/token"


class CodexBehindGateway:
    """A gateway, the recording proxy in front of it, and a Codex home logged in with ChatGPT whose
    ``chatgpt_base_url`` is the proxy (``backend_api``: with the ``/backend-api/`` suffix or bare)."""

    def __init__(self, cfg: dict[str, Any], workdir: Path, backend_api: bool, key_known: bool = True) -> None:
        self.gateway = GatewayProcess(cfg, workdir)
        self.proxy = cs.RecordingProxy(self.gateway.url).start()
        self.home = Path(tempfile.mkdtemp(prefix="crossroute-codex-usage-"))
        (self.home / "work").mkdir()
        self.env = cs.codex_chatgpt_env(self.home, self.proxy.url, CODEX_MODEL)
        # were Codex to refresh its made-up login (it does after 8 days, or on a 401), it would ask here
        self.env["CODEX_REFRESH_TOKEN_URL_OVERRIDE"] = f"{self.proxy.url}{REFRESH_PATH}"
        self.codex_home = Path(self.env["CODEX_HOME"])
        if not backend_api:
            toml = self.codex_home / "config.toml"
            text = toml.read_text().replace(f'chatgpt_base_url = "{self.proxy.url}/backend-api/"',
                                            f'chatgpt_base_url = "{self.proxy.url}/"')
            assert "/backend-api" not in text.split("chatgpt_base_url", 1)[1].splitlines()[0]
            toml.write_text(text)
        self.auth = (self.codex_home / "auth.json").read_bytes()
        self.token: str = json.loads(self.auth)["tokens"]["access_token"]
        # the key Codex sends (its access token) is a client key of this gateway (unless key_known is off)
        self.gateway.write_config({**cfg, "api-keys": [CLIENT_KEY, self.token] if key_known else [CLIENT_KEY]})
        self.gateway.start()

    def ask(self, codex: str) -> AppServerRun:
        self.proxy.clear()
        return read_rate_limits(codex, self.env, self.home / "work")

    def stop(self) -> None:
        self.proxy.stop()
        self.gateway.stop()


def limits(run: AppServerRun, where: str) -> dict[str, Any]:
    assert run.response is not None, "Codex gave no answer to account/rateLimits/read\n" + where
    assert "result" in run.response, f"account/rateLimits/read failed: {run.response}\n" + where
    result = run.response["result"]
    assert result["rateLimitsByLimitId"]["codex"] == result["rateLimits"], where
    return dict(result["rateLimits"])


def check_run(run: AppServerRun, served: CodexBehindGateway, usage_path: str, status: int = 200) -> str:
    """What every run must show: Codex asked the usage route with its key, got ``status``, stayed
    offline and kept its login (no refresh)."""
    seen = [f"{e.method} {e.path} -> {e.status} {e.response_body[:300]!r}" for e in served.proxy.exchanges]
    where = run.report() + "\nexchanges:\n" + "\n".join(seen) + "\ngateway log:\n" + served.gateway.log()[-3000:]
    asked = [e for e in served.proxy.exchanges if e.path == usage_path]
    assert len(asked) == 1, f"Codex did not ask {usage_path} once\n" + where
    assert asked[0].method == "GET" and asked[0].status == status, where
    assert asked[0].header("authorization") == f"Bearer {served.token}", where
    assert not [e for e in served.proxy.exchanges if e.status >= 500], "the gateway answered 5xx\n" + where
    assert not [e for e in served.proxy.exchanges if e.path == REFRESH_PATH], "Codex tried to refresh\n" + where
    assert not run.connects, "Codex tried to reach addresses other than 127.0.0.1:\n" + "\n".join(run.connects)
    assert (served.codex_home / "auth.json").read_bytes() == served.auth, "Codex rewrote (refreshed) its login"
    return where


@pytest.mark.parametrize(("backend_api", "usage_path"), [(True, "/backend-api/wham/usage"),
                                                          (False, "/api/codex/usage")])
def test_codex_reports_the_limits_crossroute_pooled(
    qup: QuotaUpstream, tmp_path: Path, backend_api: bool, usage_path: str
) -> None:
    codex = need_cli("codex")
    qup.clear()
    qup.quota.clear()
    now = time.time()
    qup.quota["cx-a"] = {"used": 0.2, "reset_at": now + 3600, "refuse": False, "week": 0.1}
    qup.quota["cx-b"] = {"used": 0.6, "reset_at": now + 1200, "refuse": False, "week": 0.3}
    served = CodexBehindGateway(codex_config(qup, ("cx-a", "cx-b")), tmp_path, backend_api)
    try:
        # before any Codex answer the gateway knows no limits, and Codex shows none
        run = served.ask(codex)
        where = check_run(run, served, usage_path)
        before = limits(run, where)
        assert before["primary"] is None and before["secondary"] is None, where
        assert before["planType"] == "plus", where

        for _ in range(2):  # round-robin: one answer of each account, each with its usage headers
            assert chat(served.gateway, "x-text")[0] == 200
        assert sorted(served_by(r) for r in qup.requests) == ["cx-a", "cx-b"]
        status, pooled = get(served.gateway, usage_path)
        assert status == 200, pooled
        rl = pooled["rate_limit"]

        run = served.ask(codex)
        where = check_run(run, served, usage_path)
        shown = limits(run, where)
        primary, secondary = shown["primary"], shown["secondary"]
        # the mean of 20 % and 60 %, over a 5 h window, resetting when the sooner account's does
        assert primary == {"usedPercent": 40, "windowDurationMins": 300, "resetsAt": int(now + 1200)}, where
        assert primary["resetsAt"] == rl["primary_window"]["reset_at"]
        assert secondary == {"usedPercent": 20, "windowDurationMins": 7 * 24 * 60,
                             "resetsAt": rl["secondary_window"]["reset_at"]}, where
        assert secondary["resetsAt"] > now + 2 * 86400
        assert shown["planType"] == "pro", where  # the plan the accounts' answers named
        assert shown["rateLimitReachedType"] is None, where
    finally:
        served.stop()


def test_codex_sees_the_limit_reached_when_every_account_is_spent(qup: QuotaUpstream, tmp_path: Path) -> None:
    codex = need_cli("codex")
    qup.clear()
    qup.quota.clear()
    now = time.time()
    qup.quota["cx-a"] = {"used": 1.0, "reset_at": now + 900, "refuse": True, "week": 0.5}
    qup.quota["cx-b"] = {"used": 1.0, "reset_at": now + 600, "refuse": True, "week": 0.7}
    served = CodexBehindGateway(codex_config(qup, ("cx-a", "cx-b")), tmp_path, backend_api=True)
    try:
        assert chat(served.gateway, "x-text")[0] == 429  # both accounts refused, with their usage headers
        assert sorted(served_by(r) for r in qup.requests) == ["cx-a", "cx-b"]
        run = served.ask(codex)
        where = check_run(run, served, "/backend-api/wham/usage")
        shown = limits(run, where)
        assert shown["primary"] == {"usedPercent": 100, "windowDurationMins": 300, "resetsAt": int(now + 600)}, where
        assert shown["secondary"]["usedPercent"] == 60, where
        assert shown["rateLimitReachedType"] == "rate_limit_reached", where
    finally:
        served.stop()


def test_codex_gets_no_limits_with_a_key_the_gateway_does_not_know(qup: QuotaUpstream, tmp_path: Path) -> None:
    codex = need_cli("codex")
    qup.clear()
    qup.quota.clear()
    qup.quota["cx-a"] = {"used": 0.2, "reset_at": time.time() + 3600, "refuse": False, "week": 0.1}
    served = CodexBehindGateway(codex_config(qup, ("cx-a",)), tmp_path, backend_api=True, key_known=False)
    try:
        assert chat(served.gateway, "x-text")[0] == 200  # the gateway knows the account's quota
        run = served.ask(codex)
        where = check_run(run, served, "/backend-api/wham/usage", status=401)
        assert run.response is not None and "error" in run.response, where
        assert "401" in run.response["error"]["message"], where
    finally:
        served.stop()
