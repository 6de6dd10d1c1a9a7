"""Request bodies sent with ``Content-Encoding``: gzip, deflate (zlib or raw) and zstd.

The compressed body is already bounded by the body limit when it gets here; decoding writes its
output in bounded steps and stops as soon as the decoded size passes the limit, so a
decompression bomb costs at most ``limit`` bytes of output (and a bounded zstd window).
"""

from __future__ import annotations

import io
import zlib

import zstandard

SUPPORTED = ("gzip", "deflate", "zstd")
_STEP = 256 * 1024  # decoded bytes produced per step
_MAX_ENCODINGS = 3  # e.g. "gzip, zstd"; more layers than this are refused


class BodyError(Exception):
    """A body that cannot be decoded: ``status`` is 400 (corrupt), 413 (too large when decoded)
    or 415 (an encoding crossroute does not decode)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def encodings(header: str) -> list[str]:
    """The codings of a Content-Encoding header in the order they were applied (identity left out)."""
    names = [part.strip().lower() for part in header.split(",")]
    return [n for n in names if n and n != "identity"]


def decode(body: bytes, header: str, limit: int) -> bytes:
    """``body`` decoded according to the Content-Encoding ``header``, at most ``limit`` bytes."""
    codings = encodings(header)
    if len(codings) > _MAX_ENCODINGS:
        raise BodyError(415, f"Content-Encoding {header!r} has more than {_MAX_ENCODINGS} codings")
    for name in codings:
        if name not in SUPPORTED:
            raise BodyError(415, f"Content-Encoding {name!r} is not supported (use one of: {', '.join(SUPPORTED)})")
    for name in reversed(codings):  # the last coding applied is undone first
        if name == "zstd":
            body = _zstd(body, limit)
        elif name == "gzip":
            body = _zlib(body, limit, zlib.MAX_WBITS | 16, "gzip")
        else:
            body = _zlib(body, limit, deflate_wbits(body), "deflate")
    return body


def deflate_wbits(head: bytes) -> int:
    """zlib's ``wbits`` for a "deflate" stream starting with ``head``: RFC 9110 deflate is
    zlib-wrapped (a 2-byte header whose value is a multiple of 31); some senders use raw deflate."""
    return zlib.MAX_WBITS if len(head) >= 2 and (head[0] * 256 + head[1]) % 31 == 0 else -zlib.MAX_WBITS


def _too_large(limit: int) -> BodyError:
    return BodyError(413, f"request body is larger than the {limit} byte limit once decoded (body-limit-mb)")


def _corrupt(name: str, detail: object) -> BodyError:
    return BodyError(400, f"request body is not valid Content-Encoding: {name} data ({detail})")


def _zlib(data: bytes, limit: int, wbits: int, name: str) -> bytes:
    out: list[bytes] = []
    size = 0
    while True:  # one pass per gzip member
        d = zlib.decompressobj(wbits)
        pending = data
        try:
            while pending:
                piece = d.decompress(pending, _STEP)
                size += len(piece)
                if size > limit:
                    raise _too_large(limit)
                out.append(piece)
                pending = d.unconsumed_tail
                if d.eof:
                    break
            if not d.eof:
                piece = d.flush(_STEP)
                size += len(piece)
                if size > limit:
                    raise _too_large(limit)
                out.append(piece)
                if not d.eof:
                    raise _corrupt(name, "the data ends early")
        except zlib.error as exc:
            raise _corrupt(name, exc) from None
        rest = d.unused_data
        if name != "gzip" or not rest.strip(b"\0"):
            if rest.strip(b"\0") and name != "gzip":
                raise _corrupt(name, "trailing data after the end of the stream")
            return b"".join(out)
        data = rest  # another gzip member follows


def _window_cap(limit: int) -> int:
    cap = 1 << 23
    while cap < limit and cap < (1 << 27):
        cap <<= 1
    return cap


_ZSTD_MAGIC = 0xFD2FB528
_FCS_BYTES = (0, 2, 4, 8)
_DICT_BYTES = (0, 1, 2, 4)


def _zstd_frames_complete(data: bytes) -> str | None:
    """Walk the frame and block headers (no decoding): what is wrong with the framing, or None.
    The decoder itself reports a cut stream as a clean end, so completeness is checked here."""
    pos, end = 0, len(data)
    if end == 0:
        return "the body is empty"
    while pos < end:
        if end - pos < 4:
            return "the data ends inside a frame header"
        magic = int.from_bytes(data[pos:pos + 4], "little")
        pos += 4
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame
            if end - pos < 4:
                return "the data ends inside a frame header"
            pos += 4 + int.from_bytes(data[pos:pos + 4], "little")
            if pos > end:
                return "the data ends inside a skippable frame"
            continue
        if magic != _ZSTD_MAGIC:
            return "not a zstd frame"
        if pos >= end:
            return "the data ends inside a frame header"
        fhd = data[pos]
        single = fhd & 0x20
        fcs = _FCS_BYTES[fhd >> 6] or (1 if single else 0)
        pos += 1 + (0 if single else 1) + _DICT_BYTES[fhd & 3] + fcs
        while True:
            if end - pos < 3:
                return "the data ends early"
            header = int.from_bytes(data[pos:pos + 3], "little")
            pos += 3
            kind = (header >> 1) & 3
            if kind == 3:
                return "a reserved block type"
            pos += 1 if kind == 1 else header >> 3
            if pos > end:
                return "the data ends early"
            if header & 1:
                break
        if fhd & 4:
            pos += 4
            if pos > end:
                return "the data ends inside the checksum"
    return None


def _zstd(data: bytes, limit: int) -> bytes:
    problem = _zstd_frames_complete(data)
    if problem is not None:
        raise _corrupt("zstd", problem)
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise _corrupt("zstd", exc) from None
    if declared > limit:  # -1 when the frame does not say
        raise _too_large(limit)
    dctx = zstandard.ZstdDecompressor(max_window_size=_window_cap(limit))
    out: list[bytes] = []
    size = 0
    try:
        with dctx.stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
            while True:
                piece = reader.read(_STEP)
                if not piece:
                    break
                size += len(piece)
                if size > limit:
                    raise _too_large(limit)
                out.append(piece)
    except zstandard.ZstdError as exc:
        raise _corrupt("zstd", exc) from None
    return b"".join(out)
