"""Crossroute's own Python cost per request, without the network: ``App.__rsgi__`` driven by a
fake RSGI protocol, with the upstream HTTP client replaced by an in-memory answer. Prints µs per
request for the non-stream and stream paths; use it to compare changes (no thresholds).

    python bench/micro_pipeline.py [--observers usage,metrics,traces]
    python bench/micro_pipeline.py --icount [--stream] [--observers ...]   # instructions (valgrind)

``--observers``: the usage store (SQLite in a temporary data dir), metrics (as after a first
``GET /metrics``), routing traces (the management API enabled, so every call is traced) and
``null``, an observer that does nothing (what any observer costs: the call-ended events).
``--icount`` runs itself twice under callgrind (300 and 1300 requests) and prints the difference
per request: instructions of every thread (the usage store's writer too), start-up cancelled out.
The collector is frozen after start, as ``crossroute serve`` does; the auth-dir watcher is stopped
(no accounts in this config; its polls made the counts drift)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from crossroute.app import App
from crossroute.config import parse
from crossroute.gateway import Gateway

CONFIG = """
api-keys: [bench-key]
openai-compatibility:
  - name: fake
    base-url: http://127.0.0.1:9/v1
    api-key-entries: [{api-key: sk-fake}]
    models: [{name: fake-model, alias: fast}]
"""
ANSWER = orjson.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "fake-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
})
CHUNK = orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "fake-model",
                      "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]})
STREAM = b"".join(b"data: " + CHUNK + b"\n\n" for _ in range(50)) + b"data: [DONE]\n\n"


class _Null:
    wants_attempts = False

    def attempt_ended(self, call: Any, attempt: Any) -> None:
        return None

    def call_ended(self, event: Any) -> None:
        return None


class _Content:
    def __init__(self, data: bytes) -> None:
        self._chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]

    async def readany(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""

    def at_eof(self) -> bool:
        return not self._chunks


class _Response:
    def __init__(self, data: bytes) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}
        self._data = data
        self.content_length: int | None = None if data.startswith(b"data:") else len(data)
        self.content = _Content(data)

    async def read(self) -> bytes:
        return self._data

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Session:
    async def post(self, url: str, *, data: bytes, **_: Any) -> _Response:
        return _Response(STREAM if b'"stream":true' in data else ANSWER)

    async def close(self) -> None:
        pass


class _Headers(dict):  # type: ignore[type-arg]
    pass


class _Scope:
    proto = "http"
    method = "POST"
    path = "/v1/chat/completions"
    query_string = ""
    client = "127.0.0.1:50000"
    server = "127.0.0.1:8317"

    def __init__(self, body: bytes) -> None:
        self.headers = _Headers({"host": "127.0.0.1:8317", "authorization": "Bearer bench-key",
                                 "content-type": "application/json", "content-length": str(len(body))})


class _Transport:
    async def send_bytes(self, data: bytes) -> None:
        pass


class _Proto:
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __call__(self) -> bytes:
        return self.body

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        assert status == 200, body

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> _Transport:
        return _Transport()

    async def client_disconnect(self) -> None:
        await asyncio.sleep(3600)


async def run(n: int, modes: tuple[bool, ...] = (False, True), repeats: int = 5,
              observers: tuple[str, ...] = ()) -> None:
    import gc
    import os
    import tempfile

    extra = ""
    data_dir = tempfile.mkdtemp(prefix="crossroute-micro-")
    if "usage" in observers:
        extra += f"usage-statistics-enabled: true\ndata-dir: {data_dir}\n"
    if "traces" in observers:
        os.environ["MANAGEMENT_PASSWORD"] = "micro-pipeline-password"
    gw = Gateway(parse(CONFIG + extra))
    await gw.start()
    await gw._http.close()  # type: ignore[union-attr]
    # no auth-dir watcher: its polls (while the directory is missing) made the counts drift ±18k per
    # request; the bench config has no accounts, so requests take the same path without it
    await gw._stop_accounts()
    gw._http = _Session()  # type: ignore[assignment]
    direct = getattr(gw, "direct", None)  # the direct-connection client, where there is one
    if direct is not None:
        await direct.close()
        gw.direct = None  # type: ignore[attr-defined]  # the in-memory session serves every call
    if "metrics" in observers:
        from crossroute.api.metrics import metrics_of

        metrics_of(gw)
    if "null" in observers:  # an observer that does nothing: what the hub and its events cost
        from crossroute.observe.setup import put

        put(gw, "null", _Null())
    app = App(gw)
    gc.collect()
    gc.freeze()
    for stream in modes:
        body = orjson.dumps({"model": "fast", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
        scope = _Scope(body)
        for _ in range(200 if repeats > 1 else 0):
            await app.__rsgi__(scope, _Proto(body))
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(n):
                await app.__rsgi__(scope, _Proto(body))
            best = min(best, (time.perf_counter() - t) / n * 1e6)
        if repeats > 1:
            print(f"{'stream (50 events)' if stream else 'non-stream':>20}: {best:7.1f} µs per request (best of 5)")
    store = gw.observers.named.get("usage")
    if store is not None:
        store.stop_now()  # what was queued is written (and counted) before the end


def icount(stream: bool, observers: tuple[str, ...]) -> int:
    """Instructions per request: callgrind over 300 and over 1300 requests, the difference / 1000."""
    import re
    import subprocess
    import sys

    counts = []
    for n in (300, 1300):
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
                "--count", str(n), *(["--stream"] if stream else []), "--observers", ",".join(observers)]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stderr
        m = re.search(r"refs:\s+([\d,]+)", out)
        assert m is not None, out
        counts.append(int(m.group(1).replace(",", "")))
    return (counts[1] - counts[0]) // 1000


if __name__ == "__main__":
    import argparse

    import uvloop

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--observers", default="", help="comma list of usage, metrics, traces, null")
    ap.add_argument("--icount", action="store_true", help="instructions per request under callgrind")
    ap.add_argument("--stream", action="store_true", help="with --icount: 50-event streams")
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)  # one counted run (icount)
    args = ap.parse_args()
    obs = tuple(o for o in args.observers.split(",") if o)
    if args.count:
        uvloop.run(run(args.count, (args.stream,), repeats=1, observers=obs))
    elif args.icount:
        base = icount(args.stream, ())
        print(f"{'stream' if args.stream else 'non-stream'}: {base:,} instructions per request, observers off")
        if obs:
            on = icount(args.stream, obs)
            print(f"with {','.join(obs)}: {on:,} ({on / base:.3f} x)")
    else:
        uvloop.run(run(3000, observers=obs))
