"""The observer hub: full observers see every event; failure-only observers (the error log) see
only failed calls, and with only those installed a success makes no event at all."""

from __future__ import annotations

from typing import Any

from crossroute.observe import CallEnded, Hub


class Seen:
    def __init__(self) -> None:
        self.calls: list[int] = []
        self.attempts = 0

    def attempt_ended(self, call: Any, attempt: Any) -> None:
        self.attempts += 1

    def call_ended(self, event: CallEnded) -> None:
        self.calls.append(event.status)


def ended(status: int, error: str | None = None) -> CallEnded:
    return CallEnded("POST", "/v1/chat/completions", "openai", status, None, 0.0, 1.0, error=error)


def test_failure_only_observers_see_failures_only() -> None:
    hub, errors = Hub(), Seen()
    hub.add(errors, failures_only=True)
    assert hub.watching and not hub.enabled  # the edge times calls; dispatch makes no attempt events
    for ev in (ended(200), ended(429), ended(200, error="stream cut"), ended(502)):
        hub.call_ended(ev)
    assert errors.calls == [429, 200, 502]


def test_full_observers_see_everything_and_groups_switch() -> None:
    hub, usage, errors = Hub(), Seen(), Seen()
    hub.add(usage)
    hub.add(errors, failures_only=True)
    hub.call_ended(ended(200))
    hub.call_ended(ended(500))
    assert usage.calls == [200, 500] and errors.calls == [500]
    hub.add(errors)  # request-log turned on: now a full observer, once
    hub.call_ended(ended(200))
    assert errors.calls == [500, 200] and hub.observers.count(errors) == 1 and not hub.failures
    hub.remove(usage)
    hub.remove(errors)
    assert not hub.enabled and not hub.watching


def test_attempt_events_go_only_to_observers_that_want_them() -> None:
    class CallsOnly(Seen):
        wants_attempts = False

    hub, calls_only = Hub(), CallsOnly()
    hub.add(calls_only)
    assert hub.enabled and not hub.attempts  # dispatch makes no attempt event for it
    hub.attempt_ended(None, None)
    assert calls_only.attempts == 0
    both = Seen()
    hub.add(both)
    assert hub.attempts
    hub.attempt_ended(None, None)
    assert (both.attempts, calls_only.attempts) == (1, 0)
    hub.remove(both)
    assert not hub.attempts
