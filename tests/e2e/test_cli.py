"""The crossroute command: version, check, config discovery, refusal to expose, and a gateway
whose upstream is down or whose clients send too much."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from .gateway_process import GatewayProcess, free_port

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path | None = None, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "crossroute", *args], capture_output=True, text=True,
                          timeout=30, cwd=cwd, env=env)


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("crossroute ")


def test_check_example_config_is_valid() -> None:
    r = run("check", "--config", str(ROOT / "config.example.yaml"))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stderr


def test_check_reports_file_line_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("port: 0\nopenai-compatibility:\n  - name: x\n    base-url: nope\n")
    r = run("check", "--config", str(cfg))
    assert r.returncode != 0
    assert f"{cfg}:1: port:" in r.stderr
    assert f"{cfg}:4: openai-compatibility[0].base-url:" in r.stderr


def test_check_yaml_syntax_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("port: 8000\napi-keys: [a, b\n")
    r = run("check", "--config", str(cfg))
    assert r.returncode != 0 and "YAML syntax error" in r.stderr and str(cfg) in r.stderr


def test_no_config_found_says_where_it_looked(tmp_path: Path) -> None:
    r = run("serve", cwd=tmp_path, home=tmp_path)
    assert r.returncode != 0
    assert "no config file found" in r.stderr and "~/.crossroute/config.yaml" in r.stderr


def test_serve_says_which_config_it_uses(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(f"port: {free_port()}\n")
    proc = subprocess.Popen([sys.executable, "-m", "crossroute", "serve"], cwd=tmp_path, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "HOME": str(tmp_path)})
    try:
        first = proc.stderr.readline()  # type: ignore[union-attr]
        assert "using config" in first and str(tmp_path / "config.yaml") in first
    finally:
        proc.terminate()
        proc.wait(10)


def test_refuses_non_loopback_without_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"host: 0.0.0.0\nport: {free_port()}\n")
    r = run("serve", "--config", str(cfg))
    assert r.returncode != 0 and "refusing" in r.stderr and "allow-unauthenticated" in r.stderr


def test_upstream_down_is_a_502_naming_it(tmp_path: Path) -> None:
    gw = GatewayProcess({"openai-compatibility": [{
        "name": "sleepy-ollama", "base-url": f"http://127.0.0.1:{free_port()}/v1", "models": [{"name": "llama"}],
    }]}, tmp_path).start()
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.APIStatusError) as exc:
            client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "hi"}])
        assert exc.value.status_code == 502
        assert "sleepy-ollama" in exc.value.message and "unreachable" in exc.value.message
        with pytest.raises(openai.APIStatusError) as exc:
            list(client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "hi"}],
                                                stream=True))
        assert exc.value.status_code == 502
        assert "Traceback" not in gw.log()
    finally:
        gw.stop()


def test_oversized_body_is_413(tmp_path: Path) -> None:
    gw = GatewayProcess({"body-limit-mb": 0.01, "openai-compatibility": [{
        "name": "x", "base-url": f"http://127.0.0.1:{free_port()}", "models": ["m"]}]}, tmp_path).start()
    try:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 20000}]}).encode()
        req = urllib.request.Request(gw.url + "/v1/chat/completions", data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=10)
        assert exc.value.code == 413
        err = json.loads(exc.value.read())["error"]
        assert "limit" in err["message"] and err["type"] == "invalid_request_error"
        # without Content-Length (chunked): read up to the limit, then refused the same way
        assert _post_chunked(gw.url, body)[0] == 413
        small = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        status, answer = _post_chunked(gw.url, small)
        assert status == 502 and "unreachable" in answer["error"]["message"]  # read whole, sent on
    finally:
        gw.stop()


def _post_chunked(url: str, body: bytes) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        pieces = (body[i:i + 1000] for i in range(0, len(body), 1000))
        conn.request("POST", "/v1/chat/completions", body=pieces, encode_chunked=True,
                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_account_commands_use_the_configs_auth_dir(tmp_path: Path) -> None:
    """``crossroute auth ...`` and ``crossroute check`` with ``--config``: the config's auth-dir
    (``~`` expanded), a bad file named once, secrets never printed; the default is ~/.crossroute."""
    home = tmp_path / "home"
    auth = home / "accounts"
    auth.mkdir(parents=True)
    fixtures = ROOT / "tests" / "fixtures" / "cliproxyapi_auth"
    for name in ("claude-ada@example.com.json", "kimi-1764583200000.json"):
        (auth / name).write_bytes((fixtures / name).read_bytes())
    (auth / "codex-bad.json").write_text("{oops")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("auth-dir: ~/accounts\nmock: [{name: m, models: [x]}]\n")
    r = run("check", "--config", str(cfg), home=home)
    assert r.returncode == 0, r.stderr
    assert f"auth-dir {auth}: 2 accounts (2 usable)" in r.stderr
    assert r.stderr.count("codex-bad.json") == 1 and "skipped" in r.stderr
    r = run("auth", "disable", "ada@example.com", "--config", str(cfg), home=home)
    assert r.returncode == 0 and "claude-ada@example.com.json: disabled" in r.stdout, r.stderr
    r = run("auth", "list", "--config", str(cfg), home=home)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
    assert set(rows) == {"claude-ada@example.com.json", "kimi-1764583200000.json"}
    assert "disabled" in rows["claude-ada@example.com.json"] and "active" in rows["kimi-1764583200000.json"]
    for secret in ("sk-ant-oat01-fixture-claude-access-0001", "kimi-fixture-access-token-0001",
                   "kimi-fixture-refresh-token-0001"):
        assert secret not in r.stdout + r.stderr
    r = run("auth", "remove", "kimi-1764583200000", "--config", str(cfg), home=home)
    assert r.returncode == 0 and not (auth / "kimi-1764583200000.json").exists()
    # a --config that is missing or invalid stops the command (the account would go elsewhere)
    r = run("auth", "list", "--config", str(tmp_path / "nope.yaml"), home=home)
    assert r.returncode == 2 and "nope.yaml does not exist" in r.stderr
    (tmp_path / "bad.yaml").write_text("auth-dir: ~/accounts\nport: 0\n")
    r = run("login", "kimi", "--config", str(tmp_path / "bad.yaml"), home=home)
    assert r.returncode == 2 and "bad.yaml:2: port" in r.stderr
    # no config found and no --auth-dir: ~/.crossroute
    r = run("auth", "list", cwd=tmp_path, home=home)
    assert r.returncode == 0 and f"no accounts in {home / '.crossroute'}" in r.stdout, r.stdout + r.stderr
