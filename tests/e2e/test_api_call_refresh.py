"""``POST /v0/management/api-call`` with an OAuth account, on a real gateway process and a fake
OAuth token server on 127.0.0.1: ``$TOKEN$`` is the account's fresh token (a due or expired one is
refreshed first, once however many calls want it), and a 401 answer gets one refresh and one resend.

The gateway's background refresher refreshes a due account at start; the expired account is kept
away from it by the token server failing that first refresh (the refresher then leaves the account
alone for ``FAILURE_BACKOFF``, 5 min) before it is told to answer again."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from crossroute import redaction
from crossroute.auth.accounts import format_time

from ..loopback import ThreadedApp
from .fake_oauth import FakeOAuth
from .management_support import MgmtGateway, base_config


class Guarded(ThreadedApp):
    """An upstream that takes only live tokens of ``oauth`` (``Authorization: Bearer``) and not the
    ``revoked`` ones; 401 for any other. It says back the token it took."""

    def __init__(self, oauth: FakeOAuth) -> None:
        super().__init__()
        self.oauth = oauth
        self.revoked: set[str] = set()
        self.seen: list[str] = []  # the bearer token of every request, in order

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/v1/echo", self._echo)
        return app

    async def _echo(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.seen.append(token)
        if token not in self.oauth.access_tokens or token in self.revoked:
            return web.json_response({"error": "invalid token"}, status=401)
        return web.json_response({"token": token}, headers={"x-token": token})


@pytest.fixture
def oauth() -> Iterator[FakeOAuth]:
    f = FakeOAuth().start()
    yield f
    f.stop()


@pytest.fixture
def guarded(oauth: FakeOAuth) -> Iterator[Guarded]:
    g = Guarded(oauth).start()
    yield g
    g.stop()


def _account(auth: Path, oauth: FakeOAuth, base: str, email: str, expires: float) -> tuple[str, str]:
    """Write a Claude account file; its name and access token."""
    access, refresh = oauth.issue_refresh("claude")
    name = f"claude-{email}.json"
    auth.mkdir(mode=0o700, exist_ok=True)
    (auth / name).write_text(json.dumps({"type": "claude", "email": email, "access_token": access,
                                         "refresh_token": refresh, "expired": format_time(expires),
                                         "base_url": base}))
    return name, access


def _start(tmp_path: Path, oauth: FakeOAuth) -> MgmtGateway:
    return MgmtGateway(base_config(tmp_path), tmp_path, env=oauth.env("claude")).start()


def _call(gw: MgmtGateway, name: str, url: str, header: dict[str, str]) -> dict[str, Any]:
    status, res, _ = gw.call("POST", "/v0/management/api-call",
                             {"auth_index": name, "method": "GET", "url": url, "header": header})
    assert status == 200, res
    return res  # type: ignore[no-any-return]


def _on_disk(auth: Path, name: str) -> str:
    return str(json.loads((auth / name).read_text())["access_token"])


def test_an_expired_token_is_refreshed_once_before_the_call(tmp_path: Path, oauth: FakeOAuth,
                                                             guarded: Guarded) -> None:
    auth = tmp_path / "auth"
    name, stale = _account(auth, oauth, guarded.base, "late@example.com", time.time() - 60)
    guarded.revoked.add(stale)  # expired: the upstream refuses it
    oauth.refresh_mode = "error500"  # the refresh the gateway tries at start fails
    gw = _start(tmp_path, oauth)
    try:
        gw.wait_for(lambda: f"refresh of {name} failed" in gw.log(), what="the failed background refresh")
        assert oauth.refresh_count == 0 and _on_disk(auth, name) == stale
        oauth.refresh_mode, oauth.refresh_delay = "rotate", 0.5
        answers: list[dict[str, Any]] = []
        calls = [threading.Thread(target=lambda: answers.append(
            _call(gw, name, guarded.base + "/v1/echo", {"Authorization": "Bearer $TOKEN$"}))) for _ in range(2)]
        for t in calls:
            t.start()
        for t in calls:
            t.join(timeout=30)
        fresh = _on_disk(auth, name)
        assert fresh != stale and oauth.refresh_count == 1 and oauth.errors == []  # one refresh for both calls
        assert [a["status_code"] for a in answers] == [200, 200], answers
        assert guarded.seen == [fresh, fresh]  # the stale token was never sent
        for a in answers:
            assert fresh not in json.dumps(a) and json.loads(a["body"])["token"] == redaction.mask(fresh)
    finally:
        gw.stop()


def test_a_401_gets_one_refresh_and_one_resend(tmp_path: Path, oauth: FakeOAuth, guarded: Guarded) -> None:
    auth = tmp_path / "auth"
    name, revoked = _account(auth, oauth, guarded.base, "early@example.com", time.time() + 30 * 86400)
    guarded.revoked.add(revoked)  # not due, but the provider no longer takes it
    gw = _start(tmp_path, oauth)
    try:
        url = guarded.base + "/v1/echo"
        res = _call(gw, name, url, {"Authorization": "Bearer $TOKEN$"})
        fresh = _on_disk(auth, name)
        assert res["status_code"] == 200 and fresh != revoked, res
        assert guarded.seen == [revoked, fresh] and oauth.refresh_count == 1 and oauth.errors == []
        assert revoked not in json.dumps(res) and fresh not in json.dumps(res)
        # no $TOKEN$: the 401 is the answer, nothing refreshed, nothing resent
        guarded.seen.clear()
        res = _call(gw, name, url, {"Authorization": "Bearer not-the-token"})
        assert res["status_code"] == 401 and guarded.seen == ["not-the-token"] and oauth.refresh_count == 1
    finally:
        gw.stop()
