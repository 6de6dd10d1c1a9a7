"""Support for driving the real Claude Code, Codex CLI and Gemini CLI against a test gateway.

- where the CLIs are installed (``CROSSROUTE_CLI_DIR``, default ``~/.cache/crossroute-clis``; `.ci/run`
  installs the pinned versions there with ``npm install --prefix``),
- one isolated home per run with the config each CLI reads, written the way the README tells users,
- a recording proxy on loopback between the CLI and the gateway: it relays bytes unchanged (compressed
  bodies, HEAD, WebSocket upgrade requests) and keeps every request and status the CLI saw,
- a run under ``strace -e connect`` (when strace is there) that lists every address the CLI tried to
  reach, so a test can prove the CLI talked to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from ..loopback import ThreadedApp
from .fake_upstream import FILES, FIXTURES

# The versions .ci/run installs (tests/e2e/test_real_clis.py checks the two lists agree).
PINNED: dict[str, str] = {
    "@anthropic-ai/claude-code": "2.1.332",
    "@openai/codex": "0.171.0",
    "@google/gemini-cli": "0.61.0",
}
BINARIES: dict[str, str] = {
    "claude": "@anthropic-ai/claude-code",
    "codex": "@openai/codex",
    "gemini": "@google/gemini-cli",
}

CLIENT_FIXTURES = FIXTURES / "clients"


def cli_dir() -> Path:
    return Path(os.environ.get("CROSSROUTE_CLI_DIR") or Path.home() / ".cache" / "crossroute-clis")


def find_cli(name: str) -> str | None:
    """The CLI's executable in the install dir, else on PATH."""
    local = cli_dir() / "node_modules" / ".bin" / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def installed_version(name: str) -> str | None:
    pkg = cli_dir() / "node_modules" / BINARIES[name] / "package.json"
    try:
        return str(json.loads(pkg.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


# ---------------------------------------------------------------------------------------------------------------
# what the fake upstream answers for the `text` scenario


def expected_text(kind: str, stream: bool = True) -> str:
    """The answer text of the fake upstream's `text` scenario for one upstream kind."""
    stream_file, json_file = FILES[kind]["text"]
    if not stream:
        assert json_file is not None
        return _json_text(kind, orjson.loads((FIXTURES / json_file).read_bytes()))
    assert stream_file is not None
    parts: list[str] = []
    for line in (FIXTURES / stream_file).read_text().splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if not data or data == "[DONE]":
            continue
        parts.append(_event_text(kind, orjson.loads(data)))
    return "".join(parts)


def _event_text(kind: str, ev: dict[str, Any]) -> str:
    if kind == "openai":
        return "".join((c.get("delta") or {}).get("content") or "" for c in ev.get("choices") or [])
    if kind == "claude":
        delta = ev.get("delta") or {}
        return str(delta.get("text") or "") if ev.get("type") == "content_block_delta" else ""
    if kind == "gemini":
        return "".join(
            p.get("text", "")
            for c in ev.get("candidates") or []
            for p in (c.get("content") or {}).get("parts") or []
            if not p.get("thought")
        )
    if kind == "responses":
        return str(ev.get("delta") or "") if ev.get("type") == "response.output_text.delta" else ""
    raise ValueError(kind)


def _json_text(kind: str, body: dict[str, Any]) -> str:
    if kind == "openai":
        return str(body["choices"][0]["message"]["content"])
    if kind == "claude":
        return "".join(b.get("text", "") for b in body["content"] if b.get("type") == "text")
    if kind == "gemini":
        return "".join(p.get("text", "") for p in body["candidates"][0]["content"]["parts"] if not p.get("thought"))
    if kind == "responses":
        return "".join(
            c.get("text", "")
            for item in body["output"]
            if item.get("type") == "message"
            for c in item.get("content") or []
        )
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------------------------------
# the recording proxy

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "content-length",
    "host",
}


@dataclass
class Exchange:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    started: float = 0.0
    ended: float = 0.0
    error: str | None = None

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers.items():
            if k.lower() == name:
                return v
        return None


class RecordingProxy(ThreadedApp):
    """A loopback HTTP relay in front of the gateway that records each exchange.

    Bodies go through as raw bytes both ways (no decompression), so what the gateway receives is what
    the CLI sent. An upgrade request is relayed as a plain request: the gateway is expected to refuse it
    with an HTTP status (a 101 would not be relayed). Response bodies are kept up to 256 KiB each.
    """

    KEEP = 256 * 1024

    runner_options = {"access_log": None, "auto_decompress": False, "shutdown_timeout": 0.5}

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._session: ClientSession | None = None

    @property
    def url(self) -> str:
        return self.base

    async def on_start(self) -> None:
        self._session = ClientSession(
            connector=TCPConnector(limit=0, force_close=False),
            timeout=ClientTimeout(total=300, sock_read=120),
            auto_decompress=False,
        )

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        return app

    async def on_stop(self) -> None:
        assert self._session is not None
        await self._session.close()

    def clear(self) -> None:
        self.exchanges.clear()

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        ex = Exchange(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={k: v for k, v in request.headers.items()},
            body=body,
            started=time.monotonic(),
        )
        self.exchanges.append(ex)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        upgrade = request.headers.get("upgrade")
        if upgrade:  # relay the upgrade request as the CLI sent it; the gateway must answer with a status
            headers["Connection"] = "Upgrade"
            headers["Upgrade"] = upgrade
        url = self.target + str(request.rel_url)
        try:
            async with self._session.request(
                request.method,
                url,
                headers=headers,
                data=body if body else None,
                allow_redirects=False,
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            ) as up:
                ex.status = up.status
                ex.response_headers = {k: v for k, v in up.headers.items()}
                resp = web.StreamResponse(status=up.status, reason=up.reason)
                for k, v in up.headers.items():
                    if k.lower() not in HOP_BY_HOP:
                        resp.headers.add(k, v)
                await resp.prepare(request)
                if request.method != "HEAD":
                    async for chunk in up.content.iter_any():
                        if len(ex.response_body) < self.KEEP:
                            ex.response_body += chunk[: self.KEEP - len(ex.response_body)]
                        await resp.write(chunk)
                try:
                    await resp.write_eof()
                except ConnectionError:  # the CLI hung up once it had what it needed (Codex does)
                    pass
                return resp
        except Exception as e:  # the gateway died or cut the stream: the CLI sees a 502 or a cut
            ex.error = f"{type(e).__name__}: {e}"
            if ex.status == 0:
                ex.status = 599
                return web.Response(status=502, text=f"recording proxy: {ex.error}")
            raise
        finally:
            ex.ended = time.monotonic()


# ---------------------------------------------------------------------------------------------------------------
# isolated homes and config writers

# Every setting that keeps a CLI off the network and away from the user's real config.
COMMON_ENV_DROP = re.compile(
    r"^(ANTHROPIC_|CLAUDE_|OPENAI_|CODEX_|GEMINI_|GOOGLE_|VERTEX|HTTPS?_PROXY|ALL_PROXY|NO_PROXY|XDG_|NODE_OPTIONS)",
    re.IGNORECASE,
)


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: no provider keys or proxies from the caller, HOME in a temp dir."""
    env = {k: v for k, v in os.environ.items() if not COMMON_ENV_DROP.match(k)}
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "NO_COLOR": "1",
            "TERM": "dumb",
            "CI": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def claude_env(home: Path, base_url: str, key: str, model: str) -> dict[str, str]:
    """Claude Code pointed at crossroute, as the README says, with all its own traffic off."""
    env = base_env(home)
    env.update(
        {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_AUTH_TOKEN": key,
            "ANTHROPIC_MODEL": model,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,  # its background model (titles, summaries)
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            # telemetry, error reports, auto-update, feature flags and the HEAD /api/hello preconnect off:
            # with it Claude Code connects to nothing but ANTHROPIC_BASE_URL (checked under strace)
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_RETRIES": "1",  # a failing run ends in seconds, not after minutes of backoff
        }
    )
    return env


def codex_home(home: Path, base_url: str, model: str, websockets: bool = False) -> Path:
    """Write $CODEX_HOME/config.toml as the README tells users, plus what keeps Codex offline."""
    chome = home / ".codex"
    chome.mkdir(parents=True, exist_ok=True)
    ws = "supports_websockets = true\n" if websockets else ""
    (chome / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "crossroute"\n'
        'approval_policy = "never"\n'
        'sandbox_mode = "read-only"\n'
        "check_for_update_on_startup = false\n"
        "\n"
        "[features]\n"
        "plugins = false\n"  # else it runs `git ls-remote` on the plugin marketplace and looks up two hosts
        "remote_plugin = false\n"
        "apps = false\n"
        "\n"
        "[analytics]\nenabled = false\n"
        "\n"
        "[feedback]\nenabled = false\n"
        "\n"
        "[otel]\nexporter = \"none\"\n"
        "\n"
        "[model_providers.crossroute]\n"
        'name = "crossroute"\n'
        f'base_url = "{base_url}/v1"\n'
        'env_key = "CROSSROUTE_API_KEY"\n'
        'wire_api = "responses"\n'
        f"{ws}"
    )
    return chome


def codex_env(home: Path, base_url: str, key: str, model: str, websockets: bool = False) -> dict[str, str]:
    env = base_env(home)
    env["CODEX_HOME"] = str(codex_home(home, base_url, model, websockets))
    env["CROSSROUTE_API_KEY"] = key
    return env


def codex_chatgpt_env(home: Path, base_url: str, model: str) -> dict[str, str]:
    """Codex's built-in `openai` provider with a ChatGPT login, its base URL moved to crossroute.

    That is the set-up in which Codex compresses request bodies with zstd and prefers WebSockets. The
    login is made up (an unsigned token that expires in 30 days, so Codex does not try to refresh it);
    the gateway it talks to must therefore run without api-keys (open on loopback).
    """
    env = codex_env(home, base_url, "unused", model)
    chome = Path(env.pop("CODEX_HOME"))
    env.pop("CROSSROUTE_API_KEY")
    cfg = (chome / "config.toml").read_text()
    cfg = cfg.replace(
        'model_provider = "crossroute"\n',
        f'model_provider = "openai"\nopenai_base_url = "{base_url}/v1"\nchatgpt_base_url = "{base_url}/backend-api/"\n'
        'forced_login_method = "chatgpt"\n',
    )
    (chome / "config.toml").write_text(cfg)

    def b64(obj: dict[str, Any]) -> str:
        import base64

        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "email": "test@example.invalid",
        "iat": now,
        "exp": now + 30 * 86400,
        "https://api.openai.com/auth": {"chatgpt_plan_type": "pro", "chatgpt_account_id": "acct-test"},
    }
    token = b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims) + ".unsigned"
    auth = {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": None,
        "tokens": {"id_token": token, "access_token": token, "refresh_token": "unused", "account_id": "acct-test"},
        "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (chome / "auth.json").write_text(json.dumps(auth))
    env["CODEX_HOME"] = str(chome)
    return env


def gemini_settings(home: Path) -> Path:
    """~/.gemini/settings.json: the auth type picked explicitly, usage statistics and updates off.

    Without ``security.auth.selectedType`` Gemini CLI 0.61 derives the auth type from the environment,
    and GOOGLE_GEMINI_BASE_URL makes that "gateway", which its non-interactive check refuses ("Invalid
    auth method selected."). With "gemini-api-key" selected it reads GEMINI_API_KEY and still takes
    the base URL from GOOGLE_GEMINI_BASE_URL.
    """
    gdir = home / ".gemini"
    gdir.mkdir(parents=True, exist_ok=True)
    path = gdir / "settings.json"
    path.write_text(json.dumps(GEMINI_SETTINGS, indent=2) + "\n")
    return path


GEMINI_SETTINGS: dict[str, Any] = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
}


def gemini_env(home: Path, base_url: str, key: str) -> dict[str, str]:
    env = base_env(home)
    gemini_settings(home)
    env["GOOGLE_GEMINI_BASE_URL"] = base_url
    env["GEMINI_API_KEY"] = key
    env["GEMINI_CLI_TRUST_WORKSPACE"] = "true"  # -p runs refuse an untrusted folder otherwise
    return env


# ---------------------------------------------------------------------------------------------------------------
# running a CLI and watching where it connects

LOOPBACK = re.compile(
    r'inet_addr\("127\.\d+\.\d+\.\d+"\)|inet_pton\(AF_INET6, "::1"|inet_pton\(AF_INET6, "::ffff:127\.'
)


@dataclass
class CliRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    connects: list[str]  # every connect() to an IP address that is not loopback (empty = offline)
    traced: bool


def run_cli(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 120.0) -> CliRun:
    """Run a CLI with no stdin; under strace when there, listing non-loopback connect() calls."""
    strace = shutil.which("strace")
    trace_file = cwd / f".connects-{time.monotonic_ns()}.txt"
    cmd = list(argv)
    if strace:
        cmd = [strace, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-e", "signal=none", "-o", str(trace_file)]
        cmd += argv
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = -9, e.stdout or b"", (e.stderr or b"") + b"\n[timed out]"
    seconds = time.monotonic() - t0
    connects: list[str] = []
    if strace and trace_file.exists():
        for line in trace_file.read_text(errors="replace").splitlines():
            if "AF_INET" not in line:  # AF_UNIX and AF_NETLINK stay on this machine
                continue
            if not LOOPBACK.search(line):
                connects.append(line.strip())
        trace_file.unlink()
    return CliRun(
        argv=argv,
        returncode=rc,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        seconds=seconds,
        connects=connects,
        traced=bool(strace),
    )


# ---------------------------------------------------------------------------------------------------------------
# recorded client requests (tests/fixtures/clients/)

SECRET_HEADERS = {"authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie"}


def fixture_from(ex: Exchange, client: str, version: str | None, note: str) -> dict[str, Any]:
    """One recorded request as a fixture: credentials replaced, the body as JSON when it is JSON."""
    headers: dict[str, str] = {}
    for k, v in ex.headers.items():
        low = k.lower()
        if low in SECRET_HEADERS:
            v = "Bearer <client-key>" if v.lower().startswith("bearer ") else "<client-key>"
        elif low == "host":
            v = "127.0.0.1:8317"
        headers[k] = v
    query = re.sub(r"(^|&)key=[^&]*", r"\1key=<client-key>", ex.query)
    body: Any = ex.json()
    record: dict[str, Any] = {
        "client": client,
        "version": version,
        "note": note,
        "method": ex.method,
        "path": ex.path,
        "query": query,
        "headers": headers,
        "status_from_gateway": ex.status,
    }
    if body is None and ex.body:
        import base64

        record["body_base64"] = base64.b64encode(ex.body).decode()
        if (ex.header("content-encoding") or "").lower() == "zstd":
            import zstandard

            plain = zstandard.ZstdDecompressor().decompressobj().decompress(ex.body)
            record["body_decoded"] = orjson.loads(plain)
    else:
        record["body"] = body
    return record


def write_fixture(name: str, record: dict[str, Any]) -> Path:
    CLIENT_FIXTURES.mkdir(parents=True, exist_ok=True)
    path = CLIENT_FIXTURES / name
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return path


FIXTURE_NOTES: dict[str, str] = {
    'claude_code_messages.json': (
        "claude -p 'Say hello' --output-format json with ANTHROPIC_BASE_URL at crossroute, model claude-text. "
        "The last message has role 'system' (Claude Code's environment block, sent after the user turn); the "
        'anthropic-beta header lists the betas it asks for.'
    ),
    'codex_responses.json': (
        "codex exec --skip-git-repo-check 'Say hello' with a model_provider at crossroute (wire_api "
        'responses), model gpt-5.5 (a model Codex knows): tools of type custom (apply_patch, lark grammar), '
        'tool_search and web_search besides functions. Codex compresses bodies with zstd only with a ChatGPT '
        'login on its built-in openai provider, so this body is plain JSON.'
    ),
    'codex_responses_namespace.json': (
        'as codex_responses.json but with a model name Codex does not know (responses-text, fallback '
        'metadata): tools include type namespace (multi_agent_v1, with nested functions) and web_search.'
    ),
    'gemini_cli_generate.json': (
        "gemini -p 'Say hello' -m gemini-text with ~/.gemini/settings.json "
        'security.auth.selectedType=gemini-api-key, GOOGLE_GEMINI_BASE_URL at crossroute and GEMINI_API_KEY: '
        'streamGenerateContent?alt=sse.'
    ),
    "claude_code_preconnect_head.json": (
        "Claude Code without CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC sends HEAD <ANTHROPIC_BASE_URL>/api/hello "
        "(its preconnect, answer ignored) before the first POST /v1/messages."
    ),
    "codex_responses_zstd.json": (
        "Codex with a ChatGPT login on its built-in openai provider (openai_base_url at crossroute, see "
        "cli_support.codex_chatgpt_env): POST /v1/responses with Content-Encoding: zstd (body_base64; "
        "body_decoded is the same body decompressed), after its WebSocket attempts."
    ),
    "codex_websocket_upgrade.json": (
        "Codex's WebSocket upgrade for the Responses API (GET /v1/responses with Upgrade: websocket, "
        "openai-beta: responses_websockets=...), sent before any POST when the provider supports websockets."
    ),
}


def load_fixture(name: str) -> dict[str, Any]:
    """A recorded request: its headers and body (decoded to bytes) ready to send again."""
    return dict(json.loads((CLIENT_FIXTURES / name).read_text()))


# ---------------------------------------------------------------------------------------------------------------
# a scripted upstream for a tool round trip

PATCH_FILE = "hello.txt"
PATCH_TEXT = "hello from the upstream"
PATCH = f"*** Begin Patch\n*** Add File: {PATCH_FILE}\n+{PATCH_TEXT}\n*** End Patch\n"
PATCHED = "Patched."


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + json.dumps(data) + "\n\n").encode()


class ScriptedToolUpstream(ThreadedApp):
    """Chat, Responses, Anthropic and Gemini endpoints that answer a first turn with a call of the offered
    tool named ``tool`` (or, failing that, whose name contains it) with ``arguments``, and any turn that
    carries a tool result with the text PATCHED. Streams only, as the CLIs' turns are streamed. Keeps
    every request body."""

    def __init__(self, tool: str = "apply_patch", arguments: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.tool = tool
        self.arguments = arguments if arguments is not None else {"input": PATCH}
        self.requests: list[dict[str, Any]] = []

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/messages", self._claude)
        app.router.add_post("/v1beta/models/{tail}", self._gemini)
        return app

    def _pick(self, names: list[str]) -> str:
        if self.tool in names:
            return self.tool
        return next(n for n in names if self.tool in n)

    async def _open(self, request: web.Request) -> tuple[dict[str, Any], web.StreamResponse]:
        body = await request.json()
        self.requests.append(body)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        return body, resp

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, resp = await self._open(request)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return _sse({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                         "choices": [choice]})

        if any(m.get("role") == "tool" for m in body.get("messages", [])):
            await resp.write(chunk({"role": "assistant", "content": PATCHED}))
            await resp.write(chunk({}, "stop"))
        else:
            name = self._pick([t["function"]["name"] for t in body["tools"]])
            call = {"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": name, "arguments": json.dumps(self.arguments)}}
            await resp.write(chunk({"role": "assistant", "tool_calls": [call]}))
            await resp.write(chunk({}, "tool_calls"))
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body, resp = await self._open(request)
        items = body.get("input") if isinstance(body.get("input"), list) else []
        answered = any(i.get("type") == "function_call_output" for i in items)
        base = {"id": "resp_1", "object": "response", "created_at": 0, "model": "m", "output": []}
        await resp.write(_sse({"type": "response.created", "sequence_number": 0,
                               "response": {**base, "status": "in_progress"}}, "response.created"))
        if answered:
            item: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                                    "content": [{"type": "output_text", "text": PATCHED, "annotations": []}]}
            await resp.write(_sse({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                                   "item": {**item, "status": "in_progress", "content": []}},
                                  "response.output_item.added"))
            await resp.write(_sse({"type": "response.output_text.delta", "sequence_number": 2, "output_index": 0,
                                   "item_id": "msg_1", "content_index": 0, "delta": PATCHED},
                                  "response.output_text.delta"))
        else:
            names = [t.get("name", "") for t in body.get("tools", []) if t.get("type") == "function"]
            args = json.dumps(self.arguments)
            item = {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
                    "name": self._pick(names), "arguments": args}
            await resp.write(_sse({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                                   "item": {**item, "status": "in_progress", "arguments": ""}},
                                  "response.output_item.added"))
            await resp.write(_sse({"type": "response.function_call_arguments.delta", "sequence_number": 2,
                                   "output_index": 0, "item_id": "fc_1", "delta": args},
                                  "response.function_call_arguments.delta"))
        await resp.write(_sse({"type": "response.output_item.done", "sequence_number": 3, "output_index": 0,
                               "item": item}, "response.output_item.done"))
        usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        await resp.write(_sse({"type": "response.completed", "sequence_number": 4,
                               "response": {**base, "status": "completed", "output": [item], "usage": usage}},
                              "response.completed"))
        return resp

    async def _claude(self, request: web.Request) -> web.StreamResponse:
        body, resp = await self._open(request)
        results = [
            b for m in body.get("messages", []) if isinstance(m.get("content"), list)
            for b in m["content"] if b.get("type") == "tool_result"
        ]
        usage = {"input_tokens": 10, "output_tokens": 0}
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": usage}
        await resp.write(_sse({"type": "message_start", "message": message}, "message_start"))
        if results:
            block: dict[str, Any] = {"type": "text", "text": ""}
            delta: dict[str, Any] = {"type": "text_delta", "text": PATCHED}
            stop = "end_turn"
        else:
            name = self._pick([t.get("name", "") for t in body["tools"]])
            block = {"type": "tool_use", "id": "toolu_1", "name": name, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(self.arguments)}
            stop = "tool_use"
        await resp.write(_sse({"type": "content_block_start", "index": 0, "content_block": block},
                              "content_block_start"))
        await resp.write(_sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"))
        await resp.write(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        await resp.write(_sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                               "usage": {"output_tokens": 5}}, "message_delta"))
        await resp.write(_sse({"type": "message_stop"}, "message_stop"))
        return resp

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        body, resp = await self._open(request)
        answered = any("functionResponse" in p for c in body.get("contents", []) for p in c.get("parts", []))
        if answered:
            part: dict[str, Any] = {"text": PATCHED}
            finish = "STOP"
        else:
            decls = [d for t in body.get("tools", []) for d in t.get("functionDeclarations", [])]
            name = self._pick([d["name"] for d in decls])
            part = {"functionCall": {"name": name, "args": self.arguments}}
            finish = "STOP"
        await resp.write(_sse({
            "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": finish, "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
            "modelVersion": "m",
        }))
        return resp
