"""QuotaBook with the Router: cooldowns exactly until the announced reset, success clears them,
quota-aware choice and binding rule, routing traces, the auth-list snapshot, Codex's usage answer."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from crossroute.api.codex_usage import usage_payload
from crossroute.call import Trace
from crossroute.config import ProviderEntry
from crossroute.routing.cooldown import ANY_MODEL
from crossroute.routing.quota import SNAPSHOT_NAME, QuotaBook, describe, read_snapshot
from crossroute.routing.router import AllCoolingDown, Router, RoutingSettings
from crossroute.routing.session_ids import SessionIds
from crossroute.state.memory import MemoryState

from .routing_fakes import Cand, Clock


def entry(name: str, kind: str = "codex-oauth", provider: str = "codex") -> ProviderEntry:
    return ProviderEntry(kind=kind, provider=provider, name=name, api_key="", base_url="", cred_id=f"auth:{name}")


def setup(clock: Clock, **kw: object) -> tuple[Router, QuotaBook]:
    router = Router(RoutingSettings(**kw), MemoryState(clock=clock), clock=clock)  # type: ignore[arg-type]
    book = QuotaBook(clock=clock)
    book.attach(router, None)
    return router, book


def codex(used: float, reset_in: float, clock: Clock, secondary: float = 10.0) -> dict[str, str]:
    return {
        "x-codex-primary-used-percent": str(used), "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(int(clock.t + reset_in)),
        "x-codex-secondary-used-percent": str(secondary), "x-codex-secondary-window-minutes": "10080",
        "x-codex-secondary-reset-at": str(int(clock.t + 6 * 86400)),
    }


def cand(e: ProviderEntry) -> Cand:
    return Cand(e.id, provider=e.provider)


def test_note_is_lazy() -> None:
    clock = Clock()
    _, book = setup(clock)
    e = entry("codex-a.json")
    h = codex(20, 3600, clock)
    book.note(e, 200, h)
    acct = book.accounts[e.id]
    assert acct.raw is h and acct.windows == {} and acct.n == 1  # nothing parsed on the request path
    assert book.account(e.id) is acct and acct.raw is None
    assert acct.windows["primary"].used == 0.2
    book.note(e, 200, {"content-type": "application/json"})  # an answer that says nothing keeps what was known
    assert book.account(e.id).windows["primary"].used == 0.2  # type: ignore[union-attr]


async def test_429_cools_whole_account_exactly_until_reset() -> None:
    clock = Clock()
    router, book = setup(clock)
    a, b = entry("claude-a.json", "claude-oauth", "claude"), entry("claude-b.json", "claude-oauth", "claude")
    reset = int(clock.t + 1800)
    h = {"anthropic-ratelimit-unified-status": "rejected", "anthropic-ratelimit-unified-reset": str(reset),
         "anthropic-ratelimit-unified-5h-status": "rejected", "anthropic-ratelimit-unified-5h-reset": str(reset),
         "anthropic-ratelimit-unified-representative-claim": "five_hour", "retry-after": "7200"}
    book.note(a, 429, h)
    # the executor's scope for a 429 is "model"; the account-wide window makes it the credential
    await router.report_failure(cand(a), "claude-sonnet", None, 429, 7200.0, kind="model")
    cds = router.state.get_cooldowns_now([a.id], ANY_MODEL)  # type: ignore[attr-defined]
    assert cds[a.id].until == reset  # not the 2 h Retry-After: the announced reset
    # every model of the account rests
    with pytest.raises(AllCoolingDown) as exc:
        await router.pick([cand(a)], "claude-opus", None)
    assert exc.value.retry_after == pytest.approx(1800)
    assert (await router.pick([cand(a), cand(b)], "claude-opus", None)).credential_id == b.id
    clock.t = reset  # the reset passed: usable at once
    assert (await router.pick([cand(a)], "claude-opus", None)).credential_id == a.id


async def test_success_clears_the_cooldown_at_once() -> None:
    clock = Clock()
    router, book = setup(clock)
    a = entry("codex-a.json")
    book.note(a, 429, codex(100, 600, clock))
    await router.report_failure(cand(a), "gpt-5", None, 429, None, kind="model")
    with pytest.raises(AllCoolingDown):
        router.pick_now([cand(a)], "gpt-5", None)
    router.report_success_now(cand(a), "gpt-5")  # e.g. a request another replica let through
    assert router.pick_now([cand(a)], "gpt-5", None).credential_id == a.id


async def test_ladder_never_outlives_the_accounts_reset() -> None:
    clock = Clock()
    router, book = setup(clock)
    a = entry("codex-a.json")
    # known windows: primary resets in 20 s, secondary in 40 s
    h = codex(50, 20, clock, secondary=50)
    h["x-codex-secondary-reset-at"] = str(int(clock.t + 40))
    book.note(a, 200, h)
    for _ in range(12):  # 429s that say nothing: the ladder would climb to 2048 s
        book.note(a, 429, {})
        await router.report_failure(cand(a), "gpt-5", None, 429, None, kind="model")
    cd = router.state.get_cooldowns_now([a.id], "gpt-5")[a.id]  # type: ignore[attr-defined]
    assert cd.until == int(clock.t + 40)


async def test_per_model_limit_cools_the_model_only() -> None:
    clock = Clock()
    router, book = setup(clock)
    k = ProviderEntry(kind="openai", provider="openai-compatibility:x", name="x", api_key="sk-1", base_url="http://u")
    h = {"x-ratelimit-limit-tokens": "30000", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1.5s",
         "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
         "x-ratelimit-reset-requests": "120ms"}
    book.note(k, 429, h)
    c = Cand(k.id, provider=k.provider)
    await router.report_failure(c, "gpt-4o", None, 429, None, kind="model")
    assert router.state.get_cooldowns_now([k.id], ANY_MODEL) == {}  # type: ignore[attr-defined]
    cd = router.state.get_cooldowns_now([k.id], "gpt-4o")[k.id]  # type: ignore[attr-defined]
    assert cd.until == pytest.approx(clock.t + 1.5)
    assert router.pick_now([c], "gpt-4o-mini", None).credential_id == k.id


async def test_quota_aware_choice() -> None:
    clock = Clock()
    router, book = setup(clock, strategy="round-robin", quota_aware=True)
    a, b, c, d = (entry(f"codex-{x}.json") for x in "abcd")
    cands = [cand(x) for x in (a, b, c, d)]
    # a: 90% used, resets in 4 h; b: 50% used, resets in 4 h; c: 80% used but resets in 10 min;
    # d: never heard from -> tried first
    book.note(a, 200, codex(90, 4 * 3600, clock))
    book.note(b, 200, codex(50, 4 * 3600, clock))
    book.note(c, 200, codex(80, 600, clock))
    assert router.pick_now(cands, "gpt-5", None).credential_id == d.id
    book.note(d, 200, codex(99.5, 4 * 3600, clock))
    # headroom = left / cost / seconds to reset: c (0.2 / 600 s) > b (0.5 / 14400 s) > a > d
    assert router.pick_now(cands, "gpt-5", None).credential_id == c.id
    assert router.pick_now(cands[:2], "gpt-5", None).credential_id == b.id
    # without quota-aware the round-robin cursor decides
    plain, _ = setup(clock, strategy="fill-first")
    assert plain.pick_now(cands, "gpt-5", None).credential_id == a.id


async def test_quota_aware_bound_session_stays_unless_nearly_exhausted() -> None:
    clock = Clock()
    router, book = setup(clock, quota_aware=True, session_affinity=True)
    a, b = entry("codex-a.json"), entry("codex-b.json")
    cands = [cand(a), cand(b)]
    book.note(a, 200, codex(10, 3600, clock))
    book.note(b, 200, codex(60, 3600, clock))
    s = SessionIds("sess-1")
    assert router.pick_now(cands, "gpt-5", s).credential_id == a.id  # most headroom
    book.note(a, 200, codex(70, 3600, clock))  # now b has more headroom, but the session stays
    assert router.pick_now(cands, "gpt-5", s).credential_id == a.id
    book.note(a, 200, codex(97, 3600, clock))  # nearly exhausted: the session moves
    assert router.pick_now(cands, "gpt-5", s).credential_id == b.id
    assert router.pick_now(cands, "gpt-5", s).credential_id == b.id  # and is bound there


async def test_trace_says_why() -> None:
    clock = Clock()
    router, book = setup(clock, strategy="round-robin", quota_aware=True, session_affinity=True)
    a, b, c = entry("codex-a.json"), entry("codex-b.json"), entry("codex-c.json")
    cands = [cand(a), cand(b), cand(c), Cand("auth:off.json", provider="codex", disabled=True)]
    book.note(a, 429, codex(100, 900, clock))
    await router.report_failure(cand(a), "gpt-5", None, 429, None, kind="model")
    book.note(b, 200, codex(10, 3600, clock))
    tr = Trace()
    got = router.pick_now(cands, "gpt-5", SessionIds("s1"), {c.id}, None, tr)
    assert got.credential_id == b.id
    steps = tr.steps
    assert steps[0]["step"] == "candidates" and len(steps[0]["credentials"]) == 4
    skips = {s["credential"]: s for s in steps if s["step"] == "skip"}
    assert skips[a.id]["reason"] == "cooling" and skips[a.id]["scope"] == "credential"
    assert skips[a.id]["until"] == int(clock.t + 900)
    assert skips[c.id]["reason"] == "already tried"
    assert skips["auth:off.json"]["reason"] == "disabled"
    quota = next(s for s in steps if s["step"] == "quota")
    assert set(quota["headroom"]) == {b.id}
    chose = steps[-1]
    assert chose["step"] == "chose" and chose["credential"] == b.id and chose["by"] in ("only", "selector")
    # the same session again: its binding decides
    tr2 = Trace()
    router.pick_now(cands, "gpt-5", SessionIds("s1"), (), None, tr2)
    assert tr2.steps[-1]["by"] == "session"
    # nothing usable
    tr3 = Trace()
    with pytest.raises(AllCoolingDown):
        router.pick_now([cand(a)], "gpt-5", None, (), None, tr3)
    assert tr3.steps[-1]["step"] == "none" and tr3.steps[-1]["reason"] == "cooling"


async def test_trace_is_the_same_choice_as_untraced() -> None:
    clock = Clock()
    r1, _ = setup(clock, strategy="round-robin")
    r2, _ = setup(clock, strategy="round-robin")
    cands = [Cand("a"), Cand("b"), Cand("c")]
    for _ in range(6):
        assert r1.pick_now(cands, "m", None).credential_id == r2.pick_now(cands, "m", None, (), None,
                                                                          Trace()).credential_id


def test_snapshot_round_trip(tmp_path: Path) -> None:
    clock = Clock()
    clock.t = time.time()
    router, book = setup(clock)
    book.attach(router, None, auth_dir=tmp_path)
    a = entry("codex-me@x.com-plus.json")
    book.note(a, 200, {**codex(38, 2 * 3600, clock, secondary=20), "x-codex-plan-type": "plus"})
    book.note(ProviderEntry(kind="openai", provider="o", name="k", api_key="sk", base_url="http://u"), 200,
              {"x-ratelimit-remaining-requests": "1", "x-ratelimit-limit-requests": "2"})  # API keys: not listed
    book.flush_now()
    assert (tmp_path / SNAPSHOT_NAME).stat().st_mode & 0o777 == 0o600
    snap = read_snapshot(tmp_path)
    assert list(snap) == ["codex-me@x.com-plus.json"]
    text = describe(snap["codex-me@x.com-plus.json"], now=clock.t)
    assert text.startswith("5h 62% left, resets ") and "7d 80% left" in text and text.endswith("(plus)")
    assert "resets" not in text.split(";")[1]  # a week away and mostly full: no reset shown
    assert read_snapshot(tmp_path / "missing") == {}
    (tmp_path / SNAPSHOT_NAME).write_bytes(b"{torn")
    assert read_snapshot(tmp_path) == {}


def test_describe_exhausted_and_passed() -> None:
    now = 1_770_680_000.0
    info = {"windows": [{"name": "5h", "used": 1.0, "reset_at": now + 600, "rejected": True, "account_wide": True},
                        {"name": "7d", "used": 0.3, "reset_at": now - 1, "account_wide": True}]}
    text = describe(info, now=now)
    assert text.startswith("5h exhausted, resets ") and text.endswith("; 7d 100% left")
    assert describe({}, now=now) == ""


def test_codex_usage_payload() -> None:
    clock = Clock()
    _, book = setup(clock)
    a, b = entry("codex-a.json"), entry("codex-b.json")
    book.note(a, 200, {**codex(20, 3600, clock, secondary=10), "x-codex-plan-type": "pro"})
    book.note(b, 200, codex(61, 1200, clock, secondary=30))
    p = usage_payload(book, [a.id, b.id, "auth:unknown.json"], now=clock.t)
    assert p["plan_type"] == "pro"
    rl = p["rate_limit"]
    assert rl["allowed"] is True and rl["limit_reached"] is False
    assert rl["primary_window"] == {"used_percent": 40, "limit_window_seconds": 18000,
                                    "reset_after_seconds": 1200, "reset_at": int(clock.t + 1200)}
    assert rl["secondary_window"]["used_percent"] == 20
    assert rl["secondary_window"]["limit_window_seconds"] == 604800
    assert all(isinstance(v, int) for v in rl["primary_window"].values())
    orjson.dumps(p)
    # every account exhausted: the pool is
    book.note(a, 429, codex(100, 3600, clock))
    book.note(b, 429, codex(100, 1200, clock))
    rl = usage_payload(book, [a.id, b.id], now=clock.t)["rate_limit"]
    assert rl["limit_reached"] is True and rl["allowed"] is False
    assert usage_payload(book, [], now=clock.t) == {"plan_type": "plus", "rate_limit": None}


async def test_codex_refusal_body_sets_the_reset() -> None:
    clock = Clock()
    router, book = setup(clock)
    a = entry("codex-a.json")
    reset = int(clock.t + 1234)
    book.note(a, 429, {"content-type": "application/json"})
    book.note_error(a, 429, b'{"error": {"type": "usage_limit_reached", "resets_at": %d}}' % reset)
    await router.report_failure(cand(a), "gpt-5", None, 429, None, kind="model")
    cd = router.state.get_cooldowns_now([a.id], ANY_MODEL)[a.id]  # type: ignore[attr-defined]
    assert cd.until == reset


def test_snapshot_for_metrics() -> None:
    clock = Clock()
    _, book = setup(clock)
    a = entry("codex-a.json")
    k = ProviderEntry(kind="openai", provider="o", name="k", api_key="sk", base_url="http://u")
    book.note(a, 200, codex(25, 600, clock))
    book.note(k, 200, {"x-ratelimit-remaining-requests": "15", "x-ratelimit-limit-requests": "60",
                       "x-ratelimit-reset-requests": "1s"})
    snap = book.snapshot()
    assert snap[a.id] == {"primary": 0.75, "secondary": 0.9}
    assert snap[k.id] == {"requests": 0.25}
    clock.t += 2  # the requests window has refilled since
    assert book.snapshot()[k.id] == {"requests": 1.0}


def test_snapshot_merges_workers(tmp_path: Path) -> None:
    """Workers sharing the auth dir each write the accounts they served; the file keeps all of them,
    the newest reading per account, and drops accounts whose file is gone."""
    clock = Clock()
    names = ("codex-a.json", "codex-b.json")
    for n in names:
        (tmp_path / n).write_text("{}")
    w1, w2 = QuotaBook(clock=clock), QuotaBook(clock=clock)
    for w in (w1, w2):
        w.attach(None, None, auth_dir=tmp_path)
    a, b = entry(names[0]), entry(names[1])
    w1.note(a, 200, codex(10, 600, clock))
    w1.note(b, 200, codex(20, 600, clock))
    w1.flush_now()
    clock.t += 1
    w2.note(b, 200, codex(30, 600, clock))  # newer reading of b; w2 never saw a
    w2.flush_now()
    snap = read_snapshot(tmp_path)
    assert set(snap) == set(names)
    assert snap[names[0]]["windows"][0]["used"] == 0.1
    assert snap[names[1]]["windows"][0]["used"] == 0.3
    clock.t += 1
    w1.flush_now()  # w1 still has b at 20 % (older): the file keeps w2's newer reading
    assert read_snapshot(tmp_path)[names[1]]["windows"][0]["used"] == 0.3
    (tmp_path / names[0]).unlink()  # a's file removed
    w2.flush_now()
    assert set(read_snapshot(tmp_path)) == {names[1]}


async def test_quota_aware_silent_credentials_share_with_the_best() -> None:
    clock = Clock()
    router, book = setup(clock, strategy="round-robin", quota_aware=True)
    a, b, quiet = entry("codex-a.json"), entry("codex-b.json"), entry("kimi-1.json", "kimi", "kimi")
    cands = [cand(a), cand(b), cand(quiet)]
    book.note(a, 200, codex(10, 3600, clock))
    book.note(b, 200, codex(97, 3600, clock))
    book.note(quiet, 200, {"content-type": "application/json"})  # answers, never says its quota
    picks = {router.pick_now(cands, "m", None).credential_id for _ in range(6)}
    assert picks == {a.id, quiet.id}  # the quiet one shares with the best, the spent one waits


def test_a_refilled_account_is_tried_first() -> None:
    clock = Clock()
    router, book = setup(clock, strategy="fill-first", quota_aware=True)
    a, b = entry("codex-a.json"), entry("codex-b.json")
    book.note(a, 200, {**codex(100, 60, clock), "x-codex-secondary-reset-at": str(int(clock.t + 60))})
    book.note(b, 200, codex(10, 3600, clock))
    assert router.pick_now([cand(a), cand(b)], "m", None).credential_id == b.id
    clock.t += 61  # every window of a refilled and nothing was heard since: a is tried first again
    assert book.headroom(a.id) is None and not book.heard_from(a.id)
    assert router.pick_now([cand(a), cand(b)], "m", None).credential_id == a.id


async def test_an_event_reading_is_newer_than_unread_headers_and_is_saved(tmp_path: Path) -> None:
    clock = Clock()
    clock.t = time.time()
    router, book = setup(clock)
    book.attach(router, None, auth_dir=tmp_path)
    a = entry("codex-me@x.com.json")
    book.note(a, 200, codex(20, 3600, clock))  # headers of the answer, not read yet (lazy)
    book.note_event(a, {"type": "codex.rate_limits", "rate_limits": {
        "primary": {"used_percent": 55, "window_minutes": 300, "reset_at": int(clock.t + 3000)}}})
    acct = book.account(a.id)
    assert acct is not None and acct.windows["primary"].used == 0.55  # the event came later: it wins
    assert book._timer is not None  # the snapshot file is written for an event too (not only for headers)
    book.flush_now()
    assert "45% left" in describe(read_snapshot(tmp_path)["codex-me@x.com.json"], now=clock.t)
