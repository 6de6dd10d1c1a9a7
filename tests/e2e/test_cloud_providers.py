"""The native cloud providers end to end: a real ``crossroute serve`` whose credentials are a Kimi
account, an Antigravity account (no project in its file: discovered), a Vertex service account
(tokens minted from its key at the fake token endpoint), a ``vertex-api-key`` and an
``xai-api-key``, all pointed at the strict fake (``fake_cloud.py``), driven by clients of all four
formats, streamed and not, through the official SDKs.

Each answer's text is the recorded transcript's; each upstream request is checked by the fake
(exact path, auth, device headers, envelope, cleaned schemas) and here (which endpoint the client's
format went to, no gateway key upstream).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.provider_support import serving

from .conftest import CLIENT_KEY
from .fake_cloud import API_KEY, DEVICE_ID, PROJECT, TOKEN, FakeCloud, Seen
from .fake_oauth import FakeOAuth
from .gateway_process import GatewayProcess
from .test_matrix import CALL, CLIENTS, expected

crypto = pytest.importorskip("cryptography")

# client-visible model -> (provider the fake records it under, upstream model)
MODELS = {
    "kimi-code": ("kimi", "kimi-for-coding"),
    "ag-flash": ("antigravity", "gemini-3-flash"),
    "ag-claude": ("antigravity", "claude-sonnet-4-6"),
    "vx-flash": ("vertex", "gemini-2.5-flash"),
    "vertex-key-text": ("vertex", "text"),
    "xai-text": ("xai", "text"),
}
MSH = {"X-Msh-Platform": "crossroute", "X-Msh-Version": "0.1.0", "X-Msh-Device-Name": "test-host",
       "X-Msh-Device-Model": "Linux x86_64", "X-Msh-Device-Id": DEVICE_ID}


def service_account(oauth: FakeOAuth) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    email = f"sa@{PROJECT}.iam.gserviceaccount.com"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    oauth.sa_keys[email] = key.public_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": PROJECT, "private_key_id": "kid-1", "private_key": pem,
            "client_email": email, "client_id": "1", "token_uri": f"{oauth.base}/vertex/token"}


def write_accounts(auth: Path, fake: FakeCloud, oauth: FakeOAuth) -> None:
    """Files in CLIProxyAPI's names and fields, with base URLs pointed at the fake."""
    auth.mkdir(mode=0o700, parents=True, exist_ok=True)
    far = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    files = {
        "kimi-1700000000000.json": {"type": "kimi", "access_token": TOKEN, "refresh_token": "kimi-refresh-fake",
                                    "token_type": "Bearer", "device_id": DEVICE_ID, "headers": MSH, "expired": far,
                                    "base_url": fake.base + "/coding",
                                    "model_aliases": {"kimi-for-coding": "kimi-code"}},
        "antigravity-a@example.com.json": {
            "type": "antigravity", "email": "a@example.com", "access_token": TOKEN, "refresh_token": "ag-refresh",
            "expired": far, "base_url": fake.base,
            "model_aliases": {"gemini-3-flash": "ag-flash", "claude-sonnet-4-6": "ag-claude", "err200": "ag-err200",
                              "err503": "ag-err503"}},
        f"vertex-{PROJECT}.json": {"type": "vertex", "service_account": service_account(oauth), "project_id": PROJECT,
                                   "email": f"sa@{PROJECT}.iam.gserviceaccount.com", "location": "global",
                                   "base_url": fake.base, "model_aliases": {"gemini-2.5-flash": "vx-flash"}},
    }
    for name, obj in files.items():
        path = auth / name
        path.write_text(json.dumps(obj))
        os.chmod(path, 0o600)


@pytest.fixture(scope="module")
def oauth() -> Iterator[FakeOAuth]:
    yield from serving(FakeOAuth())


@pytest.fixture(scope="module")
def fake(oauth: FakeOAuth) -> Iterator[FakeCloud]:
    srv = FakeCloud(project=PROJECT).start()
    srv.force_encoding = "gzip"  # every answer compressed, as Google's front ends may: the gateway decodes
    srv.token_ok = lambda t: oauth.access_tokens.get(t) == "vertex"  # the service account's minted tokens
    yield srv
    srv.stop()


def models(gw: GatewayProcess) -> set[str]:
    req = urllib.request.Request(gw.url + "/v1/models", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return {m["id"] for m in json.loads(r.read())["data"]}
    except OSError:
        return set()


@pytest.fixture(scope="module")
def gateway(fake: FakeCloud, oauth: FakeOAuth, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("cloud-gw")
    write_accounts(work / "auth", fake, oauth)
    cfg = {
        "api-keys": [CLIENT_KEY], "auth-dir": str(work / "auth"), "read-timeout-seconds": 10,
        "connect-timeout-seconds": 2, "disable-cooling": True,
        "vertex-api-key": [{"api-key": API_KEY, "base-url": fake.base,
                            "models": [{"name": "text", "alias": "vertex-key-text"}]}],
        "xai-api-key": [{"api-key": API_KEY, "base-url": fake.base + "/v1",
                         "models": [{"name": "text", "alias": "xai-text"}, {"name": "err429", "alias": "xai-429"}]}],
    }
    gw = GatewayProcess(cfg, work).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not set(MODELS) <= models(gw):
        time.sleep(0.1)
    yield gw
    gw.stop()


def post(gw: GatewayProcess, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(gw.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}",
                                          "x-goog-api-key": CLIENT_KEY})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def upstream_kind(provider: str, client: str) -> str:
    """The recording the fake answered with: the wire the client's format was spoken to in."""
    if provider == "kimi":
        return "claude" if client == "claude" else "openai"
    if provider == "xai":
        return "responses"
    return "gemini"


def check_seen(seen: Seen, provider: str, client: str, upstream_model: str, stream: bool) -> None:
    assert seen.problems == [], seen.problems
    assert CLIENT_KEY not in json.dumps(seen.headers)
    if provider == "kimi":
        assert seen.path == ("/coding/v1/messages" if client == "claude" else "/coding/v1/chat/completions")
        assert seen.body["model"] == upstream_model and bool(seen.body.get("stream")) is stream
        assert {k: seen.headers[k] for k in MSH} == MSH
    elif provider == "antigravity":
        assert seen.path == ("/v1internal:streamGenerateContent" if stream else "/v1internal:generateContent")
        assert seen.body["project"] == PROJECT and seen.body["model"] == upstream_model
    elif provider == "vertex":
        action = "streamGenerateContent" if stream else "generateContent"
        if upstream_model == "text":  # the vertex-api-key entry: express mode
            assert seen.path == f"/v1/publishers/google/models/text:{action}"
        else:
            assert seen.path == f"/v1/projects/{PROJECT}/locations/global/publishers/google/models/" \
                                f"{upstream_model}:{action}"
            assert seen.headers["Authorization"].startswith("Bearer ya29.vertex-")
    else:
        assert seen.path == "/v1/responses"
        assert bool(seen.body.get("stream")) is stream
        if client != "responses":
            assert seen.body.get("store") is False  # a translated request is not stored upstream


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("client", CLIENTS)
def test_every_client_format(gateway: GatewayProcess, fake: FakeCloud, client: str, model: str, stream: bool) -> None:
    provider, upstream_model = MODELS[model]
    before = len(fake.of(provider))
    got = CALL[client](gateway, model, stream)
    want = expected(upstream_kind(provider, client), "text", stream)
    assert got.text == want.text
    seen = fake.of(provider)[before:]
    assert len(seen) == 1, [s.path for s in seen]
    check_seen(seen[0], provider, client, upstream_model, stream)


def test_antigravity_project_discovered_once(gateway: GatewayProcess, fake: FakeCloud) -> None:
    for _ in range(2):
        CALL["openai"](gateway, "ag-flash", False)
    discovery = fake.of("discovery")
    assert [s.path for s in discovery] == ["/v1internal:loadCodeAssist"]
    assert discovery[0].problems == []


def test_tools_reach_antigravity_claude_cleaned(gateway: GatewayProcess, fake: FakeCloud) -> None:
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
              "properties": {"path": {"type": "string", "format": "uri", "minLength": 1},
                             "mode": {"type": "string", "enum": ["r", "w"], "default": "r"},
                             "opts": {"anyOf": [{"type": "object", "properties": {}}, {"type": "null"}]}},
              "required": ["path"]}
    status, body = post(gateway, "/v1/chat/completions", {
        "model": "ag-claude", "messages": [{"role": "user", "content": "read it"}],
        "tools": [{"type": "function", "function": {"name": "read_file", "parameters": schema}}]})
    assert status == 200, body
    seen = fake.of("antigravity")[-1]
    assert seen.problems == []
    req = seen.body["request"]
    assert req["toolConfig"]["functionCallingConfig"]["mode"] == "VALIDATED"
    params = req["tools"][0]["functionDeclarations"][0]["parameters"]
    assert params["required"] == ["path"] and "Allowed: r, w" in params["properties"]["mode"]["description"]
    assert params["properties"]["opts"]["required"] == ["reason"]  # VALIDATED calls: an object requires something


def test_count_tokens_upstream(gateway: GatewayProcess, fake: FakeCloud) -> None:
    status, body = post(gateway, "/v1/messages/count_tokens",
                        {"model": "kimi-code", "messages": [{"role": "user", "content": "hi"}]})
    assert (status, body) == (200, {"input_tokens": 42})
    assert fake.of("kimi")[-1].path == "/coding/v1/messages/count_tokens"
    for model, provider in (("vx-flash", "vertex"), ("ag-flash", "antigravity")):
        status, body = post(gateway, f"/v1beta/models/{model}:countTokens",
                            {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        assert status == 200 and body["totalTokens"] == 42, body
        seen = fake.of(provider)[-1]
        assert seen.path.endswith(":countTokens") and seen.problems == []


def test_upstream_429_reaches_the_client(gateway: GatewayProcess, fake: FakeCloud) -> None:
    status, body = post(gateway, "/v1/chat/completions",
                        {"model": "xai-429", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 429, body
    assert API_KEY not in json.dumps(body)


def test_models_listed(gateway: GatewayProcess) -> None:
    assert set(MODELS) <= models(gateway)


def test_kimi_tool_history_from_an_openai_client(gateway: GatewayProcess, fake: FakeCloud) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    status, body = post(gateway, "/v1/chat/completions", {"model": "kimi-code", "messages": [
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"}],
        "tools": [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]})
    assert status == 200, body
    seen = fake.of("kimi")[-1]
    assert seen.problems == [] and seen.body["messages"][1]["reasoning_content"]


def test_no_secret_in_the_gateway_log(gateway: GatewayProcess, oauth: FakeOAuth) -> None:
    CALL["openai"](gateway, "vx-flash", False)
    deadline = time.monotonic() + 5
    while "credential=auth:vertex-" not in (log := gateway.log()) and time.monotonic() < deadline:
        time.sleep(0.1)  # the access log is flushed once a second
    assert "credential=auth:vertex-" in log  # the log did see these requests
    for secret in (TOKEN, API_KEY, *oauth.access_tokens):
        assert secret not in log


@pytest.mark.parametrize(("model", "statuses"), [("ag-err200", {502}), ("ag-err503", {502, 503})])
def test_broken_answers_are_a_clear_error_naming_the_account(gateway: GatewayProcess, model: str,
                                                              statuses: set[int]) -> None:
    status, body = post(gateway, "/v1/chat/completions", {"model": model, "messages": [{"role": "user",
                                                                                        "content": "hi"}]})
    assert status in statuses, (status, body)
    assert body["error"]["message"]
    if model == "ag-err200":  # an error object in a 200 is named as such, with the account
        assert "antigravity-a@example.com.json" in body["error"]["message"]


# ---------------------------------------------------------------------------------------------- the real CLIs
def _describe(run: Any, gateway: GatewayProcess) -> str:
    return (f"exit {run.returncode}\nstdout:\n{run.stdout[-2000:]}\nstderr:\n{run.stderr[-2000:]}\n"
            f"gateway log:\n{gateway.log()[-3000:]}")


def test_claude_code_through_the_kimi_account(gateway: GatewayProcess, fake: FakeCloud) -> None:
    """Kimi's documentation lists Claude Code among the tools its subscription may be used from."""
    from . import cli_support as cs
    from .test_real_clis import fresh_home, need_cli

    claude = need_cli("claude")
    home = fresh_home()
    before = len(fake.of("kimi"))
    run = cs.run_cli([claude, "-p", "Say hello", "--output-format", "json"],
                     cs.claude_env(home, gateway.url, CLIENT_KEY, "kimi-code"), home / "work", timeout=120)
    info = _describe(run, gateway)
    result = json.loads(run.stdout) if run.stdout.strip().startswith("{") else {}
    assert run.returncode == 0 and result.get("result", "").strip() == expected("claude", "text", True).text, info
    assert not run.connects, "Claude Code reached other addresses than 127.0.0.1:\n" + "\n".join(run.connects)
    seen = [s for s in fake.of("kimi")[before:] if s.path == "/coding/v1/messages"]
    assert seen and all(s.problems == [] for s in seen), info
    h = seen[-1].headers
    assert h["User-Agent"].startswith("claude-cli/")  # the real client, not crossroute's or Kimi's
    assert h["X-Msh-Device-Id"] == DEVICE_ID and h["Authorization"] == f"Bearer {TOKEN}"


def test_codex_cli_through_xai(gateway: GatewayProcess, fake: FakeCloud) -> None:
    from . import cli_support as cs
    from .test_real_clis import fresh_home, need_cli

    codex = need_cli("codex")
    home = fresh_home()
    before = len(fake.of("xai"))
    run = cs.run_cli([codex, "exec", "--skip-git-repo-check", "Say hello"],
                     cs.codex_env(home, gateway.url, CLIENT_KEY, "xai-text"), home / "work", timeout=120)
    info = _describe(run, gateway)
    assert run.returncode == 0 and expected("responses", "text", True).text in run.stdout, info
    assert not run.connects, "Codex reached other addresses than 127.0.0.1:\n" + "\n".join(run.connects)
    seen = [s for s in fake.of("xai")[before:] if s.path == "/v1/responses"]
    assert seen and all(s.problems == [] for s in seen), info
    assert seen[-1].headers["Authorization"] == f"Bearer {API_KEY}" and seen[-1].body["stream"] is True
