"""Accounts of auth-dir served by the registry: one entry per usable account, its kind, fields,
token source and models (executor list, exclusions, channel and file aliases, fork), /v1/models."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from crossroute import redaction
from crossroute.auth.serving import AccountService, account_models
from crossroute.auth.tokens import AccountToken
from crossroute.config import OAuthAlias, parse
from crossroute.gateway import Gateway
from crossroute.providers import EXECUTORS
from crossroute.providers.base import HttpExecutor
from crossroute.registry import Registry


class FakeClaude(HttpExecutor):
    kind = "claude-oauth"
    models: ClassVar[tuple[str, ...]] = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5")
    default_base_url = "https://api.anthropic.com"


class FakeCodex(HttpExecutor):
    kind = "codex-oauth"
    models: ClassVar[tuple[str, ...]] = ("gpt-5", "gpt-5-codex", "gpt-5-mini")
    default_base_url = "https://chatgpt.com/backend-api/codex"


@pytest.fixture
def executors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EXECUTORS, "claude-oauth", FakeClaude())
    monkeypatch.setitem(EXECUTORS, "codex-oauth", FakeCodex())
    monkeypatch.delitem(EXECUTORS, "kimi", raising=False)


def write(d: Path, name: str, obj: dict[str, Any]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(orjson.dumps(obj))


CLAUDE = {"type": "claude", "access_token": "sk-ant-oat01-unit-aaaa", "refresh_token": "sk-ant-ort01-unit-rrrr",
          "email": "ada@example.com", "expired": "2030-01-01T00:00:00Z"}
CODEX = {"type": "codex", "access_token": "codex-unit-access-1111", "refresh_token": "codex-unit-refresh-2222",
         "account_id": "acct-1", "email": "grace@example.com", "expired": "2030-01-01T00:00:00Z"}


def service(d: Path) -> AccountService:
    svc = AccountService(d, None, lambda: None)
    svc.store.load()
    return svc


def test_one_entry_per_usable_account_with_its_fields(executors: None, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, "claude-ada@example.com.json", {
        **CLAUDE, "priority": 2, "weight": 3, "prefix": "/team/", "proxy_url": "socks5://127.0.0.1:1080",
        "headers": {"X-A": "1"}, "excluded_models": ["*-haiku-*"]})
    write(tmp_path, "codex-grace@example.com-plus.json", {**CODEX, "base_url": "http://127.0.0.1:9/v1/",
                                                          "websockets": True})
    write(tmp_path, "codex-off@example.com.json", {**CODEX, "disabled": True})
    write(tmp_path, "codex-out@example.com.json", {**CODEX, "needs_login": True})
    write(tmp_path, "kimi-1764583200000.json", {"type": "kimi", "access_token": "kimi-unit-3333"})
    svc = service(tmp_path)
    with caplog.at_level(logging.WARNING, "crossroute.auth"):
        entries = {e.name: e for e in svc.entries(parse(""))}
        svc.entries(parse(""))
    assert sorted(entries) == ["claude-ada@example.com.json", "codex-grace@example.com-plus.json"]
    kimi_lines = [r for r in caplog.records if "kimi-1764583200000.json" in r.getMessage()]
    assert len(kimi_lines) == 1 and "no executor" in kimi_lines[0].getMessage()
    c = entries["claude-ada@example.com.json"]
    assert (c.kind, c.provider, c.cred_id, c.id, c.api_key) == (
        "claude-oauth", "claude-oauth", "auth:claude-ada@example.com.json", "auth:claude-ada@example.com.json", "")
    assert (c.base_url, c.proxy_url, c.headers, c.prefix, c.priority, c.weight, c.websockets) == (
        "https://api.anthropic.com", "socks5://127.0.0.1:1080", {"X-A": "1"}, "team", 2, 3, False)
    assert [m.name for m in c.models] == ["claude-sonnet-4-5", "claude-opus-4-1"]
    assert c.derived["account"].email == "ada@example.com"
    src = c.derived["token"]
    assert isinstance(src, AccountToken) and src.token() == "sk-ant-oat01-unit-aaaa"
    x = entries["codex-grace@example.com-plus.json"]
    assert (x.kind, x.base_url, x.websockets) == ("codex-oauth", "http://127.0.0.1:9/v1", True)
    assert x.derived["token"].token() == "codex-unit-access-1111"


def test_registry_serves_accounts_and_lists_them(executors: None, tmp_path: Path) -> None:
    write(tmp_path, "claude-ada@example.com.json", CLAUDE)
    write(tmp_path, "codex-grace@example.com-plus.json", {**CODEX, "prefix": "cx"})
    svc = service(tmp_path)
    settings = parse("""\
force-model-prefix: true
oauth-model-alias:
  claude:
    - {name: claude-sonnet-4-5, alias: sonnet}
    - {name: claude-opus-4-1, alias: opus, fork: true}
oauth-excluded-models:
  codex: ["*-mini"]
claude-api-key:
  - {api-key: sk-ant-config-key-1, models: [{name: claude-sonnet-4-5}]}
""")
    reg = Registry(settings, accounts=svc.entries(settings), secrets=svc.secrets())
    # the alias replaces the upstream name for the account; the config key still serves the name
    assert [c.credential_id for c in reg.resolve("sonnet")] == ["auth:claude-ada@example.com.json"]
    assert [c.upstream_model for c in reg.resolve("sonnet")] == ["claude-sonnet-4-5"]
    assert [c.credential_id for c in reg.resolve("claude-sonnet-4-5")] == [settings.providers[0].id]
    assert [c.credential_id for c in reg.resolve("opus")] == ["auth:claude-ada@example.com.json"]
    assert [c.credential_id for c in reg.resolve("claude-opus-4-1")] == ["auth:claude-ada@example.com.json"]
    # prefix forced: only cx/ names; the channel's exclusions apply
    assert reg.resolve("gpt-5") == []
    assert [c.upstream_model for c in reg.resolve("cx/gpt-5-codex")] == ["gpt-5-codex"]
    assert reg.resolve("cx/gpt-5-mini") == []
    listed = {m.id: m.owned_by for m in reg.models()}
    assert listed["sonnet"] == "claude-oauth" and listed["cx/gpt-5"] == "codex-oauth"
    assert "cx/gpt-5-mini" not in listed and "claude-haiku-4-5" in listed
    assert reg.credential_ids() >= {"auth:claude-ada@example.com.json", "auth:codex-grace@example.com-plus.json"}
    # tokens of accounts are masked with the configured keys
    assert "codex-unit-refresh-2222" not in redaction.scrub("x codex-unit-refresh-2222")
    assert "sk-ant-config-key-1" not in redaction.scrub("x sk-ant-config-key-1")


def test_entries_are_kept_while_routing_fields_stay(executors: None, tmp_path: Path) -> None:
    write(tmp_path, "claude-ada@example.com.json", CLAUDE)
    svc = service(tmp_path)
    first = svc.entries(parse(""))[0]
    first.derived["cache"] = "project-1"
    svc.store.update("claude-ada@example.com.json", access_token="sk-ant-oat01-unit-new1")
    again = svc.entries(parse(""))[0]
    assert again is first and again.derived["token"].token() == "sk-ant-oat01-unit-new1"
    svc.store.update("claude-ada@example.com.json", base_url="http://127.0.0.1:1")
    moved = svc.entries(parse(""))[0]
    assert moved is not first and moved.base_url == "http://127.0.0.1:1" and "cache" not in moved.derived


def acct(tmp_path: Path, **fields: Any) -> Any:
    write(tmp_path, "claude-a.json", {**CLAUDE, **fields})
    return service(tmp_path).store.get("claude-a.json")


def names(models: list[Any]) -> list[tuple[str, str | None]]:
    return [(m.name, m.alias) for m in models]


def test_model_rules(tmp_path: Path) -> None:
    served = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5")
    a = acct(tmp_path)
    assert names(account_models(a, served, [], [])) == [(m, None) for m in served]
    # channel exclusions are globs, case-insensitive; the alias of an excluded name is dropped too
    assert names(account_models(a, served, [OAuthAlias("claude-haiku-4-5", "fast")], ["*HAIKU*"])) == [
        ("claude-sonnet-4-5", None), ("claude-opus-4-1", None)]
    # alias replaces; fork keeps both; an alias for a model the executor does not list adds it
    got = account_models(a, served, [OAuthAlias("claude-sonnet-4-5", "sonnet"),
                                     OAuthAlias("claude-opus-4-1", "opus", fork=True),
                                     OAuthAlias("claude-next-5", "next")], [])
    assert names(got) == [("claude-sonnet-4-5", "sonnet"), ("claude-opus-4-1", None), ("claude-opus-4-1", "opus"),
                          ("claude-haiku-4-5", None), ("claude-next-5", "next")]
    # the file's own aliases and exclusions win over the channel's
    b = acct(tmp_path, model_aliases={"claude-sonnet-4-5": "s"}, excluded_models=["claude-opus-*"])
    assert names(account_models(b, served, [OAuthAlias("claude-sonnet-4-5", "sonnet", fork=True)], [])) == [
        ("claude-sonnet-4-5", "s"), ("claude-haiku-4-5", None)]


def test_config_cloud_key_lists_use_executor_models(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeXai(HttpExecutor):
        kind = "xai"
        models: ClassVar[tuple[str, ...]] = ("grok-4", "grok-code-fast-1")

    monkeypatch.setitem(EXECUTORS, "xai", FakeXai())
    reg = Registry(parse("xai-api-key:\n  - {api-key: xai-unit-key-1, excluded-models: ['*code*']}\n"))
    assert [m.id for m in reg.models()] == ["grok-4"]
    assert [c.provider for c in reg.resolve("grok-4")] == ["xai"]


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_gateway_follows_the_auth_dir(executors: None, tmp_path: Path) -> None:
    auth = tmp_path / "auth"  # does not exist yet: the gateway waits for it, never creates it
    gw = Gateway(parse(f"auth-dir: {auth}\n"))
    await gw.start()
    try:
        assert gw.accounts is not None and not auth.exists()
        assert gw.registry.resolve("claude-sonnet-4-5") == []
        write(auth, "claude-ada@example.com.json", CLAUDE)
        write(auth, "codex-grace@example.com-plus.json", CODEX)
        await eventually(lambda: len(gw.registry.resolve("gpt-5")) == 1
                         and bool(gw.registry.resolve("claude-opus-4-1")))
        mem = gw.state
        mem.set_binding_now("sess-1", "auth:codex-grace@example.com-plus.json", 3600)  # type: ignore[attr-defined]
        mem.set_binding_now("sess-2", "auth:claude-ada@example.com.json", 3600)  # type: ignore[attr-defined]
        import time as _time

        later = _time.time() + 600
        mem.set_cooldown_now("auth:claude-ada@example.com.json", "claude-opus-4-1", later, 1, later)  # type: ignore[attr-defined]
        mem.set_cooldown_now("auth:codex-grace@example.com-plus.json", "gpt-5", later, 1, later)  # type: ignore[attr-defined]
        # disabled through the CLI's path (the store), then removed by hand: both leave, bindings dropped
        write(auth, "claude-ada@example.com.json", {**CLAUDE, "disabled": True})
        await eventually(lambda: gw.registry.resolve("claude-opus-4-1") == [])
        await eventually(lambda: mem.peek_binding("sess-2") is None)  # type: ignore[attr-defined]
        await eventually(lambda: ("auth:claude-ada@example.com.json", "claude-opus-4-1")
                         not in mem.cooldowns)  # type: ignore[attr-defined]
        assert mem.peek_binding("sess-1") is not None  # type: ignore[attr-defined]
        assert ("auth:codex-grace@example.com-plus.json", "gpt-5") in mem.cooldowns  # type: ignore[attr-defined]
        (auth / "codex-grace@example.com-plus.json").unlink()
        await eventually(lambda: gw.registry.resolve("gpt-5") == [])
        await eventually(lambda: mem.peek_binding("sess-1") is None)  # type: ignore[attr-defined]
        # a reload naming another auth-dir swaps the store
        other = tmp_path / "other"
        write(other, "codex-grace@example.com-plus.json", CODEX)
        await gw.apply(parse(f"auth-dir: {other}\n"))
        assert [c.credential_id for c in gw.registry.resolve("gpt-5")] == ["auth:codex-grace@example.com-plus.json"]
        assert gw.accounts.dir == str(other)
    finally:
        await gw.stop()
    assert gw.accounts is None


def test_websockets_fall_back_to_http_when_the_build_cannot(executors: None, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from crossroute import registry

    write(tmp_path, "codex-grace@example.com-plus.json", {**CODEX, "websockets": True})
    wrapped = object()
    calls: list[tuple[str, bool]] = []

    def executor_for(kind: str, websockets: bool = False) -> Any:
        calls.append((kind, websockets))
        return wrapped if websockets else EXECUTORS[kind]

    monkeypatch.setattr(registry, "executor_for", executor_for)
    svc = service(tmp_path)
    reg = Registry(parse(""), accounts=svc.entries(parse("")))
    assert reg.resolve("gpt-5")[0].executor is wrapped and ("codex-oauth", True) in calls

    def missing(kind: str, websockets: bool = False) -> Any:
        if websockets:
            raise ModuleNotFoundError("No module named 'crossroute.providers.ws_upstream'")
        return EXECUTORS[kind]

    monkeypatch.setattr(registry, "executor_for", missing)
    monkeypatch.setattr(registry, "_NO_WS", set())
    with caplog.at_level(logging.WARNING, "crossroute"):
        reg = Registry(parse(""), accounts=svc.entries(parse("")))
    assert all(c.executor is EXECUTORS["codex-oauth"] for c in reg.resolve("gpt-5-codex") + reg.resolve("gpt-5"))
    assert len([r for r in caplog.records if "reached over HTTP" in r.getMessage()]) == 1


def test_an_account_with_an_unusable_url_is_skipped_with_one_line(executors: None, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, "claude-a.json", {**CLAUDE, "base_url": "ftp://files.example"})
    write(tmp_path, "claude-b.json", {**CLAUDE, "proxy_url": "gopher://p:70", "access_token": "sk-ant-oat01-b-000"})
    write(tmp_path, "claude-c.json", {**CLAUDE, "proxy-url": "direct", "access_token": "sk-ant-oat01-c-000"})
    svc = service(tmp_path)
    with caplog.at_level(logging.WARNING, "crossroute.auth"):
        for _ in range(3):
            names = [e.name for e in svc.entries(parse(""))]
    assert names == ["claude-c.json"]
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "claude-a.json" in m and "'base_url'" in m]) == 1
    assert len([m for m in lines if "claude-b.json" in m and "'proxy_url'" in m]) == 1
    assert not any("sk-ant-oat01" in m for m in lines)


async def test_without_a_watcher_the_directory_is_rescanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from crossroute.auth import serving

    monkeypatch.setattr(serving, "RETRY_WATCH", 0.1)
    changes: list[int] = []
    svc = AccountService(tmp_path, None, lambda: changes.append(1))

    async def broken(stop: Any = None) -> None:
        raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(svc.store, "watch", broken)
    with caplog.at_level(logging.WARNING, "crossroute.auth"):
        await svc.start()
        try:
            write(tmp_path, "claude-ada@example.com.json", CLAUDE)
            await eventually(lambda: svc.store.get("claude-ada@example.com.json") is not None and bool(changes))
            await asyncio.sleep(0.5)
        finally:
            await svc.stop()
    assert len([r for r in caplog.records if "inotify watch limit" in r.getMessage()]) == 1
