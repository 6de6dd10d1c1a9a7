"""Accounts of a CLIProxyAPI auth directory served by a real gateway process, end to end.

- The files of ``tests/fixtures/cliproxyapi_auth`` (one per provider, CLIProxyAPI's formats), given
  only a ``base_url`` pointing at a loopback fake, serve clients of all four formats (official SDKs)
  and list their models in ``/v1/models``; the files are left byte for byte as they were.
- The directory is followed while serving: an added file serves at once, a changed one changes what
  is served, a removed one leaves (its session bindings dropped), a bad one is skipped with one log
  line naming it.
- A 401 refreshes the token (against the fake OAuth server) and resends once; the rotated tokens are
  in the file before the resend reaches the upstream. ``invalid_grant`` marks the account "needs
  login" in ``crossroute auth list`` and takes it out of rotation (the file stays).
- ``crossroute login claude`` (the real entry point) into the directory of a running gateway: the
  account is served without a restart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest
from aiohttp import web
from google import genai
from google.genai import types as gtypes

from crossroute.providers import EXECUTORS

from .fake_oauth import FakeOAuth
from .fake_upstream import FILES, FIXTURES, FakeUpstream
from .gateway_process import GatewayProcess
from .test_auth_login import Cli, browser_env

ROOT = Path(__file__).resolve().parents[2]
AUTH_FIXTURES = FIXTURES / "cliproxyapi_auth"
CLIENT_KEY = "client-key-accounts-e2e"
KIND_OF = {"claude": "claude-oauth", "codex": "codex-oauth", "kimi": "kimi", "antigravity": "antigravity",
           "vertex": "vertex", "xai": "xai"}
SA_EMAIL = "sa@fixture-project.iam.gserviceaccount.com"


class AccountsUpstream(FakeUpstream):
    """FakeUpstream plus the paths of Vertex (Gemini bodies under a project and location) and of
    Antigravity (the Cloud Code envelope: ``{project, model, request}`` in, ``{"response": ...}``
    out, per stream event too). ``inspect`` runs on every request before it is answered."""

    def __init__(self) -> None:
        super().__init__()
        self.inspect: Callable[[dict[str, Any]], None] | None = None

    def make_app(self) -> web.Application:
        app = super().make_app()
        app.router.add_post("/v1/projects/{project}/locations/{location}/publishers/google/models/{tail}",
                            self._gemini)
        app.router.add_post("/v1/publishers/google/models/{tail}", self._gemini)
        app.router.add_post("/v1internal:generateContent", self._cloudcode(stream=False))
        app.router.add_post("/v1internal:streamGenerateContent", self._cloudcode(stream=True))
        return app

    async def _record(self, request: web.Request, kind: str, model: str | None) -> Any:
        body = await super()._record(request, kind, model)
        if self.inspect is not None:
            self.inspect(self.requests[-1])
        return body

    def _cloudcode(self, stream: bool) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            env = await self._record(request, "antigravity", None)
            if not (isinstance(env, dict) and env.get("project") and env.get("model")
                    and isinstance(env.get("request"), dict) and env["request"].get("contents")):
                return web.json_response({"error": {"code": 400, "message": "bad envelope",
                                                    "status": "INVALID_ARGUMENT"}}, status=400)
            stream_file, json_file = FILES["gemini"]["text"]
            if not stream:
                inner = orjson.loads((FIXTURES / str(json_file)).read_bytes())
                return web.json_response({"response": inner, "traceId": "t-1"})
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            data = b""
            for line in (FIXTURES / str(stream_file)).read_bytes().splitlines():
                if line.startswith(b"data:"):
                    inner = orjson.loads(line[5:].strip())
                    data += b"data: " + orjson.dumps({"response": inner, "traceId": "t-1"}) + b"\r\n\r\n"
            sizes, i, k = (7, 61, 3, 130, 1), 0, 0
            while i < len(data):  # events split anywhere, as a real network delivers them
                await resp.write(data[i:i + sizes[k % len(sizes)]])
                i += sizes[k % len(sizes)]
                k += 1
            await resp.write_eof()
            return resp

        return handle


class AccountsGateway(GatewayProcess):
    def __init__(self, config: dict[str, Any], env: dict[str, str]) -> None:
        super().__init__(config)
        self.extra_env = env

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def upstream() -> Iterator[AccountsUpstream]:
    u = AccountsUpstream().start()
    yield u
    u.stop()


@pytest.fixture
def oauth() -> Iterator[FakeOAuth]:
    f = FakeOAuth().start()
    yield f
    f.stop()


def sa_key(oauth: FakeOAuth) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    oauth.sa_keys[SA_EMAIL] = key.public_key()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def copy_auth_dir(dest: Path, upstream: AccountsUpstream, oauth: FakeOAuth) -> dict[str, bytes]:
    """The fixture directory with a ``base_url`` per file (and a fresh Vertex key); name -> bytes."""
    dest.mkdir(mode=0o700)
    written: dict[str, bytes] = {}
    for src in sorted(AUTH_FIXTURES.glob("*.json")):
        obj = orjson.loads(src.read_bytes())
        if obj["type"] != "gemini":  # the unsupported Gemini CLI file is copied as it is
            obj["base_url"] = upstream.base + ("/v1" if obj["type"] == "codex" else "")
        if obj["type"] == "vertex":
            obj["service_account"]["private_key"] = sa_key(oauth)
        data = orjson.dumps(obj) + b"\n"
        (dest / src.name).write_bytes(data)
        written[src.name] = data
    return written


def gateway_env(oauth: FakeOAuth, *providers: str) -> dict[str, str]:
    env = {"CROSSROUTE_VERTEX_TOKEN_URL": f"{oauth.base}/vertex/token"}
    for p in providers:
        env.update(oauth.env(p))
    return env


def start_gateway(auth: Path, env: dict[str, str], **extra: Any) -> AccountsGateway:
    config = {"api-keys": [CLIENT_KEY], "auth-dir": str(auth), "routing": {"session-affinity": True}, **extra}
    return AccountsGateway(config, env).start()


def models(gw: GatewayProcess) -> dict[str, str]:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    return {m.id: m.owned_by for m in c.models.list().data}


def wait_for(check: Callable[[], bool], what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def unique_model(kind: str) -> str:
    """A model only this kind's executor lists (so the request reaches that account)."""
    others = {m for k, ex in EXECUTORS.items() if k != kind for m in getattr(ex, "models", ())}
    return next(m for m in EXECUTORS[kind].models if m not in others)  # type: ignore[attr-defined]


def ask_all_formats(gw: GatewayProcess, model: str) -> list[str]:
    """One request per client format (both streaming modes across them); the texts answered."""
    oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    texts = []
    chat = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    texts.append(chat.choices[0].message.content or "")
    parts = []
    for chunk in oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    texts.append("".join(parts))
    texts.append(oa.responses.create(model=model, input="hi").output_text)
    an = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=30)
    with an.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
        texts.append("".join(s.text_stream))
    ge = genai.Client(api_key=CLIENT_KEY, http_options=gtypes.HttpOptions(base_url=gw.url, api_version="v1beta"))
    texts.append(ge.models.generate_content(model=model, contents="hi").text or "")
    return texts


# ------------------------------------------------------------------ served unchanged
def test_a_cliproxyapi_auth_dir_is_served_unchanged(upstream: AccountsUpstream, oauth: FakeOAuth,
                                                    tmp_path: Path) -> None:
    missing = sorted(k for k in KIND_OF.values() if k not in EXECUTORS)
    assert not missing, f"no executor for {missing}"
    auth = tmp_path / "auth"
    before = copy_auth_dir(auth, upstream, oauth)
    assert len(before) == 7
    gw = start_gateway(auth, gateway_env(oauth))
    try:
        unsupported = [line for line in gw.log().splitlines() if "gemini-alan@example.com" in line]
        assert len(unsupported) == 1 and "does not support" in unsupported[0], unsupported
        listed = models(gw)
        for provider, kind in KIND_OF.items():
            for m in EXECUTORS[kind].models:  # type: ignore[attr-defined]
                assert m in listed, f"{provider}: {m} not in /v1/models"
            assert listed[unique_model(kind)] == kind
        tokens = {"claude": "sk-ant-oat01-fixture-claude-access-0001", "codex": "codex-fixture-access-token-0001",
                  "kimi": "kimi-fixture-access-token-0001", "antigravity": "ya29.fixture-antigravity-access-0001",
                  "xai": "xai-fixture-access-token-0001"}
        for provider, kind in KIND_OF.items():
            upstream.clear()
            model = unique_model(kind)
            texts = ask_all_formats(gw, model)
            assert all(t.strip() for t in texts), (provider, texts)
            assert len(upstream.requests) == 5, (provider, [r["path"] for r in upstream.requests])
            for r in upstream.requests:
                headers = {k.lower(): v for k, v in r["headers"].items()}
                auth_header = headers.get("authorization", "")
                if provider == "vertex":
                    assert r["path"].startswith("/v1/projects/fixture-project/locations/us-central1/publishers/"
                                                f"google/models/{model}:"), r["path"]
                    assert auth_header.startswith("Bearer ya29.vertex-"), "not the minted service-account token"
                else:
                    assert auth_header == f"Bearer {tokens[provider]}", (provider, r["path"])
                if provider == "codex":
                    assert r["path"] == "/v1/responses" and headers.get("chatgpt-account-id") == "acct-fixture-0001"
                if provider == "antigravity":
                    assert r["body"]["project"] == "fixture-project-1" and r["body"]["model"] == model
                if provider == "kimi":
                    assert headers.get("x-msh-device-id") == "5b1f0d3e-9c7a-4f2e-8d61-0c4b2a9e7f13"
        assert oauth.minted == 1  # the Vertex token is minted once and cached
        assert oauth.refresh_count == 0
        for name, data in before.items():
            assert (auth / name).read_bytes() == data, f"{name} was rewritten"
        for secret in tokens.values():
            assert secret not in gw.log()
    finally:
        gw.stop()


# ------------------------------------------------------------------ the directory is followed
CODEX_FILE = "codex-5f2b1c9e-grace@example.com-plus.json"


def test_files_added_changed_removed_and_bad_while_serving(upstream: AccountsUpstream, oauth: FakeOAuth,
                                                           tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    auth.mkdir(mode=0o700)
    staged = tmp_path / "staged"
    copy_auth_dir(staged, upstream, oauth)
    gw = start_gateway(auth, gateway_env(oauth))
    try:
        model = unique_model("codex-oauth")
        assert model not in models(gw)
        shutil.copy(staged / CODEX_FILE, auth / CODEX_FILE)  # added
        wait_for(lambda: model in models(gw), "the added account's models")
        oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
        assert oa.responses.create(model=model, input="hi").output_text
        # changed: the file now excludes that model
        obj = orjson.loads((auth / CODEX_FILE).read_bytes())
        (auth / CODEX_FILE).write_bytes(orjson.dumps({**obj, "excluded_models": [model]}))
        wait_for(lambda: model not in models(gw), "the exclusion to apply")
        others = [m for m in EXECUTORS["codex-oauth"].models if m != model]  # type: ignore[attr-defined]
        assert others[0] in models(gw)
        # a bad file is skipped with one log line naming it, also across later rescans
        (auth / "kimi-1764583299999.json").write_text("{not json")
        (auth / "xai-nofields.json").write_text('{"type": "xai"}')
        wait_for(lambda: "kimi-1764583299999.json" in gw.log() and "xai-nofields.json" in gw.log(), "the bad files")
        oa.responses.create(model=others[0], input="hi")  # binds this session to the account
        (auth / CODEX_FILE).unlink()  # removed (and a rescan happens)
        wait_for(lambda: others[0] not in models(gw), "the removed account to leave")
        wait_for(lambda: f"session binding(s) of credential auth:{CODEX_FILE}" in gw.log(), "bindings dropped")
        lines = [line for line in gw.log().splitlines() if "kimi-1764583299999.json" in line]
        assert len(lines) == 1 and "skipped" in lines[0], lines
        lines = [line for line in gw.log().splitlines() if "xai-nofields.json" in line]
        assert len(lines) == 1 and "neither 'access_token' nor 'refresh_token'" in lines[0], lines
        with pytest.raises(openai.APIStatusError):
            oa.responses.create(model=others[0], input="hi")
        assert gw.proc is not None and gw.proc.poll() is None
    finally:
        gw.stop()


# ------------------------------------------------------------------ 401 -> refresh -> one resend
CLAUDE_FILE = "claude-ada@example.com.json"


def claude_account(auth: Path, upstream: AccountsUpstream, oauth: FakeOAuth) -> tuple[str, str]:
    access, refresh = oauth.issue_refresh("claude")
    obj = orjson.loads((AUTH_FIXTURES / CLAUDE_FILE).read_bytes())
    obj.update(access_token=access, refresh_token=refresh, base_url=upstream.base)
    auth.mkdir(mode=0o700, exist_ok=True)
    (auth / CLAUDE_FILE).write_bytes(orjson.dumps(obj))
    return access, refresh


def auth_list(config: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "crossroute", "auth", "list", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_401_refreshes_once_then_invalid_grant_needs_login(upstream: AccountsUpstream, oauth: FakeOAuth,
                                                           tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    access, refresh = claude_account(auth, upstream, oauth)
    upstream.fail_next[access] = [401]
    on_disk: list[dict[str, Any]] = []
    upstream.inspect = lambda _r: on_disk.append(orjson.loads((auth / CLAUDE_FILE).read_bytes()))
    gw = start_gateway(auth, gateway_env(oauth, "claude"))
    model = unique_model("claude-oauth")
    try:
        an = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=30)
        msg = an.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
        assert msg.content and msg.content[0].text  # type: ignore[union-attr]
        assert oauth.refresh_count == 1 and oauth.errors == []
        sent = [r["headers"]["Authorization"] for r in upstream.requests]
        new = orjson.loads((auth / CLAUDE_FILE).read_bytes())
        assert sent == [f"Bearer {access}", f"Bearer {new['access_token']}"]
        assert new["access_token"] != access and new["refresh_token"] != refresh  # rotated
        assert on_disk[1]["access_token"] == new["access_token"], "the resend came before the file was written"
        assert on_disk[1]["refresh_token"] == new["refresh_token"]
        assert new["account_uuid"] == "acc-uuid-fixture" and new["claude_device_ids"] == ["dev-fixture-1"]
        # the running gateway records the account's quota (rate-limit headers) where auth list reads it

        def quota_shown() -> bool:
            row = next(line for line in auth_list(gw.config_path).splitlines() if line.startswith(CLAUDE_FILE))
            return "left" in row and " active " in row

        wait_for(quota_shown, "auth list to show the quota the gateway saw", within=20)
        # the provider revokes the refresh token: the next 401 marks the account "needs login" (past
        # refresh.RECENT: a 401 right after a refresh is answered with the token just minted)
        time.sleep(2.2)
        oauth.refresh_mode = "invalid_grant"
        upstream.fail_next[new["access_token"]] = [401]
        with pytest.raises(anthropic.APIStatusError):
            an.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
        wait_for(lambda: model not in models(gw), "the account to leave rotation")
        listing = auth_list(gw.config_path)
        line = next(line for line in listing.splitlines() if line.startswith(CLAUDE_FILE))
        assert "needs login" in line
        for secret in (access, refresh, new["access_token"], new["refresh_token"]):
            assert secret not in listing and secret not in gw.log()
        assert (auth / CLAUDE_FILE).is_file()  # kept for a new login
        assert f"account {CLAUDE_FILE} needs login" in gw.log() and "crossroute login claude" in gw.log()
    finally:
        gw.stop()


# ------------------------------------------------------------------ crossroute login into a running gateway
def test_login_through_the_cli_is_served_without_restart(upstream: AccountsUpstream, oauth: FakeOAuth,
                                                         tmp_path: Path) -> None:
    auth = tmp_path / "auth"  # made by the login, not by the gateway
    env = gateway_env(oauth, "claude")
    gw = start_gateway(auth, env)
    model = unique_model("claude-oauth")
    try:
        assert not auth.exists() and model not in models(gw)
        cli = Cli(["login", "claude", "--config", str(gw.config_path), "--timeout", "30"], {**env, **browser_env()})
        assert cli.finish() == 0, cli.text
        file = auth / CLAUDE_FILE
        assert file.is_file()
        wait_for(lambda: model in models(gw), "the new account's models")
        assert "active" in auth_list(gw.config_path)
        # point it at the fake (accounts' base URLs are overridable) and use it
        obj = orjson.loads(file.read_bytes())
        file.write_bytes(orjson.dumps({**obj, "base_url": upstream.base}))
        an = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=30)

        def served() -> bool:
            try:
                an.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
            except anthropic.APIStatusError:
                return False
            return True

        wait_for(served, "a request served by the logged-in account")
        assert upstream.requests[-1]["headers"]["Authorization"] == f"Bearer {obj['access_token']}"
    finally:
        gw.stop()


def test_a_reload_with_another_auth_dir_swaps_the_accounts(upstream: AccountsUpstream, oauth: FakeOAuth,
                                                           tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    copy_auth_dir(staged, upstream, oauth)
    first, second = tmp_path / "first", tmp_path / "second"
    for d, name in ((first, CODEX_FILE), (second, CLAUDE_FILE)):
        d.mkdir(mode=0o700)
        shutil.copy(staged / name, d / name)
    gw = start_gateway(first, gateway_env(oauth))
    codex, claude = unique_model("codex-oauth"), unique_model("claude-oauth")
    try:
        oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
        oa.responses.create(model=codex, input="hi")  # a session bound to the codex account
        assert codex in models(gw) and claude not in models(gw)
        gw.write_config({**gw.config, "auth-dir": str(second)})
        wait_for(lambda: claude in models(gw), "the second directory's account")
        assert codex not in models(gw)
        wait_for(lambda: f"session binding(s) of credential auth:{CODEX_FILE}" in gw.log(), "bindings dropped")
        assert oa.chat.completions.create(model=claude, messages=[{"role": "user", "content": "hi"}]).choices
        # the old directory is no longer followed
        shutil.copy(staged / "kimi-1764583200000.json", first / "kimi-1764583200000.json")
        time.sleep(1.5)
        assert unique_model("kimi") not in models(gw)
    finally:
        gw.stop()


class WorkersGateway(AccountsGateway):
    def argv(self) -> list[str]:
        return [*super().argv(), "--workers", "2"]


def ask_fresh(gw: GatewayProcess, model: str) -> int:
    """One Responses request on a new connection (so both workers get some)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request("POST", "/v1/responses", body=orjson.dumps({"model": model, "input": "hi"}),
                     headers={"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_every_worker_follows_the_auth_dir(upstream: AccountsUpstream, oauth: FakeOAuth, tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    copy_auth_dir(staged, upstream, oauth)
    auth = tmp_path / "auth"
    auth.mkdir(mode=0o700)
    config = {"api-keys": [CLIENT_KEY], "auth-dir": str(auth)}
    gw = WorkersGateway(config, {**gateway_env(oauth), "PYTHONUNBUFFERED": "1"}).start()
    model = unique_model("codex-oauth")
    try:
        wait_for(lambda: gw.log().count(" ready") >= 2, "both workers")
        shutil.copy(staged / CODEX_FILE, auth / CODEX_FILE)
        wait_for(lambda: all(ask_fresh(gw, model) == 200 for _ in range(20)), "every worker to serve the account")
        (auth / CODEX_FILE).unlink()
        wait_for(lambda: all(ask_fresh(gw, model) != 200 for _ in range(20)), "every worker to drop the account")
    finally:
        gw.stop()


def test_a_codex_account_with_websockets_is_reached_over_websocket(oauth: FakeOAuth, tmp_path: Path) -> None:
    """``websockets: true`` in a CLIProxyAPI Codex file: the turn goes out as ``response.create``
    on a WebSocket to ``<base_url>/responses``, with the account's token and account id."""
    from .fake_ws_upstream import TEXT, FakeWsUpstream

    obj = orjson.loads((AUTH_FIXTURES / CODEX_FILE).read_bytes())
    ws = FakeWsUpstream(key=obj["access_token"]).start()
    try:
        auth = tmp_path / "auth"
        auth.mkdir(mode=0o700)
        (auth / CODEX_FILE).write_bytes(orjson.dumps({**obj, "base_url": ws.base + "/backend-api/codex",
                                                      "websockets": True}))
        gw = start_gateway(auth, gateway_env(oauth))
        model = unique_model("codex-oauth")
        try:
            oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
            assert oa.responses.create(model=model, input="hi").output_text == TEXT
            chat = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            assert chat.choices[0].message.content == TEXT
            creates = ws.creates()
            assert len(creates) == 2 and all(c["model"] == model for c in creates)
            conn = ws.connections[0]
            headers = {k.lower(): v for k, v in conn.headers.items()}
            assert conn.path == "/backend-api/codex/responses"
            assert headers["chatgpt-account-id"] == "acct-fixture-0001"
            assert headers["openai-beta"].startswith("responses_websockets=")
        finally:
            gw.stop()
    finally:
        ws.stop()


def test_replicas_sharing_redis_refresh_an_account_once(upstream: AccountsUpstream, oauth: FakeOAuth,
                                                         tmp_path: Path) -> None:
    """Two gateway processes, each with its own copy of one account file, sharing Redis: a 401 on
    each refreshes once in all (the second takes the tokens the first minted, so the rotated refresh
    token is never used twice) and both resend successfully."""
    from tests.redis_server import RedisServer

    with RedisServer() as redis:
        access, _refresh = claude_account(tmp_path / "a", upstream, oauth)
        (tmp_path / "b").mkdir(mode=0o700)
        shutil.copy(tmp_path / "a" / CLAUDE_FILE, tmp_path / "b" / CLAUDE_FILE)
        upstream.fail_next[access] = [401, 401]
        env = gateway_env(oauth, "claude")
        gws = [start_gateway(tmp_path / d, env, state={"redis-url": redis.url}) for d in ("a", "b")]
        model = unique_model("claude-oauth")
        try:
            for gw in gws:
                an = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=30)
                msg = an.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
                assert msg.content
            assert oauth.refresh_count == 1 and oauth.errors == []
            files = [orjson.loads((tmp_path / d / CLAUDE_FILE).read_bytes()) for d in ("a", "b")]
            assert files[0]["access_token"] == files[1]["access_token"] != access
            assert files[0]["refresh_token"] == files[1]["refresh_token"]
            sent = [r["headers"]["Authorization"] for r in upstream.requests]
            assert sent == [f"Bearer {access}", f"Bearer {files[0]['access_token']}"] * 2
        finally:
            for gw in gws:
                gw.stop()


def test_channel_aliases_and_exclusions_through_the_gateway(upstream: AccountsUpstream, oauth: FakeOAuth,
                                                            tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    copy_auth_dir(staged, upstream, oauth)
    auth = tmp_path / "auth"
    auth.mkdir(mode=0o700)
    for name in ("kimi-1764583200000.json", CLAUDE_FILE):
        shutil.copy(staged / name, auth / name)
    kimi = EXECUTORS["kimi"].models[0]  # type: ignore[attr-defined]
    claude_models = list(EXECUTORS["claude-oauth"].models)  # type: ignore[attr-defined]
    hidden, kept = claude_models[-1], claude_models[0]
    gw = start_gateway(auth, gateway_env(oauth), **{
        "oauth-model-alias": {"kimi": [{"name": kimi, "alias": "k2"}],
                              "claude": [{"name": kept, "alias": "main", "fork": True}]},
        "oauth-excluded-models": {"claude": [hidden]}})
    try:
        listed = models(gw)
        assert "k2" in listed and kimi not in listed  # the alias replaces the name
        assert "main" in listed and kept in listed  # fork: both
        assert hidden not in listed
        an = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=30)
        upstream.clear()
        an.messages.create(model="k2", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
        assert upstream.requests[-1]["body"]["model"] == kimi
        an.messages.create(model="main", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
        assert upstream.requests[-1]["body"]["model"] == kept
        with pytest.raises(anthropic.APIStatusError):
            an.messages.create(model=hidden, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    finally:
        gw.stop()


def test_the_gateway_refreshes_ahead_of_expiry_in_the_background(upstream: AccountsUpstream, oauth: FakeOAuth,
                                                                  tmp_path: Path) -> None:
    from crossroute.auth.accounts import format_time

    auth = tmp_path / "auth"
    access, refresh = claude_account(auth, upstream, oauth)
    obj = orjson.loads((auth / CLAUDE_FILE).read_bytes())
    obj["expired"] = format_time(time.time() + 1800)  # within Claude's 4 h lead, and not the +1 h a refresh gives
    (auth / CLAUDE_FILE).write_bytes(orjson.dumps(obj))
    gw = start_gateway(auth, gateway_env(oauth, "claude"))
    try:
        wait_for(lambda: oauth.refresh_count == 1, "a background refresh", within=20)
        wait_for(lambda: orjson.loads((auth / CLAUDE_FILE).read_bytes())["access_token"] != access, "the file")
        new = orjson.loads((auth / CLAUDE_FILE).read_bytes())
        assert new["refresh_token"] != refresh and new["expired"] != obj["expired"]
        an = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=30)
        an.messages.create(model=unique_model("claude-oauth"), max_tokens=64,
                           messages=[{"role": "user", "content": "hi"}])
        assert upstream.requests[-1]["headers"]["Authorization"] == f"Bearer {new['access_token']}"
        time.sleep(6)  # one more background check: nothing is due now
        assert oauth.refresh_count == 1 and oauth.errors == []
    finally:
        gw.stop()
