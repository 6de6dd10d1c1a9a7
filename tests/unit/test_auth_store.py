"""The credential store: CLIProxyAPI's file formats read and written back, bad files skipped once."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path

import orjson
import pytest

from crossroute import redaction
from crossroute.auth.accounts import (
    ACTIVE,
    DISABLED,
    NEEDS_LOGIN,
    codex_file_name,
    format_time,
    parse_time,
)
from crossroute.auth.files import write_json_atomic
from crossroute.auth.store import AuthStore, resolve_auth_dir

# Files exactly as CLIProxyAPI writes them (field names and value formats).
CLIPROXY_FILES = {
    "claude-ada@example.com.json": {
        "id_token": "", "access_token": "sk-ant-oat01-claude-access-aaaa", "refresh_token": "sk-ant-ort01-claude-rrrr",
        "last_refresh": "2026-11-30T10:00:00Z", "email": "ada@example.com", "account_uuid": "u-1",
        "organization_uuid": "o-1", "organization_name": "Org", "claude_device_ids": ["d1"], "type": "claude",
        "expired": "2026-12-01T18:00:00Z",
    },
    "codex-1a2b3c4d-grace@example.com-plus.json": {
        "id_token": "eyJ.x.y", "access_token": "codex-access-token-1111", "refresh_token": "codex-refresh-token-2222",
        "account_id": "acct-1", "last_refresh": "2026-11-30T10:00:00+00:00", "email": "grace@example.com",
        "type": "codex", "expired": "2026-12-10T10:00:00Z", "websockets": True,
    },
    "kimi-1764583200000.json": {
        "access_token": "kimi-access-token-3333", "refresh_token": "kimi-refresh-token-4444", "token_type": "Bearer",
        "scope": "kimi-code", "device_id": "dev-uuid", "expired": "2026-12-01T12:00:00Z", "type": "kimi",
    },
    "antigravity-alan@example.com.json": {
        "access_token": "ya29.antigravity-access-5555", "refresh_token": "1//antigravity-refresh-6666",
        "expires_in": 3599, "timestamp": 1764583200000, "email": "alan@example.com", "type": "antigravity",
        "project_id": "proj-1",
    },
    "vertex-my-project.json": {
        "type": "vertex", "project_id": "my-project", "email": "sa@my-project.iam.gserviceaccount.com",
        "location": "us-central1",
        "service_account": {"type": "service_account", "client_email": "sa@my-project.iam.gserviceaccount.com",
                            "private_key": "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n"},
    },
    "xai-someone.json": {"type": "xai", "access_token": "xai-access-token-7777", "email": "someone@x.ai"},
}


def write_files(d: Path, files: dict[str, dict]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, obj in files.items():
        (d / name).write_bytes(orjson.dumps(obj))


def test_a_cliproxyapi_auth_dir_is_read_unchanged(tmp_path: Path) -> None:
    write_files(tmp_path, CLIPROXY_FILES)
    store = AuthStore(tmp_path)
    added, changed, removed = store.load()
    assert sorted(a.name for a in added) == sorted(CLIPROXY_FILES)
    assert changed == [] and removed == []
    by = {a.provider: a for a in store.accounts()}
    assert set(by) == {"claude", "codex", "kimi", "antigravity", "vertex", "xai"}
    assert by["claude"].email == "ada@example.com" and by["claude"].status == ACTIVE
    assert by["claude"].expires_at == parse_time("2026-12-01T18:00:00Z")
    assert by["codex"].websockets is True
    assert by["antigravity"].expires_at == pytest.approx(1764583200.0 + 3599)
    assert by["kimi"].refresh_token == "kimi-refresh-token-4444"
    # every token is a known secret from now on
    assert "codex-refresh-token-2222" not in redaction.scrub("x codex-refresh-token-2222 y")


def test_common_fields_in_either_spelling(tmp_path: Path) -> None:
    base = {"type": "claude", "access_token": "tok-123456"}
    write_files(tmp_path, {
        "claude-a.json": {**base, "proxy-url": "socks5://127.0.0.1:1080", "base-url": "http://127.0.0.1:9",
                          "excluded-models": ["claude-2*"], "model-aliases": {"claude-x": "x"}, "priority": 3,
                          "weight": "2", "prefix": "team", "headers": {"X-A": "1"}, "disabled": "true"},
        "claude-b.json": {**base, "proxy_url": "http://127.0.0.1:8080", "base_url": "http://127.0.0.1:10",
                          "excluded_models": ["*-haiku"], "model_aliases": [{"name": "claude-y", "alias": "y"}]},
    })
    store = AuthStore(tmp_path)
    store.load()
    a, b = store.get("claude-a.json"), store.get("claude-b.json")
    assert a and b
    assert (a.proxy_url, a.base_url, a.excluded_models, a.model_aliases) == (
        "socks5://127.0.0.1:1080", "http://127.0.0.1:9", ["claude-2*"], {"claude-x": "x"})
    assert (a.priority, a.weight, a.prefix, a.headers, a.status) == (3, 2, "team", {"X-A": "1"}, DISABLED)
    assert (b.proxy_url, b.base_url, b.excluded_models, b.model_aliases) == (
        "http://127.0.0.1:8080", "http://127.0.0.1:10", ["*-haiku"], {"claude-y": "y"})


def test_rewrites_keep_unknown_fields_and_spelling(tmp_path: Path) -> None:
    obj = {**CLIPROXY_FILES["claude-ada@example.com.json"], "cloak_mode": "x", "excluded-models": ["a"],
           "fingerprint_profile": {"n": 1}}
    write_files(tmp_path, {"claude-ada@example.com.json": obj})
    store = AuthStore(tmp_path)
    store.load()
    acct = store.set_disabled("ada@example.com", True)
    assert acct.status == DISABLED
    on_disk = orjson.loads((tmp_path / "claude-ada@example.com.json").read_bytes())
    assert on_disk == {**obj, "disabled": True}
    store.set_disabled("claude-ada@example.com", False)
    assert orjson.loads((tmp_path / "claude-ada@example.com.json").read_bytes()) == obj
    # a refresh changes only the token fields
    acct = store.get("claude-ada@example.com.json")
    assert acct is not None
    new = acct.with_tokens(access_token="new-access-999", refresh_token=None, expires_at=2_000_000_000.0,
                           now=1_900_000_000.0)
    assert new["refresh_token"] == obj["refresh_token"]  # an answer without a new one keeps the old
    assert new["expired"] == format_time(2_000_000_000.0) == "2033-05-18T03:33:20Z"
    assert {k: v for k, v in new.items() if k not in ("access_token", "expired", "last_refresh")} == \
        {k: v for k, v in obj.items() if k not in ("access_token", "expired", "last_refresh")}


def test_files_are_private_and_written_atomically(tmp_path: Path) -> None:
    d = tmp_path / "new" / "auth"
    store = AuthStore(d)
    store.write("claude-x@example.com.json", {"type": "claude", "access_token": "tok-abcdef", "email": "x@example.com"})
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    f = d / "claude-x@example.com.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert [p.name for p in d.iterdir()] == ["claude-x@example.com.json"]  # no temporary file left
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    write_json_atomic(loose / "a.json", {"type": "claude"})
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_a_file_the_store_would_skip_is_never_written(tmp_path: Path) -> None:
    store = AuthStore(tmp_path)
    with pytest.raises(ValueError, match="access_token"):
        store.write("claude-x.json", {"type": "claude"})
    with pytest.raises(ValueError, match="not an account file name"):
        store.write("../evil.json", {"type": "claude", "access_token": "tok-abcdef"})
    assert not list(tmp_path.iterdir())


def test_bad_files_are_skipped_with_one_log_line_each(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_files(tmp_path, {"claude-ok.json": {"type": "claude", "access_token": "tok-abcdef"},
                           "no-type.json": {"access_token": "x"},
                           "claude-notoken.json": {"type": "claude", "email": "a@b"},
                           "qwen-old.json": {"type": "qwen", "access_token": "x"},
                           "claude-badweight.json": {"type": "claude", "access_token": "tok-abcdef", "weight": []}})
    (tmp_path / "torn.json").write_text('{"type": "claude", "access_')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / ".claude-ok.json.abc.tmp").write_text("{")  # a killed writer's temporary file: ignored
    (tmp_path / "notes.txt").write_text("x")
    store = AuthStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="crossroute.auth"):
        store.load()
        store.load()  # a rescan does not repeat the lines
    assert [a.name for a in store.accounts()] == ["claude-ok.json"]
    lines = [r.getMessage() for r in caplog.records]
    expected = {"no-type.json": "has no 'type' field", "claude-notoken.json": "neither 'access_token'",
                "qwen-old.json": "does not support", "claude-badweight.json": "'weight' must be a number",
                "torn.json": "is not valid JSON", "list.json": "is not a JSON object"}
    assert len(lines) == len(expected), lines
    for name, problem in expected.items():
        assert sum(1 for line in lines if name in line and problem in line) == 1, (name, lines)
    # a changed bad file is reported again, a fixed one is taken in
    caplog.clear()
    (tmp_path / "torn.json").write_text('{"type": "claude", "access_token": "tok-fixed-1"}')
    (tmp_path / "list.json").write_text("[3]")
    with caplog.at_level(logging.WARNING, logger="crossroute.auth"):
        added, _, _ = store.load()
    assert [a.name for a in added] == ["torn.json"]
    assert [r.getMessage() for r in caplog.records if "list.json" in r.getMessage()] != []


def test_needs_login_is_recorded_logged_once_and_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_files(tmp_path, {"claude-ada@example.com.json": CLIPROXY_FILES["claude-ada@example.com.json"]})
    store = AuthStore(tmp_path)
    store.load()
    seen: list[tuple[list[str], list[str], list[str]]] = []
    store.on_change(lambda a, c, r: seen.append(([x.name for x in a], [x.name for x in c], [x.name for x in r])))
    with caplog.at_level(logging.WARNING, logger="crossroute.auth"):
        store.mark_needs_login("claude-ada@example.com.json", "refresh rejected (400 invalid_grant)")
        store.mark_needs_login("claude-ada@example.com.json", "again")
    assert [r.getMessage() for r in caplog.records if "needs login" in r.getMessage()] == [
        "account claude-ada@example.com.json needs login: refresh rejected (400 invalid_grant); "
        "run `crossroute login claude` to sign in again"]
    acct = store.get("claude-ada@example.com.json")
    assert acct is not None and acct.status == NEEDS_LOGIN and not acct.usable
    assert seen == [([], ["claude-ada@example.com.json"], [])]
    on_disk = orjson.loads((tmp_path / "claude-ada@example.com.json").read_bytes())
    assert on_disk["needs_login"] is True and on_disk["refresh_token"] == "sk-ant-ort01-claude-rrrr"
    fresh = AuthStore(tmp_path)
    fresh.load()
    assert fresh.get("claude-ada@example.com.json").status == NEEDS_LOGIN  # type: ignore[union-attr]


def test_file_names_follow_cliproxyapi() -> None:
    h = hashlib.sha256(b"acct-9").hexdigest()[:8]
    assert codex_file_name("g@x.com", "plus", "acct-9") == f"codex-{h}-g@x.com-plus.json"
    assert codex_file_name("g@x.com", "ChatGPT Team", None) == "codex-g@x.com-chatgpt-team.json"
    assert codex_file_name("g@x.com") == "codex-g@x.com.json"
    assert codex_file_name("../../etc/passwd") == "codex-.._.._etc_passwd.json"


def test_default_dir_is_expanded() -> None:
    assert resolve_auth_dir(None) == Path.home() / ".crossroute"
    assert resolve_auth_dir("~/x") == Path.home() / "x"


def test_find_by_email_name_and_ambiguity(tmp_path: Path) -> None:
    write_files(tmp_path, {"claude-a@x.com.json": {"type": "claude", "access_token": "tok-aaaaaa", "email": "a@x.com"},
                           "codex-a@x.com.json": {"type": "codex", "access_token": "tok-bbbbbb", "email": "a@x.com"}})
    store = AuthStore(tmp_path)
    store.load()
    assert store.find("claude-a@x.com").name == "claude-a@x.com.json"
    with pytest.raises(KeyError, match="matches 2 accounts"):
        store.find("a@x.com")


def test_auth_list_shows_status_and_quota_from_the_gateway_snapshot(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from crossroute.auth.commands import quota_snapshot, render_list
    from crossroute.routing import quota

    write_files(tmp_path, {
        "claude-ada@example.com.json": CLIPROXY_FILES["claude-ada@example.com.json"],
        "codex-1a2b3c4d-grace@example.com-plus.json": CLIPROXY_FILES["codex-1a2b3c4d-grace@example.com-plus.json"],
        "kimi-1764583200000.json": {**CLIPROXY_FILES["kimi-1764583200000.json"], "needs_login": True},
        "xai-someone.json": {**CLIPROXY_FILES["xai-someone.json"], "disabled": True},
    })
    store = AuthStore(tmp_path)
    store.load()
    now = parse_time("2026-12-01T12:00:00Z")
    assert now is not None
    snap = {"claude-ada@example.com.json": {"remaining": 12, "limit": 100, "cooling-until": now + 90},
            "codex-1a2b3c4d-grace@example.com-plus.json": {"remaining": 80, "limit": 100, "cooling-until": now - 1},
            "xai-someone.json": {"remaining": 1, "limit": 2, "cooling-until": now + 90}}
    seen: list[Path] = []

    def read_snapshot(d: Path) -> dict:
        seen.append(d)
        return snap

    monkeypatch.setattr(quota, "read_snapshot", read_snapshot, raising=False)
    monkeypatch.setattr(quota, "describe", lambda info: f"{info['remaining']}/{info['limit']} left", raising=False)
    got, describe = quota_snapshot(store.dir)
    assert seen == [store.dir] and got is snap and describe is not None
    lines = {line.split()[0]: line for line in render_list(store.accounts(), now=now, quota=got,
                                                           describe=describe).splitlines()[1:]}
    assert "cooling until 12:01:30 UTC" in lines["claude-ada@example.com.json"]
    assert "12/100 left" in lines["claude-ada@example.com.json"]
    assert " active " in lines["codex-1a2b3c4d-grace@example.com-plus.json"]  # the cooldown has passed
    assert "needs login" in lines["kimi-1764583200000.json"]
    assert "disabled" in lines["xai-someone.json"] and "cooling" not in lines["xai-someone.json"]
    for secret in ("sk-ant-oat01-claude-access-aaaa", "codex-access-token-1111", "kimi-access-token-3333"):
        assert secret not in "\n".join(lines.values())
    # without a snapshot function (or with a broken one) the list still renders
    monkeypatch.setattr(quota, "read_snapshot", lambda d: 1 / 0, raising=False)
    assert quota_snapshot(store.dir) == ({}, None)
    assert "QUOTA" in render_list(store.accounts(), now=now)


def test_auth_list_reads_the_snapshot_the_gateway_writes(tmp_path: Path) -> None:
    """With routing/quota.py's own snapshot file: quota left and "cooling until" an exhausted window's reset."""
    import time as _time

    from crossroute.auth.commands import quota_snapshot, render_list
    from crossroute.routing import quota

    if not hasattr(quota, "read_snapshot"):
        pytest.skip("this build's quota book writes no snapshot")
    write_files(tmp_path, {k: CLIPROXY_FILES[k] for k in ("claude-ada@example.com.json",
                                                           "codex-1a2b3c4d-grace@example.com-plus.json")})
    store = AuthStore(tmp_path)
    store.load()
    now = _time.time()
    snap = {"version": 1, "written": now, "accounts": {
        "claude-ada@example.com.json": {"id": "auth:claude-ada@example.com.json", "provider": "claude-oauth",
                                        "updated": now, "windows": [
                                            {"name": "5h", "used": 1.0, "reset_at": now + 600, "rejected": True,
                                             "account_wide": True},
                                            {"name": "7d", "used": 0.2, "reset_at": now + 86400 * 3}]},
        "codex-1a2b3c4d-grace@example.com-plus.json": {
            "id": "auth:codex-1a2b3c4d-grace@example.com-plus.json", "provider": "codex-oauth", "updated": now,
            "windows": [{"name": "primary", "used": 0.38, "reset_at": now + 3600}]}}}
    (tmp_path / quota.SNAPSHOT_NAME).write_bytes(orjson.dumps(snap))
    got, describe = quota_snapshot(store.dir)
    assert set(got) == set(snap["accounts"]) and describe is not None
    lines = {line.split()[0]: line for line in render_list(store.accounts(), now=now, quota=got,
                                                           describe=describe).splitlines()[1:]}
    reset = _time.strftime("%H:%M:%S UTC", _time.gmtime(now + 600))
    assert f"cooling until {reset}" in lines["claude-ada@example.com.json"]
    assert "7d 80% left" in lines["claude-ada@example.com.json"]
    assert " active " in lines["codex-1a2b3c4d-grace@example.com-plus.json"]
    assert "62% left" in lines["codex-1a2b3c4d-grace@example.com-plus.json"]


def test_shared_directories_are_never_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An auth-dir pointed at /tmp-like shared directory (sticky) is warned about once, not chmod-ed."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with caplog.at_level(logging.WARNING, "crossroute.auth"):
        for _ in range(3):
            write_json_atomic(shared / "a.json", {"type": "claude"})
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert len([r for r in caplog.records if "shared (sticky)" in r.getMessage()]) == 1
    assert stat.S_IMODE((shared / "a.json").stat().st_mode) == 0o600


async def test_a_write_from_a_worker_thread_tells_the_listeners_on_their_loop(tmp_path: Path) -> None:
    import asyncio
    import threading

    store = AuthStore(tmp_path / "auth")
    heard: list[tuple[str, bool]] = []

    def listener(added: list, changed: list, removed: list) -> None:
        asyncio.get_running_loop()  # the gateway's listener schedules tasks: it must be on the loop
        heard.append((next(a.name for a in added + changed + removed), threading.current_thread() is main))

    main = threading.current_thread()
    store.on_change(listener)
    name = "xai-someone.json"
    await asyncio.to_thread(store.write, name, CLIPROXY_FILES[name])
    assert heard == [(name, True)]  # heard before the thread's result came back, on the loop's thread
    await asyncio.to_thread(store.remove, name)
    assert heard[-1] == (name, True) and len(heard) == 2
    store.write(name, CLIPROXY_FILES[name])  # on the loop itself: at once
    assert len(heard) == 3
