"""Usage records: one per upstream attempt of a finished call (one for a call with none).

Built on the gateway's loop once the reply is written (``records_of``), as plain tuples in the
order of ``FIELDS`` (the columns of ``usage_records``), and handed to the store's writer thread.
The client key is kept as a masked id (``key_id``), never the key; the session id as its source
(the namespace before ``:``), never the raw id.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from .. import redaction

if TYPE_CHECKING:
    from ..call import Call
    from ..gateway import Gateway
    from ..observe.events import CallEnded

__all__ = ["FIELDS", "key_id", "provider_of", "records_of", "skipped"]

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


def _session_source(call: Call) -> str | None:
    s = call.session
    if s is None:
        return None
    ns, sep, _ = s.primary.partition(":")
    return ns if sep else "unknown"


def _error(text: str | None) -> str | None:
    if not text:
        return None
    text = redaction.scrub(text)
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR] + "..."


def records_of(gw: Gateway, event: CallEnded) -> list[tuple[Any, ...]]:
    """The usage records of one finished call (see ``FIELDS``)."""
    now_wall = time.time()
    offset = now_wall - time.monotonic()  # monotonic -> wall clock
    call = event.call
    rid = event.request_id
    if call is None:
        return [(event.started + offset, rid, None, event.client_format, event.path, None, None, None, None, None,
                 0, event.transport, event.status, _error(event.error), round((event.ended - event.started) * 1000, 3),
                 None, 0, 0, 0, 0, 0, None, 0)]
    kid = key_id(call.client_key)
    source = _session_source(call)
    stream = 1 if call.stream else 0
    if not call.attempts:
        u = call.usage if call.status == 200 else None
        return [(call.started + offset, rid, kid, call.client_format, event.path, call.operation, None, None,
                 call.model, None, stream, call.transport, event.status, _error(event.error),
                 round((event.ended - call.started) * 1000, 3), None,
                 u.input_tokens if u else 0, u.output_tokens if u else 0, u.cached_tokens if u else 0,
                 u.cache_creation_tokens if u else 0, u.reasoning_tokens if u else 0, source, 0)]
    out = []
    last = len(call.attempts) - 1
    for i, a in enumerate(call.attempts):
        u = call.usage if (i == last and a.status == 200) else None
        end = a.end if a.end is not None else event.ended
        error = a.error
        status = a.status
        if i == last and error is None and event.error:
            error = event.error
        out.append((
            a.start + offset, rid, kid, call.client_format, event.path, call.operation,
            provider_of(gw, a.credential_id), a.credential_id, call.model, a.upstream_model, stream,
            call.transport, status, _error(error),
            round((end - a.start) * 1000, 3),
            round((a.first_byte - a.start) * 1000, 3) if a.first_byte is not None else None,
            u.input_tokens if u else 0, u.output_tokens if u else 0, u.cached_tokens if u else 0,
            u.cache_creation_tokens if u else 0, u.reasoning_tokens if u else 0, source, i + 1,
        ))
    return out
