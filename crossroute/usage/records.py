"""Usage records: one per upstream attempt of a finished call (one for a call with none).

Once the reply is written, the loop takes a ``snapshot`` of the call (a tuple of references, no
body, no parsing); the store's writer thread turns it into plain tuples in the order of ``FIELDS``
(the columns of ``usage_records``) with ``rows_of`` (the usage of a passed-through answer is parsed
there, off the request path).
The client key is kept as a masked id (``key_id``), never the key; the session id as its source
(the namespace before ``:``), never the raw id.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from .. import redaction
from ..formats.neutral import Usage

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..observe.events import CallEnded
    from ..routing.session_ids import SessionIds

__all__ = ["FIELDS", "key_id", "provider_of", "records_of", "rows_of", "skipped", "snapshot"]

FIELDS = (
    "ts", "request_id", "client_key", "client_format", "endpoint", "operation", "provider", "credential",
    "model", "upstream_model", "stream", "transport", "status", "error", "latency_ms", "ttft_ms",
    "input_tokens", "output_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens",
    "session_source", "attempt",
)
MAX_ERROR = 500  # characters of a failure reason kept

_key_ids: dict[str, str] = {}


def key_id(key: str | None) -> str | None:
    """A stable, non-reversible id for a client key: ``key-`` and 10 hex digits of its SHA-256."""
    if not key:
        return None
    kid = _key_ids.get(key)
    if kid is None:
        if len(_key_ids) > 4096:
            _key_ids.clear()
        kid = _key_ids[key] = "key-" + hashlib.sha256(key.encode()).hexdigest()[:10]
    return kid


_providers: tuple[int, dict[str, str]] = (0, {})


def provider_of(gw: Gateway, credential_id: str | None) -> str | None:
    """The provider key of a credential id (from the current settings; computed once per settings)."""
    global _providers
    if credential_id is None:
        return None
    ident, table = _providers
    if ident != id(gw.settings):
        table = {p.id: p.provider for p in gw.settings.providers}
        _providers = (id(gw.settings), table)
    found = table.get(credential_id)
    if found is None:  # a credential gone since (reload), or an account: the id's own prefix
        found = credential_id.split("#", 1)[0]
    return found


def skipped(event: CallEnded) -> bool:
    """Requests that are not model calls: management, metrics, the panel, and GETs that succeeded."""
    path = event.path
    if path.startswith(("/v0/management", "/management", "/metrics")):
        return True
    return event.call is None and event.status < 400


def _session_source(s: SessionIds | None) -> str | None:
    if s is None:
        return None
    ns, sep, _ = s.primary.partition(":")
    return ns if sep else "unknown"


def _error(text: str | None) -> str | None:
    if not text:
        return None
    text = redaction.scrub(text)
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR] + "..."


def snapshot(event: CallEnded) -> tuple[Any, ...]:
    """What the records of a finished call need, read on the loop (cheap: no body, no parsing)."""
    call = event.call
    head = (time.time() - time.monotonic(), event.request_id, event.path, event.status, event.error,
            event.transport, event.client_format, event.started, event.ended)
    if call is None:
        return (*head, None)
    return (*head, (call.client_key, call.client_format, call.operation, call.model, call.stream, call.transport,
                    call.attempts, call._usage, call.session, call.started, call.status))


def _resolved(u: Any) -> Usage | None:
    if u is not None and not isinstance(u, Usage):
        u = u.resolve()  # PendingUsage / ParsedUsage: parsed here, off the request path
    return u  # type: ignore[no-any-return]


def rows_of(gw: Gateway, snap: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The usage records (see ``FIELDS``) of a ``snapshot`` (run on the store's thread)."""
    offset, rid, path, ev_status, ev_error, ev_transport, ev_format, started, ended, c = snap
    if c is None:
        return [(started + offset, rid, None, ev_format, path, None, None, None, None, None,
                 0, ev_transport, ev_status, _error(ev_error), round((ended - started) * 1000, 3),
                 None, 0, 0, 0, 0, 0, None, 0)]
    client_key, fmt, operation, model, stream, transport, attempts, usage, session, c_started, c_status = c
    kid = key_id(client_key)
    source = _session_source(session)
    stream = 1 if stream else 0
    if not attempts:
        u = _resolved(usage) if c_status == 200 else None
        return [(c_started + offset, rid, kid, fmt, path, operation, None, None,
                 model, None, stream, transport, ev_status, _error(ev_error),
                 round((ended - c_started) * 1000, 3), None,
                 u.input_tokens if u else 0, u.output_tokens if u else 0, u.cached_tokens if u else 0,
                 u.cache_creation_tokens if u else 0, u.reasoning_tokens if u else 0, source, 0)]
    out = []
    last = len(attempts) - 1
    for i, a in enumerate(attempts):
        start = a.start
        end = a.end if a.end is not None else ended
        first = a.first_byte
        error = a.error
        if i == last:
            if error is None and ev_error:
                error = ev_error
            u = _resolved(usage) if a.status == 200 else None
        else:
            u = None
        row = (start + offset, rid, kid, fmt, path, operation, provider_of(gw, a.credential_id), a.credential_id,
               model, a.upstream_model, stream, transport, a.status, _error(error) if error else None,
               (end - start) * 1000.0, (first - start) * 1000.0 if first is not None else None)
        if u is None:
            out.append((*row, 0, 0, 0, 0, 0, source, i + 1))
        else:
            out.append((*row, u.input_tokens, u.output_tokens, u.cached_tokens, u.cache_creation_tokens,
                        u.reasoning_tokens, source, i + 1))
    return out


def records_of(gw: Gateway, event: CallEnded) -> list[tuple[Any, ...]]:
    """The usage records of one finished call (``snapshot`` and ``rows_of`` in one step)."""
    return rows_of(gw, snapshot(event))
