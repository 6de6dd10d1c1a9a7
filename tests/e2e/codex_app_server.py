"""Asking the real Codex CLI for its rate limits, non-interactively: ``codex app-server``.

``codex app-server`` speaks JSON-RPC 2.0 over stdio, one JSON object a line (without the
``"jsonrpc"`` member). After the ``initialize`` request and the ``initialized`` notification,
``account/rateLimits/read`` makes Codex fetch its usage from ``chatgpt_base_url`` (``<base>/wham/usage``
when the base URL contains ``/backend-api``, else ``<base>/api/codex/usage``) with its ChatGPT login and
answer ``{"rateLimits": {"primary": {"usedPercent", "windowDurationMins", "resetsAt"}, "secondary":
{...}, "planType", ...}, "rateLimitsByLimitId": {...}}``, the same snapshot its TUI's status line shows.
Closing stdin ends the server.

The run goes under ``strace -e connect`` when strace is there, like ``cli_support.run_cli``, so a test
can prove Codex connected to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cli_support as cs

__all__ = ["AppServerRun", "read_rate_limits"]


@dataclass
class AppServerRun:
    response: dict[str, Any] | None  # the JSON-RPC answer to account/rateLimits/read (result or error)
    messages: list[dict[str, Any]]  # everything Codex wrote on stdout, in order
    stderr: str
    returncode: int | None
    connects: list[str]  # connect() calls to addresses other than loopback (empty = offline)
    traced: bool

    def report(self) -> str:
        lines = [json.dumps(m)[:600] for m in self.messages]
        return f"exit {self.returncode}\nstdout:\n" + "\n".join(lines) + f"\nstderr:\n{self.stderr[-3000:]}"


def _send(proc: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    proc.stdin.flush()


def read_rate_limits(codex: str, env: dict[str, str], cwd: Path, timeout: float = 60.0) -> AppServerRun:
    """Start ``codex app-server``, ask ``account/rateLimits/read`` once, and stop it."""
    strace = shutil.which("strace")
    trace_file = cwd / f".connects-{time.monotonic_ns()}.txt"
    argv = [codex, "app-server"]
    if strace:
        argv = [strace, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-e", "signal=none",
                "-o", str(trace_file), *argv]
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    messages: list[dict[str, Any]] = []
    response: dict[str, Any] | None = None
    try:
        _send(proc, {"method": "initialize", "id": 0,
                     "params": {"clientInfo": {"name": "crossroute-test", "version": "0.0.1"}}})
        _send(proc, {"method": "initialized", "params": {}})
        _send(proc, {"method": "account/rateLimits/read", "id": 1})
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while response is None and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if not ready:
                continue
            line = proc.stdout.readline()
            if not line:
                break  # Codex exited
            try:
                message = json.loads(line)
            except ValueError:
                continue
            messages.append(message)
            if message.get("id") == 1 and ("result" in message or "error" in message):
                response = message
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the app-server ends when its input does
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr is not None else ""
    connects: list[str] = []
    if strace and trace_file.exists():
        for entry in trace_file.read_text(errors="replace").splitlines():
            if "AF_INET" in entry and not cs.LOOPBACK.search(entry):
                connects.append(entry.strip())
        trace_file.unlink()
    return AppServerRun(response, messages, stderr, proc.returncode, connects, bool(strace))
