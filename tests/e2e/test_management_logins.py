"""OAuth logins started and polled through the management API, against the strict fake OAuth
servers: Kimi's device code, Claude's PKCE through the gateway's loopback callback and through a
pasted redirect URL, a denied consent, a cancelled login."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .fake_oauth import EMAILS, FakeOAuth
from .management_support import MgmtGateway, WorkersGateway, base_config


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOAuth]:
    f = FakeOAuth().start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def gw(fake: FakeOAuth, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MgmtGateway]:
    workdir = tmp_path_factory.mktemp("logins")
    fake.device_interval = 0.2
    env = {**fake.env("kimi"), **fake.env("claude")}
    g = MgmtGateway(base_config(workdir), workdir, env=env).start()
    yield g
    g.stop()


def poll(gw: MgmtGateway, state: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body, _ = gw.call("GET", f"/v0/management/get-auth-status?state={state}")
        assert status == 200, body
        if body["status"] != "wait":
            return body
        time.sleep(0.2)
    raise AssertionError(f"login {state} still waiting\n{gw.log()[-3000:]}")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def redirect_of(url: str) -> str:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(url, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302, exc.read()
        return exc.headers["Location"]
    raise AssertionError("the authorize URL did not redirect")


def test_kimi_device_login(gw: MgmtGateway, fake: FakeOAuth) -> None:
    status, body, _ = gw.call("GET", "/v0/management/kimi-auth-url")
    assert status == 200 and body["status"] == "ok" and body["flow"] == "device", body
    assert body["url"].startswith(fake.base) and body["user_code"] in fake.devices
    assert gw.call("GET", f"/v0/management/get-auth-status?state={body['state']}")[1]["status"] == "wait"
    fake.approve(body["user_code"])
    result = poll(gw, body["state"])
    assert result["status"] == "ok" and result["account"].startswith("kimi-"), result
    files = gw.call("GET", "/v0/management/auth-files")[1]["files"]
    entry = next(f for f in files if f["name"] == result["account"])
    assert entry["type"] == "kimi" and entry["status"] == "active"
    token = json.loads((Path(gw.config["auth-dir"]) / result["account"]).read_text())["access_token"]
    assert token not in json.dumps(files)
    assert not fake.errors


def test_claude_login_through_the_loopback_callback(gw: MgmtGateway, fake: FakeOAuth) -> None:
    status, body, _ = gw.call("POST", "/v0/management/oauth-login", {"provider": "claude"})
    assert status == 200 and body["url"].startswith(f"{fake.base}/claude/authorize"), body
    assert f"state={body['state']}" in body["url"]
    with urllib.request.urlopen(body["url"], timeout=10) as resp:  # the browser follows to the callback
        assert resp.status == 200
    result = poll(gw, body["state"])
    assert result == {"status": "ok", "provider": "claude", "account": f"claude-{EMAILS['claude']}.json"}, result
    assert not fake.errors


def test_claude_login_with_a_pasted_redirect(gw: MgmtGateway, fake: FakeOAuth) -> None:
    status, body, _ = gw.call("GET", "/v0/management/anthropic-auth-url")
    assert status == 200, body
    location = redirect_of(body["url"])  # where the browser was sent (unreachable from there, say)
    paste = {"state": body["state"], "redirect_url": location}
    status, res, _ = gw.call("POST", "/v0/management/oauth-callback", paste)
    assert status == 200, res
    assert poll(gw, body["state"])["status"] == "ok"
    assert gw.call("POST", "/v0/management/oauth-callback", {"state": body["state"], "redirect_url": location}
                   )[0] == 404  # finished: nothing waits any more


def test_denied_consent_is_reported(gw: MgmtGateway, fake: FakeOAuth) -> None:
    fake.mode = "deny"
    try:
        body = gw.call("GET", "/v0/management/anthropic-auth-url")[1]
        location = redirect_of(body["url"])
        gw.call("POST", "/v0/management/oauth-callback", {"state": body["state"], "redirect_url": location})
        result = poll(gw, body["state"])
        assert result["status"] == "error" and "denied" in result["error"], result
    finally:
        fake.mode = "approve"


def test_cancel_and_bad_bodies(gw: MgmtGateway) -> None:
    body = gw.call("GET", "/v0/management/kimi-auth-url")[1]
    assert gw.call("DELETE", f"/v0/management/oauth-session?state={body['state']}")[0] == 200
    result = poll(gw, body["state"])
    assert result == {"status": "error", "provider": "kimi", "error": "cancelled"}
    status, res, _ = gw.call("POST", "/v0/management/oauth-login", {"provider": "nobody"})
    assert status == 400 and "nobody" in res["error"]
    status, res, _ = gw.call("POST", "/v0/management/oauth-login", {"provider": 3})
    assert (status, res["field"]) == (400, "provider")
    status, res, _ = gw.call("POST", "/v0/management/oauth-callback", {"redirect_url": "x"})
    assert (status, res["field"]) == (400, "state")


def test_logins_with_two_workers(fake: FakeOAuth, tmp_path: Path) -> None:
    """The poll, the pasted redirect and the cancel may reach the other worker (a new connection
    each): every one is answered from the session's mailbox in the auth-dir."""
    g = WorkersGateway(base_config(tmp_path), tmp_path, env={**fake.env("kimi"), **fake.env("claude")}).start(30)
    try:
        body = g.call("GET", "/v0/management/kimi-auth-url")[1]
        answers = [g.call("GET", f"/v0/management/get-auth-status?state={body['state']}")[:2] for _ in range(20)]
        assert all(a == (200, {"status": "wait", "provider": "kimi"}) for a in answers), answers
        fake.approve(body["user_code"])
        assert poll(g, body["state"])["status"] == "ok"
        assert all(poll(g, body["state"])["status"] == "ok" for _ in range(10))  # on both workers

        body = g.call("GET", "/v0/management/anthropic-auth-url")[1]
        location = redirect_of(body["url"])
        assert g.call("POST", "/v0/management/oauth-callback", {"state": body["state"], "redirect_url": location}
                      )[0] == 200
        assert poll(g, body["state"])["status"] == "ok"

        body = g.call("GET", "/v0/management/kimi-auth-url")[1]
        assert g.call("DELETE", f"/v0/management/oauth-session?state={body['state']}")[0] == 200
        assert poll(g, body["state"]) == {"status": "error", "provider": "kimi", "error": "cancelled"}
    finally:
        g.stop()
