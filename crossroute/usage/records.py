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
from ..call import RawUsage
from ..formats.neutral import Usage
from ..formats.usage_tokens import Tokens, tokens
from .schema import FIELDS

if TYPE_CHECKING:
    from ..observe.events import CallEnded

__all__ = ["FIELDS", "clock_offset", "key_id", "provider_of", "rows_of", "snapshot"]

MAX_ERROR = 500  # characters of a failure reason kept
_ZERO = (0, 0, 0, 0, 0)

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


_provider_names: dict[str, str] = {}


def provider_of(credential_id: str | None) -> str | None:
    """The provider key of a credential id: its part before ``#`` (a configured entry's id is
    ``<provider>#<digest>``, config.py; an account's ``auth:<file>`` is its own), remembered."""
    if credential_id is None:
        return None
    found = _provider_names.get(credential_id)
    if found is None:
        if len(_provider_names) > 4096:
            _provider_names.clear()
        found = _provider_names[credential_id] = credential_id.partition("#")[0]
    return found


def _session_source(primary: str | None) -> str | None:
    if primary is None:
        return None
    ns, sep, _ = primary.partition(":")
    return ns if sep else "unknown"


def _error(text: str | None) -> str | None:
    if not text:
        return None
    text = redaction.scrub(text)
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR] + "..."


_SKIP = ("/v0/management", "/management", "/metrics")
_NESTED = "nested"  # marks the snapshot of a call with no attempt or several (rare)
_IN = FIELDS.index("input_tokens")
# wall-clock time minus ``time.monotonic()``, refreshed by the store's writer once per batch: what
# turns a call's monotonic times into ``ts`` on the loop without a clock read per call
offset = time.time() - time.monotonic()


def snapshot(event: CallEnded) -> tuple[Any, ...] | None:
    """What the records of a finished call need, read on the loop (cheap: no body, no parsing);
    None for a request that makes no record. A call with one attempt
    (nearly all) is its record itself (``FIELDS`` order), except that while its usage is not parsed
    yet the input-token column holds the unparsed usage (``rows_of`` parses it on the store's thread).
    Any other is ``_NESTED`` and the values ``rows_of`` makes its records of."""
    call = event.call
    if call is None:
        if event.status < 400 or event.path.startswith(_SKIP):
            return None
        return (_NESTED, event.request_id, event.path, event.status, event.error, event.transport,
                event.client_format, event.started, event.ended, None)
    path = event.path
    if path.startswith(_SKIP):
        return None
    s = call.session
    attempts = call.attempts
    u = call._usage
    if len(attempts) == 1:
        # plain values only (no Attempt or Call objects): the call's body is not kept alive
        a = attempts[0]
        start, first, end, status, error, cred = a.start, a.first_byte, a.end, a.status, a.error, a.credential_id
        if error is None:
            error = event.error
        if end is None:
            end = event.ended
        if status != 200 or u is None:
            u = _ZERO
        elif type(u) is not tuple:
            u = tokens(u) if type(u) is Usage else (u, 0, 0, 0, 0)  # the latter parsed by ``rows_of``
        key = call.client_key
        primary = s.primary if s is not None else None
        return (start + offset, event.request_id, _key_ids.get(key) or key_id(key) if key is not None else None,
                call.client_format, path, call.operation, _provider_names.get(cred) or provider_of(cred), cred,
                call.model, a.upstream_model, 1 if call.stream else 0, call.transport, status,
                _error(error) if error else None, (end - start) * 1000.0,
                (first - start) * 1000.0 if first is not None else None, u[0], u[1], u[2], u[3], u[4],
                None if primary is None else (primary[:i] if (i := primary.find(":")) >= 0 else "unknown"), 1)
    if u is not None and type(u) is not tuple:
        u = tokens(u) if type(u) is Usage else u
    return (_NESTED, event.request_id, path, event.status, event.error, event.transport, event.client_format,
            event.started, event.ended,
            (call.client_key, call.client_format, call.operation, call.model, call.stream, call.transport,
             tuple([(a.credential_id, a.upstream_model, a.start, a.first_byte, a.end, a.status, a.error)
                    for a in attempts]),
             u, s.primary if s is not None else None, call.started, call.status))


def _resolved(u: Any) -> Tokens | None:
    """The five token counts of a snapshot's usage (parsed here when the loop left it raw)."""
    if u is None or type(u) is tuple:
        return u  # type: ignore[no-any-return]
    # a Usage, or RawUsage / PendingUsage / ParsedUsage: parsed here, off the request path
    if type(u) is RawUsage:
        return u.tokens()
    return tokens(u if isinstance(u, Usage) else u.resolve())


def clock_offset() -> float:
    """Wall-clock time minus ``time.monotonic()``: what turns a snapshot's times into ``ts``."""
    return time.time() - time.monotonic()


def rows_of(snap: tuple[Any, ...], offset: float | None = None) -> list[tuple[Any, ...]]:
    """The usage records (see ``FIELDS``) of a ``snapshot`` (run on the store's thread, which takes
    the ``clock_offset`` once per batch: the snapshots of one batch are at most seconds old)."""
    if offset is None:
        offset = clock_offset()
    if snap[0] is not _NESTED:  # a record, maybe with its usage not parsed yet
        if type(snap[_IN]) is int:
            return [snap]
        return [(*snap[:_IN], *(_resolved(snap[_IN]) or _ZERO), *snap[_IN + 5:])]
    _, rid, path, ev_status, ev_error, ev_transport, ev_format, started, ended, c = snap
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
                 round((ended - c_started) * 1000, 3), None, *(u or _ZERO), source, 0)]
    out = []
    last = len(attempts) - 1
    for i, (cred, upstream_model, start, first, end, status, error) in enumerate(attempts):
        if end is None:
            end = ended
        if i == last:
            if error is None and ev_error:
                error = ev_error
            u = _resolved(usage) if status == 200 else None
        else:
            u = None
        out.append((start + offset, rid, kid, fmt, path, operation, provider_of(cred), cred,
                    model, upstream_model, stream, transport, status, _error(error) if error else None,
                    (end - start) * 1000.0, (first - start) * 1000.0 if first is not None else None,
                    *(u or _ZERO), source, i + 1))
    return out
