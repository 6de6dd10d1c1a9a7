"""Observers of the call pipeline: one "attempt ended" event per upstream try (from dispatch) and
one "call ended" event per finished call (from the edge, after the reply is fully written, for
failures, cooldown replies and API-layer 4xx too).

The usage store, request log, metrics and routing traces are observers. None is awaited on the
request path: an observer's methods must return at once (queue the event and let their own task
do the work). ``Hub.enabled`` is False with no observer, so the pipeline pays one attribute read.
An observer that raises is logged and kept; the request is never affected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .events import CallEnded

if TYPE_CHECKING:
    from ..call import Attempt, Call

__all__ = ["CallEnded", "Hub", "Observer"]

log = logging.getLogger("crossroute.observe")


class Observer(Protocol):
    def attempt_ended(self, call: Call, attempt: Attempt) -> None: ...
    def call_ended(self, event: CallEnded) -> None: ...


class Hub:
    """The observers of one gateway (fan-out, exceptions contained)."""

    __slots__ = ("_attempt_observers", "attempts", "count_streams", "count_websockets", "enabled", "failures", "named",
                 "observers", "spool", "tracing", "watching")

    def __init__(self) -> None:
        self.observers: list[Observer] = []
        self.enabled = False  # some observer wants every event
        # observers that want only the calls that failed (status >= 400 or an error), e.g. the
        # error log: a successful call costs them nothing (no event is made)
        self.failures: list[Observer] = []
        self.watching = False  # enabled, or some failure observer: the edge times the calls
        # some observer wants "attempt ended" events (an observer saying ``wants_attempts = False``
        # is told of calls only): dispatch tests this before making the call
        self.attempts = False
        self._attempt_observers: list[Observer] = []
        # True when something keeps routing traces of every call (not only of calls that ask)
        self.tracing = False
        # the observers setup.install manages, by name ("usage", "traces", "request_log", "metrics")
        self.named: dict[str, Any] = {}
        # the request log's per-call spool maker while ``request-log: true`` (else None): the
        # pipeline calls ``call.log = spool(call)`` and feeds bodies through it (observe/request_log.py)
        self.spool: Callable[[Any], Any] | None = None
        # how many client streams / WebSocket sessions are open (set by the edge; read by /metrics)
        self.count_streams: Callable[[], int] | None = None
        self.count_websockets: Callable[[], int] | None = None

    def add(self, observer: Observer, *, failures_only: bool = False) -> None:
        self.remove(observer)
        (self.failures if failures_only else self.observers).append(observer)
        self._flags()

    def remove(self, observer: Observer) -> None:
        for group in (self.observers, self.failures):
            if observer in group:
                group.remove(observer)
        self._flags()

    def _flags(self) -> None:
        self.enabled = bool(self.observers)
        self.watching = self.enabled or bool(self.failures)
        self._attempt_observers = [o for o in self.observers if getattr(o, "wants_attempts", True)]
        self.attempts = bool(self._attempt_observers)

    @staticmethod
    def failed(event: CallEnded) -> bool:
        return event.status >= 400 or event.error is not None

    def attempt_ended(self, call: Call, attempt: Attempt) -> None:
        for obs in self._attempt_observers:
            try:
                obs.attempt_ended(call, attempt)
            except Exception:
                log.exception("observer %s failed on attempt_ended", type(obs).__name__)

    def call_ended(self, event: CallEnded) -> None:
        group = self.observers
        if self.failures and (event.status >= 400 or event.error is not None):  # Hub.failed, inlined
            group = [*group, *self.failures]
        for obs in group:
            try:
                obs.call_ended(event)
            except Exception:
                log.exception("observer %s failed on call_ended", type(obs).__name__)
