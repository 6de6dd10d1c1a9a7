"""One client request as the pipeline sees it (``Call``) and the record of each upstream try.

Built by ``api/`` from the client's body; read and annotated by ``dispatch`` (the credential that
served it, the attempts made, usage) and by the edge and the observers once it has ended.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any

import orjson

from .formats.neutral import Usage
from .formats.translate import PendingUsage, usage_of, usage_of_raw
from .formats.usage_tokens import Tokens, tokens, tokens_of_raw
from .routing.session_ids import SessionIds

__all__ = ["Attempt", "Call", "ParsedUsage", "RawUsage", "Tokens", "Trace"]

_ids = itertools.count(1)


class Attempt:
    """One try of one credential: when it started, when the upstream's first byte came, when its
    first output reached the client (``first_token``: the first stream bytes written, or a whole
    answer's end), when it ended, and how (``status`` 0 = no HTTP answer; ``error`` None on success)."""

    __slots__ = ("credential_id", "end", "error", "first_byte", "first_token", "start", "status", "upstream_model",
                 "wire")

    def __init__(self, credential_id: str, upstream_model: str, wire: str, start: float) -> None:
        self.credential_id = credential_id
        self.upstream_model = upstream_model
        self.wire = wire
        self.start = start
        self.first_byte: float | None = None
        self.first_token: float | None = None
        self.end: float | None = None
        self.status = 0
        self.error: str | None = None

    def __repr__(self) -> str:
        return f"Attempt({self.credential_id!r}, {self.upstream_model!r}, status={self.status}, error={self.error!r})"


class Trace(list[Any]):
    """Why a call went where it went (filled by ``routing`` when the call is traced; kept for recent
    calls by ``observe``; rendered for ``X-Crossroute-Trace: 1``, the request log and the panel).

    On the request path it only holds raw entries, which cost little to make: a step added with
    ``add`` (a dict), or a recorded pick (a tuple of pick-time copies, ``routing.explain.record``).
    ``steps`` renders them when read: ``{"step": "candidates" | "skip" | "chose" | ..., "t":
    monotonic, ...fields}``, a new list each time. A list itself, so that making one costs no
    Python call; an empty trace is falsy, so test ``is not None``."""

    __slots__ = ()

    def add(self, step: str, **fields: Any) -> None:
        fields["step"] = step
        fields["t"] = time.monotonic()
        self.append(fields)

    @property
    def steps(self) -> list[dict[str, Any]]:
        from .routing.explain import render_steps  # the read side only: routing's own rendering

        return render_steps(self)


class ParsedUsage:
    """The usage of an answer passed through unchanged that was already parsed (to check that it
    is an answer): read from the parsed object only when asked for."""

    __slots__ = ("fmt", "obj")

    def __init__(self, fmt: str, obj: Any) -> None:
        self.fmt = fmt
        self.obj = obj

    def resolve(self) -> Usage | None:
        try:
            return usage_of(self.fmt, self.obj)
        except (ValueError, TypeError, AttributeError, KeyError):
            return None


class RawUsage:
    """The usage of an answer passed through unchanged, as the raw JSON of its usage field (from
    ``answers.passthrough``; None when it had none): parsed only when asked for."""

    __slots__ = ("fmt", "raw")

    def __init__(self, fmt: str, raw: Any) -> None:
        self.fmt = fmt
        self.raw = raw

    def resolve(self) -> Usage | None:
        raw = self.raw
        try:
            return None if raw is None else usage_of_raw(self.fmt, memoryview(raw))
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError, KeyError):
            return None

    def tokens(self) -> Tokens | None:
        raw = self.raw
        return None if raw is None else tokens_of_raw(self.fmt, raw)


_LAZY = (PendingUsage, ParsedUsage, RawUsage)


class Call:
    """One client request.

    ``transport``: ``http`` (``ws`` when the WebSocket API lands); ``framing``: how a stream is
    written to the client (``sse`` or ``json`` for Gemini's JSON-array stream). ``options``: the
    client API's own knobs (``json_array``, ``codex_client``, ``default_max_tokens``, ``model``).
    """

    __slots__ = (
        "_usage", "attempts", "body", "client_format", "client_key", "credential_id", "headers", "id", "log", "model",
        "operation", "options", "session", "started", "status", "stream", "trace", "transport", "upstream_model",
    )

    def __init__(
        self,
        client_format: str,
        model: str,
        body: dict[str, Any],
        headers: Mapping[str, str],
        *,
        stream: bool = False,
        operation: str = "generate",
        client_key: str | None = None,
        options: dict[str, Any] | None = None,
        transport: str = "http",
    ) -> None:
        self.id = next(_ids)
        self.client_format = client_format
        self.operation = operation
        self.model = model
        self.stream = stream
        self.body = body
        self.headers = headers
        self.client_key = client_key
        self.options: dict[str, Any] = options or {}
        self.transport = transport
        self.session: SessionIds | None = None
        # a Usage, one not parsed yet, or (once ``tokens`` was read) its counts as a tuple
        self._usage: Usage | PendingUsage | ParsedUsage | RawUsage | Tokens | None = None
        self.credential_id: str | None = None
        self.upstream_model: str | None = None
        self.status = 0
        self.attempts: list[Attempt] = []
        self.trace: Trace | None = None
        self.log: Any = None  # the request log's spool of this call (observe/request_log.CallLog), or None
        self.started = time.monotonic()

    @property
    def framing(self) -> str:
        return "json" if self.options.get("json_array") else "sse"

    @property
    def usage(self) -> Usage | None:
        u = self._usage
        if type(u) is tuple:
            return Usage(*u)
        if isinstance(u, _LAZY):
            u = self._usage = u.resolve()
        return u  # type: ignore[return-value]

    @property
    def tokens(self) -> Tokens | None:
        """The usage as its five counts (``formats.usage_tokens``), parsed once: what the observers read."""
        u = self._usage
        if u is None or type(u) is tuple:
            return u  # type: ignore[return-value]
        t = self._usage = u.tokens() if type(u) is RawUsage else tokens(u if type(u) is Usage else u.resolve())
        return t

    @usage.setter
    def usage(self, value: Usage | PendingUsage | ParsedUsage | RawUsage | Tokens | None) -> None:
        self._usage = value
