"""Management handlers that show what the observers kept: usage, routing traces, request and error logs.

- usage: ``crossroute.usage.queries`` (totals, series, cache-hit ratio, recent records). With
  ``usage-statistics-enabled: false`` the answer is the empty shape with ``available: false``, so a
  caller can tell "nothing yet" from "not kept".
- routing traces: ``crossroute.observe.traces`` (the ring of the newest calls).
- logs: ``crossroute.observe.request_log`` (the log folder). Listings, reads and deletions run in a
  thread; a log is scrubbed of every known secret before it is shown.

Paths and answers are CLIProxyAPI's where it has the route (``/request-error-logs``,
``/request-log-by-id/<id>``, ``/logs``, ``/usage-queue``, ``/api-key-usage``); crossroute's own views are
``/usage/{totals,series,cache-hit-ratio,recent}``, ``/traces[/<id>]`` and ``/request-logs[/<name>]``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .. import redaction
from ..observe import request_log, traces
from ..usage import queries
from ..usage.records import key_id
from .http import BadInput, error, query_float, query_int, reply, text_reply

if TYPE_CHECKING:
    from ..api.request import Request
    from ..gateway import Gateway
    from ..replies import Reply

__all__ = ["PREFIXED", "ROUTES"]

Handler = Callable[["Gateway", "Request"], Awaitable["Reply"]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


# ------------------------------------------------------------------ usage
def _where(req: Request) -> dict[str, str | int] | None:
    where: dict[str, str | int] = {}
    for g in queries.GROUPS:
        value = req.query(g)
        if g == "day" or not value:
            continue
        if g == "status":
            if not value.isdigit():
                raise BadInput(f"query parameter 'status' must be an HTTP status, got {value!r}", "status")
            where[g] = int(value)
        else:
            where[g] = value
    return where or None


def _by(req: Request, default: str | None) -> str | None:
    by = req.query("by") or default
    if by in ("", "none"):
        return None
    if by is not None and by not in queries.GROUPS:
        raise BadInput(f"'by' must be one of {', '.join(queries.GROUPS)}", "by")
    return by


async def usage_rows(gw: Gateway, query: Callable[..., Awaitable[list[dict[str, Any]]]], *args: Any,
                     **kwargs: Any) -> list[dict[str, Any]] | None:
    """The rows of a ``queries`` function; None when usage statistics are off."""
    if not queries.enabled(gw):
        return None
    try:
        return list(await query(gw, *args, **kwargs))
    except queries.UsageUnavailable:
        return None
    except ValueError as exc:
        raise BadInput(str(exc), "by") from None


async def _usage(gw: Gateway, query: Callable[..., Awaitable[list[dict[str, Any]]]], *args: Any,
                 **kwargs: Any) -> Reply:
    rows = await usage_rows(gw, query, *args, **kwargs)
    if rows is None:
        return reply({"available": False, "message": "usage statistics are off (set usage-statistics-enabled: true)",
                      "rows": []})
    return reply({"available": True, "rows": rows})


async def usage_totals(gw: Gateway, req: Request) -> Reply:
    return await _usage(gw, queries.totals, _by(req, "model"), since=query_float(req, "since"),
                        until=query_float(req, "until"), where=_where(req))


async def usage_series(gw: Gateway, req: Request) -> Reply:
    return await _usage(gw, queries.series, _by(req, None),
                        bucket=query_int(req, "bucket", 3600, queries.MIN_BUCKET, queries.MAX_BUCKET),
                        since=query_float(req, "since"), until=query_float(req, "until"), where=_where(req))


async def usage_cache(gw: Gateway, req: Request) -> Reply:
    return await _usage(gw, queries.cache_hit_ratio, _by(req, "credential"), since=query_float(req, "since"),
                        until=query_float(req, "until"))


async def usage_recent(gw: Gateway, req: Request) -> Reply:
    return await _usage(gw, queries.recent, query_int(req, "limit", 100, 1, queries.MAX_RECENT), where=_where(req))


def _key_labels(gw: Gateway, by: str) -> dict[str | None, str]:
    """How ``/api-key-usage`` names a group: a client key by its mask (the store keeps only its
    id), a config key as CLIProxyAPI does (``base-url|key``, the key masked), an account by its id."""
    if by == "client_key":
        labels: dict[str | None, str] = {key_id(k): redaction.mask(k) for k in gw.settings.api_keys}
        labels[None] = "-"  # requests without a client key (a gateway without api-keys)
        return labels
    return {e.id: f"{e.base_url}|{redaction.mask(e.api_key)}" for e in gw.settings.providers if e.api_key}


async def api_key_usage(gw: Gateway, req: Request) -> Reply:
    """CLIProxyAPI's ``GET /api-key-usage``: ``{provider: {key: {success, failed, ...}}}`` from the usage
    store. ``?by=client_key`` (default: the keys clients call with) or ``credential`` (the upstream
    keys, as CLIProxyAPI groups); ``since``/``until`` (Unix seconds). Keys are masked. ``{}`` when
    usage statistics are off."""
    by = req.query("by") or "client_key"
    if by not in ("client_key", "credential"):
        raise BadInput("'by' must be client_key or credential", "by")
    since, until = query_float(req, "since"), query_float(req, "until")
    providers = await usage_rows(gw, queries.totals, "provider", since=since, until=until)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    labels = _key_labels(gw, by)
    for p in providers or []:
        rows = await usage_rows(gw, queries.totals, by, since=since, until=until, where={"provider": p["key"]})
        group = out.setdefault(str(p["key"] or "unknown"), {})
        for r in rows or []:
            label = labels.get(r["key"]) or str(r["key"])
            if label in group:  # two keys with the same mask: tell them apart by the store's id
                label = f"{label} ({r['key']})"
            group[label] = {"success": r["requests"] - r["failures"], "failed": r["failures"],
                            "requests": r["requests"], "input_tokens": r["input_tokens"],
                            "output_tokens": r["output_tokens"], "cached_tokens": r["cached_tokens"],
                            "total_tokens": r["total_tokens"]}
    return reply(out)


async def usage_queue(gw: Gateway, req: Request) -> Reply:
    """CLIProxyAPI pops queued records here; crossroute keeps them in its store (``/usage/recent``),
    so the queue is always empty."""
    query_int(req, "count", 1, 1, 10_000)
    return reply([])


# ------------------------------------------------------------------ traces
def _traces_kept(gw: Gateway) -> bool:
    return gw.observers.named.get("traces") is not None


async def list_traces(gw: Gateway, req: Request) -> Reply:
    found = traces.recent_traces(gw, query_int(req, "limit", 100, 1, 1000))
    return reply({"available": _traces_kept(gw), "traces": found})


async def get_trace(gw: Gateway, req: Request, rest: str) -> Reply:
    if not _REQUEST_ID.match(rest):
        raise BadInput("not a request id", "id")
    found = traces.find_trace(gw, rest)
    if found is None:
        return error(404, f"no trace kept for request {rest}", "id")
    return reply(found)


# ------------------------------------------------------------------ logs
async def _log_files(gw: Gateway, kind: str | None) -> list[dict[str, Any]]:
    files = await asyncio.to_thread(request_log.list_logs, gw)  # a directory listing: off the loop
    return [dict(f, modified=f.get("mtime")) for f in files if kind is None or f.get("kind") == kind]


async def request_logs(gw: Gateway, req: Request) -> Reply:
    return reply({"available": True, "files": await _log_files(gw, None)})


async def error_logs(gw: Gateway, req: Request) -> Reply:
    return reply({"available": True, "files": await _log_files(gw, "error")})


def _read_scrubbed(gw: Gateway, name: str) -> bytes | None:
    data = request_log.read_log(gw, name)
    return None if data is None else redaction.scrub_bytes(data)


async def _log_text(gw: Gateway, name: str) -> Reply:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise BadInput("not a log file name", "name")
    data = await asyncio.to_thread(_read_scrubbed, gw, name)  # a whole log: read and scrubbed off the loop
    if data is None:
        return error(404, f"no log {name!r}", "name")
    return text_reply(data)


async def get_log(gw: Gateway, req: Request, rest: str) -> Reply:
    return await _log_text(gw, rest)


async def log_by_id(gw: Gateway, req: Request, rest: str) -> Reply:
    if not _REQUEST_ID.match(rest):
        raise BadInput("not a request id", "id")
    name = await asyncio.to_thread(request_log.find_log, gw, rest)
    if name is None:
        return error(404, f"no log for request {rest}", "id")
    return await _log_text(gw, name)


async def main_log(gw: Gateway, req: Request) -> Reply:
    """CLIProxyAPI's ``GET /logs`` shows its own log file; crossroute logs to stderr, so none."""
    return reply({"lines": [], "line-count": 0, "latest-timestamp": 0})


async def delete_request_logs(gw: Gateway, req: Request) -> Reply:
    removed = await asyncio.to_thread(request_log.delete_logs, gw)
    return reply({"success": True, "removed": removed, "message": f"{removed} request logs removed"})


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "usage/totals"): usage_totals,
    ("GET", "usage/series"): usage_series,
    ("GET", "usage/cache-hit-ratio"): usage_cache,
    ("GET", "usage/recent"): usage_recent,
    ("GET", "usage-queue"): usage_queue,
    ("GET", "api-key-usage"): api_key_usage,
    ("GET", "traces"): list_traces,
    ("GET", "request-logs"): request_logs,
    ("GET", "request-error-logs"): error_logs,
    ("GET", "logs"): main_log,
    ("DELETE", "logs"): delete_request_logs,
}
# (method, path prefix) -> handler(gw, req, rest)
PREFIXED: list[tuple[str, str, Callable[[Gateway, Request, str], Awaitable[Reply]]]] = [
    ("GET", "traces/", get_trace),
    ("GET", "request-logs/", get_log),
    ("GET", "request-error-logs/", get_log),
    ("GET", "request-log-by-id/", log_by_id),
]
