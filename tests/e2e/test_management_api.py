"""The management API on a real gateway process: auth, ban, loopback rule, config round trip with
comments kept, key lists, account upload/enable/delete, and no secret in any answer."""

from __future__ import annotations

import inspect
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossroute import cli
from crossroute.api.request import Request

from .fake_upstream import FakeUpstream
from .management_support import (
    CLIENT_KEY,
    HEADER_COMMENT,
    MGMT_KEY,
    UPSTREAM_KEY,
    MgmtGateway,
    WorkersGateway,
    base_config,
    claude_account,
    multipart,
)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MgmtGateway]:
    workdir = tmp_path_factory.mktemp("mgmt")
    g = MgmtGateway(base_config(workdir), workdir).start()
    yield g
    g.stop()


def start(tmp_path: Path, env: dict[str, str] | None = None, **cfg: object) -> MgmtGateway:
    return MgmtGateway({**base_config(tmp_path), **cfg}, tmp_path, env).start()


def models(g: MgmtGateway) -> set[str]:
    status, body, _ = g.call("GET", "/v1/models", key=CLIENT_KEY)
    assert status == 200, body
    return {m["id"] for m in body["data"]}


# ------------------------------------------------------------------ auth
def test_without_a_key_the_api_does_not_exist(tmp_path: Path) -> None:
    cfg = base_config(tmp_path)
    del cfg["remote-management"]
    g = MgmtGateway(cfg, tmp_path).start()
    try:
        for path in ("/v0/management/config", "/v0/management/auth-files", "/management.html"):
            status, body, _ = g.call("GET", path)
            assert status == 404, (path, body)
    finally:
        g.stop()


def test_missing_and_wrong_keys(gw: MgmtGateway) -> None:
    status, body, _ = gw.call("GET", "/v0/management/config", key=None)
    assert (status, body["error"]) == (401, "missing management key")
    status, body, _ = gw.call("GET", "/v0/management/config", key="not-the-key")
    assert (status, body["error"]) == (401, "invalid management key")
    status, _, _ = gw.call("GET", "/v0/management/config", key=None, headers={"X-Management-Key": MGMT_KEY})
    assert status == 200
    status, _, hdrs = gw.call("GET", "/v0/management/config")
    assert status == 200 and hdrs.get("cache-control") == "no-store"
    # the client keys of the API are not management keys, and the other way round
    assert gw.call("GET", "/v0/management/config", key=CLIENT_KEY)[0] == 401
    assert gw.call("GET", "/v1/models", key=MGMT_KEY)[0] == 401


def test_five_failures_ban_the_client(tmp_path: Path) -> None:
    g = start(tmp_path)
    try:
        statuses = [g.call("GET", "/v0/management/config", key=f"wrong-{i}")[0] for i in range(5)]
        assert statuses == [401, 401, 401, 401, 403]
        status, body, _ = g.call("GET", "/v0/management/config")  # the right key, from the banned address
        assert status == 403 and "IP banned due to too many failed attempts" in body["error"]
        assert "30 minutes" in body["error"]
        assert g.call("GET", "/v1/models", key=CLIENT_KEY)[0] == 200  # the API itself is not affected
    finally:
        g.stop()


def test_the_ban_holds_across_workers(tmp_path: Path) -> None:
    g = WorkersGateway(base_config(tmp_path), tmp_path).start(30)
    try:
        statuses = [g.call("GET", "/v0/management/config", key=f"wrong-{i}")[0] for i in range(5)]
        assert statuses == [401, 401, 401, 401, 403]  # five in all, whichever worker got each
        assert [g.call("GET", "/v0/management/config")[0] for _ in range(30)] == [403] * 30  # on every worker
    finally:
        g.stop()


def test_plain_key_is_hashed_and_written_back(gw: MgmtGateway) -> None:
    assert gw.call("GET", "/v0/management/config")[0] == 200
    text = gw.wait_for(lambda: (t := gw.config_path.read_text()) and MGMT_KEY not in t and t, what="hashed key")
    assert "secret-key: $2b$" in text or "secret-key: pbkdf2-sha256$" in text
    assert text.startswith(HEADER_COMMENT)
    time.sleep(0.5)  # the reload of the rewritten file
    assert gw.call("GET", "/v0/management/config")[0] == 200  # the key still works against its hash
    _, body, _ = gw.call("GET", "/v0/management/config")
    assert MGMT_KEY not in json.dumps(body) and "$2b$10$" not in json.dumps(body)  # neither key nor hash shown


@pytest.mark.skipif("hash_key_at_start" not in inspect.getsource(cli),
                    reason="crossroute/cli.py does not call management.auth.hash_key_at_start yet (requested in "
                    "/tmp/notes/C.md)")
def test_plain_key_is_hashed_when_serve_starts(tmp_path: Path) -> None:
    g = start(tmp_path)
    try:
        text = g.config_path.read_text()  # no management request was made: serve did it before listening
        assert MGMT_KEY not in text and ("secret-key: $2b$" in text or "secret-key: pbkdf2-sha256$" in text), text
        assert text.startswith(HEADER_COMMENT)
        status, body, _ = g.call("GET", "/v0/management/api-keys")
        assert status == 200, body  # the key works against its hash
    finally:
        g.stop()


def test_management_password_from_the_environment(tmp_path: Path) -> None:
    cfg = base_config(tmp_path)
    del cfg["remote-management"]
    g = MgmtGateway(cfg, tmp_path, env={"MANAGEMENT_PASSWORD": "env-password-123"}).start()
    try:
        assert g.call("GET", "/v0/management/api-keys", key="env-password-123")[0] == 200
        assert g.call("GET", "/v0/management/api-keys", key="other")[0] == 401
    finally:
        g.stop()


def _outside_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent; this picks the outgoing interface
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


@pytest.mark.parametrize("allow", [False, True])
def test_remote_clients_need_allow_remote(tmp_path: Path, allow: bool) -> None:
    addr = _outside_address()
    if addr is None:
        pytest.skip("this machine has no non-loopback address to connect from")
    g = start(tmp_path, host="0.0.0.0", **{"allowed-hosts": ["*"],
                                            "remote-management": {"secret-key": MGMT_KEY, "allow-remote": allow}})
    try:
        base = f"http://{addr}:{g.port}"
        status, body, _ = g.call("GET", "/v0/management/api-keys", base=base)
        if allow:
            assert status == 200, body
        else:
            assert (status, body["error"]) == (403, "remote management disabled")
            assert g.call("GET", "/management.html", key=None, base=base)[0] == 403
        local = g.call("GET", "/v0/management/api-keys")[0]
        if "client" in Request.__slots__:  # the edge tells the client's address: loopback is always allowed
            assert local == 200
        else:  # it does not (yet): on a gateway bound beyond loopback every client counts as remote
            assert local == (200 if allow else 403)
    finally:
        g.stop()


# ------------------------------------------------------------------ config
def test_config_round_trip_keeps_comments_and_secrets(gw: MgmtGateway) -> None:
    status, shown, hdrs = gw.call("GET", "/v0/management/config.yaml")
    assert status == 200 and hdrs["content-type"].startswith("application/yaml")
    assert shown.startswith(HEADER_COMMENT)
    assert UPSTREAM_KEY not in shown and CLIENT_KEY not in shown and MGMT_KEY not in shown
    assert "sk-...6789" in shown
    edited = shown.replace("- mock-1", "- mock-1\n  - mock-2  # added through the API") + "# trailing comment\n"
    status, body, _ = gw.call("PUT", "/v0/management/config.yaml", edited, headers={"Content-Type": "application/yaml"})
    assert (status, body) == (200, {"ok": True, "changed": ["config"], "applied": True})
    text = gw.config_path.read_text()
    assert text.startswith(HEADER_COMMENT) and "# added through the API" in text and "# trailing comment" in text
    assert UPSTREAM_KEY in text and CLIENT_KEY in text  # the masks were given their secrets back
    assert "mock-2" in models(gw)  # "applied": the running gateway serves the new file already
    status, cfg, _ = gw.call("GET", "/v0/management/config")
    assert status == 200 and cfg["mock"][0]["models"] == ["mock-1", "mock-2"]
    assert UPSTREAM_KEY not in json.dumps(cfg)


def test_invalid_config_is_refused_with_lines_and_not_written(gw: MgmtGateway) -> None:
    before = gw.config_path.read_text()
    _, shown, _ = gw.call("GET", "/v0/management/config.yaml")
    bad = shown.replace("host: 127.0.0.1", "host: 127.0.0.1\nrequest-retry: lots\nbody-limit-mb: -1")
    status, body, _ = gw.call("PUT", "/v0/management/config.yaml", bad, headers={"Content-Type": "application/yaml"})
    assert status == 400 and body["error"] == "invalid_config"
    fields = {p["field"] for p in body["problems"]}
    assert {"request-retry", "body-limit-mb"} <= fields
    line = bad.splitlines().index("request-retry: lots") + 1
    assert any(p["line"] == line for p in body["problems"]) and f":{line}: request-retry" in body["message"]
    assert gw.config_path.read_text() == before
    status, body, _ = gw.call("PUT", "/v0/management/config.yaml", "a: [1,\n",
                              headers={"Content-Type": "application/yaml"})
    assert status == 400 and body["problems"][0]["line"]
    assert gw.config_path.read_text() == before


def test_api_keys_routes(gw: MgmtGateway) -> None:
    status, body, _ = gw.call("GET", "/v0/management/api-keys")
    assert status == 200 and body == {"api-keys": ["cli...0123"]}
    status, body, _ = gw.call("PUT", "/v0/management/api-keys", ["cli...0123", "client-key-second-4567"])
    assert status == 200, body
    assert gw.config_path.read_text().count(CLIENT_KEY) == 1 and "client-key-second-4567" in gw.config_path.read_text()
    gw.wait_for(lambda: gw.call("GET", "/v1/models", key="client-key-second-4567")[0] == 200, what="new client key")
    status, body, _ = gw.call("PATCH", "/v0/management/api-keys", {"index": 1, "value": "client-key-third-89012"})
    assert status == 200, body
    status, body, _ = gw.call("DELETE", "/v0/management/api-keys?value=client-key-third-89012")
    assert status == 200, body
    assert gw.call("GET", "/v0/management/api-keys")[1] == {"api-keys": ["cli...0123"]}
    for bad, field in (({"index": "x", "value": "k"}, "index"), ({"index": 0}, "value"), ({}, "index")):
        status, body, _ = gw.call("PATCH", "/v0/management/api-keys", bad)
        assert (status, body.get("field")) == (400, field), (bad, body)
    status, body, _ = gw.call("PUT", "/v0/management/api-keys", [""])
    assert (status, body["field"]) == (400, "api-keys[0]")
    status, body, _ = gw.call("PUT", "/v0/management/api-keys", b"{not json")
    assert status == 400 and body["field"] == "body"


def test_provider_key_list_routes(gw: MgmtGateway) -> None:
    status, body, _ = gw.call("GET", "/v0/management/claude-api-key")
    assert status == 200 and body["claude-api-key"][0]["api-key"] == "sk-...6789"
    status, body, _ = gw.call("PATCH", "/v0/management/claude-api-key", {"index": 0, "value": {"priority": 5}})
    assert status == 200, body
    text = gw.config_path.read_text()
    assert "priority: 5" in text and UPSTREAM_KEY in text
    status, body, _ = gw.call("PATCH", "/v0/management/claude-api-key",
                              {"match": UPSTREAM_KEY, "value": {"weight": 3}})
    assert status == 200, body
    status, body, _ = gw.call("PATCH", "/v0/management/claude-api-key", {"match": "sk-nope", "value": {}})
    assert status == 404
    status, body, _ = gw.call("PUT", "/v0/management/claude-api-key", [{"api-key": "sk-x", "priority": "high"}])
    assert status == 400 and "claude-api-key[0].priority" in body["message"]
    assert "priority: 5" in gw.config_path.read_text()  # not written
    status, body, _ = gw.call("PUT", "/v0/management/openai-compatibility", [
        {"name": "local", "base-url": "http://127.0.0.1:9/v1", "api-key-entries": [{"api-key": "sk-local-0123456789"}],
         "models": [{"name": "local-model"}]}])
    assert status == 200, body
    status, body, _ = gw.call("GET", "/v0/management/openai-compatibility")
    assert body["openai-compatibility"][0]["api-key-entries"][0]["api-key"] == "sk-...6789"
    assert "sk-local-0123456789" not in json.dumps(body)
    status, body, _ = gw.call("DELETE", "/v0/management/openai-compatibility?name=local")
    assert status == 200, body
    assert "sk-local-0123456789" not in gw.config_path.read_text()
    status, body, _ = gw.call("DELETE", "/v0/management/claude-api-key")
    assert (status, body["field"]) == (400, "api-key")


def test_scalar_routes(gw: MgmtGateway) -> None:
    assert gw.call("PUT", "/v0/management/request-retry", {"value": 2})[0] == 200
    assert gw.call("GET", "/v0/management/request-retry")[1] == {"request-retry": 2}
    status, body, _ = gw.call("PUT", "/v0/management/request-retry", {"value": "two"})
    assert (status, body["field"]) == (400, "value")
    assert gw.call("PUT", "/v0/management/routing/strategy", {"value": "fill-first"})[0] == 200
    status, body, _ = gw.call("PUT", "/v0/management/routing/strategy", {"value": "random"})
    assert status == 400 and "routing.strategy" in body["message"]


# ------------------------------------------------------------------ accounts
def test_account_upload_list_disable_delete(gw: MgmtGateway) -> None:
    name, obj = claude_account()
    body, ctype = multipart([(name, json.dumps(obj).encode())])
    status, res, _ = gw.call("POST", "/v0/management/auth-files", body, headers={"Content-Type": ctype})
    assert status == 200 and res["files"] == [name], res
    path = Path(gw.config["auth-dir"]) / name
    assert json.loads(path.read_text())["access_token"] == obj["access_token"]
    status, listing, _ = gw.call("GET", "/v0/management/auth-files")
    assert status == 200
    raw = json.dumps(listing)
    assert obj["access_token"] not in raw and obj["refresh_token"] not in raw
    entry = next(f for f in listing["files"] if f["name"] == name)
    assert entry["status"] == "active" and entry["email"] == "ops@example.com" and entry["type"] == "claude"
    assert entry["secrets"]["access_token"].endswith(obj["access_token"][-4:])
    status, res, _ = gw.call("PATCH", "/v0/management/auth-files/status", {"name": name, "disabled": True})
    assert (status, res["disabled"]) == (200, True)
    assert json.loads(path.read_text())["disabled"] is True
    entry = next(f for f in gw.call("GET", "/v0/management/auth-files")[1]["files"] if f["name"] == name)
    assert entry["status"] == "disabled" and entry["disabled"] is True
    status, res, _ = gw.call("PATCH", "/v0/management/auth-files/status", {"name": name, "disabled": "yes"})
    assert (status, res["field"]) == (400, "disabled")
    fields = {"name": name, "priority": 7, "prefix": "ops"}
    status, res, _ = gw.call("PATCH", "/v0/management/auth-files/fields", fields)
    assert status == 200, res
    saved = json.loads(path.read_text())
    assert (saved["priority"], saved["prefix"], saved["access_token"]) == (7, "ops", obj["access_token"])
    for bad, field in (({"name": name, "priority": "high"}, "priority"), ({"name": name, "access_token": "x"},
                                                                            "access_token"), ({"name": name}, "name")):
        status, res, _ = gw.call("PATCH", "/v0/management/auth-files/fields", bad)
        assert (status, res["field"]) == (400, field), res
    assert gw.call("PATCH", "/v0/management/auth-files/fields", {"name": "nope.json", "weight": 2})[0] == 404
    status, res, _ = gw.call("DELETE", f"/v0/management/auth-files?name={name}")
    assert (status, res["deleted"]) == (200, 1)
    assert not path.exists()
    assert gw.call("DELETE", f"/v0/management/auth-files?name={name}")[0] == 404


def test_bad_account_uploads_are_refused(gw: MgmtGateway) -> None:
    auth_dir = Path(gw.config["auth-dir"])
    before = sorted(p.name for p in auth_dir.glob("*.json")) if auth_dir.exists() else []
    name, obj = claude_account("bad@example.com")
    del obj["type"]
    body, ctype = multipart([(name, json.dumps(obj).encode())])
    status, res, _ = gw.call("POST", "/v0/management/auth-files", body, headers={"Content-Type": ctype})
    assert status == 400 and res["field"] == "file" and "'type'" in res["error"]
    good_name, good = claude_account("good@example.com")
    body, ctype = multipart([(good_name, json.dumps(good).encode()), ("../evil.json", b"{}")])
    status, res, _ = gw.call("POST", "/v0/management/auth-files", body, headers={"Content-Type": ctype})
    assert status == 400 and res["field"] == "name"
    status, res, _ = gw.call("POST", "/v0/management/auth-files?name=x.json", b"[1, 2]")
    assert status == 400 and res["field"] == "file"
    for junk in (b"garbage", b"--x\r\n\r\n", b"\xff" * 100):
        status, res, _ = gw.call("POST", "/v0/management/auth-files", junk,
                                 headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert status == 400 and res["field"] == "file", res
    big = json.dumps({**good, "pad": "x" * (1024 * 1024)}).encode()
    status, res, _ = gw.call("POST", "/v0/management/auth-files?name=big.json", big)
    assert status == 400 and "larger than" in res["error"]
    after = sorted(p.name for p in auth_dir.glob("*.json")) if auth_dir.exists() else []
    assert after == before  # nothing written, not even the good file of a refused batch


def test_json_upload_with_a_name(gw: MgmtGateway) -> None:
    name, obj = claude_account("json@example.com")
    status, res, _ = gw.call("POST", f"/v0/management/auth-files?name={name}", json.dumps(obj).encode())
    assert status == 200, res
    assert gw.call("DELETE", f"/v0/management/auth-files?name={name}")[0] == 200


def test_no_secret_in_any_answer(gw: MgmtGateway) -> None:
    name, obj = claude_account("secret@example.com")
    assert gw.call("POST", f"/v0/management/auth-files?name={name}", json.dumps(obj).encode())[0] == 200
    try:
        for path in ("config", "config.yaml", "api-keys", "claude-api-key", "auth-files", "credentials"):
            status, body, _ = gw.call("GET", f"/v0/management/{path}")
            raw = body if isinstance(body, str) else json.dumps(body)
            assert status == 200, path
            for secret in (UPSTREAM_KEY, CLIENT_KEY, MGMT_KEY, obj["access_token"], obj["refresh_token"]):
                assert secret not in raw, (path, secret)
    finally:
        gw.call("DELETE", f"/v0/management/auth-files?name={name}")


# ------------------------------------------------------------------ the rest
def test_unknown_route_and_method(gw: MgmtGateway) -> None:
    assert gw.call("GET", "/v0/management/no-such-thing")[0] == 404
    assert gw.call("POST", "/v0/management/config.yaml", "x")[0] == 405


def test_views_have_their_shapes(gw: MgmtGateway) -> None:
    status, body, _ = gw.call("GET", "/v0/management/usage/totals?by=model")
    assert status == 200 and set(body) >= {"available", "rows"}
    assert gw.call("GET", "/v0/management/usage/totals?by=colour")[1]["field"] == "by"
    assert gw.call("GET", "/v0/management/usage/series?bucket=5")[1]["field"] == "bucket"
    # every group of the usage store filters, an HTTP status only as a number
    assert gw.call("GET", "/v0/management/usage/totals?by=model&status=200")[0] == 200
    status, body, _ = gw.call("GET", "/v0/management/usage/recent?status=ok")
    assert (status, body["field"]) == (400, "status")
    status, body, _ = gw.call("GET", "/v0/management/traces")
    assert status == 200 and isinstance(body["traces"], list)
    assert gw.call("GET", "/v0/management/traces/nope")[0] == 404
    assert gw.call("GET", "/v0/management/request-error-logs")[0] == 200
    assert gw.call("GET", "/v0/management/usage-queue?count=3")[1] == []
    assert gw.call("GET", "/v0/management/get-auth-status?state=unknown")[0] == 404
    assert gw.call("GET", "/v0/management/request-logs/..%2Fconfig.yaml")[0] in (400, 404)


def test_panel_is_served_with_a_strict_policy(gw: MgmtGateway) -> None:
    status, html, hdrs = gw.call("GET", "/management.html", key=None)
    assert status == 200 and hdrs["content-type"].startswith("text/html")
    csp = hdrs["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "<script src=" in html and "<script>" not in html and "style=" not in html
    assert "http://" not in html.replace("http://localhost:.../callback?code=...", "")
    status, js, hdrs = gw.call("GET", "/management-assets/panel.js", key=None)
    assert status == 200 and hdrs["content-type"].startswith("text/javascript")
    assert "innerHTML" not in js and "eval(" not in js
    assert gw.call("GET", "/management-assets/config.yaml", key=None)[0] == 404


def test_credentials_show_cooldowns(upstream: FakeUpstream, tmp_path: Path) -> None:
    g = start(tmp_path, **{"transient-error-cooldown-seconds": 300, "claude-api-key": [
        {"api-key": UPSTREAM_KEY, "base-url": upstream.base, "models": [{"name": "err500", "alias": "broken"}]}]})
    try:
        status, body, _ = g.call("POST", "/v1/messages", {"model": "broken", "max_tokens": 8, "messages": [
            {"role": "user", "content": "hi"}]}, key=CLIENT_KEY)
        assert status >= 500, body  # the upstream fails: the key cools down for 300 s
        creds = g.call("GET", "/v0/management/credentials")[1]["credentials"]
        claude = next(c for c in creds if c["provider"] == "claude")
        assert claude["cooldowns"] and claude["cooldowns"][0]["seconds_left"] > 200, claude
        assert claude["api_key"] == "sk-...6789" and UPSTREAM_KEY not in json.dumps(creds)
    finally:
        g.stop()
