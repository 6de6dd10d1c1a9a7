"""Subscription accounts served end to end: a real ``crossroute serve`` whose only credentials are a
Claude OAuth account and a Codex (ChatGPT) account in its auth-dir, both pointed at the strict fake
(``fake_subscription.py``), driven by clients of all four formats (streaming and not) through the
official SDKs and plain HTTP, and then by the real Claude Code and Codex CLIs.

What the fake saw is checked each time: the exact path, the account's Bearer token (never the
client's gateway key), the OAuth beta flag, ``ChatGPT-Account-ID``, ``stream: true`` and
``store: false`` on Codex, and the client's own headers passed through (or, for other clients, no
Claude Code or Codex identity invented).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.provider_support import serving

from . import cli_support as cs
from .conftest import CLIENT_KEY
from .fake_subscription import (
    CLAUDE_TOKEN,
    CODEX_ACCOUNT,
    CODEX_TOKEN,
    OAUTH_BETA,
    TEXT,
    FakeSubscription,
)
from .gateway_process import GatewayProcess
from .test_real_clis import fresh_home, need_cli

CLAUDE_MODEL = "claude-sonnet-4-6"
CODEX_MODEL = "gpt-5.5"
LONG_TOOL = "mcp__corporate-knowledge-base__search_documents_by_semantic_similarity_v2"


def write_accounts(auth_dir: Path, fake: FakeSubscription) -> None:
    """One Claude and one Codex account, in CLIProxyAPI's file names and fields."""
    auth_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    far = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30 * 86400))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    claude = {"type": "claude", "email": "user@example.com", "access_token": CLAUDE_TOKEN,
              "refresh_token": "sk-ant-ort01-fake", "id_token": "", "expired": far, "last_refresh": now,
              "account_uuid": "b3c1b6f0-0000-4000-8000-000000000001", "base_url": fake.base}
    codex = {"type": "codex", "email": "user@example.com", "access_token": CODEX_TOKEN,
             "refresh_token": "codex-refresh-fake", "id_token": "", "account_id": CODEX_ACCOUNT, "expired": far,
             "last_refresh": now, "base_url": fake.codex_base}
    for name, obj in (("claude-user@example.com.json", claude), ("codex-user@example.com-plus.json", codex)):
        path = auth_dir / name
        path.write_text(json.dumps(obj))
        os.chmod(path, 0o600)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSubscription]:
    yield from serving(FakeSubscription())


@pytest.fixture(scope="module")
def gateway(fake: FakeSubscription, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("oauth-gw")
    write_accounts(work / "auth", fake)
    cfg = {"api-keys": [CLIENT_KEY], "auth-dir": str(work / "auth"), "read-timeout-seconds": 10,
           "connect-timeout-seconds": 2, "disable-cooling": True}
    gw = GatewayProcess(cfg, work).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the accounts are loaded before the first request, but be sure
        if {CLAUDE_MODEL, CODEX_MODEL} <= models(gw):
            break
        time.sleep(0.1)
    yield gw
    gw.stop()


@pytest.fixture(autouse=True)
def fresh(fake: FakeSubscription) -> None:
    fake.clear()


def models(gw: GatewayProcess) -> set[str]:
    req = urllib.request.Request(gw.url + "/v1/models", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return {m["id"] for m in json.loads(r.read())["data"]}
    except OSError:
        return set()


def post(gw: GatewayProcess, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
         ) -> tuple[int, bytes]:
    req = urllib.request.Request(gw.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "x-goog-api-key": CLIENT_KEY,
                                          "Authorization": f"Bearer {CLIENT_KEY}", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def check_claude_upstream(fake: FakeSubscription, *, stream: bool, claude_code: bool = False) -> dict[str, Any]:
    rec = fake.last("claude")
    h = rec["headers"]
    assert rec["path"] == "/v1/messages" and rec["query"] == "beta=true"
    assert h["authorization"] == f"Bearer {CLAUDE_TOKEN}" and CLIENT_KEY not in json.dumps(h)
    assert OAUTH_BETA in h["anthropic-beta"].split(",")
    assert h["anthropic-version"] == "2023-06-01"
    assert rec["body"]["model"] == CLAUDE_MODEL and bool(rec["body"].get("stream")) is stream
    if not claude_code:
        assert "x-app" not in h and "x-claude-code-session-id" not in h
        assert not h.get("user-agent", "").startswith("claude-cli")
    return rec


def check_codex_upstream(fake: FakeSubscription, codex_client: bool = False) -> dict[str, Any]:
    rec = fake.last("codex")
    h = rec["headers"]
    assert rec["path"] == "/backend-api/codex/responses"
    assert h["authorization"] == f"Bearer {CODEX_TOKEN}" and h["chatgpt-account-id"] == CODEX_ACCOUNT
    assert rec["body"]["stream"] is True and rec["body"]["store"] is False
    assert rec["body"]["model"] == CODEX_MODEL
    if not codex_client:
        assert "originator" not in h and not h.get("user-agent", "").startswith("codex")
    return rec


# ---------------------------------------------------------------------------------------------- four formats
def test_both_accounts_contribute_their_models(gateway: GatewayProcess) -> None:
    served = models(gateway)
    assert CLAUDE_MODEL in served and CODEX_MODEL in served


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_through_the_claude_account(gateway: GatewayProcess, fake: FakeSubscription,
                                                  stream: bool) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0)
    kwargs: dict[str, Any] = {"model": CLAUDE_MODEL, "max_tokens": 64,
                              "messages": [{"role": "user", "content": "Say hello"}]}
    if stream:
        with client.messages.stream(**kwargs) as s:
            text = s.get_final_text()
    else:
        text = "".join(b.text for b in client.messages.create(**kwargs).content if b.type == "text")
    assert text == TEXT
    check_claude_upstream(fake, stream=stream)


def test_count_tokens_through_the_claude_account(gateway: GatewayProcess, fake: FakeSubscription) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0)
    n = client.messages.count_tokens(model=CLAUDE_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert n.input_tokens == 17
    assert fake.last("claude")["path"] == "/v1/messages/count_tokens"


@pytest.mark.parametrize("model", [CLAUDE_MODEL, CODEX_MODEL])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat_sdk_through_each_account(gateway: GatewayProcess, fake: FakeSubscription, model: str,
                                              stream: bool) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    messages: Any = [{"role": "user", "content": "Say hello"}]
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in
                       client.chat.completions.create(model=model, messages=messages, stream=True) if c.choices)
    else:
        text = client.chat.completions.create(model=model, messages=messages).choices[0].message.content or ""
    assert text == TEXT
    if model == CLAUDE_MODEL:
        check_claude_upstream(fake, stream=stream)
    else:
        check_codex_upstream(fake)


@pytest.mark.parametrize("model", [CLAUDE_MODEL, CODEX_MODEL])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_responses_sdk_through_each_account(gateway: GatewayProcess, fake: FakeSubscription, model: str,
                                                   stream: bool) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    if stream:
        with client.responses.stream(model=model, input="Say hello") as s:
            text = s.get_final_response().output_text
    else:
        text = client.responses.create(model=model, input="Say hello", max_output_tokens=200).output_text
    assert text == TEXT
    if model == CLAUDE_MODEL:
        check_claude_upstream(fake, stream=stream)
    else:
        rec = check_codex_upstream(fake)
        assert "max_output_tokens" not in rec["body"]


@pytest.mark.parametrize("model", [CLAUDE_MODEL, CODEX_MODEL])
@pytest.mark.parametrize("stream", [False, True])
def test_gemini_format_through_each_account(gateway: GatewayProcess, fake: FakeSubscription, model: str,
                                            stream: bool) -> None:
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    status, raw = post(gateway, f"/v1beta/models/{model}:{action}",
                       {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]})
    assert status == 200, raw
    if stream:
        chunks = [json.loads(line[5:]) for line in raw.decode().splitlines() if line.startswith("data:")]
    else:
        chunks = [json.loads(raw)]
    text = "".join(p.get("text", "") for c in chunks for cand in c.get("candidates", [])
                   for p in cand.get("content", {}).get("parts", []))
    assert text == TEXT
    if model == CLAUDE_MODEL:
        check_claude_upstream(fake, stream=stream)
    else:
        check_codex_upstream(fake)


def test_gemini_count_tokens_through_the_claude_account(gateway: GatewayProcess, fake: FakeSubscription) -> None:
    status, raw = post(gateway, f"/v1beta/models/{CLAUDE_MODEL}:countTokens",
                       {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert status == 200 and json.loads(raw)["totalTokens"] == 17, raw
    assert fake.last("claude")["path"] == "/v1/messages/count_tokens"


def test_a_token_the_upstream_echoes_is_masked(gateway: GatewayProcess, fake: FakeSubscription) -> None:
    fake.fail_next["claude"] = ["echo"]
    status, raw = post(gateway, "/v1/chat/completions", {"model": CLAUDE_MODEL,
                                                         "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400 and b"bad request for" in raw, raw
    assert CLAUDE_TOKEN.encode() not in raw and CLAUDE_TOKEN not in gateway.log()


def test_claude_codes_headers_reach_the_upstream(gateway: GatewayProcess, fake: FakeSubscription) -> None:
    headers = {"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14", "x-app": "cli",
               "X-Claude-Code-Session-Id": "24d0c343-dd83-4302-8b82-f1d7ff44e6a5",
               "User-Agent": "claude-cli/2.1.332 (external, sdk-cli)", "anthropic-version": "2023-06-01"}
    status, raw = post(gateway, "/v1/messages?beta=true", {"model": CLAUDE_MODEL, "max_tokens": 32,
                                                           "messages": [{"role": "user", "content": "hi"}]}, headers)
    assert status == 200, raw
    h = check_claude_upstream(fake, stream=False, claude_code=True)["headers"]
    assert h["anthropic-beta"] == "claude-code-20250219,interleaved-thinking-2025-05-14," + OAUTH_BETA
    assert h["x-app"] == "cli" and h["x-claude-code-session-id"] == headers["X-Claude-Code-Session-Id"]
    assert h["user-agent"] == headers["User-Agent"]


def test_codex_clients_headers_reach_the_upstream_and_long_tools_come_back(gateway: GatewayProcess,
                                                                            fake: FakeSubscription) -> None:
    headers = {"session-id": "01a2333e-1d16", "thread-id": "01a2333e-1d16", "originator": "codex_exec",
               "version": "0.171.0", "x-codex-window-id": "01a2333e-1d16:0",
               "User-Agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.171.0)"}
    body = {"model": CODEX_MODEL, "input": "look it up", "stream": True,
            "tools": [{"type": "function", "name": LONG_TOOL, "parameters": {"type": "object"}}]}
    status, raw = post(gateway, "/v1/responses", body, headers)
    assert status == 200, raw
    rec = check_codex_upstream(fake, codex_client=True)
    for name, value in headers.items():
        assert rec["headers"][name.lower()] == value
    sent = rec["body"]["tools"][0]["name"]
    assert len(sent) <= 64 and sent.encode() not in raw and LONG_TOOL.encode() in raw


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_client_calls_a_long_named_tool_through_the_codex_account(
        gateway: GatewayProcess, fake: FakeSubscription, stream: bool) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0)
    kwargs: dict[str, Any] = {
        "model": CODEX_MODEL, "max_tokens": 128, "messages": [{"role": "user", "content": "look it up"}],
        "tools": [{"name": LONG_TOOL, "description": "search", "input_schema": {"type": "object"}},
                  {"name": "read_file", "input_schema": {"type": "object"}}]}
    if stream:
        with client.messages.stream(**kwargs) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [c.name for c in calls] == [LONG_TOOL] and calls[0].input == {"q": "x"}
    rec = check_codex_upstream(fake)
    sent = [t["name"] for t in rec["body"]["tools"]]
    assert sent[1] == "read_file" and len(sent[0]) <= 64 and sent[0] != LONG_TOOL
    assert "max_output_tokens" not in rec["body"]


def test_a_refusal_scoped_to_claude_code_reaches_the_client_and_the_prompt_is_not_rewritten(
        gateway: GatewayProcess, fake: FakeSubscription) -> None:
    fake.claude_code_only = True
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CLAUDE_MODEL, messages=[{"role": "system", "content": "Be brief."},
                                                                     {"role": "user", "content": "hi"}])
    assert "only authorized for use with Claude Code" in str(err.value)
    assert "Be brief." in json.dumps(fake.last("claude")["body"]["system"])


def test_compaction_through_the_codex_account(gateway: GatewayProcess, fake: FakeSubscription) -> None:
    body = {"model": CODEX_MODEL, "instructions": "be brief",
            "input": [{"role": "user", "content": "look it up"},
                      {"type": "function_call", "call_id": "c1", "name": LONG_TOOL, "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c1", "output": "found"}]}
    status, raw = post(gateway, "/v1/responses/compact", body, {"originator": "codex_exec"})
    assert status == 200, raw
    answer = json.loads(raw)
    assert answer["object"] == "response.compaction" and answer["output"][0]["name"] == LONG_TOOL
    rec = fake.last("codex")
    assert rec["path"] == "/backend-api/codex/responses/compact" and "stream" not in rec["body"]
    assert rec["headers"]["chatgpt-account-id"] == CODEX_ACCOUNT and rec["headers"]["originator"] == "codex_exec"
    assert rec["body"]["input"][1]["name"] != LONG_TOOL


def test_usage_limit_of_the_codex_account_is_a_429_with_its_reset(gateway: GatewayProcess,
                                                                  fake: FakeSubscription) -> None:
    fake.fail_next["codex"] = ["429"]
    status, raw = post(gateway, "/v1/responses", {"model": CODEX_MODEL, "input": "hi"})
    assert status == 429, raw
    assert b"usage limit" in raw.lower()


# ---------------------------------------------------------------------------------------------- the real CLIs
def describe(run: cs.CliRun, gateway: GatewayProcess) -> str:
    return (f"exit {run.returncode}\nstdout:\n{run.stdout[-2000:]}\nstderr:\n{run.stderr[-2000:]}\n"
            f"gateway log:\n{gateway.log()[-3000:]}")


def test_claude_code_through_the_oauth_account(gateway: GatewayProcess, fake: FakeSubscription) -> None:
    claude = need_cli("claude")
    home = fresh_home()
    env = cs.claude_env(home, gateway.url, CLIENT_KEY, CLAUDE_MODEL)
    run = cs.run_cli([claude, "-p", "Say hello", "--output-format", "json"], env, home / "work", timeout=120)
    info = describe(run, gateway)
    result = json.loads(run.stdout) if run.stdout.strip().startswith("{") else {}
    assert run.returncode == 0 and result.get("result", "").strip() == TEXT, info
    assert not run.connects, "Claude Code reached other addresses than 127.0.0.1:\n" + "\n".join(run.connects)
    rec = [r for r in fake.requests if r["service"] == "claude" and r["path"] == "/v1/messages"][-1]
    h = rec["headers"]
    assert h["authorization"] == f"Bearer {CLAUDE_TOKEN}" and OAUTH_BETA in h["anthropic-beta"]
    assert h["user-agent"].startswith("claude-cli/") and h["x-app"] == "cli"
    assert h.get("x-claude-code-session-id")
    assert "claude-code-20250219" in h["anthropic-beta"]  # Claude Code's own betas kept


def test_codex_cli_through_the_chatgpt_account(gateway: GatewayProcess, fake: FakeSubscription) -> None:
    codex = need_cli("codex")
    home = fresh_home()
    env = cs.codex_env(home, gateway.url, CLIENT_KEY, CODEX_MODEL)
    run = cs.run_cli([codex, "exec", "--skip-git-repo-check", "Say hello"], env, home / "work", timeout=120)
    info = describe(run, gateway)
    assert run.returncode == 0 and TEXT in run.stdout, info
    assert not run.connects, "Codex reached other addresses than 127.0.0.1:\n" + "\n".join(run.connects)
    rec = check_codex_upstream(fake, codex_client=True)
    h = rec["headers"]
    assert h["originator"] == "codex_exec" and h["user-agent"].startswith("codex_exec/")
    assert h.get("session-id") or h.get("session_id")
