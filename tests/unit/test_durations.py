"""providers/durations.py: one parser of the durations providers write, used by the quota headers
(quota_signals) and by Google's retry hints (google_retry)."""

from __future__ import annotations

import orjson
import pytest

from crossroute.providers import google_retry, quota_signals
from crossroute.providers.durations import parse_duration

CASES = [
    ("1.5s", 1.5), ("300ms", 0.3), ("2m", 120), ("1h30m", 5400), ("6m0s", 360), ("1h2m3.5s", 3723.5),
    ("20ms", 0.02), ("0.5s", 0.5), ("17", 17), ("0.25", 0.25), ("0", 0), (" 12s ", 12), ("3.5S", 3.5),
    # Go's time.Duration text
    ("1.5h", 5400), (".5m", 30), ("1.s", 1), ("250us", 250e-6), ("250µs", 250e-6), ("250μs", 250e-6),
    ("1500ns", 1.5e-6), ("1m30s500ms", 90.5), ("-1.5h", -5400), ("+2m", 120), ("1h0m0s", 3600),
]
BAD = ["", "soon", "5x", "s", "1h 30m", "m5", "1..5s", "-", "1.5.s", "nan", "inf", "5 seconds", "1d"]


@pytest.mark.parametrize(("text", "seconds"), CASES)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", BAD)
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_both_readers_use_the_one_parser() -> None:
    assert quota_signals.parse_duration is parse_duration
    now = 1000.0
    sig = quota_signals.parse({"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "0",
                               "x-ratelimit-reset-requests": "1.5h"}, now)
    assert sig is not None and sig.windows[0].reset_at == now + 5400
    for text, seconds in CASES:
        if seconds < 0:
            continue
        body = {"error": {"code": 429, "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                    "retryDelay": text}]}}
        assert google_retry.google_retry_after(orjson.dumps(body)) == pytest.approx(seconds), text
    msg = {"error": {"code": 429, "message": "Your quota will reset after 1h2m300ms."}}
    assert google_retry.google_retry_after(orjson.dumps(msg)) == pytest.approx(3720.3)
