"""The events observers receive."""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from ..call import Call

__all__ = ["CallEnded", "new_request_id"]

# request ids: a counter from a random start per process (unique within a process for 2**32 calls,
# unlikely to collide across processes; os.urandom per call costs a system call). A forked worker
# draws a new start: workers forked from one parent would otherwise count the same ids. The
# counter runs from 2**32 up, so that ``hex(n)[3:]`` is its 8 low hex digits (a quarter of the work
# of a formatted string; after 2**32 calls of one process the ids repeat).
def _fresh_counter() -> itertools.count[int]:
    return itertools.count((1 << 32) | int.from_bytes(os.urandom(4), "big"))


_ids = _fresh_counter()


def _reseed() -> None:
    global _ids
    _ids = _fresh_counter()


os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    return hex(next(_ids))[3:]


class CallEnded(msgspec.Struct, gc=False):
    """One finished HTTP request or WebSocket turn, after its reply was fully written.

    ``call`` is None when the request never became a Call (a 401, 404, 413 from the edge or a 400
    from the API layer before the model was known). ``started``/``ended``: ``time.monotonic()``.
    ``status``: the status sent (a stream that failed after its first byte keeps 200 here; its
    error is in ``error``). ``transport``: ``http`` or ``ws``. ``request_id``: 8 hex digits; the
    usage records, the routing trace and the request log of the call share it.

    A msgspec Struct: made in C (a third of a Python class's ``__init__``), its fields read as
    slots. Not tracked by the garbage collector (``gc=False``): nothing refers back to an event,
    so it is in no reference cycle."""

    method: str
    path: str
    client_format: str
    status: int
    call: Call | None
    started: float
    ended: float
    transport: str = "http"
    bytes_out: int = 0
    error: str | None = None
    request_id: str = msgspec.field(default_factory=new_request_id)
