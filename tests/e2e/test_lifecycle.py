"""A real ``crossroute serve`` process under signals and port conflicts: SIGTERM drains with a
deadline, a second signal exits at once, SIGHUP reloads, a busy port is one clear line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .gateway_process import free_port
from .lifecycle_support import CLIENT_KEY, Gateway, OpenStream, PacedUpstream, gateway_config, post, status

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def paced() -> Iterator[PacedUpstream]:
    up = PacedUpstream().start()
    yield up
    up.stop()


@pytest.fixture
def gateways() -> Iterator[list[Gateway]]:
    started: list[Gateway] = []
    yield started
    for gw in started:
        gw.stop()


def start(gateways: list[Gateway], config: dict, tmp_path: Path, *args: str) -> Gateway:
    workdir = tmp_path / f"gw{len(gateways)}"
    workdir.mkdir()
    gw = Gateway(config, workdir, args)
    gateways.append(gw)
    return gw.start()


def stream_body(model: str) -> dict:
    return {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


# ------------------------------------------------------------------ SIGTERM / SIGINT


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_a_short_stream_finish_and_refuses_new_requests(
    paced: PacedUpstream, gateways: list[Gateway], tmp_path: Path, workers: int
) -> None:
    args = ("--workers", "2") if workers > 1 else ()
    gw = start(gateways, gateway_config(paced, **{"shutdown-timeout-seconds": 20}), tmp_path, *args)
    s = OpenStream(gw.port, CHAT, stream_body("paced-10-200"))  # about 2 s
    assert s.first.wait(10) and s.status == 200, s.error
    gw.signal(signal.SIGTERM)
    time.sleep(0.3)
    code, _ = post(gw.port, CHAT, {"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
    assert code == 503  # draining: a new request is refused with a status, not left hanging
    assert s.done.wait(15), "the stream in flight did not finish"
    assert b"data: [DONE]" in s.data and b"w9 " in s.data, s.data[-300:]
    assert gw.wait(10) == 0, gw.log()


@pytest.mark.parametrize(("path", "body", "terminal", "workers"), [
    (CHAT, stream_body("paced-200-100"), b"error", 1),
    ("/v1/messages", {**stream_body("paced-200-100"), "max_tokens": 50}, b"event: error", 1),
    (CHAT, stream_body("paced-200-100"), b"error", 2),
])
def test_the_deadline_ends_a_long_stream_with_its_terminal_error_event(
    paced: PacedUpstream, gateways: list[Gateway], tmp_path: Path, path: str, body: dict, terminal: bytes,
    workers: int,
) -> None:
    args = ("--workers", "2") if workers > 1 else ()
    gw = start(gateways, gateway_config(paced, **{"shutdown-timeout-seconds": 1}), tmp_path, *args)
    s = OpenStream(gw.port, path, body)  # 20 s unless cut
    assert s.first.wait(10) and s.status == 200, s.error
    began = time.monotonic()
    gw.signal(signal.SIGTERM)
    assert s.done.wait(10), "the stream outlived the shutdown deadline"
    events = [e for e in s.data.split(b"\n\n") if e.strip()]
    last = b"\n".join(e for e in events[-2:] if b"[DONE]" not in e)  # the error event ends it
    assert terminal in last and b"shutting down" in last, s.data[-400:]
    assert b"w199 " not in s.data
    assert gw.wait(10) == 0, gw.log()
    assert time.monotonic() - began < 8


@pytest.mark.parametrize(("workers", "second"), [(1, signal.SIGINT), (1, signal.SIGTERM), (2, signal.SIGTERM)])
def test_a_second_signal_exits_at_once(
    paced: PacedUpstream, gateways: list[Gateway], tmp_path: Path, workers: int, second: signal.Signals
) -> None:
    args = ("--workers", "2") if workers > 1 else ()
    gw = start(gateways, gateway_config(paced, **{"shutdown-timeout-seconds": 60}), tmp_path, *args)
    s = OpenStream(gw.port, CHAT, stream_body("paced-200-100"))
    assert s.first.wait(10) and s.status == 200, s.error
    gw.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert gw.wait(0.1) is None, "the first signal must drain, not exit"
    workers_pids = gw.children
    gw.signal(second)
    code = gw.wait(3)
    assert code is not None and code != 0, gw.log()
    for pid in workers_pids:  # no worker left behind
        assert _gone(pid), f"worker {pid} still running"


def _gone(pid: int, wait: float = 3.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------ SIGHUP


def test_sighup_reloads_the_config_and_spares_the_stream_in_flight(
    paced: PacedUpstream, gateways: list[Gateway], tmp_path: Path
) -> None:
    gw = start(gateways, gateway_config(paced), tmp_path)
    s = OpenStream(gw.port, CHAT, stream_body("paced-10-200"))
    assert s.first.wait(10) and s.status == 200, s.error
    gw.write_config({**gw.config, **gateway_config(paced, aliases=("renamed",))})
    gw.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        code, _ = post(gw.port, CHAT, {"model": "renamed", "messages": [{"role": "user", "content": "hi"}]})
        if code == 200:
            break
        assert gw.wait(0.2) is None, f"SIGHUP ended the process:\n{gw.log()}"
    assert code == 200
    assert post(gw.port, CHAT, {"model": "fast", "messages": [{"role": "user", "content": "hi"}]})[0] == 400
    assert s.done.wait(10) and b"data: [DONE]" in s.data and b"w9 " in s.data
    assert "SIGHUP" in gw.log()
    gw.signal(signal.SIGHUP)  # unchanged file: nothing applied, said so
    deadline = time.monotonic() + 5
    while "unchanged" not in gw.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "unchanged" in gw.log()
    assert gw.wait(0.1) is None and status(gw.port, "/healthz", key=None) == 200


# ------------------------------------------------------------------ busy port


def _serve(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossroute", "serve", "--config", str(config_path), *args],
        capture_output=True, text=True, timeout=30, cwd=config_path.parent,
    )


def _assert_refused(run: subprocess.CompletedProcess[str], port: int) -> None:
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "Traceback" not in out, out
    assert "listening on" not in out, out
    lines = [line for line in out.splitlines() if "already in use" in line]
    assert lines == [f"crossroute: port {port} on 127.0.0.1 is already in use (another crossroute or another "
                     "program listens there); stop it or choose another port (--port or port: in config.yaml)"], out


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_held_by_another_program_is_one_clear_line(tmp_path: Path, paced: PacedUpstream, workers: int) -> None:
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen(8)
    try:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump({**gateway_config(paced), "host": "127.0.0.1", "port": port}))
        _assert_refused(_serve(cfg, *(("--workers", "2") if workers > 1 else ())), port)
    finally:
        holder.close()


@pytest.mark.parametrize(("first", "second"), [(1, 1), (1, 2), (2, 1)])
def test_a_second_crossroute_on_the_same_port_refuses(
    paced: PacedUpstream, gateways: list[Gateway], tmp_path: Path, first: int, second: int
) -> None:
    gw = start(gateways, gateway_config(paced), tmp_path, *(("--workers", "2") if first > 1 else ()))
    _assert_refused(_serve(gw.config_path, *(("--workers", "2") if second > 1 else ())), gw.port)
    assert gw.wait(0.1) is None
    for _ in range(10):  # every connection still reaches the first one (no shared port)
        assert status(gw.port, "/healthz", key=None) == 200


def test_a_request_waiting_on_a_silent_upstream_does_not_hold_the_exit(
    gateways: list[Gateway], tmp_path: Path
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (in the kernel) and never answers
    try:
        cfg = {"api-keys": [CLIENT_KEY], "shutdown-timeout-seconds": 1, "read-timeout-seconds": 120,
               "openai-compatibility": [{"name": "silent", "base-url": f"http://127.0.0.1:{silent.getsockname()[1]}/v1",
                                         "api-key-entries": [{"api-key": "sk-s"}],
                                         "models": [{"name": "m", "alias": "m"}]}]}
        gw = start(gateways, cfg, tmp_path)
        waiting = OpenStream(gw.port, CHAT, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        time.sleep(1.0)
        began = time.monotonic()
        gw.signal(signal.SIGTERM)
        assert gw.wait(15) == 0, gw.log()
        assert time.monotonic() - began < 8  # the deadline (1 s) and a short grace, not the read timeout
        assert waiting.done.wait(5)
    finally:
        silent.close()
