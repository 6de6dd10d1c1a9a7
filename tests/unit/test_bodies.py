"""Request bodies with Content-Encoding: decoded within the limit, corrupt or unknown refused."""

from __future__ import annotations

import gzip
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute.bodies import BodyError, decode, encodings

RAW = b'{"model": "m", "input": "' + bytes(range(32, 127)) * 3000 + b'"}'


def _zstd_streamed(data: bytes) -> bytes:
    c = zstandard.ZstdCompressor().compressobj()
    return c.compress(data) + c.flush()


ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_each_encoding_round_trips(name: str) -> None:
    assert decode(ENCODERS[name](RAW), name, len(RAW)) == RAW


def test_variants_clients_send() -> None:
    assert decode(zlib.compress(RAW)[2:-4], "deflate", len(RAW)) == RAW  # raw deflate, no zlib wrapper
    assert decode(_zstd_streamed(RAW), "zstd", len(RAW)) == RAW  # no content size in the frame
    assert decode(gzip.compress(RAW[:100]) + gzip.compress(RAW[100:]), "gzip", len(RAW)) == RAW  # two members
    two = zstandard.ZstdCompressor().compress(RAW[:50]) + zstandard.ZstdCompressor().compress(RAW[50:])
    assert decode(two, "zstd", len(RAW)) == RAW  # two frames
    layered = zstandard.ZstdCompressor().compress(gzip.compress(RAW))
    assert decode(layered, "gzip, zstd", len(RAW)) == RAW  # the last coding applied is undone first
    assert decode(RAW, "identity", len(RAW)) == RAW
    assert encodings("GZip , identity,zstd") == ["gzip", "zstd"]


@pytest.mark.parametrize("name,encode", [
    ("gzip", gzip.compress), ("deflate", zlib.compress), ("zstd", zstandard.ZstdCompressor().compress),
    ("zstd", _zstd_streamed),
])
def test_a_bomb_stops_at_the_limit(name: str, encode: object) -> None:
    bomb = encode(b"\0" * (64 << 20))  # type: ignore[operator]
    assert len(bomb) < 1 << 20
    with pytest.raises(BodyError) as info:
        decode(bomb, name, 1 << 20)
    assert info.value.status == 413
    assert "limit" in info.value.message


def test_exactly_at_the_limit_is_allowed() -> None:
    for name, encode in ENCODERS.items():
        assert decode(encode(RAW), name, len(RAW)) == RAW
        with pytest.raises(BodyError):
            decode(encode(RAW), name, len(RAW) - 1)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_a_cut_body_is_refused_as_corrupt(name: str) -> None:
    data = ENCODERS[name](RAW)
    for cut in (1, len(data) // 3, len(data) - 1):
        with pytest.raises(BodyError) as info:
            decode(data[:cut], name, 1 << 22)
        assert info.value.status == 400
        assert f"Content-Encoding: {name}" in info.value.message


def test_trailing_garbage_and_wrong_data() -> None:
    for name in ("zstd", "deflate"):
        with pytest.raises(BodyError) as info:
            decode(ENCODERS[name](RAW) + b"junk", name, 1 << 22)
        assert info.value.status == 400
    for name in ENCODERS:
        with pytest.raises(BodyError) as info:
            decode(b'{"plain": "json"}', name, 1 << 22)
        assert info.value.status == 400


def test_unknown_encodings_are_415() -> None:
    for header in ("br", "gzip, compress", "x-custom"):
        with pytest.raises(BodyError) as info:
            decode(RAW, header, 1 << 22)
        assert info.value.status == 415
    with pytest.raises(BodyError) as info:
        decode(RAW, "gzip, gzip, gzip, gzip", 1 << 22)
    assert info.value.status == 415


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=512), name=st.sampled_from(["gzip", "deflate", "zstd"]))
def test_any_bytes_decode_or_get_a_client_error(data: bytes, name: str) -> None:
    try:
        out = decode(data, name, 4096)
    except BodyError as exc:
        assert exc.status in (400, 413)
    else:
        assert len(out) <= 4096
