"""Server-sent events: an incremental parser that reassembles events split at any byte.

Upstreams may cut a stream anywhere: inside a line, between ``\\r`` and ``\\n``, between an
``event:`` line and its ``data:`` line. ``SSEParser.feed`` returns only complete events (a blank
line ends an event, per the WHATWG rules: CR, LF and CRLF all end lines, ``:`` lines are
comments, several ``data:`` lines join with ``\\n``, one space after the colon is dropped).
"""

from __future__ import annotations

__all__ = ["SSEEvent", "SSEParser", "encode_event"]


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
    never closed by a blank line (callers decide whether such an event is usable)."""

    __slots__ = ("_buf", "_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._cr = False  # the previous chunk ended in '\r' (a '\n' may follow)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._cr = chunk[-1:] == b"\r"
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + chunk if self._buf else chunk
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return []
        self._buf = buf[end + 2 :]
        out: list[SSEEvent] = []
        for block in buf[:end].split(b"\n\n"):
            # Fast paths for the two shapes real upstreams send: one data line, or an event line
            # then one data line. Anything else takes the general parser.
            if block.startswith(b"data: "):
                if b"\n" not in block:
                    out.append(SSEEvent(None, block[6:]))
                    continue
            elif block.startswith(b"event: "):
                nl = block.find(b"\n")
                if block[nl + 1 : nl + 7] == b"data: " and block.find(b"\n", nl + 1) < 0 and b"\r" not in block:
                    out.append(SSEEvent(block[7:nl].decode("utf-8", "replace"), block[nl + 7 :]))
                    continue
            if block:
                ev = _parse_block(block)
                if ev is not None:
                    out.append(ev)
        return out

    def flush(self) -> SSEEvent | None:
        buf, self._buf = self._buf, b""
        return _parse_block(buf) if buf.strip() else None

    @property
    def pending(self) -> bytes:
        return self._buf


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """One SSE event: optional ``event:`` line, one ``data:`` line per line of data."""
    if b"\n" in data:
        body = b"".join(b"data: " + line + b"\n" for line in data.split(b"\n"))
    else:
        body = b"data: " + data + b"\n"
    if event is not None:
        return b"event: " + event.encode() + b"\n" + body + b"\n"
    return body + b"\n"
