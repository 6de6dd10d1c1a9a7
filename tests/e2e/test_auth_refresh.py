"""Token refresh against the fake OAuth server over real HTTP: rotation written before use, one
refresh for many callers, ahead of expiry in the background, invalid_grant -> needs login, 401 ->
refresh -> one resend through the executor seam, and one refresh across replicas sharing Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from crossroute import redaction
from crossroute.auth.accounts import NEEDS_LOGIN, format_time
from crossroute.auth.refresh import Refresher
from crossroute.auth.store import AuthStore
from crossroute.config import ProviderEntry
from crossroute.providers.base import HttpExecutor, Outbound, UpstreamError, UpstreamRequest
from tests.upstream_io import LoopbackIO

from .fake_oauth import EMAILS, FakeOAuth, codex_id_token

FILE = {"claude": "claude-ada@example.com.json", "codex": "codex-grace@example.com-plus.json",
        "antigravity": "antigravity-alan@example.com.json", "kimi": "kimi-1764583200000.json"}


@pytest.fixture
def fake() -> Iterator[FakeOAuth]:
    f = FakeOAuth().start()
    yield f
    f.stop()


def seed(fake: FakeOAuth, d: Path, provider: str, expires_in: float = 60.0, refreshed_ago: float = 7200.0,
         **extra: Any) -> tuple[str, str]:
    """An account file with tokens the fake issued, expiring in ``expires_in`` seconds."""
    access, refresh = fake.issue_refresh(provider)
    obj: dict[str, Any] = {"type": provider, "access_token": access, "refresh_token": refresh,
                           "expired": format_time(time.time() + expires_in),
                           "last_refresh": format_time(time.time() - refreshed_ago),
                           "cliproxy_only_field": [1, 2], **extra}
    if provider in EMAILS:
        obj["email"] = EMAILS[provider]
    if provider == "codex":
        obj["id_token"] = codex_id_token()
    if provider == "kimi":
        obj["device_id"] = "dev-1"
        obj["headers"] = {"X-Msh-Device-Id": "dev-1", "X-Msh-Platform": "crossroute"}
    d.mkdir(parents=True, exist_ok=True)
    (d / FILE[provider]).write_bytes(orjson.dumps(obj))
    return access, refresh


def env_for(fake: FakeOAuth, *providers: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for p in providers:
        env.update(fake.env(p))
    return env


@pytest.mark.parametrize("provider", ["claude", "codex", "antigravity", "kimi"])
async def test_due_token_is_rotated_and_written_before_use(fake: FakeOAuth, tmp_path: Path, provider: str) -> None:
    old_access, old_refresh = seed(fake, tmp_path, provider, expires_in=120)
    store = AuthStore(tmp_path)
    store.load()
    r = Refresher(store, env=env_for(fake, provider))
    try:
        assert await r.check_once() == [FILE[provider]]
        on_disk = orjson.loads((tmp_path / FILE[provider]).read_bytes())
        src = r.source(FILE[provider])
        assert src.token() == on_disk["access_token"] != old_access  # what is used is what is on disk
        assert on_disk["refresh_token"] != old_refresh  # rotated
        assert old_refresh not in fake.refresh_tokens  # the old one is spent at the server
        assert on_disk["cliproxy_only_field"] == [1, 2]  # other fields kept
        assert on_disk["expired"] > format_time(time.time() + 3000)
        assert fake.refresh_count == 1 and fake.errors == []
        req = [x for x in fake.requests if x["path"] == f"/{provider}/token"][-1]
        assert req["form"]["grant_type"] == "refresh_token"
        if provider == "kimi":
            assert req["headers"]["X-Msh-Device-Id"] == "dev-1"
        # the new tokens are known secrets
        assert on_disk["access_token"] not in redaction.scrub(f"x {on_disk['access_token']}")
        assert await r.check_once() == []  # not due any more
    finally:
        await r.stop()


def test_refresh_leads_per_provider(tmp_path: Path) -> None:
    store = AuthStore(tmp_path)
    r = Refresher(store, env={})
    now = 1_000_000_000.0
    for provider, due_in, not_due_in in [("claude", 3.9 * 3600, 4.1 * 3600), ("codex", 4.9 * 86400, 5.1 * 86400),
                                         ("kimi", 290, 310), ("antigravity", 290, 310)]:
        for seconds, want in ((due_in, True), (not_due_in, False)):
            acct = store.write(f"{provider}-x.json", {"type": provider, "access_token": "tok-abcdef",
                                                      "refresh_token": "rt-abcdef",
                                                      "expired": format_time(now + seconds)})
            assert r.due(acct, now) is want, (provider, seconds)
    # no expiry known: due once the last refresh is older than the lead
    acct = store.write("claude-y.json", {"type": "claude", "access_token": "tok-abcdef", "refresh_token": "rt-abcdef",
                                         "last_refresh": format_time(now - 5 * 3600)})
    assert r.due(acct, now)
    disabled = store.write("claude-z.json", {"type": "claude", "access_token": "tok-abcdef", "refresh_token": "rt-x",
                                             "expired": format_time(now), "disabled": True})
    assert not r.due(disabled, now)


async def test_concurrent_callers_share_one_refresh(fake: FakeOAuth, tmp_path: Path) -> None:
    old_access, _ = seed(fake, tmp_path, "claude", expires_in=10 * 3600)
    fake.refresh_delay = 0.3
    store = AuthStore(tmp_path)
    store.load()
    r = Refresher(store, env=env_for(fake, "claude"))
    try:
        src = r.source(FILE["claude"])
        results = await asyncio.gather(*(src.refresh(old_access) for _ in range(20)))
        assert results == [True] * 20
        assert fake.refresh_count == 1
        # a 401 seen with the token that was already replaced does not refresh again
        assert await src.refresh(old_access) is True and fake.refresh_count == 1
        # and a caller cancelled mid-refresh does not cancel the refresh for the others
        new = src.token()
        t1 = asyncio.create_task(src.refresh(new))
        t2 = asyncio.create_task(src.refresh(new))
        await asyncio.sleep(0.05)
        t1.cancel()
        assert await t2 is True and fake.refresh_count == 2
    finally:
        await r.stop()


async def test_background_refresh_ahead_of_expiry(fake: FakeOAuth, tmp_path: Path) -> None:
    old_access, _ = seed(fake, tmp_path, "codex", expires_in=4 * 86400, refreshed_ago=6 * 86400)  # in the 5-day lead
    store = AuthStore(tmp_path)
    store.load()
    r = Refresher(store, env=env_for(fake, "codex"), check_every=0.1)
    r.start()
    try:
        for _ in range(100):
            if fake.refresh_count:
                break
            await asyncio.sleep(0.1)
        assert fake.refresh_count == 1
        assert orjson.loads((tmp_path / FILE["codex"]).read_bytes())["access_token"] != old_access
        await asyncio.sleep(0.5)
        assert fake.refresh_count == 1  # once
    finally:
        await r.stop()


async def test_invalid_grant_marks_needs_login_once_and_keeps_the_file(
        fake: FakeOAuth, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seed(fake, tmp_path, "claude", expires_in=60)
    fake.refresh_mode = "invalid_grant"
    store = AuthStore(tmp_path)
    store.load()
    changes: list[list[str]] = []
    store.on_change(lambda a, c, rm: changes.append([x.status for x in c]))
    r = Refresher(store, env=env_for(fake, "claude"))
    try:
        with caplog.at_level(logging.INFO, logger="crossroute.auth"):
            assert await r.source(FILE["claude"]).refresh() is False
            assert await r.source(FILE["claude"]).refresh() is False
            assert await r.check_once() == []
        token_posts = [x for x in fake.requests if x["path"] == "/claude/token"]
        assert len(token_posts) == 1  # out of rotation: never tried again
        acct = store.get(FILE["claude"])
        assert acct is not None and acct.status == NEEDS_LOGIN
        assert changes == [[NEEDS_LOGIN]]
        lines = [rec.getMessage() for rec in caplog.records if "needs login" in rec.getMessage()]
        assert len(lines) == 1 and "invalid_grant" in lines[0] and "crossroute login claude" in lines[0]
        on_disk = orjson.loads((tmp_path / FILE["claude"]).read_bytes())
        assert on_disk["needs_login"] is True and on_disk["refresh_token"]
        assert all(acct.refresh_token not in rec.getMessage() for rec in caplog.records)  # type: ignore[operator]
    finally:
        await r.stop()


async def test_transient_failure_backs_off_and_keeps_the_account(fake: FakeOAuth, tmp_path: Path) -> None:
    seed(fake, tmp_path, "kimi", expires_in=60)
    fake.refresh_mode = "error500"
    store = AuthStore(tmp_path)
    store.load()
    r = Refresher(store, env=env_for(fake, "kimi"))
    try:
        assert await r.check_once() == [FILE["kimi"]]
        assert await r.check_once() == []  # backing off
        assert store.get(FILE["kimi"]).usable  # type: ignore[union-attr]
        fake.refresh_mode = "rotate"
        assert await r.source(FILE["kimi"]).refresh() is True  # a 401 may still refresh at once
    finally:
        await r.stop()


async def test_a_429_from_the_token_endpoint_blocks_refreshes_until_retry_after(fake: FakeOAuth,
                                                                                tmp_path: Path) -> None:
    old, _ = seed(fake, tmp_path, "claude", expires_in=60)
    fake.refresh_mode = "429"
    store = AuthStore(tmp_path)
    store.load()
    clock = [time.time()]
    r = Refresher(store, env=env_for(fake, "claude"), clock=lambda: clock[0])
    try:
        assert await r.source(FILE["claude"]).refresh(old) is False
        posts = len([x for x in fake.requests if x["path"] == "/claude/token"])
        fake.refresh_mode = "rotate"
        assert await r.source(FILE["claude"]).refresh(old) is False  # a 401 inside the window: no request
        assert await r.check_once() == []
        assert len([x for x in fake.requests if x["path"] == "/claude/token"]) == posts
        clock[0] += 31
        assert await r.source(FILE["claude"]).refresh(old) is True
        assert store.get(FILE["claude"]).usable  # type: ignore[union-attr]
    finally:
        await r.stop()


async def test_nothing_to_refresh_with_is_not_a_logout(fake: FakeOAuth, tmp_path: Path) -> None:
    store = AuthStore(tmp_path)
    store.write("claude-k.json", {"type": "claude", "access_token": "tok-only-access-1"})
    store.write("xai-a.json", {"type": "xai", "access_token": "tok-xai-1", "refresh_token": "rt-xai-1"})
    r = Refresher(store, env=env_for(fake, "claude"))
    try:
        assert await r.source("claude-k.json").refresh() is False
        assert await r.source("xai-a.json").refresh() is False  # no public refresh endpoint
        assert [a.status for a in store.accounts()] == ["active", "active"]
        assert fake.requests == []
    finally:
        await r.stop()


# ------------------------------------------------------------------ the executor seam: 401 -> refresh -> one resend
IO = LoopbackIO


class BearerExecutor(HttpExecutor):
    kind = "test-oauth"

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        return UpstreamRequest(entry.base_url + "/v1/messages",
                               {"Authorization": f"Bearer {self.token_source(entry).token()}"}, out.body)


@pytest.fixture
async def upstream(fake: FakeOAuth) -> AsyncIterator[tuple[str, list[str], set[str]]]:
    seen: list[str] = []
    valid: set[str] = set()

    async def handle(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        seen.append(token)
        if token not in valid:
            return web.json_response({"error": {"message": "invalid bearer token"}}, status=401)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/messages", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen, valid
    await runner.cleanup()


async def test_401_refreshes_once_and_resends_with_the_new_token(
        fake: FakeOAuth, tmp_path: Path, upstream: tuple[str, list[str], set[str]]) -> None:
    base, seen, valid = upstream
    old, _ = seed(fake, tmp_path, "claude", expires_in=10 * 3600)  # not due: only the 401 says it is dead
    store = AuthStore(tmp_path)
    store.load()
    r = Refresher(store, env=env_for(fake, "claude"))
    entry = ProviderEntry(kind="test-oauth", provider="claude", name=FILE["claude"], api_key="", base_url=base)
    entry.derived["token"] = r.source(FILE["claude"])
    ex = BearerExecutor()
    real_mint = fake.mint

    def mint_and_allow(provider: str) -> dict[str, Any]:
        body = real_mint(provider)
        valid.add(body["access_token"])
        return body

    fake.mint = mint_and_allow  # type: ignore[method-assign]
    try:
        async with aiohttp.ClientSession() as session:
            up = await ex.send(entry, Outbound("generate", "claude", "m", b"{}", False, {}), IO(session))
            assert up.status == 200
            up.close(True)
            new = orjson.loads((tmp_path / FILE["claude"]).read_bytes())["access_token"]
            assert seen == [old, new] and fake.refresh_count == 1
            # the refreshed token is rejected too: one resend only, then a credential failure
            valid.clear()
            seen.clear()
            with pytest.raises(UpstreamError) as err:
                await ex.send(entry, Outbound("generate", "claude", "m", b"{}", False, {}), IO(session))
            assert err.value.scope == "credential" and len(seen) == 2
    finally:
        await r.stop()


# ------------------------------------------------------------------ workers on one host sharing the auth dir
WORKER = r"""
import asyncio, json, sys, time
from pathlib import Path
from crossroute.auth.refresh import Refresher
from crossroute.auth.store import AuthStore

auth, name, old, env, go = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), Path(sys.argv[5])

async def main() -> None:
    store = AuthStore(auth)
    store.load()
    r = Refresher(store, env=env)
    while not go.exists():
        await asyncio.sleep(0.01)
    ok = await r.source(name).refresh(old)
    print(json.dumps({"ok": ok, "token": r.source(name).token(), "status": store.get(name).status}))
    await r.stop()

asyncio.run(main())
"""


def test_worker_processes_sharing_the_auth_dir_refresh_once(fake: FakeOAuth, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    old, _ = seed(fake, tmp_path, "claude", expires_in=60)
    fake.refresh_delay = 0.5
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), FILE["claude"], old,
                               json.dumps(env_for(fake, "claude")), str(go)],
                              env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    time.sleep(1.5)  # all three are up and waiting
    go.touch()
    results = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert [x["ok"] for x in results] == [True, True, True]
    assert [x["status"] for x in results] == ["active"] * 3  # none was logged out by a second refresh
    assert len({x["token"] for x in results}) == 1 and results[0]["token"] != old
    assert fake.refresh_count == 1
    assert orjson.loads((tmp_path / FILE["claude"]).read_bytes())["access_token"] == results[0]["token"]


# ------------------------------------------------------------------ replicas sharing Redis
@pytest.mark.redis
async def test_replicas_sharing_redis_refresh_once(fake: FakeOAuth, tmp_path: Path) -> None:
    from tests.redis_server import RedisServer

    with RedisServer() as redis:
        old, _ = seed(fake, tmp_path / "a", "codex", expires_in=86400)
        same = (tmp_path / "a" / FILE["codex"]).read_bytes()
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / FILE["codex"]).write_bytes(same)  # each replica its own copy of the file
        fake.refresh_delay = 0.3
        replicas = []
        for d in ("a", "b"):
            store = AuthStore(tmp_path / d)
            store.load()
            replicas.append(Refresher(store, env=env_for(fake, "codex"), redis_url=redis.url))
        try:
            results = await asyncio.gather(*(rep.source(FILE["codex"]).refresh(old) for rep in replicas))
            assert results == [True, True]
            assert fake.refresh_count == 1  # once, not once each (a second would have hit invalid_grant)
            tokens = [orjson.loads((tmp_path / d / FILE["codex"]).read_bytes())["access_token"] for d in ("a", "b")]
            assert tokens[0] == tokens[1] != old
            assert all(rep.store.get(FILE["codex"]).usable for rep in replicas)  # type: ignore[union-attr]
            # later, background checks on both: the second adopts what the first minted
            fake.refresh_delay = 0.0
            await replicas[0].source(FILE["codex"]).refresh(tokens[0])
            assert fake.refresh_count == 2
            await replicas[1].source(FILE["codex"]).refresh(tokens[1])
            assert fake.refresh_count == 2
            t = [orjson.loads((tmp_path / d / FILE["codex"]).read_bytes())["access_token"] for d in ("a", "b")]
            assert t[0] == t[1] != tokens[0]
        finally:
            for rep in replicas:
                await rep.stop()
