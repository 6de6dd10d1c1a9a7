"""The management handlers never touch the disk on the event loop: the ban files, the account
files, the quota snapshot, the config file, the log folder, the login mailboxes and the panel's
files are read (and written) in threads. A tripwire on the file system calls records every one
made on the loop's thread for a path of the test's directories or the panel."""

from __future__ import annotations

import asyncio
import builtins
import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crossroute.api import management as api
from crossroute.api.request import Request
from crossroute.config import load
from crossroute.gateway import Gateway

KEY = "mgmt-key-for-off-loop-test-0123"


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    auth = tmp_path / "auth"
    auth.mkdir()
    (auth / "claude-a@example.com.json").write_text(json.dumps({
        "type": "claude", "email": "a@example.com", "access_token": "sk-ant-oat01-" + "a" * 40,
        "refresh_token": "sk-ant-ort01-" + "b" * 40, "expired": "2099-01-01T00:00:00Z"}))
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "v1-messages-2026-01-01T000000-abcd1234.log").write_text("=== REQUEST INFO ===\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"# kept\nauth-dir: {auth}\nlogs-dir: {logs}\ndata-dir: {tmp_path / 'data'}\n"
                   f"remote-management:\n  secret-key: {KEY}\n"
                   "mock: [{name: m, models: [mock-1]}]\n"
                   "claude-api-key:\n  - api-key: sk-ant-api-0123456789abcdef\n    base-url: http://127.0.0.1:9\n")
    return Gateway(load(cfg))


class Tripwire:
    """Wraps the file system calls; ``hits`` lists (call, path) made on ``loop_thread``."""

    NAMES = ("stat", "lstat", "scandir", "listdir", "open", "unlink", "replace", "mkdir")

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [str(r.resolve()) for r in roots]
        self.loop_thread: int | None = None
        self.hits: list[tuple[str, str]] = []

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if self.loop_thread == threading.get_ident() and args:
                target = args[0]
                if isinstance(target, str | os.PathLike):
                    path = os.path.abspath(os.fspath(target))
                    if any(path.startswith(r) for r in self.roots):
                        self.hits.append((name, path))
            return real(*args, **kwargs)

        return wrapped

    @classmethod
    def armed(cls, monkeypatch: pytest.MonkeyPatch, roots: list[Path]) -> Tripwire:
        wire = cls(roots)
        for name in cls.NAMES:
            monkeypatch.setattr(os, name, wire._wrap(f"os.{name}", getattr(os, name)))
        wrapped_open = wire._wrap("open", builtins.open)
        monkeypatch.setattr(builtins, "open", wrapped_open)
        monkeypatch.setattr(io, "open", wrapped_open)
        return wire


def _req(method: str, path: str, query: str = "", body: bytes = b"") -> Request:
    req = Request(method, path, query, {"authorization": f"Bearer {KEY}", "content-type": "application/json"}, body)
    req.client = "127.0.0.1:40000"
    return req


ROUTES = [
    ("GET", "/v0/management/auth-files", ""),
    ("GET", "/v0/management/credentials", ""),
    ("GET", "/v0/management/config", ""),
    ("GET", "/v0/management/config.yaml", ""),
    ("GET", "/v0/management/api-keys", ""),
    ("GET", "/v0/management/claude-api-key", ""),
    ("GET", "/v0/management/request-logs", ""),
    ("GET", "/v0/management/request-error-logs", ""),
    ("GET", "/v0/management/request-log-by-id/abcd1234", ""),
    ("GET", "/v0/management/request-logs/v1-messages-2026-01-01T000000-abcd1234.log", ""),
    ("GET", "/v0/management/get-auth-status", "state=not-a-login"),
    ("DELETE", "/v0/management/oauth-session", "state=not-a-login"),
    ("GET", "/v0/management/request-retry", ""),
    ("GET", "/v0/management/auth-files/download", "name=claude-a@example.com.json"),
    ("GET", "/v0/management/api-key-usage", ""),
    ("POST", "/v0/management/reset-quota", ""),
    # the account writes (each takes the file in at once: the store's listeners run on the loop)
    ("PATCH", "/v0/management/auth-files/status", ""),
    ("PATCH", "/v0/management/auth-files/fields", ""),
    ("POST", "/v0/management/auth-files", "name=xai-b@example.com.json"),
    ("DELETE", "/v0/management/auth-files", "name=xai-b@example.com.json"),
]
BODIES = {
    "/v0/management/reset-quota": b'{"auth_index": "claude-a@example.com.json"}',
    "/v0/management/auth-files/status": b'{"name": "claude-a@example.com.json", "disabled": false}',
    "/v0/management/auth-files/fields": b'{"name": "claude-a@example.com.json", "priority": 3}',
    "/v0/management/auth-files": b'{"type": "xai", "access_token": "xai-access-token-for-the-test-0001"}',
}


def _run(gw: Gateway, wire: Tripwire) -> list[int]:
    async def go() -> list[int]:
        wire.loop_thread = threading.get_ident()
        statuses = []
        for _ in range(2):  # the second round takes the fast path of the key check (the ban file only)
            for method, path, query in ROUTES:
                body = BODIES.get(path, b"") if method != "DELETE" else b""
                statuses.append((await api.management(gw, _req(method, path, query, body))).status)
            page = _req("GET", "/management.html")
            statuses.append((await api.panel_page(gw, page)).status)
            asset = _req("GET", "/management-assets/panel.js")
            asset.path_params = {"rest": "panel.js"}
            statuses.append((await api.panel_asset(gw, asset)).status)
        return statuses

    return asyncio.run(go())


@pytest.fixture
def fresh_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from crossroute.management import auth

    monkeypatch.setattr(api, "guard", auth.Guard())
    monkeypatch.setattr(api, "_panel_cache", {}, raising=False)
    yield


def test_no_file_io_on_the_event_loop(gw: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      fresh_guard: None) -> None:
    wire = Tripwire.armed(monkeypatch, [tmp_path, api.PANEL_DIR])
    statuses = _run(gw, wire)
    assert all(s < 500 for s in statuses), statuses
    assert statuses[0] == 200 and statuses[8] == 200 and statuses[9] == 200  # the list, the log by id and by name
    assert statuses[13:16] == [200, 200, 200]  # the download, api-key-usage, reset-quota
    assert statuses[16:20] == [200, 200, 200, 200], statuses  # status, fields, upload, delete
    assert wire.hits == [], "file system calls on the event loop:\n" + "\n".join(f"{n} {p}" for n, p in wire.hits)


def test_the_tripwire_sees_a_read_on_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f").write_text("x")
    wire = Tripwire.armed(monkeypatch, [tmp_path])

    async def go() -> None:
        wire.loop_thread = threading.get_ident()
        (tmp_path / "f").read_bytes()
        sorted(tmp_path.glob("*"))  # noqa: ASYNC240 - the blocking call the tripwire must see
        await asyncio.to_thread((tmp_path / "f").read_bytes)  # in a thread: not a hit

    asyncio.run(go())
    assert [n for n, _ in wire.hits][:1] == ["open"] and any(n in ("os.scandir", "os.listdir") for n, _ in wire.hits)
