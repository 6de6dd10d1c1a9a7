"""Provider rate-limit headers read into quota windows (providers/quota_signals.py).

The header sets are the ones the providers document or send: OpenAI's rate-limit guide example,
Anthropic's unified subscription headers as Claude Code receives them (200 and 429), Anthropic's
API-key headers (RFC 3339 resets), Codex's ``x-codex-*`` headers and ``codex.rate_limits`` event.
"""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from crossroute.providers.quota_signals import parse, parse_codex_event, parse_duration

NOW = 1_770_680_000.0


def test_openai_documented_example() -> None:
    h = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-remaining-tokens": "149984",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    sig = parse(h, NOW)
    assert sig is not None
    by = {w.name: w for w in sig.windows}
    assert by["requests"].limit == 60 and by["requests"].remaining == 59
    assert by["requests"].reset_at == NOW + 1
    assert by["tokens"].reset_at == NOW + 360
    assert abs(by["tokens"].used - 16 / 150000) < 1e-9
    assert not by["requests"].account_wide  # OpenAI limits are per model
    assert not any(w.exhausted(NOW) for w in sig.windows)


def test_openai_exhausted_tokens() -> None:
    h = {"x-ratelimit-limit-tokens": "30000", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1.5s",
         "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
         "x-ratelimit-reset-requests": "120ms"}
    sig = parse(h, NOW)
    assert sig is not None
    tokens = next(w for w in sig.windows if w.name == "tokens")
    assert tokens.exhausted(NOW) and tokens.reset_at == NOW + 1.5
    assert not tokens.exhausted(NOW + 2)  # the reset passed: not refusing any more


def test_durations() -> None:
    assert parse_duration("6m0s") == 360
    assert parse_duration("1h2m3s") == 3723
    assert parse_duration("20ms") == 0.02
    assert parse_duration("0.5s") == 0.5
    assert parse_duration("17") == 17
    assert parse_duration("soon") is None
    assert parse_duration("5x") is None
    assert parse_duration("") is None


def test_anthropic_unified_allowed() -> None:
    # as sent on every Claude Code (OAuth) answer
    h = {
        "anthropic-ratelimit-unified-status": "allowed",
        "anthropic-ratelimit-unified-reset": "1770685200",
        "anthropic-ratelimit-unified-5h-status": "allowed",
        "anthropic-ratelimit-unified-5h-reset": "1770685200",
        "anthropic-ratelimit-unified-5h-utilization": "0.12",
        "anthropic-ratelimit-unified-7d-status": "allowed",
        "anthropic-ratelimit-unified-7d-reset": "1771189200",
        "anthropic-ratelimit-unified-7d-utilization": "0.13",
        "anthropic-ratelimit-unified-7d_sonnet-status": "allowed",
        "anthropic-ratelimit-unified-7d_sonnet-reset": "1771092000",
        "anthropic-ratelimit-unified-7d_sonnet-utilization": "0.01",
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
        "anthropic-ratelimit-unified-fallback-percentage": "0.5",
        "anthropic-ratelimit-unified-overage-status": "rejected",
    }
    sig = parse(h, NOW)
    assert sig is not None
    by = {w.name: w for w in sig.windows}
    assert set(by) == {"5h", "7d", "7d_sonnet"}  # overage / fallback are not windows that refuse
    assert by["5h"].used == 0.12 and by["5h"].reset_at == 1770685200 and by["5h"].seconds == 5 * 3600
    assert by["7d"].reset_at == 1771189200
    assert all(w.account_wide for w in sig.windows)
    assert not any(w.exhausted(NOW) for w in sig.windows)


def test_anthropic_unified_429_without_utilization() -> None:
    # a refused request: status and reset only (the shape Claude Code recognises as the 5-hour limit)
    reset = NOW + 3 * 3600
    h = CIMultiDictProxy(CIMultiDict({
        "Content-Type": "application/json",
        "Retry-After": "10800",
        "Anthropic-Ratelimit-Unified-Status": "rejected",
        "Anthropic-Ratelimit-Unified-Reset": str(int(reset)),
        "Anthropic-Ratelimit-Unified-5h-Status": "rejected",
        "Anthropic-Ratelimit-Unified-5h-Reset": str(int(reset)),
        "Anthropic-Ratelimit-Unified-7d-Status": "allowed",
        "Anthropic-Ratelimit-Unified-7d-Utilization": "0.4",
        "Anthropic-Ratelimit-Unified-7d-Reset": str(int(NOW + 5 * 86400)),
        "Anthropic-Ratelimit-Unified-Representative-Claim": "five_hour",
        "Anthropic-Ratelimit-Unified-Fallback-Status": "rejected",
    }))
    sig = parse(h, NOW)
    assert sig is not None
    by = {w.name: w for w in sig.windows}
    assert by["5h"].rejected and by["5h"].used == 1.0 and by["5h"].reset_at == int(reset)
    assert by["5h"].exhausted(NOW) and not by["7d"].exhausted(NOW)


def test_anthropic_unified_rejected_overall_only() -> None:
    h = {"anthropic-ratelimit-unified-status": "rejected", "anthropic-ratelimit-unified-reset": "1770690000"}
    sig = parse(h, NOW)
    assert sig is not None
    [w] = sig.windows
    assert w.exhausted(NOW) and w.reset_at == 1770690000 and w.account_wide


def test_anthropic_api_key_headers() -> None:
    h = {
        "anthropic-ratelimit-requests-limit": "4000",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-02-10T00:00:30Z",
        "anthropic-ratelimit-tokens-limit": "400000",
        "anthropic-ratelimit-tokens-remaining": "399000",
        "anthropic-ratelimit-tokens-reset": "2026-02-10T00:00:01Z",
        "retry-after": "30",
    }
    now = 1_770_681_600.0  # 2026-02-10T00:00:00Z
    sig = parse(h, now)
    assert sig is not None
    by = {w.name: w for w in sig.windows}
    assert by["requests"].reset_at == now + 30 and by["requests"].exhausted(now)
    assert not by["requests"].account_wide
    assert abs(by["tokens"].used - 0.0025) < 1e-9


def test_codex_headers() -> None:
    h = {
        "x-codex-primary-used-percent": "12.5",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": "1770690000",
        "x-codex-secondary-used-percent": "40",
        "x-codex-secondary-window-minutes": "10080",
        "x-codex-secondary-reset-after-seconds": "86400",
        "x-codex-plan-type": "plus",
        "x-codex-credits-has-credits": "false",
        "x-codex-credits-unlimited": "false",
    }
    sig = parse(h, NOW)
    assert sig is not None
    by = {w.name: w for w in sig.windows}
    assert by["primary"].used == 0.125 and by["primary"].seconds == 18000 and by["primary"].reset_at == 1770690000
    assert by["secondary"].reset_at == NOW + 86400 and by["secondary"].seconds == 604800
    assert sig.plan == "plus"
    assert sig.credits == {"has_credits": False, "unlimited": False, "balance": None}


def test_codex_event() -> None:
    ev = {"type": "codex.rate_limits", "plan_type": "pro",
          "rate_limits": {"primary": {"used_percent": 100.0, "window_minutes": 300, "reset_at": 1770690000},
                          "secondary": {"used_percent": 3.0, "window_minutes": 10080, "reset_at": 1771000000}}}
    sig = parse_codex_event(ev, NOW)
    assert sig is not None and sig.plan == "pro"
    primary = next(w for w in sig.windows if w.name == "primary")
    assert primary.exhausted(NOW) and primary.account_wide
    assert parse_codex_event({"type": "response.created"}, NOW) is None


def test_nothing_and_nonsense() -> None:
    assert parse({"content-type": "application/json", "x-request-id": "r1"}, NOW) is None
    # values that are not numbers are left out, never raise
    sig = parse({"x-ratelimit-remaining-requests": "many", "x-codex-primary-used-percent": "NaN",
                 "anthropic-ratelimit-unified-5h-utilization": "high"}, NOW)
    assert sig is None or sig.windows == []


def test_codex_usage_limit_body() -> None:
    from crossroute.providers.quota_signals import parse_error_body

    body = b'{"error": {"type": "usage_limit_reached", "plan_type": "pro", "resets_at": 1770690000}}'
    sig = parse_error_body(body, NOW)
    assert sig is not None and sig.plan == "pro"
    [w] = sig.windows
    assert w.exhausted(NOW) and w.reset_at == 1770690000 and w.account_wide
    ev = {"type": "response.failed", "response": {"status": "failed", "error": {
        "type": "usage_limit_reached", "message": "The usage limit has been reached", "resets_in_seconds": 3600}}}
    sig = parse_error_body(ev, NOW)
    assert sig is not None and sig.windows[0].reset_at == NOW + 3600
    assert parse_error_body(b'{"error": {"type": "rate_limit_error"}}', NOW) is None
    assert parse_error_body(b"usage_limit_reached but not json", NOW) is None


def test_any_header_values_never_raise() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from crossroute.providers.quota_signals import SENTINELS
    from crossroute.routing.quota import describe

    names = st.sampled_from([*SENTINELS, "anthropic-ratelimit-unified-reset", "anthropic-ratelimit-unified-5h-reset",
                             "anthropic-ratelimit-unified-x-status", "anthropic-ratelimit-unified--utilization",
                             "x-ratelimit-limit-requests", "x-ratelimit-reset-tokens", "x-codex-primary-reset-at",
                             "x-codex-primary-window-minutes", "anthropic-ratelimit-requests-reset",
                             "anthropic-ratelimit-unified-representative-claim"])
    values = st.one_of(st.text(max_size=30), st.sampled_from(["1e400", "-1", "nan", "inf", "0", "100", "6m0s", "1.5",
                                                              "2026-13-45T99:00:00Z", "rejected"]))

    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(names, values, max_size=8))
    def check(h: dict[str, str]) -> None:
        sig = parse(h, NOW)
        if sig is not None:
            for w in sig.windows:
                assert 0.0 <= w.used <= 1.0
                w.exhausted(NOW)
            describe({"windows": [w.to_json() for w in sig.windows]}, now=NOW)

    check()
