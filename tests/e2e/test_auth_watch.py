"""The auth directory is watched: real files added, changed and removed reach ``on_change``."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
import pytest

from crossroute.auth.accounts import Account
from crossroute.auth.store import AuthStore


async def _next(q: asyncio.Queue[tuple[list[str], list[str], list[str]]]) -> tuple[list[str], list[str], list[str]]:
    return await asyncio.wait_for(q.get(), 15)


async def test_add_change_remove_take_effect_without_restart(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    auth = tmp_path / "auth"
    auth.mkdir()
    (auth / "claude-a@x.com.json").write_bytes(orjson.dumps({"type": "claude", "access_token": "tok-aaaaaa1"}))
    store = AuthStore(auth)
    events: asyncio.Queue[tuple[list[str], list[str], list[str]]] = asyncio.Queue()

    def listener(added: list[Account], changed: list[Account], removed: list[Account]) -> None:
        events.put_nowait(([a.name for a in added], [a.name for a in changed], [a.name for a in removed]))

    store.on_change(listener)
    stop = asyncio.Event()
    task = asyncio.create_task(store.watch(stop, debounce_ms=100))
    try:
        assert await _next(events) == (["claude-a@x.com.json"], [], [])  # the initial scan
        await asyncio.sleep(0.3)  # the watcher is running
        (auth / "codex-b@x.com.json").write_bytes(orjson.dumps({"type": "codex", "access_token": "tok-bbbbbb1",
                                                                "email": "b@x.com"}))
        assert await _next(events) == (["codex-b@x.com.json"], [], [])
        assert store.get("codex-b@x.com.json").email == "b@x.com"  # type: ignore[union-attr]

        (auth / "codex-b@x.com.json").write_bytes(orjson.dumps({"type": "codex", "access_token": "tok-bbbbbb2",
                                                                "email": "b@x.com", "priority": 5}))
        assert await _next(events) == ([], ["codex-b@x.com.json"], [])
        assert store.get("codex-b@x.com.json").priority == 5  # type: ignore[union-attr]

        (auth / "claude-a@x.com.json").unlink()
        assert await _next(events) == ([], [], ["claude-a@x.com.json"])
        assert store.get("claude-a@x.com.json") is None

        # a file that goes bad is removed from service (and logged once); fixed, it comes back
        with caplog.at_level(logging.WARNING, logger="crossroute.auth"):
            (auth / "codex-b@x.com.json").write_text("{ torn")
            assert await _next(events) == ([], [], ["codex-b@x.com.json"])
        assert [r.getMessage() for r in caplog.records if "codex-b@x.com.json" in r.getMessage()] != []
        (auth / "codex-b@x.com.json").write_bytes(orjson.dumps({"type": "codex", "access_token": "tok-bbbbbb3"}))
        assert await _next(events) == (["codex-b@x.com.json"], [], [])

        # the store's own writes are not reported back as changes from the watcher
        store.write("codex-b@x.com.json", {"type": "codex", "access_token": "tok-bbbbbb4"})
        await asyncio.sleep(1.0)
        assert events.empty()
        # temporary files and other names are ignored
        (auth / ".x.json.123.tmp").write_text("{")
        (auth / "README").write_text("x")
        await asyncio.sleep(1.0)
        assert events.empty()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
