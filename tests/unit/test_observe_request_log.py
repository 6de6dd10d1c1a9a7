"""Request and error logs: sections, masking, truncation, spooling, bounds, WebSocket sessions."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from crossroute import redaction
from crossroute.call import Attempt, Call
from crossroute.config import parse
from crossroute.gateway import Gateway
from crossroute.observe import CallEnded
from crossroute.observe import request_log as rl
from crossroute.observe.log_files import file_name, is_log_name, sanitise_path

MOCK = "mock: [{name: m, models: [{name: mock-model, alias: local}]}]\n"


def _gw(tmp_path: Path, extra: str = "") -> Gateway:
    s = parse(f"logs-dir: {tmp_path}/logs\ndata-dir: {tmp_path}/data\n{extra}{MOCK}")
    return Gateway(s)


class LoggedCall(Call):
    """A Call with the ``log`` slot the pipeline gives it once call.py has one (requested)."""

    __slots__ = ("log",) if "log" not in Call.__slots__ else ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log = None


def _call(body: dict | None = None, key: str = "client-secret-key-123") -> Call:
    return LoggedCall("openai", "local", body or {"model": "local", "messages": [{"role": "user", "content": "hi"}]},
                {"authorization": f"Bearer {key}", "user-agent": "test/1"}, client_key=key)


def _end(gw: Gateway, call: Call | None, status: int, path: str = "/v1/chat/completions",
         error: str | None = None) -> CallEnded:
    ev = CallEnded("POST", path, "openai", status, call, call.started if call else time.monotonic(),
                   time.monotonic(), error=error)
    gw.observers.call_ended(ev)
    return ev


def _flush(gw: Gateway) -> None:
    gw.observers.named["request_log"].writer.flush()


async def _run(gw: Gateway, call: Call) -> None:
    from crossroute.dispatch import execute

    await gw.start()
    reply = await execute(gw, call)
    if hasattr(reply, "chunks"):
        async for chunk in reply.chunks:
            if getattr(call, "log", None) is not None:
                call.log.client(chunk)
    elif getattr(call, "log", None) is not None:
        call.log.client(reply.body)


def test_names_are_sanitised() -> None:
    assert sanitise_path("/v1/chat/completions") == "v1-chat-completions"
    assert sanitise_path("/v1beta/models/gemini:generate  x") == "v1beta-models-gemini-generate-x"
    assert sanitise_path("/") == "root"
    n = file_name("/v1/responses", 0.0, "a1b2c3d4", False)
    assert n == "v1-responses-1970-01-01T000000-a1b2c3d4.log" and is_log_name(n)
    assert file_name("/x", 0.0, "ab", True).startswith("error-x-")
    assert not is_log_name("../etc/passwd") and not is_log_name("a/b.log") and not is_log_name(".x.log.tmp")


def test_error_log_with_request_log_off(tmp_path: Path) -> None:
    async def go() -> None:
        gw = _gw(tmp_path)
        await gw.start()
        try:
            assert gw.observers.spool is None  # no per-call spooling while request-log is off
            call = _call()
            call.attempts.append(a := Attempt("mock:m#1", "mock-model", "openai", time.monotonic()))
            a.end, a.status, a.error = time.monotonic(), 503, "upstream m failed: overloaded"
            ev = _end(gw, call, 503, error=None)
            _end(gw, _call(), 200)  # a success leaves nothing
            _end(gw, None, 401, path="/v1/models")
            _flush(gw)
            names = sorted(os.listdir(tmp_path / "logs"))
            assert len(names) == 2 and all(n.startswith("error-") for n in names), names
            text = (tmp_path / "logs" / rl.find_log(gw, ev.request_id)).read_text()
            for section in ("=== REQUEST INFO ===", "=== HEADERS ===", "=== REQUEST BODY ===", "=== ATTEMPTS ===",
                            "=== RESPONSE ===", "=== ROUTING TRACE ==="):
                assert section in text
            assert "client-secret-key-123" not in text
            assert "authorization: Bearer cli...-123" in text  # masked, never the key
            assert "status=503" in text and "overloaded" in text and '"content": "hi"' in text
            assert [d["kind"] for d in rl.list_logs(gw)] == ["error", "error"]
            assert rl.read_log(gw, "../config.yaml") is None
        finally:
            await gw.stop()

    asyncio.run(go())


def test_error_logs_keep_the_newest(tmp_path: Path) -> None:
    async def go() -> None:
        gw = _gw(tmp_path, "error-logs-max-files: 3\n")
        await gw.start()
        try:
            ids = [_end(gw, _call(), 500).request_id for _ in range(7)]
            _flush(gw)
            names = os.listdir(tmp_path / "logs")
            assert len(names) == 3
            assert {n.rsplit("-", 1)[1][:-4] for n in names} == set(ids[-3:])
        finally:
            await gw.stop()

    asyncio.run(go())


def test_request_log_has_bodies_chunks_and_truncation(tmp_path: Path) -> None:
    async def go() -> None:
        gw = _gw(tmp_path, "request-log: true\nrequest-log-max-body-kb: 1\n")
        await gw.start()
        try:
            assert gw.observers.spool is not None and gw.observers.tracing
            redaction.add_secrets(["upstream-secret-echo-999"])
            call = _call({"model": "local", "stream": True, "messages": [{"role": "user", "content": "x" * 3000}]})
            call.stream = True
            call.log = gw.observers.spool(call)
            await _run(gw, call)
            a = call.attempts[0]
            call.log.attempt_body(a, b'{"model":"mock-model","key":"upstream-secret-echo-999"}')
            call.log.upstream(a, b"data: {}\n\n")
            ev = _end(gw, call, 200)
            _flush(gw)
            name = rl.find_log(gw, ev.request_id)
            assert name is not None and not name.startswith("error-")
            text = (tmp_path / "logs" / name).read_text()
            assert "truncated" in text  # the 3000-character body is cut at 1 KiB
            assert "RESPONSE to client" in text and "API REQUEST #1" in text and "API RESPONSE #1" in text
            assert "[+" in text and " ms] " in text  # chunk timestamps
            assert "upstream-secret-echo-999" not in text
            assert "data: " in text.split("RESPONSE to client", 1)[1]
            assert not list((tmp_path / "logs" / ".spool").iterdir())  # the spool went into the log
        finally:
            await gw.stop()

    asyncio.run(go())


def test_total_size_bound(tmp_path: Path) -> None:
    async def go() -> None:
        gw = _gw(tmp_path, "request-log: true\nlogs-max-total-size-mb: 0.05\n")  # ~52 KB
        await gw.start()
        try:
            for _ in range(40):
                _end(gw, _call({"model": "local", "messages": [{"role": "user", "content": "y" * 4000}]}), 200)
            _flush(gw)
            folder = tmp_path / "logs"
            total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
            assert total <= 0.05 * 1024 * 1024
            assert 5 < len(list(folder.glob("*.log"))) < 40
            assert rl.delete_logs(gw) > 0 and not list(folder.glob("v1-*.log"))
        finally:
            await gw.stop()

    asyncio.run(go())


def test_websocket_sessions(tmp_path: Path) -> None:
    async def go() -> None:
        gw = _gw(tmp_path, "request-log: true\n")
        await gw.start()
        try:
            meta = {"path": "/v1/responses", "headers": {"authorization": "Bearer wskey-123456"},
                    "client_key": "wskey-123456", "model": "local"}
            h = rl.open_ws(gw, meta)
            h.client_frame('{"type":"response.create"}')
            h.upstream_event(b'{"type":"response.completed"}')
            h.close("client", 1000, "bye")
            h.client_frame("late")  # ignored after close
            rl.rejected_upgrade(gw, {"path": "/v1/responses", "headers": {}}, 426, "upgrade required")
            _flush(gw)
            logs = rl.list_logs(gw)
            assert sorted(d["kind"] for d in logs) == ["error", "request"]
            text = rl.read_log(gw, next(d["name"] for d in logs if d["kind"] == "request")).decode()
            assert "=== WEBSOCKET TIMELINE ===" in text and "response.create" in text and "response.completed" in text
            assert "closed by client: code=1000" in text and "wskey-123456" not in text and "late" not in text
            err = rl.read_log(gw, next(d["name"] for d in logs if d["kind"] == "error")).decode()
            assert "upgrade refused with HTTP 426" in err
        finally:
            await gw.stop()

    asyncio.run(go())


def test_websocket_off_only_failures(tmp_path: Path) -> None:
    async def go() -> None:
        gw = _gw(tmp_path)
        await gw.start()
        try:
            ok = rl.open_ws(gw, {"path": "/v1/responses"})
            ok.client_frame("x")
            ok.close("client", 1000)
            bad = rl.open_ws(gw, {"path": "/v1/responses"})
            bad.error("upstream went away")
            bad.close("upstream", 1011, "internal")
            _flush(gw)
            logs = rl.list_logs(gw)
            assert [d["kind"] for d in logs] == ["error"]
        finally:
            await gw.stop()

    asyncio.run(go())


@pytest.mark.parametrize("n", [0])
def test_error_logs_off(tmp_path: Path, n: int) -> None:
    gw = _gw(tmp_path, f"error-logs-max-files: {n}\n")
    asyncio.run(gw.start())
    assert "request_log" not in gw.observers.named
    assert rl.open_ws(gw, {"path": "/x"}).owner is None
    asyncio.run(gw.stop())


def test_an_unwritable_log_folder_never_fails_a_request(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("a file where the logs folder should be")

    async def go() -> None:
        gw = _gw(tmp_path, "request-log: true\n")
        await gw.start()
        try:
            call = _call()
            call.log = gw.observers.spool(call)
            await _run(gw, call)
            ev = _end(gw, call, 200)
            _end(gw, _call(), 500)
            _flush(gw)
            writer = gw.observers.named["request_log"].writer
            assert writer.dropped >= 2 and writer.written == 0
            assert ev.status == 200
        finally:
            await gw.stop()

    asyncio.run(go())
