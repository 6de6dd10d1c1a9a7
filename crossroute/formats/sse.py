"""Server-sent events: an incremental parser that reassembles events split at any byte.

Upstreams may cut a stream anywhere: inside a line, between ``\\r`` and ``\\n``, between an
``event:`` line and its ``data:`` line. ``SSEParser.feed`` returns only complete events (a blank
line ends an event, per the WHATWG rules: CR, LF and CRLF all end lines, ``:`` lines are
comments, several ``data:`` lines join with ``\\n``, one space after the colon is dropped).

Two guards make a hostile or misconfigured upstream fail fast instead of being buffered forever;
both raise ``SSEError`` (the stream pipes turn it into a 502 for the caller):

* what arrives must look like an event stream from its first bytes: after an optional byte-order
  mark and blank lines, the first line starts with a field name (``data``, ``event``, ``id``,
  ``retry``) or a ``:`` comment. An HTML error page, a JSON body or other bytes are refused at once
  (``looks_like_sse``);
* one event may not grow past ``max_event`` bytes (8 MiB by default) without its closing blank
  line. Pending parts are kept in a list, so an event that trickles in costs linear, not
  quadratic, copying.
"""

from __future__ import annotations

__all__ = [
    "MAX_EVENT_BYTES", "EventSplitter", "SSEError", "SSEEvent", "SSEParser", "encode_event", "looks_like_sse",
    "not_an_event_stream",
]

MAX_EVENT_BYTES = 8 * 1024 * 1024
_FIELDS = (b"data", b"event", b"id", b"retry", b":")
_BOM = b"\xef\xbb\xbf"


class SSEError(ValueError):
    """The upstream bytes are not a usable event stream (not SSE at all, or an endless event)."""


class SSEEvent:
    __slots__ = ("data", "event")

    def __init__(self, event: str | None, data: bytes) -> None:
        self.event = event
        self.data = data

    def __repr__(self) -> str:
        return f"SSEEvent(event={self.event!r}, data={self.data[:80]!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SSEEvent) and (self.event, self.data) == (other.event, other.data)

    def __hash__(self) -> int:
        return hash((self.event, self.data))


def looks_like_sse(head: bytes) -> bool | None:
    """Whether a stream that begins with ``head`` is an event stream: True, False, or None when
    ``head`` is too short to tell (only a byte-order mark, blank lines or part of a field name)."""
    if head.startswith(_BOM):
        head = head[3:]
    elif _BOM.startswith(head):
        return None
    head = head.lstrip(b"\r\n")
    if not head:
        return None
    for name in _FIELDS:
        if head.startswith(name):
            return True
        if len(head) < len(name) and name.startswith(head):
            return None
    return False


def not_an_event_stream(head: bytes) -> SSEError:
    """The error for a stream that begins with ``head`` when ``looks_like_sse(head)`` is False;
    the message shows its first few characters (too few to carry a secret)."""
    text = head.lstrip(_BOM).lstrip()[:24].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    if not text or "\ufffd" in text:  # binary: compressed or garbage bytes
        text = "bytes " + head.lstrip(_BOM)[:8].hex(" ")
    return SSEError(f"upstream sent something that is not an event stream (it begins with {text!r})")


def _parse_block(block: bytes) -> SSEEvent | None:
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line[0] == 0x3A:  # ':' comment
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
        # id:, retry: and unknown fields are ignored
    if not data and event is None:
        return None
    return SSEEvent(event, b"\n".join(data))


class SSEParser:
    """Feed raw bytes; get back complete events. ``flush`` returns a trailing event that was
    never closed by a blank line (callers decide whether such an event is usable).

    ``feed`` raises ``SSEError`` when the stream does not begin like an event stream, or when
    one event exceeds ``max_event`` bytes without ending."""

    __slots__ = ("_cr", "_head", "_max", "_nl", "_parts", "_size")

    def __init__(self, max_event: int = MAX_EVENT_BYTES) -> None:
        self._parts: list[bytes] = []  # the pending, unfinished event, in pieces
        self._size = 0  # total length of _parts
        self._nl = False  # the pending bytes end in '\n' (a '\n' at the start of the next chunk ends the event)
        self._cr = False  # the previous chunk ended in '\r' (a '\n' may follow)
        self._head: bytes | None = b""  # the first bytes until the stream is known to be SSE; then None
        self._max = max_event

    def _check_head(self, chunk: bytes) -> None:
        head = self._head + chunk  # type: ignore[operator]
        ok = looks_like_sse(head)
        if ok is None:
            self._head = head[-64:]
        elif ok:
            self._head = None
        else:
            raise not_an_event_stream(head)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._head is not None and chunk:
            self._check_head(chunk)
        if self._cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        if not chunk:
            return []
        self._cr = chunk[-1:] == b"\r"
        # bytes.find, not ``in``: CPython 3.11's bytes ``in`` first tries the needle as an int and
        # raises and clears a TypeError each time (about 90 ns); the hot paths use find throughout
        if chunk.find(b"\r") >= 0:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        parts = self._parts
        if parts:
            if chunk.find(b"\n\n") < 0 and not (self._nl and chunk[:1] == b"\n"):
                # still inside one event: keep the piece, copy nothing
                self._size += len(chunk)
                if self._size > self._max:
                    self._overflow()
                parts.append(chunk)
                self._nl = chunk[-1:] == b"\n"
                return []
            parts.append(chunk)
            buf = b"".join(parts)
            self._parts = []
            self._size = 0
        else:
            buf = chunk
        end = buf.rfind(b"\n\n")
        if end < 0:
            if len(buf) > self._max:
                self._overflow()
            self._parts = [buf]
            self._size = len(buf)
            self._nl = buf[-1:] == b"\n"
            return []
        rest = buf[end + 2 :]
        if rest:
            if len(rest) > self._max:
                self._overflow()
            self._parts = [rest]
            self._size = len(rest)
            self._nl = rest[-1:] == b"\n"
        out: list[SSEEvent] = []
        for block in buf[:end].split(b"\n\n"):
            # Fast paths for the two shapes real upstreams send: one data line, or an event line
            # then one data line. Anything else takes the general parser.
            if block.startswith(b"data: "):
                if block.find(b"\n") < 0:
                    out.append(SSEEvent(None, block[6:]))
                    continue
            elif block.startswith(b"event: "):
                nl = block.find(b"\n")
                if block[nl + 1 : nl + 7] == b"data: " and block.find(b"\n", nl + 1) < 0:
                    out.append(SSEEvent(block[7:nl].decode("utf-8", "replace"), block[nl + 7 :]))
                    continue
            if block:
                ev = _parse_block(block)
                if ev is not None:
                    out.append(ev)
        return out

    def _overflow(self) -> None:
        self._parts = []
        self._size = 0
        raise SSEError(f"upstream sent an event larger than {self._max} bytes without ending it")

    def flush(self) -> SSEEvent | None:
        buf = b"".join(self._parts)
        self._parts = []
        self._size = 0
        return _parse_block(buf) if buf.strip() else None

    @property
    def pending(self) -> bytes:
        return b"".join(self._parts)


class EventSplitter:
    """The raw blocks of an event stream, one per event, for a caller that rewrites events instead
    of reading them (an upstream's envelope taken off each event, say).

    ``feed(chunk)`` returns the blocks that ``chunk`` completes, by the same rules as ``SSEParser``
    (CR, LF and CRLF end lines, a CR LF pair may be split across chunks, an empty line ends an
    event): each block is an event's lines joined by LF, without its closing empty line, empty
    blocks (runs of empty lines) left out. What the lines say is not looked at, and nothing is
    refused: ``pending`` is the size of the unfinished event so that the caller can bound it, and
    ``take()`` hands those bytes over (line ends already LF) and forgets them. Pending pieces are
    kept in a list (linear copying for an event that trickles in)."""

    __slots__ = ("_cr", "_nl", "_parts", "pending")

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # the unfinished event, in pieces (line ends LF)
        self.pending = 0  # total length of _parts
        self._nl = False  # the pending bytes end in LF (an LF at the start of the next chunk ends the event)
        self._cr = False  # the previous chunk ended in CR (an LF may follow: the same line end)

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        if not chunk:
            return []
        if not self._parts:  # a chunk that is exactly one one-line event (the common case), uncopied but once
            n = len(chunk)
            if chunk[-4:] == b"\r\n\r\n" and chunk.find(b"\r") == n - 4 and chunk.find(b"\n") == n - 3 and n > 4:
                self._cr = False
                return [chunk[:-4]]
            if chunk[-2:] == b"\n\n" and chunk.find(b"\n") == n - 2 and n > 2 and chunk.find(b"\r") < 0:
                self._cr = False
                return [chunk[:-2]]
        self._cr = chunk[-1:] == b"\r"
        if chunk.find(b"\r") >= 0:
            chunk = chunk.replace(b"\r\n", b"\n")
            if chunk.find(b"\r") >= 0:
                chunk = chunk.replace(b"\r", b"\n")
        parts = self._parts
        if parts:
            if chunk.find(b"\n\n") < 0 and not (self._nl and chunk[:1] == b"\n"):
                parts.append(chunk)  # still inside one event
                self.pending += len(chunk)
                self._nl = chunk[-1:] == b"\n"
                return []
            parts.append(chunk)
            buf = b"".join(parts)
        else:
            buf = chunk.lstrip(b"\n") if chunk[:1] == b"\n" else chunk  # empty lines between events
            if not buf:
                return []
        # (buf never starts with LF; a piece after the first may, when more than one empty line ends an event)
        blocks = buf.split(b"\n\n")
        rest = blocks.pop()
        if not blocks:  # no boundary yet
            self._parts = [buf]
            self.pending = len(buf)
            self._nl = buf[-1:] == b"\n"
            return []
        if rest[:1] == b"\n":
            rest = rest.lstrip(b"\n")
        self._parts = [rest] if rest else []
        self.pending = len(rest)
        self._nl = rest[-1:] == b"\n"
        if len(blocks) == 1:  # one event (the common case)
            return blocks
        return [b[1:] if b[:1] == b"\n" else b for b in blocks if b and b != b"\n"]

    def take(self) -> bytes:
        """The unfinished event's bytes so far (line ends LF), forgotten here."""
        out = b"".join(self._parts)
        self._parts = []
        self.pending = 0
        return out


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """One SSE event: optional ``event:`` line, one ``data:`` line per line of data."""
    if data.find(b"\n") >= 0:
        body = b"".join(b"data: " + line + b"\n" for line in data.split(b"\n"))
    else:
        body = b"data: " + data + b"\n"
    if event is not None:
        return b"event: " + event.encode() + b"\n" + body + b"\n"
    return body + b"\n"
