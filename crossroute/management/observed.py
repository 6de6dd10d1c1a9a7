"""What the management API reads from the observers (helper F's modules), each optional.

- usage: ``crossroute.usage.queries`` (totals, series, cache_hit_ratio, recent);
- routing traces: ``crossroute.observe.traces`` (recent_traces, find_trace);
- request and error logs: ``crossroute.observe.request_log`` (list_logs, read_log, find_log, delete_logs).

Where a module or function is not there (or usage statistics are off) the answer is the empty
shape it will have, with ``available: False`` so a caller can tell "nothing yet" from "not kept".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["GROUPS", "UsageOff", "function", "usage_enabled"]

GROUPS = ("model", "credential", "client_key", "day", "provider", "session_source", "client_format")


class UsageOff(Exception):
    """Usage statistics are off (or the store is not part of this build)."""


def function(module: str, name: str) -> Callable[..., Any] | None:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    fn = getattr(mod, name, None)
    return fn if callable(fn) else None


def usage_enabled(gw: Gateway) -> bool:
    fn = function("crossroute.usage.queries", "enabled")
    if fn is None:
        return False
    try:
        return bool(fn(gw))
    except Exception:
        return False


async def usage(gw: Gateway, name: str, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Call ``queries.<name>``; UsageOff when the store is off or missing (ValueError passes)."""
    fn = function("crossroute.usage.queries", name)
    if fn is None or not usage_enabled(gw):
        raise UsageOff("usage statistics are off (set usage-statistics-enabled: true)")
    unavailable = function("crossroute.usage.queries", "UsageUnavailable")
    try:
        rows = await fn(gw, *args, **kwargs)
    except ValueError:
        raise
    except Exception as exc:
        if unavailable is not None and isinstance(exc, unavailable):  # type: ignore[arg-type]
            raise UsageOff(str(exc)) from None
        raise
    return list(rows)


def traces(gw: Gateway, limit: int) -> list[dict[str, Any]] | None:
    fn = function("crossroute.observe.traces", "recent_traces")
    return None if fn is None else list(fn(gw, limit))


def trace(gw: Gateway, request_id: str) -> dict[str, Any] | None:
    fn = function("crossroute.observe.traces", "find_trace")
    return None if fn is None else fn(gw, request_id)


def logs(gw: Gateway) -> list[dict[str, Any]] | None:
    fn = function("crossroute.observe.request_log", "list_logs")
    return None if fn is None else list(fn(gw))


def read_log(gw: Gateway, name: str) -> bytes | None:
    fn = function("crossroute.observe.request_log", "read_log")
    return None if fn is None else fn(gw, name)


def find_log(gw: Gateway, request_id: str) -> str | None:
    fn = function("crossroute.observe.request_log", "find_log")
    return None if fn is None else fn(gw, request_id)


def delete_logs(gw: Gateway) -> int | None:
    fn = function("crossroute.observe.request_log", "delete_logs")
    return None if fn is None else int(fn(gw))
