"""The server edge against a real ``crossroute serve`` process: WebSocket upgrades, HEAD /,
encoded request bodies, deadlines and caps, backpressure, and the access log."""

from __future__ import annotations

import gzip
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import websockets.sync.client as ws_client
import zstandard
from websockets.exceptions import InvalidStatus

from .edge_support import EdgeUpstream, gateway_config, post_head, raw_request, read_response, vm_rss_kb, wait_until
from .gateway_process import GatewayProcess

KEY = "edge-key"
CHAT = orjson.dumps({"model": "text", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture(scope="module")
def up() -> Iterator[EdgeUpstream]:
    upstream = EdgeUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def gw(up: EdgeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    proc = GatewayProcess(gateway_config(up, **{"body-limit-mb": 1}), tmp_path_factory.mktemp("edge")).start()
    yield proc
    proc.stop()


def _start(up: EdgeUpstream, tmp: Path, **extra: object) -> GatewayProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    return GatewayProcess(gateway_config(up, **extra), tmp).start()


def _ws_status(url: str, **kwargs: object) -> int:
    with pytest.raises(InvalidStatus) as info:
        ws_client.connect(url, open_timeout=5, **kwargs)  # type: ignore[arg-type]
    return info.value.response.status_code


def _ws_accepted(url: str, **kwargs: object) -> bool:
    with ws_client.connect(url, open_timeout=5, **kwargs) as c:  # type: ignore[arg-type]
        return c.response.status_code == 101


def _healthy(gw: GatewayProcess) -> None:
    status, _, body = raw_request(gw.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 200 and orjson.loads(body) == {"status": "ok"}
    assert gw.proc is not None and gw.proc.poll() is None


# ------------------------------------------------------------------ WebSocket upgrades


def test_websocket_upgrades_are_checked_like_http_and_the_gateway_keeps_serving(gw: GatewayProcess) -> None:
    ws = f"ws://127.0.0.1:{gw.port}"
    auth = {"Authorization": f"Bearer {KEY}"}
    assert _ws_accepted(ws + "/v1/responses", additional_headers=auth)  # the Responses API over WebSocket
    assert _ws_accepted(ws + "/backend-api/codex/responses", additional_headers=auth)
    assert _ws_status(ws + "/v1/chat/completions", additional_headers=auth) == 404
    assert _ws_status(ws + "/anything", additional_headers=auth) == 404
    assert _ws_status(ws + "/v1/responses") == 401  # no key
    assert _ws_status(ws + "/v1/responses", additional_headers={"Authorization": "Bearer wrong"}) == 401
    assert _ws_accepted(ws + "/v1/responses?key=" + KEY)
    # a web page in the user's browser: refused by Origin before anything else
    assert _ws_status(ws + "/v1/responses", origin="https://evil.example", additional_headers=auth) == 403  # type: ignore[arg-type]
    _healthy(gw)
    # raw upgrade requests too (a DNS-rebinding Host, no key), then HTTP on a new connection
    head = ("GET /v1/responses HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert raw_request(gw.port, head.format(host="evil.example"))[0] == 403
    assert raw_request(gw.port, head.format(host="127.0.0.1"))[0] == 401
    _healthy(gw)
    status, _, body = raw_request(gw.port, post_head("/v1/chat/completions", len(CHAT)), CHAT)
    assert status == 200, body


def test_websocket_upgrade_without_api_keys(up: EdgeUpstream, tmp_path: Path) -> None:
    cfg = gateway_config(up)
    cfg.pop("api-keys")
    proc = GatewayProcess(cfg, tmp_path).start()
    try:
        ws = f"ws://127.0.0.1:{proc.port}"
        assert _ws_accepted(ws + "/v1/responses")
        assert _ws_status(ws + "/nope") == 404
        _healthy(proc)
    finally:
        proc.stop()


# ------------------------------------------------------------------ HEAD /


def test_head_root_is_answered_like_get(gw: GatewayProcess) -> None:
    status, headers, body = raw_request(gw.port, "HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 200 and body == b""
    assert headers["content-type"] == "application/json"
    status, _, body = raw_request(gw.port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 200 and b"crossroute" in body


# ------------------------------------------------------------------ encoded request bodies


def _zstd_stream(data: bytes) -> bytes:
    c = zstandard.ZstdCompressor().compressobj()  # no content size in the frame, as a streaming client
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("encoding,encode", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("zstd", zstandard.ZstdCompressor().compress),
    ("zstd", _zstd_stream),
    ("gzip, zstd", lambda b: zstandard.ZstdCompressor().compress(gzip.compress(b))),
])
def test_encoded_request_bodies_are_decoded(gw: GatewayProcess, up: EdgeUpstream, encoding: str,
                                            encode: object) -> None:
    plain = orjson.dumps({"model": "text", "messages": [{"role": "user", "content": "z" * 300_000}]})
    data = encode(plain)  # type: ignore[operator]
    up.bodies.clear()
    status, _, body = raw_request(gw.port, post_head("/v1/chat/completions", len(data),
                                                     f"Content-Encoding: {encoding}"), data)
    assert status == 200, body
    assert orjson.loads(body)["choices"][0]["message"]["content"] == "hello from upstream"
    assert b"z" * 300_000 in up.bodies[-1]


def test_a_decompression_bomb_gets_413_in_the_clients_format(gw: GatewayProcess) -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(b"{" + b" " * (64 << 20) + b"}")  # 64 MB of spaces
    assert len(bomb) < 1 << 20
    status, _, body = raw_request(gw.port, post_head("/v1/chat/completions", len(bomb), "Content-Encoding: zstd"),
                                  bomb)
    assert status == 413
    assert "limit" in orjson.loads(body)["error"]["message"]
    gz = gzip.compress(b" " * (64 << 20))
    status, _, body = raw_request(gw.port, post_head("/v1/messages", len(gz), "Content-Encoding: gzip"), gz)
    assert status == 413
    err = orjson.loads(body)
    assert err["type"] == "error" and err["error"]["type"] == "request_too_large"
    _healthy(gw)


def test_corrupt_and_unknown_encodings(gw: GatewayProcess) -> None:
    good = zstandard.ZstdCompressor().compress(CHAT)
    for encoding, data in (("zstd", good[: len(good) // 2]), ("gzip", b"not gzip at all"),
                           ("deflate", b"\x00\x01garbage")):
        status, _, body = raw_request(gw.port, post_head("/v1/chat/completions", len(data),
                                                         f"Content-Encoding: {encoding}"), data)
        assert status == 400, (encoding, body)
        assert "Content-Encoding" in orjson.loads(body)["error"]["message"]
    status, _, body = raw_request(gw.port, post_head("/v1/chat/completions", len(CHAT), "Content-Encoding: br"), CHAT)
    assert status == 415
    assert "br" in orjson.loads(body)["error"]["message"]
    status, _, body = raw_request(gw.port, post_head("/v1beta/models/text:generateContent", 4,
                                                     "Content-Encoding: zstd"), b"abcd")
    assert status == 400
    assert orjson.loads(body)["error"]["status"] == "INVALID_ARGUMENT"


# ------------------------------------------------------------------ deadlines and caps


def test_idle_keep_alive_connections_are_closed(up: EdgeUpstream, tmp_path: Path) -> None:
    proc = _start(up, tmp_path, **{"idle-timeout-seconds": 1})
    try:
        # a connection that never sends anything
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
            t0 = time.monotonic()
            assert s.recv(1024) == b""  # closed by the server
            assert time.monotonic() - t0 < 5
        # a keep-alive connection that goes quiet after one request
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _, _ = read_response(s)
            assert status == 200
            t0 = time.monotonic()
            assert s.recv(1024) == b""
            assert 0.5 < time.monotonic() - t0 < 5
        _healthy(proc)
    finally:
        proc.stop()


def test_a_body_that_does_not_arrive_gets_408(up: EdgeUpstream, tmp_path: Path) -> None:
    proc = _start(up, tmp_path, **{"body-timeout-seconds": 1})
    try:
        for path, check in (("/v1/chat/completions", lambda e: e["error"]["type"] == "timeout_error"),
                            ("/v1/messages", lambda e: e["type"] == "error")):
            with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
                s.sendall(post_head(path, 1000).encode() + b'{"model": "te')  # then stalls
                t0 = time.monotonic()
                status, headers, body = read_response(s)
                assert status == 408
                assert time.monotonic() - t0 < 5
                assert check(orjson.loads(body)), body
                assert headers.get("connection") == "close"
        # a chunked body that stalls too
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
            head = post_head("/v1/chat/completions", 0).replace("Content-Length: 0", "Transfer-Encoding: chunked")
            s.sendall(head.encode() + b"5\r\n{\"mod\r\n")
            status, _, _ = read_response(s)
            assert status == 408
        _healthy(proc)
    finally:
        proc.stop()


def _open_stream(port: int, model: str) -> socket.socket:
    body = orjson.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(post_head("/v1/chat/completions", len(body)).encode() + body)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    assert data.startswith(b"HTTP/1.1 200"), data
    return s


def test_past_max_connections_requests_are_refused_at_once(up: EdgeUpstream, tmp_path: Path) -> None:
    proc = _start(up, tmp_path, **{"max-connections": 2})
    streams = []
    try:
        streams = [_open_stream(proc.port, "slow") for _ in range(2)]
        t0 = time.monotonic()
        status, headers, body = raw_request(proc.port, post_head("/v1/chat/completions", len(CHAT)), CHAT)
        assert status == 503 and time.monotonic() - t0 < 2
        assert headers["retry-after"] == "1" and headers["connection"] == "close"
        assert "max-connections" in orjson.loads(body)["error"]["message"]
        status, _, body = raw_request(proc.port, post_head("/v1/messages", len(CHAT)), CHAT)
        assert status == 503 and orjson.loads(body)["type"] == "error"
        for s in streams:
            s.close()
        assert wait_until(lambda: raw_request(proc.port, post_head("/v1/chat/completions", len(CHAT)), CHAT)[0] == 200,
                          5, 0.1)
    finally:
        for s in streams:
            s.close()
        proc.stop()


# ------------------------------------------------------------------ backpressure


def test_a_slow_reader_does_not_make_the_gateway_buffer_the_upstream(up: EdgeUpstream, tmp_path: Path) -> None:
    proc = _start(up, tmp_path)
    try:
        assert proc.proc is not None
        raw_request(proc.port, post_head("/v1/chat/completions", len(CHAT)), CHAT)  # warm up
        rss0 = vm_rss_kb(proc.proc.pid)
        body = orjson.dumps({"model": "big", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        s.settimeout(10)
        s.connect(("127.0.0.1", proc.port))
        s.sendall(post_head("/v1/chat/completions", len(body)).encode() + body)
        read = 0
        peak = rss0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 8:  # ~2 MB/s for 8 s
            got = s.recv(16 * 1024)
            assert got
            read += len(got)
            time.sleep(0.008)
            peak = max(peak, vm_rss_kb(proc.proc.pid))
        ahead = up.written - read
        s.close()
        grown_mb = (peak - rss0) / 1024
        print(f"read {read >> 20} MB, upstream wrote {up.written >> 20} MB, RSS {rss0 >> 10} -> {peak >> 10} MB")
        assert read > 4 << 20
        assert ahead < 24 << 20, f"the upstream was read {ahead >> 20} MB ahead of the client"
        assert grown_mb < 40, f"RSS grew by {grown_mb:.0f} MB"
        _healthy(proc)
    finally:
        proc.stop()


def test_a_client_that_reads_nothing_is_dropped_after_the_idle_timeout(up: EdgeUpstream, tmp_path: Path) -> None:
    proc = _start(up, tmp_path, **{"idle-timeout-seconds": 1})
    try:
        body = orjson.dumps({"model": "big", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        s.connect(("127.0.0.1", proc.port))
        s.sendall(post_head("/v1/chat/completions", len(body)).encode() + body)
        try:
            assert wait_until(lambda: "stream dropped" in proc.log(), 10), proc.log()[-2000:]
            written = up.written
            time.sleep(0.5)
            assert up.written == written  # the upstream request was closed
            assert written < 40 << 20
        finally:
            s.close()
        _healthy(proc)
    finally:
        proc.stop()


# ------------------------------------------------------------------ access log


def test_access_log_line_per_request_without_secrets(up: EdgeUpstream, tmp_path: Path) -> None:
    proc = _start(up, tmp_path / "on")
    try:
        raw_request(proc.port, post_head("/v1/chat/completions", len(CHAT)), CHAT)
        raw_request(proc.port, f"GET /v1beta/models?key={KEY} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        raw_request(proc.port, "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert wait_until(lambda: "GET /nope" in proc.log(), 5)
        lines = [line for line in proc.log().splitlines() if "crossroute.access" in line]
        chat = next(line for line in lines if "POST /v1/chat/completions" in line)
        assert " 200 openai " in chat and "ms" in chat and "INFO" in chat
        assert "model=text" in chat or "model=" in chat
        models = next(line for line in lines if "GET /v1beta/models" in line)
        assert " 200 gemini " in models
        assert " 404 " in next(line for line in lines if "GET /nope" in line)
        text = "\n".join(lines)
        assert KEY not in text and "key=" not in text and "sk-edge-upstream-secret" not in text
    finally:
        proc.stop()
    quiet = _start(up, tmp_path / "off", **{"access-log": False})
    try:
        raw_request(quiet.port, post_head("/v1/chat/completions", len(CHAT)), CHAT)
        time.sleep(0.3)
        assert "crossroute.access" not in quiet.log()
    finally:
        quiet.stop()


def test_the_access_log_names_model_and_credential_when_dispatch_sets_reply_call(up: EdgeUpstream,
                                                                                 tmp_path: Path) -> None:
    proc = _start(up, tmp_path)
    try:
        raw_request(proc.port, post_head("/v1/chat/completions", len(CHAT)), CHAT)
        assert wait_until(lambda: "POST /v1/chat/completions" in proc.log(), 5)
        line = next(ln for ln in proc.log().splitlines() if "POST /v1/chat/completions" in ln)
        if "model=-" in line:
            pytest.skip("dispatch does not set reply.call yet")
        assert "model=text" in line and "credential=" in line and "credential=-" not in line
    finally:
        proc.stop()


