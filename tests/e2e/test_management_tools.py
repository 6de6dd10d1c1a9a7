"""CLIProxyAPI's remaining management routes on a real gateway process: ``auth-files/download``
(the file as it is, never logged), ``api-key-usage`` (from the usage store, keys masked),
``reset-quota`` (cooldowns dropped) and ``api-call`` (only to the credential's own upstream,
bounded, secrets masked), each with its bad bodies answered 400 naming the field."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from crossroute import redaction
from crossroute.management.tool_routes import MAX_ANSWER_BYTES

from ..loopback import ThreadedApp
from .fake_upstream import FakeUpstream
from .management_support import CLIENT_KEY, UPSTREAM_KEY, MgmtGateway, base_config, claude_account

SECOND_KEY = "client-key-second-tests-4567"


class Echo(ThreadedApp):
    """An upstream that says back what it got; ``/v1/redirect`` sends elsewhere, ``/v1/big`` is large."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/v1/echo", self._echo)
        app.router.add_get("/v1/redirect", self._redirect)
        app.router.add_get("/v1/big", self._big)
        app.router.add_get("/outside", self._echo)
        return app

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.seen.append({"path": request.path, "method": request.method, "body": body,
                          "headers": {k.lower(): v for k, v in request.headers.items()}})
        return web.json_response({"headers": dict(request.headers), "body": body},
                                 headers={"x-echo-key": request.headers.get("x-api-key", "")})

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{self.port}/outside")

    async def _big(self, request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (MAX_ANSWER_BYTES + 5000))


@pytest.fixture(scope="module")
def echo() -> Iterator[Echo]:
    e = Echo().start()
    yield e
    e.stop()


@pytest.fixture(scope="module")
def gw(echo: Echo, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MgmtGateway]:
    workdir = tmp_path_factory.mktemp("mgmt-tools")
    cfg = base_config(workdir, **{
        "api-keys": [CLIENT_KEY, SECOND_KEY], "usage-statistics-enabled": True,
        "transient-error-cooldown-seconds": 300,
        "claude-api-key": [
            {"api-key": UPSTREAM_KEY, "base-url": echo.base + "/v1"},
            {"api-key": "sk-ant-fake-upstream-9876543210", "base-url": upstream.base,
             "models": [{"name": "text", "alias": "claude-text"}, {"name": "err500", "alias": "broken"}]},
        ]})
    g = MgmtGateway(cfg, workdir).start()
    yield g
    g.stop()


def _cred(g: MgmtGateway, base_url: str) -> dict[str, Any]:
    creds = g.call("GET", "/v0/management/credentials")[1]["credentials"]
    return next(c for c in creds if c.get("base_url") == base_url)


# ------------------------------------------------------------------ auth-files/download
def test_download_gives_the_file_as_it_is_and_logs_nothing_of_it(gw: MgmtGateway) -> None:
    name, obj = claude_account("download@example.com")
    raw = json.dumps(obj, indent=1).encode()
    assert gw.call("POST", f"/v0/management/auth-files?name={name}", raw)[0] == 200
    on_disk = (Path(gw.config["auth-dir"]) / name).read_bytes()
    status, got, hdrs = gw.call("GET", f"/v0/management/auth-files/download?name={name}")
    assert status == 200 and hdrs["content-type"] == "application/json"
    assert hdrs["content-disposition"] == f'attachment; filename="{name}"' and hdrs["cache-control"] == "no-store"
    assert json.dumps(got, indent=2) + "\n" == on_disk.decode()  # the file's bytes, tokens included
    assert got["access_token"] == obj["access_token"] and got["refresh_token"] == obj["refresh_token"]
    for bad, message in (("../config.yaml", "invalid name"), ("", "invalid name"), (".crossroute-quota.json",
                                                                                     "invalid name"),
                         ("notes.txt", "name must end with .json")):
        status, body, _ = gw.call("GET", f"/v0/management/auth-files/download?name={bad}")
        assert (status, body["error"], body["field"]) == (400, message, "name"), (bad, body)
    status, body, _ = gw.call("GET", "/v0/management/auth-files/download?name=nobody.json")
    assert (status, body["error"]) == (404, "file not found")

    def written() -> str:  # what the gateway wrote about the download: its log and the logs folder
        logs = Path(gw.config["logs-dir"]).glob("*.log")
        return gw.log() + "".join(p.read_text(errors="replace") for p in logs)

    deadline = time.monotonic() + 10  # access-log lines are flushed once a second
    while "auth-files/download" not in written() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = written()
    assert "auth-files/download" in text  # the access log line, path only
    assert obj["access_token"] not in text and obj["refresh_token"] not in text
    gw.call("DELETE", f"/v0/management/auth-files?name={name}")


# ------------------------------------------------------------------ api-key-usage
def test_api_key_usage_by_provider_and_key(gw: MgmtGateway) -> None:
    for key, n in ((CLIENT_KEY, 2), (SECOND_KEY, 1)):
        oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=30)
        for _ in range(n):
            oa.chat.completions.create(model="claude-text", messages=[{"role": "user", "content": "hi"}])

    def counted() -> dict[str, Any] | None:
        body = gw.call("GET", "/v0/management/api-key-usage")[1]
        claude = body.get("claude", {})
        done = claude.get(redaction.mask(CLIENT_KEY), {}).get("success", 0) >= 2
        return body if done and claude.get(redaction.mask(SECOND_KEY), {}).get("success") == 1 else None

    body = gw.wait_for(counted, what="usage of both client keys")
    entry = body["claude"][redaction.mask(CLIENT_KEY)]
    assert entry["failed"] == 0 and entry["requests"] == entry["success"] and entry["input_tokens"] > 0
    status, by_cred, _ = gw.call("GET", "/v0/management/api-key-usage?by=credential")
    assert status == 200
    fake = next(c for c in gw.config["claude-api-key"] if c["api-key"].startswith("sk-ant-fake"))
    label = f"{fake['base-url']}|{redaction.mask(fake['api-key'])}"  # CLIProxyAPI's "base-url|key", masked
    assert by_cred["claude"][label]["success"] >= 3, by_cred
    raw = json.dumps(body) + json.dumps(by_cred)
    for secret in (CLIENT_KEY, SECOND_KEY, fake["api-key"], UPSTREAM_KEY):
        assert secret not in raw
    status, bad, _ = gw.call("GET", "/v0/management/api-key-usage?by=colour")
    assert (status, bad["field"]) == (400, "by")
    status, bad, _ = gw.call("GET", "/v0/management/api-key-usage?since=yesterday")
    assert (status, bad["field"]) == (400, "since")
    assert gw.call("GET", f"/v0/management/api-key-usage?since={time.time() + 3600}")[1] == {}


# ------------------------------------------------------------------ reset-quota
def test_reset_quota_drops_the_cooldowns(gw: MgmtGateway, upstream: FakeUpstream) -> None:
    status, body, _ = gw.call("POST", "/v1/messages", {"model": "broken", "max_tokens": 8, "messages": [
        {"role": "user", "content": "hi"}]}, key=CLIENT_KEY)
    assert status >= 500, body  # the upstream fails: the key cools down for 300 s
    cred = _cred(gw, upstream.base)
    assert cred["cooldowns"], cred
    for bad, field in (({}, "auth_index"), ({"auth_index": 5}, "auth_index"), ({"auth_index": ""}, "auth_index"),
                       ({"auth_index": cred["credential_id"], "redeem": "yes"}, "redeem")):
        status, res, _ = gw.call("POST", "/v0/management/reset-quota", bad)
        assert (status, res["field"]) == (400, field), (bad, res)
    assert gw.call("POST", "/v0/management/reset-quota", b"[1]")[1]["field"] == "body"
    status, res, _ = gw.call("POST", "/v0/management/reset-quota", {"auth_index": "claude#000000000000"})
    assert (status, res["error"]) == (404, "auth not found")
    status, res, _ = gw.call("POST", "/v0/management/reset-quota", {"auth_index": cred["credential_id"],
                                                                    "redeem": True})
    assert status == 422 and _cred(gw, upstream.base)["cooldowns"]  # nothing cleared
    status, res, _ = gw.call("POST", "/v0/management/reset-quota", {"auth_index": cred["auth_index"]})
    assert status == 200 and res["status"] == "ok" and res["cleared"] >= 1 and res["models"], res
    assert _cred(gw, upstream.base)["cooldowns"] == []
    status, body, _ = gw.call("POST", "/v1/messages", {"model": "claude-text", "max_tokens": 8, "messages": [
        {"role": "user", "content": "hi"}]}, key=CLIENT_KEY)
    assert status == 200, body  # served by the key again


# ------------------------------------------------------------------ api-call
def _api_call(gw: MgmtGateway, **body: Any) -> tuple[int, Any]:
    status, res, _ = gw.call("POST", "/v0/management/api-call", body)
    return status, res


def test_api_call_reaches_the_credential_upstream_with_its_token_masked(gw: MgmtGateway, echo: Echo) -> None:
    cid = _cred(gw, echo.base + "/v1")["auth_index"]
    echo.seen.clear()
    status, res = _api_call(gw, auth_index=cid, method="POST", url=echo.base + "/v1/echo",
                            header={"x-api-key": "$TOKEN$", "Content-Type": "application/json"}, data='{"ping": 1}')
    assert status == 200 and res["status_code"] == 200, res
    assert echo.seen[-1]["headers"]["x-api-key"] == UPSTREAM_KEY  # the upstream got the credential's key
    assert echo.seen[-1]["body"] == '{"ping": 1}'
    raw = json.dumps(res)
    assert UPSTREAM_KEY not in raw and redaction.mask(UPSTREAM_KEY) in res["body"]  # echoed back: masked
    assert {k.lower(): v for k, v in res["header"].items()}["x-echo-key"] == [redaction.mask(UPSTREAM_KEY)]
    assert '"ping": 1' in json.loads(res["body"])["body"]


def test_api_call_does_not_leave_the_credential_upstream(gw: MgmtGateway, echo: Echo, upstream: FakeUpstream
                                                         ) -> None:
    cid = _cred(gw, echo.base + "/v1")["auth_index"]
    host = echo.base.split("//", 1)[1]
    for url in (upstream.base + "/v1/messages", f"http://localhost:{echo.port}/v1/echo", echo.base + "/outside",
                echo.base + "/v1/../outside", echo.base + "/v1/%2e%2e/outside", echo.base + "/v10/echo",
                f"http://user:pw@{host}/v1/echo", "file:///etc/passwd", "/v1/echo", f"https://{host}/v1/echo"):
        status, res = _api_call(gw, auth_index=cid, method="GET", url=url, header={"x-api-key": "$TOKEN$"})
        assert (status, res.get("field")) == (400, "url"), (url, res)
        assert UPSTREAM_KEY not in json.dumps(res)
    echo.seen.clear()
    status, res = _api_call(gw, auth_index=cid, method="GET", url=echo.base + "/v1/redirect")
    assert status == 200 and res["status_code"] == 302 and echo.seen == []  # the redirect is not followed
    status, res = _api_call(gw, auth_index=cid, method="GET", url=echo.base + "/v1/big")
    assert status == 200 and res["truncated"] is True and len(res["body"]) == MAX_ANSWER_BYTES


def test_api_call_bodies_are_checked(gw: MgmtGateway, echo: Echo) -> None:
    cid = _cred(gw, echo.base + "/v1")["auth_index"]
    url = echo.base + "/v1/echo"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"method": "GET", "url": url}, "auth_index"),
        ({"auth_index": cid, "url": url}, "method"),
        ({"auth_index": cid, "method": "TRACE", "url": url}, "method"),
        ({"auth_index": cid, "method": "GET"}, "url"),
        ({"auth_index": cid, "method": "GET", "url": 5}, "url"),
        ({"auth_index": cid, "method": "GET", "url": url, "header": ["x"]}, "header"),
        ({"auth_index": cid, "method": "GET", "url": url, "header": {"bad name": "x"}}, "header"),
        ({"auth_index": cid, "method": "GET", "url": url, "header": {"Host": "elsewhere"}}, "header.Host"),
        ({"auth_index": cid, "method": "GET", "url": url, "header": {"x-a": "1\r\nx-b: 2"}}, "header.x-a"),
        ({"auth_index": cid, "method": "GET", "url": url, "header": {"x-a": 1}}, "header.x-a"),
        ({"auth_index": cid, "method": "POST", "url": url, "data": {"a": 1}}, "data"),
        ({"auth_index": cid, "method": "POST", "url": url, "data": "x" * (1024 * 1024 + 1)}, "data"),
    ]
    for body, field in cases:
        status, res = _api_call(gw, **body)
        assert (status, res.get("field")) == (400, field), (body if len(json.dumps(body)) < 300 else field, res)
    status, res = _api_call(gw, auth_index="claude#000000000000", method="GET", url=url)
    assert (status, res["field"]) == (404, "auth_index")
    assert gw.call("POST", "/v0/management/api-call", b"not json")[1]["field"] == "body"
