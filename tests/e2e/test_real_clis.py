"""The real Claude Code, Codex CLI and Gemini CLI (from npm) against a running crossroute.

Each CLI runs non-interactively with an isolated HOME, configured the way the README tells users,
through a recording proxy into a `crossroute serve` process in front of the fake upstream. A run passes
when the CLI prints the fake upstream's answer text, every answer the CLI got was below 500, the gateway
is still serving, and (under strace) the CLI connected to no address but 127.0.0.1.

The CLIs are looked up in CROSSROUTE_CLI_DIR (default ~/.cache/crossroute-clis, where `.ci/run`
installs the pinned versions); without them the tests skip, except under CROSSROUTE_REQUIRE_SERVICES=1.
CROSSROUTE_RECORD_CLIENTS=1 rewrites tests/fixtures/clients/ from the same-format runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import cli_support as cs
from .conftest import CLIENT_KEY, provider_config
from .fake_upstream import FakeUpstream
from .gateway_process import GatewayProcess

REPO = Path(__file__).resolve().parents[2]
RECORD = os.environ.get("CROSSROUTE_RECORD_CLIENTS") == "1"
REQUIRE_SERVICES = os.environ.get("CROSSROUTE_REQUIRE_SERVICES") == "1"
CODEX_MODEL = "gpt-5.5"  # a model Codex knows: it then sends its custom apply_patch and tool_search tools
KINDS = ("claude", "openai", "responses", "gemini")


def need_cli(name: str) -> str:
    """The CLI's path, or skip (fail under CI, where .ci/run installs it)."""
    path = cs.find_cli(name)
    problem = None
    if path is None:
        problem = f"{name} is not installed (run .ci/run, or npm install --prefix {cs.cli_dir()} {cs.BINARIES[name]})"
    elif name != "claude" and shutil.which("node") is None:  # codex and gemini start through node
        problem = "node is not on PATH"
    elif REQUIRE_SERVICES and shutil.which("strace") is None:
        problem = "strace is required under CI to check that the CLIs stay on 127.0.0.1"
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(f"{problem} (required under CROSSROUTE_REQUIRE_SERVICES=1)")
        pytest.skip(problem)
    assert path is not None
    return path


def gateway_config(upstream: FakeUpstream, kind: str, keys: bool = True) -> dict[str, Any]:
    """Only one upstream kind, so that the models the CLIs know by name reach it."""
    cfg = provider_config(upstream, kinds=(kind,))
    entries = {
        "openai": cfg.get("openai-compatibility", [None])[0],
        "claude": (cfg.get("claude-api-key") or [None])[0],
        "gemini": (cfg.get("gemini-api-key") or [None])[0],
        "responses": (cfg.get("codex-api-key") or [None])[0],
    }
    entry = entries[kind]
    assert entry is not None
    entry["models"].append({"name": "text", "alias": CODEX_MODEL})
    return {
        "api-keys": [CLIENT_KEY] if keys else [],
        "read-timeout-seconds": 10,
        "connect-timeout-seconds": 2,
        "disable-cooling": True,
        **cfg,
    }


class Served:
    """A gateway for one upstream kind, and the recording proxy in front of it."""

    def __init__(self, upstream: FakeUpstream, kind: str, workdir: Path, keys: bool = True) -> None:
        self.kind = kind
        self.gateway = GatewayProcess(gateway_config(upstream, kind, keys), workdir).start()
        self.proxy = cs.RecordingProxy(self.gateway.url).start()

    def stop(self) -> None:
        self.proxy.stop()
        self.gateway.stop()

    def alive(self) -> bool:
        if self.gateway.proc is None or self.gateway.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.gateway.url + "/healthz", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.gateway.log().splitlines()[-lines:])


@pytest.fixture(scope="module")
def served(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    started: dict[str, Served] = {}

    class Lazy(dict[str, Served]):
        def __missing__(self, kind: str) -> Served:
            s = Served(upstream, kind, tmp_path_factory.mktemp(f"gw-{kind}"))
            started[kind] = s
            self[kind] = s
            return s

    yield Lazy()
    for s in started.values():
        s.stop()


def fresh_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="crossroute-cli-"))
    (home / "work").mkdir()
    return home


def report(run: cs.CliRun, srv: Served) -> str:
    seen = [f"{e.method} {e.path} -> {e.status} {e.error or ''} {e.response_body[:300]!r}" for e in srv.proxy.exchanges]
    return (
        f"argv: {run.argv}\nexit {run.returncode} after {run.seconds:.1f}s\nstdout:\n{run.stdout[-3000:]}\n"
        f"stderr:\n{run.stderr[-3000:]}\nexchanges:\n" + "\n".join(seen) + f"\ngateway log:\n{srv.log_tail()}"
    )


def check_run(run: cs.CliRun, srv: Served) -> None:
    """What every run must show besides the answer: no 5xx, gateway alive, offline."""
    info = report(run, srv)
    assert srv.proxy.exchanges, "the CLI sent nothing to the gateway\n" + info
    server_errors = [e for e in srv.proxy.exchanges if e.status >= 500]
    assert not server_errors, "the gateway answered 5xx (or died)\n" + info
    assert srv.alive(), "the gateway process is no longer serving\n" + info
    assert not run.connects, "the CLI tried to reach addresses other than 127.0.0.1:\n" + "\n".join(run.connects)


def record(srv: Served, path_part: str, name: str, client: str, cli: str) -> None:
    if not RECORD:
        return
    for e in srv.proxy.exchanges:
        if path_part in e.path and e.method == "POST":
            cs.write_fixture(name, cs.fixture_from(e, client, cs.installed_version(cli), cs.FIXTURE_NOTES[name]))
            return


# ----------------------------------------------------------------------------------------------------------------


def test_ci_installs_the_pinned_versions() -> None:
    """.ci/run installs exactly the versions this file was tested with."""
    script = (REPO / ".ci" / "run").read_text()
    pins = dict(re.findall(r"(@[a-z0-9-]+/[a-z0-9-]+)@(\d+\.\d+\.\d+)", script))
    assert pins == cs.PINNED


@pytest.mark.parametrize("name", ["claude", "codex", "gemini"])
def test_installed_cli_is_the_pinned_version(name: str) -> None:
    need_cli(name)
    version = cs.installed_version(name)
    if version is None:
        pytest.skip(f"{name} found on PATH, not in {cs.cli_dir()}; its version is not checked")
    assert version == cs.PINNED[cs.BINARIES[name]]


@pytest.mark.parametrize("kind", KINDS)
def test_claude_code(kind: str, served: dict[str, Served]) -> None:
    """claude -p, as the README configures it, served by each upstream kind."""
    claude = need_cli("claude")
    srv = served[kind]
    srv.proxy.clear()
    home = fresh_home()
    env = cs.claude_env(home, srv.proxy.url, CLIENT_KEY, f"{kind}-text")
    run = cs.run_cli([claude, "-p", "Say hello", "--output-format", "json"], env, home / "work", timeout=120)
    info = report(run, srv)
    try:
        result = json.loads(run.stdout)
    except ValueError:
        pytest.fail("claude printed no JSON result\n" + info)
    assert run.returncode == 0 and not result.get("is_error"), info
    assert result.get("result", "").strip() == cs.expected_text(kind).strip(), info
    check_run(run, srv)
    messages = [e for e in srv.proxy.exchanges if e.path == "/v1/messages"]
    assert messages and all(e.status == 200 for e in messages), info
    if kind == "claude":
        record(srv, "/v1/messages", "claude_code_messages.json", "claude-code", "claude")


def run_codex(srv: Served, model: str, websockets: bool = False) -> cs.CliRun:
    codex = need_cli("codex")
    home = fresh_home()
    env = cs.codex_env(home, srv.proxy.url, CLIENT_KEY, model, websockets=websockets)
    return cs.run_cli([codex, "exec", "--skip-git-repo-check", "Say hello"], env, home / "work", timeout=120)


@pytest.mark.parametrize("kind", KINDS)
def test_codex(kind: str, served: dict[str, Served]) -> None:
    """codex exec with a model_provider at crossroute (wire_api responses), served by each upstream kind.

    The model is one Codex knows, so its request carries a custom tool (apply_patch), tool_search
    and web_search besides function tools (tests/fixtures/clients/codex_responses.json).
    """
    srv = served[kind]
    srv.proxy.clear()
    run = run_codex(srv, CODEX_MODEL)
    info = report(run, srv)
    assert run.returncode == 0, info
    assert run.stdout.strip() == cs.expected_text(kind).strip(), info
    check_run(run, srv)
    posts = [e for e in srv.proxy.exchanges if e.path == "/v1/responses" and e.method == "POST"]
    assert posts and all(e.status == 200 for e in posts), info
    tool_types = {t.get("type") for t in (posts[0].json() or {}).get("tools", [])}
    assert {"function", "custom"} <= tool_types, info
    if kind == "responses":
        record(srv, "/v1/responses", "codex_responses.json", "codex-cli", "codex")


@pytest.mark.parametrize("kind", KINDS)
def test_codex_namespace_tools(kind: str, served: dict[str, Served]) -> None:
    """With a model name Codex does not know it sends a `namespace` tool (multi_agent_v1)."""
    srv = served[kind]
    srv.proxy.clear()
    run = run_codex(srv, f"{kind}-text")
    info = report(run, srv)
    assert run.returncode == 0, info
    assert run.stdout.strip() == cs.expected_text(kind).strip(), info
    check_run(run, srv)
    posts = [e for e in srv.proxy.exchanges if e.path == "/v1/responses" and e.method == "POST"]
    assert "namespace" in {t.get("type") for t in (posts[0].json() or {}).get("tools", [])}, info
    if kind == "responses":
        record(srv, "/v1/responses", "codex_responses_namespace.json", "codex-cli", "codex")


def test_codex_chatgpt_login_zstd_body_and_websocket(upstream: FakeUpstream, tmp_path: Path) -> None:
    """Codex's built-in openai provider with a ChatGPT login and openai_base_url at crossroute (the
    CLIProxyAPI-style set-up): it tries a WebSocket first (the recording proxy in front cannot relay
    one, so it falls back) and then POSTs zstd-compressed bodies. The gateway runs without api-keys,
    since the login token is Codex's own. Codex over a WebSocket to the gateway itself is
    tests/e2e/test_responses_ws.py."""
    codex = need_cli("codex")
    srv = Served(upstream, "responses", tmp_path, keys=False)
    try:
        home = fresh_home()
        env = cs.codex_chatgpt_env(home, srv.proxy.url, CODEX_MODEL)
        run = cs.run_cli([codex, "exec", "--skip-git-repo-check", "Say hello"], env, home / "work", timeout=120)
        info = report(run, srv)
        assert srv.alive(), "the WebSocket upgrade ended the gateway\n" + info
        posts = [e for e in srv.proxy.exchanges if e.path == "/v1/responses" and e.method == "POST"]
        assert posts and (posts[0].header("content-encoding") or "").lower() == "zstd", info
        assert all(e.status == 200 for e in posts), "a zstd body must be decoded\n" + info
        assert run.returncode == 0, info
        assert run.stdout.strip() == cs.expected_text("responses").strip(), info
        check_run(run, srv)
    finally:
        srv.stop()


def scripted_entry(kind: str, base: str) -> dict[str, Any]:
    """One credential of `kind` at the scripted upstream, serving CODEX_MODEL as upstream model `m`."""
    models = [{"name": "m", "alias": CODEX_MODEL}]
    if kind == "openai":
        return {"openai-compatibility": [{"name": "scripted", "base-url": base + "/v1",
                                          "api-key-entries": [{"api-key": "sk-scripted"}], "models": models}]}
    key = {"claude": "claude-api-key", "gemini": "gemini-api-key", "responses": "codex-api-key"}[kind]
    return {key: [{"api-key": "sk-scripted", "base-url": base + ("/v1" if kind == "responses" else ""),
                   "models": models}]}


class ToolRoundTrip:
    """A CLI run against a gateway in front of a ScriptedToolUpstream: one tool call, then text."""

    def __init__(self, kind: str, workdir: Path, tool: str, arguments: dict[str, Any]) -> None:
        self.scripted = cs.ScriptedToolUpstream(tool, arguments).start()
        config = {"api-keys": [CLIENT_KEY], "disable-cooling": True, **scripted_entry(kind, self.scripted.base)}
        self.gateway = GatewayProcess(config, workdir).start()
        self.proxy = cs.RecordingProxy(self.gateway.url).start()

    def run(self, argv: list[str], env: dict[str, str], cwd: Path, target: Path) -> tuple[cs.CliRun, str]:
        run = cs.run_cli(argv, env, cwd, timeout=120)
        seen = [f"{e.method} {e.path} -> {e.status} {e.response_body[:300]!r}" for e in self.proxy.exchanges]
        info = (f"exit {run.returncode}\nstdout:\n{run.stdout[-2000:]}\nstderr:\n{run.stderr[-2000:]}\n"
                + "\n".join(seen) + "\ngateway log:\n" + self.gateway.log()[-3000:])
        assert run.returncode == 0, info
        assert target.exists() and target.read_text().strip() == cs.PATCH_TEXT, "the tool did not run\n" + info
        assert len(self.scripted.requests) == 2, info  # the tool call, then the turn with its result
        posts = [e for e in self.proxy.exchanges if e.method == "POST"]
        assert len(posts) == 2 and all(e.status == 200 for e in posts), info
        assert not run.connects, "\n".join(run.connects)
        assert self.gateway.proc is not None and self.gateway.proc.poll() is None, info
        return run, info

    def stop(self) -> None:
        self.proxy.stop()
        self.gateway.stop()
        self.scripted.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_claude_code_tool_round_trip(kind: str, tmp_path: Path) -> None:
    """Claude Code over each upstream kind with a tool call: the upstream calls its Write tool, Claude
    Code writes the file, and the tool_result (next to its mid-conversation system message) reaches the
    upstream as that format's tool result, which answers with text."""
    claude = need_cli("claude")
    home = fresh_home()
    target = home / "work" / cs.PATCH_FILE
    trip = ToolRoundTrip(kind, tmp_path, "Write", {"file_path": str(target), "content": cs.PATCH_TEXT + "\n"})
    try:
        env = cs.claude_env(home, trip.proxy.url, CLIENT_KEY, CODEX_MODEL)
        argv = [claude, "-p", f"Create {cs.PATCH_FILE}", "--output-format", "json", "--permission-mode", "acceptEdits"]
        run, info = trip.run(argv, env, home / "work", target)
        assert json.loads(run.stdout).get("result", "").strip() == cs.PATCHED, info
        second = trip.proxy.exchanges[-1].json() or {}
        blocks = [b for m in second.get("messages", []) if isinstance(m.get("content"), list) for b in m["content"]]
        assert any(b.get("type") == "tool_result" for b in blocks), info
    finally:
        trip.stop()


@pytest.mark.parametrize("kind", ["openai", "claude", "gemini"])
def test_codex_apply_patch_round_trip(kind: str, tmp_path: Path) -> None:
    """Codex's custom apply_patch tool over a chat, Anthropic or Gemini upstream: the upstream calls the
    function it was offered, Codex gets its own custom_tool_call back, applies the patch, and the tool's
    output reaches the upstream as that format's tool result, which answers with text."""
    codex = need_cli("codex")
    home = fresh_home()
    trip = ToolRoundTrip(kind, tmp_path, "apply_patch", {"input": cs.PATCH})
    try:
        env = cs.codex_env(home, trip.proxy.url, CLIENT_KEY, CODEX_MODEL)
        argv = [codex, "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                f"Create {cs.PATCH_FILE}"]
        run, info = trip.run(argv, env, home / "work", home / "work" / cs.PATCH_FILE)
        assert run.stdout.strip() == cs.PATCHED, info
        second = trip.proxy.exchanges[-1].json() or {}
        items = second.get("input", [])
        calls = [i for i in items if i.get("type") == "custom_tool_call"]
        assert calls and calls[0].get("name") == "apply_patch" and calls[0].get("input") == cs.PATCH, info
        assert any(i.get("type") == "custom_tool_call_output" for i in items), info
    finally:
        trip.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_gemini_cli_tool_round_trip(kind: str, tmp_path: Path) -> None:
    """Gemini CLI over each upstream kind with a call of its write_file tool (--approval-mode yolo)."""
    gemini = need_cli("gemini")
    home = fresh_home()
    target = home / "work" / cs.PATCH_FILE
    trip = ToolRoundTrip(kind, tmp_path, "write_file", {"file_path": str(target), "content": cs.PATCH_TEXT + "\n"})
    try:
        env = cs.gemini_env(home, trip.proxy.url, CLIENT_KEY)
        argv = [gemini, "-p", f"Create {cs.PATCH_FILE}", "-m", CODEX_MODEL, "-o", "json", "--approval-mode", "yolo"]
        run, info = trip.run(argv, env, home / "work", target)
        assert json.loads(run.stdout[run.stdout.index("{"):]).get("response", "").strip() == cs.PATCHED, info
        second = trip.proxy.exchanges[-1].json() or {}
        parts = [p for c in second.get("contents", []) for p in c.get("parts", [])]
        assert any("functionResponse" in p for p in parts), info
    finally:
        trip.stop()


@pytest.mark.parametrize("kind", ["gemini", "openai", "claude", "responses"])
def test_gemini_cli(kind: str, served: dict[str, Served]) -> None:
    """gemini -p with ~/.gemini/settings.json selecting gemini-api-key, GOOGLE_GEMINI_BASE_URL and
    GEMINI_API_KEY (the README's two variables alone make Gemini CLI 0.61 pick the "gateway" auth type,
    which it refuses), served by each upstream kind."""
    gemini = need_cli("gemini")
    srv = served[kind]
    srv.proxy.clear()
    home = fresh_home()
    env = cs.gemini_env(home, srv.proxy.url, CLIENT_KEY)
    argv = [gemini, "-p", "Say hello", "-m", f"{kind}-text", "-o", "json"]
    run = cs.run_cli(argv, env, home / "work", timeout=120)
    info = report(run, srv)
    assert run.returncode == 0, info
    try:
        result = json.loads(run.stdout[run.stdout.index("{"):])
    except ValueError:
        pytest.fail("gemini printed no JSON result\n" + info)
    assert result.get("response", "").strip() == cs.expected_text(kind).strip(), info
    check_run(run, srv)
    if kind == "gemini":
        record(srv, ":streamGenerateContent", "gemini_cli_generate.json", "gemini-cli", "gemini")


def test_gemini_cli_env_only_is_refused(served: dict[str, Served]) -> None:
    """Documents why the settings file is needed: the two variables alone give "Invalid auth method"."""
    gemini = need_cli("gemini")
    srv = served["gemini"]
    home = fresh_home()
    env = cs.gemini_env(home, srv.proxy.url, CLIENT_KEY)
    (home / ".gemini" / "settings.json").write_text(
        json.dumps({k: v for k, v in cs.GEMINI_SETTINGS.items() if k != "security"})
    )
    run = cs.run_cli([gemini, "-p", "Say hello", "-m", "gemini-text"], env, home / "work", timeout=120)
    assert run.returncode != 0
    assert "Invalid auth method" in run.stdout + run.stderr
