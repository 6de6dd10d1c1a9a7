"""The README quick start on a fresh machine: copy config.example.yaml, ``crossroute check`` says OK,
``crossroute serve --config <it> --port <free>`` answers plain HTTP requests (what curl sends) in all
four client APIs, streaming and not, with no Ollama and no account. Also what ``check`` prints
for secrets from the environment and for keys crossroute does not implement yet."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .example_gateway import EXAMPLE, ExampleGateway

ANSWER = "mock answer to: Say hello"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleGateway]:
    g = ExampleGateway(Path(tmp_path_factory.mktemp("first-run"))).start()
    yield g
    g.stop()


def post(gw: ExampleGateway, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    req = urllib.request.Request(gw.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=20) as r:
        assert r.status == 200
        return r.read()


def sse_data(raw: bytes) -> list[Any]:
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


def test_openai_chat(gw: ExampleGateway) -> None:
    body = {"model": "local", "messages": [{"role": "user", "content": "Say hello"}]}
    r = json.loads(post(gw, "/v1/chat/completions", body))
    assert r["choices"][0]["message"]["content"] == ANSWER and r["usage"]["completion_tokens"] > 0
    raw = post(gw, "/v1/chat/completions", {**body, "stream": True})
    assert raw.rstrip().endswith(b"data: [DONE]")
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in sse_data(raw) if e["choices"]) == ANSWER


def test_openai_responses(gw: ExampleGateway) -> None:
    r = json.loads(post(gw, "/v1/responses", {"model": "local", "input": "Say hello"}))
    assert r["status"] == "completed" and r["output"][0]["content"][0]["text"] == ANSWER
    events = sse_data(post(gw, "/v1/responses", {"model": "local", "input": "Say hello", "stream": True}))
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == ANSWER
    assert events[-1]["type"] == "response.completed"


def test_anthropic_messages(gw: ExampleGateway) -> None:
    body = {"model": "local", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]}
    headers = {"anthropic-version": "2023-06-01"}
    r = json.loads(post(gw, "/v1/messages", body, headers))
    assert r["content"] == [{"type": "text", "text": ANSWER}] and r["usage"]["output_tokens"] > 0
    events = sse_data(post(gw, "/v1/messages", {**body, "stream": True}, headers))
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == ANSWER
    assert events[-1]["type"] == "message_stop"


def test_gemini(gw: ExampleGateway) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}
    r = json.loads(post(gw, "/v1beta/models/local:generateContent", body))
    assert r["candidates"][0]["content"]["parts"][0]["text"] == ANSWER
    assert r["usageMetadata"]["candidatesTokenCount"] > 0
    events = sse_data(post(gw, "/v1beta/models/local:streamGenerateContent?alt=sse", body))
    assert "".join(p["text"] for e in events for p in e["candidates"][0]["content"]["parts"]) == ANSWER


def test_models(gw: ExampleGateway) -> None:
    with urllib.request.urlopen(gw.url + "/v1/models", timeout=10) as r:
        ids = [m["id"] for m in json.loads(r.read())["data"]]
    assert sorted(ids) == ["local", "mock-model"]


# ---------------------------------------------------------------- crossroute check


def check(cfg: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crossroute", "check", "--config", str(cfg)], capture_output=True,
                          text=True, timeout=30, env={**os.environ, **(env or {})}, cwd=cfg.parent)


def test_check_the_example_prints_ok_and_nothing_else(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    shutil.copyfile(EXAMPLE, cfg)
    r = check(cfg)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines() == [f"{cfg}: OK (1 upstream credential; mock only: canned answers until "
                                             "a real upstream is added)"]


def test_check_warns_about_keys_accepted_but_not_implemented(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(EXAMPLE.read_text() + "pprof: {enable: true}\ntls: {enable: false}\n")
    r = check(cfg)
    assert r.returncode == 0, r.stderr
    lines = EXAMPLE.read_text().count("\n")
    assert f"warning: {cfg}:{lines + 1}: pprof: accepted but not implemented yet, ignored" in r.stderr
    assert f"warning: {cfg}:{lines + 2}: tls: accepted but not implemented yet, ignored" in r.stderr


SECRET = "sk-live-0123456789abcdef"


def test_check_takes_keys_from_the_environment_and_never_prints_them(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "codex-api-key:\n"
        "  - api-key: ${UPSTREAM_KEY}\n"
        "    # a key pasted where a name belongs is warned about; the warning quotes no key\n"
        f"    {SECRET}: 1\n"
        "    headers: {Authorization: 'Bearer ${UPSTREAM_KEY}'}\n"
    )
    r = check(cfg, {"UPSTREAM_KEY": SECRET})
    assert r.returncode == 0, r.stderr
    assert "OK (1 upstream credential)" in r.stderr and "unknown key" in r.stderr
    assert SECRET not in r.stderr + r.stdout and "sk-...cdef" in r.stderr
    # an invalid value quoting the key: the problem is reported, the key is not
    cfg.write_text(f"port: '{SECRET}'\ncodex-api-key:\n  - api-key: ${{UPSTREAM_KEY}}\n")
    r = check(cfg, {"UPSTREAM_KEY": SECRET})
    assert r.returncode != 0 and f"{cfg}:1: port:" in r.stderr
    assert SECRET not in r.stderr + r.stdout


def test_an_unset_variable_names_file_line_and_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("port: 8400\nclaude-api-key:\n  - api-key: ${CROSSROUTE_TEST_UNSET_KEY}\n")
    env = {k: v for k, v in os.environ.items() if k != "CROSSROUTE_TEST_UNSET_KEY"}
    r = subprocess.run([sys.executable, "-m", "crossroute", "check", "--config", str(cfg)], capture_output=True,
                       text=True, timeout=30, env=env, cwd=tmp_path)
    assert r.returncode != 0
    assert f"{cfg}:3: environment variable CROSSROUTE_TEST_UNSET_KEY is not set" in r.stderr
    r = subprocess.run([sys.executable, "-m", "crossroute", "serve", "--config", str(cfg)], capture_output=True,
                       text=True, timeout=30, env=env, cwd=tmp_path)
    assert r.returncode != 0 and f"{cfg}:3: environment variable CROSSROUTE_TEST_UNSET_KEY" in r.stderr
