"""Support for the lifecycle and worker tests: a paced OpenAI-compatible upstream, a gateway
process with extra command-line arguments, and raw HTTP helpers that read streams as they come."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from ..loopback import ThreadedApp
from .gateway_process import GatewayProcess

CLIENT_KEY = "lifecycle-key"


class PacedUpstream(ThreadedApp):
    """``model`` picks the answer: ``paced-<events>-<ms>`` streams that many chat chunks, one per
    ``ms`` milliseconds; anything else answers at once (stream or not)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.keys: list[str] = []  # the upstream key of each request, in order
        self.refuse: set[str] = set()  # keys answered 429 (Retry-After: 60)

    runner_options = {"access_log": None, "shutdown_timeout": 0.2}
    path_prefix = "/v1"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests += 1
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.keys.append(key)
        if key in self.refuse:
            return web.json_response({"error": {"message": "rate limited", "type": "rate_limit_error"}},
                                     status=429, headers={"Retry-After": "60"})
        model = str(body.get("model"))
        events, pause = 3, 0.0
        if model.startswith("paced-"):
            _, n, ms = model.split("-")
            events, pause = int(n), int(ms) / 1000
        if not body.get("stream"):
            return web.json_response(_completion(model))
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(events):
            await resp.write(b"data: " + orjson.dumps(_chunk(model, {"content": f"w{i} "}, None)) + b"\n\n")
            if pause:
                await asyncio.sleep(pause)
        await resp.write(b"data: " + orjson.dumps(_chunk(model, {}, "stop")) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _completion(model: str) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def gateway_config(up: PacedUpstream, aliases: tuple[str, ...] = ("fast",), **extra: Any) -> dict[str, Any]:
    models = [{"name": "text", "alias": a} for a in aliases]
    models += [{"name": f"paced-{n}-{ms}", "alias": f"paced-{n}-{ms}"} for n, ms in ((10, 200), (200, 100))]
    return {
        "api-keys": [CLIENT_KEY],
        "openai-compatibility": [{
            "name": "paced", "base-url": up.base,
            "api-key-entries": [{"api-key": "sk-up-1"}, {"api-key": "sk-up-2"}], "models": models,
        }],
        **extra,
    }


class Gateway(GatewayProcess):
    """A ``crossroute serve`` with extra arguments (``--workers``), stoppable by signal."""

    def __init__(self, config: dict[str, Any], workdir: Path, args: tuple[str, ...] = ()) -> None:
        super().__init__(config, workdir)
        self.args = args

    def start(self, timeout: float = 20.0) -> Gateway:
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crossroute", "serve", "--config", str(self.config_path), *self.args],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"crossroute exited with {self.proc.returncode}:\n{self.log()}")
            if status(self.port, "/healthz", key=None) == 200:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"crossroute did not become ready:\n{self.log()}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after ``timeout`` seconds."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        workers = self.children  # read before the parent goes: /proc forgets its children with it
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @property
    def children(self) -> list[int]:
        """Worker process ids (from /proc)."""
        if self.proc is None:
            return []
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]


def status(port: int, path: str, key: str | None = CLIENT_KEY, timeout: float = 2.0) -> int:
    """Status of a GET on a new connection; 0 when it cannot connect."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def post(port: int, path: str, body: dict[str, Any], headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=orjson.dumps(body), headers={
            "Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class OpenStream:
    """A streaming request read in a thread, so a test can act while it is in flight."""

    def __init__(self, port: int, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status = 0
        self.data = b""
        self.error: BaseException | None = None
        self.first = threading.Event()
        self.done = threading.Event()
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self._args = (path, body, headers or {})
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        path, body, headers = self._args
        try:
            self._conn.request("POST", path, body=orjson.dumps(body), headers={
                "Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json", **headers})
            resp = self._conn.getresponse()
            self.status = resp.status
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                self.data += chunk
                self.first.set()
        except BaseException as exc:  # the test reads it
            self.error = exc
        finally:
            self.first.set()
            self.done.set()
            self._conn.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
