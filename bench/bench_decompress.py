"""What compression of upstream answers costs and saves: decode CPU against bytes saved.

For three typical answers (a ~2 KB chat.completion, a 50-event chat stream, a ~200 KB answer)
and each encoding (identity, gzip, deflate, zstd, br), it prints

* the bytes on the wire and the share saved against identity;
* ``codec µs``: the decoder alone (a fresh decompressor per answer, the stream decoded event by
  event, as a server that flushes per event sends it);
* ``client µs``: CPU of the client process per answer, end to end through aiohttp's client with
  ``auto_decompress=True`` (what crossroute runs), against a server in another process, and
  ``+µs``: that minus identity's, i.e. what decoding adds per answer on the real path.

    python bench/bench_decompress.py [--requests 400] [--repeat 3]

CPU figures are medians of ``--repeat`` runs of ``--requests`` sequential requests on one
keep-alive connection; the server is a separate process so its CPU is not counted. Text is drawn
from a fixed vocabulary with a fixed seed, so ratios are realistic for English prose rather than
the best case of repeated words. No thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

import orjson

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

ENCODINGS = ("identity", "gzip", "deflate", "zstd", "br")
_VOCAB_RNG = random.Random(7)
_LETTERS = "etaoinshrdlucmfwypvbgkqjxz"
VOCAB = [
    "".join(_VOCAB_RNG.choices(_LETTERS, weights=range(26, 0, -1), k=_VOCAB_RNG.randint(2, 9)))
    for _ in range(3000)
]


def prose(n_chars: int, seed: int) -> str:
    rng = random.Random(seed)
    words: list[str] = []
    size = 0
    while size < n_chars:
        w = rng.choice(VOCAB) if rng.random() < 0.7 else rng.choice(VOCAB[:100])
        if rng.random() < 0.08:
            w += "."
        words.append(w)
        size += len(w) + 1
    return " ".join(words)[:n_chars]


def chat_answer(text: str) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL", "object": "chat.completion", "created": 1727346168,
        "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_5050236cbd",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 812, "completion_tokens": len(text) // 4, "total_tokens": 812 + len(text) // 4,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}},
    })


def chat_stream(n: int) -> list[bytes]:
    from fake_upstream import chat_stream_events

    events = chat_stream_events("gpt-4o-2024-08-06", n, True)
    # fake_upstream cycles ten words; give each content chunk its own word or two, as real tokens are
    rng = random.Random(3)
    out = []
    for ev in events:
        if b'"content":" ' in ev:
            word = " " + rng.choice(VOCAB)
            obj = orjson.loads(ev[6:-2])
            obj["choices"][0]["delta"]["content"] = word
            ev = b"data: " + orjson.dumps(obj) + b"\n\n"
        out.append(ev)
    return out


PAYLOADS: dict[str, list[bytes]] = {
    "json 2 KB": [chat_answer(prose(1500, 1))],
    "stream 50 events": chat_stream(50),
    "json 200 KB": [chat_answer(prose(200_000, 2))],
}


# ------------------------------------------------------------------ codecs


def compressor(enc: str) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
    """(write(part) -> flushed bytes, end() -> trailer) for one answer."""
    if enc == "gzip" or enc == "deflate":
        z = zlib.compressobj(6, zlib.DEFLATED, 31 if enc == "gzip" else 15)
        return (lambda b: z.compress(b) + z.flush(zlib.Z_SYNC_FLUSH)), z.flush
    if enc == "zstd":
        import zstandard

        c = zstandard.ZstdCompressor(level=3).compressobj()
        return (lambda b: c.compress(b) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)), c.flush
    if enc == "br":
        import brotli

        bc = brotli.Compressor(quality=4)
        return (lambda b: bc.process(b) + bc.flush()), bc.finish
    return (lambda b: b), (lambda: b"")


def encode(enc: str, parts: list[bytes]) -> list[bytes]:
    """The wire chunks of an answer: one per part (flushed), the trailer joined to the last."""
    write, end = compressor(enc)
    chunks = [write(p) for p in parts]
    chunks[-1] += end()
    return chunks


def decoder(enc: str) -> Callable[[bytes], bytes]:
    if enc == "gzip" or enc == "deflate":
        return zlib.decompressobj(31 if enc == "gzip" else 15).decompress
    if enc == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress
    if enc == "br":
        import brotli

        return brotli.Decompressor().process
    return lambda b: b


def codec_us(enc: str, chunks: list[bytes], n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        dec = decoder(enc)
        for c in chunks:
            dec(c)
    return (time.process_time() - t0) / n * 1e6


# ------------------------------------------------------------------ end to end


def serve(port_q: Any, bodies: dict[str, tuple[str, list[bytes]]]) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.StreamResponse:
        enc, chunks = bodies[request.match_info["key"]]
        headers = {"Content-Type": "text/event-stream" if len(chunks) > 1 else "application/json"}
        if enc != "identity":
            headers["Content-Encoding"] = enc
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        for c in chunks:
            await resp.write(c)
        await resp.write_eof()
        return resp

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{key}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        port_q.put(sock.getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def client_us(port: int, key: str, stream: bool, n: int) -> float:
    import aiohttp

    from crossroute.gateway import READ_BUFSIZE

    async with aiohttp.ClientSession(auto_decompress=True, read_bufsize=READ_BUFSIZE) as s:
        url = f"http://127.0.0.1:{port}/{key}"
        for _ in range(20):  # warm-up
            async with s.get(url) as r:
                await r.read()
        t0 = time.process_time()
        for _ in range(n):
            async with s.get(url) as r:
                if stream:
                    while await r.content.readany():
                        pass
                else:
                    await r.read()
        return (time.process_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    wire: dict[tuple[str, str], list[bytes]] = {
        (name, enc): encode(enc, parts) for name, parts in PAYLOADS.items() for enc in ENCODINGS
    }
    keys = {f"{i}": (enc, wire[(name, enc)]) for i, (name, enc) in enumerate(wire)}
    by_pair = {(name, enc): k for k, (enc, _) in keys.items() for (name, e) in [list(wire)[int(k)]] if e == enc}

    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    server = ctx.Process(target=serve, args=(q, keys), daemon=True)
    server.start()
    port = q.get(timeout=30)
    try:
        print(f"{'answer':18s} {'encoding':9s} {'wire bytes':>10s} {'saved':>6s} {'codec µs':>9s} "
              f"{'client µs':>10s} {'+µs':>7s}")
        for name in PAYLOADS:
            base_len = sum(map(len, wire[(name, "identity")]))
            stream = len(PAYLOADS[name]) > 1
            results: dict[str, float] = {}
            for enc in ENCODINGS:
                chunks = wire[(name, enc)]
                n_codec = max(20, args.requests * (20 if not name.endswith("200 KB") else 1))
                codec = statistics.median(codec_us(enc, chunks, n_codec) for _ in range(args.repeat))
                n = args.requests if not name.endswith("200 KB") else max(50, args.requests // 4)
                cpu = statistics.median(
                    asyncio.run(client_us(port, by_pair[(name, enc)], stream, n)) for _ in range(args.repeat)
                )
                results[enc] = cpu
                size = sum(map(len, chunks))
                print(f"{name:18s} {enc:9s} {size:>10,} {1 - size / base_len:>6.0%} {codec:>9.1f} "
                      f"{cpu:>10.1f} {cpu - results['identity']:>+7.1f}")
    finally:
        server.kill()


if __name__ == "__main__":
    main()
