"""Load generation for the benchmark: a sequential raw-socket latency client, a wrk driver, and
an aiohttp fallback load loop used only when wrk is not installed."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class Target:
    """One HTTP endpoint to load: port, path, headers and body."""

    name: str
    port: int
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def request_bytes(self) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


class HTTPError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


# ---------------------------------------------------------------------------------------------
# raw keep-alive client


class RawClient:
    """A blocking HTTP/1.1 keep-alive client on one socket: the least client overhead we can get
    from Python, so that latency differences are the servers'."""

    def __init__(self, target: Target, timeout: float = 10.0) -> None:
        self.target = target
        self.req = target.request_bytes()
        self.sock = socket.create_connection(("127.0.0.1", target.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def request(self) -> tuple[int, bytes]:
        """Sends the target's request; returns (status, body) with a chunked body decoded."""
        self.sock.sendall(self.req)
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            self._fill()
        head = self.buf[:end].split(b"\r\n")
        status = int(head[0].split(b" ", 2)[1])
        length = -1
        chunked = False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        self.buf = self.buf[end + 4 :]
        if chunked:
            return status, self._read_chunked()
        if length < 0:
            raise ConnectionError("response without content-length or chunked encoding")
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            while (eol := self.buf.find(b"\r\n")) < 0:
                self._fill()
            size = int(self.buf[:eol].split(b";", 1)[0], 16)
            while len(self.buf) < eol + 2 + size + 2:
                self._fill()
            out += self.buf[eol + 2 : eol + 2 + size]
            self.buf = self.buf[eol + 2 + size + 2 :]
            if size == 0:
                return bytes(out)


def fetch(target: Target) -> tuple[int, bytes]:
    """One request on a fresh connection."""
    client = RawClient(target)
    try:
        return client.request()
    finally:
        client.close()


def latency_interleaved(targets: Sequence[Target], seconds: float, slices: int = 5) -> dict[str, list[float]]:
    """Sequential requests (concurrency 1) to each target, alternating targets in ``slices``
    slices so drift affects all alike. Returns milliseconds per request per target."""
    clients = {t.name: RawClient(t) for t in targets}
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    per_slice = seconds / slices
    try:
        for c in clients.values():  # one warm-up request each
            c.request()
        for _ in range(slices):
            for t in targets:
                client = clients[t.name]
                out = samples[t.name]
                deadline = time.perf_counter() + per_slice
                perf = time.perf_counter_ns
                while True:
                    t0 = perf()
                    status, body = client.request()
                    t1 = perf()
                    if status != 200:
                        raise HTTPError(status, body)
                    out.append((t1 - t0) / 1e6)
                    if t1 / 1e9 > deadline:
                        break
    finally:
        for c in clients.values():
            c.close()
    return samples


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[k]


# ---------------------------------------------------------------------------------------------
# wrk


@dataclass
class LoadResult:
    rps: float
    requests: int
    errors: int  # non-2xx responses plus socket errors
    tool: str


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _lua_quote(s: str | bytes) -> str:
    text = s.decode() if isinstance(s, bytes) else s
    return "[==[" + text + "]==]"


def write_lua(target: Target, directory: str) -> str:
    path = os.path.join(directory, f"{target.name}.lua")
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_quote(target.body)}"]
    lines += [f"wrk.headers[ {_lua_quote(k)} ] = {_lua_quote(v)}" for k, v in target.headers]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_TOTAL = re.compile(r"(\d+) requests in")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKERR = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def run_wrk(target: Target, connections: int, seconds: float, lua_dir: str, cpus: set[int] | None) -> LoadResult:
    exe = wrk_path()
    assert exe is not None
    lua = write_lua(target, lua_dir)
    secs = max(1, round(seconds))
    argv = [exe, "-t1", f"-c{connections}", f"-d{secs}s", "--timeout", "10s", "-s", lua, target.url()]

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    out = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 30, preexec_fn=pin)
    text = out.stdout + out.stderr
    m = _RPS.search(text)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{text}")
    total = int(_TOTAL.search(text).group(1)) if _TOTAL.search(text) else 0  # type: ignore[union-attr]
    errors = 0
    if (n := _NON2XX.search(text)) is not None:
        errors += int(n.group(1))
    if (s := _SOCKERR.search(text)) is not None:
        errors += sum(int(x) for x in s.groups())
    return LoadResult(float(m.group(1)), total, errors, "wrk")


# ---------------------------------------------------------------------------------------------
# aiohttp fallback (only when wrk is missing)


async def _aiohttp_load(target: Target, connections: int, seconds: float) -> LoadResult:
    import aiohttp

    headers = dict(target.headers)
    done = 0
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            try:
                async with session.post(target.url(), data=target.body, headers=headers) as resp:
                    await resp.read()
                    if resp.status == 200:
                        done += 1
                    else:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - start
    return LoadResult(done / elapsed, done, errors, "aiohttp")


def run_load(target: Target, connections: int, seconds: float, lua_dir: str, cpus: set[int] | None) -> LoadResult:
    """wrk when installed, else the aiohttp loop (slower: figures are then bound by the client)."""
    if wrk_path():
        return run_wrk(target, connections, seconds, lua_dir, cpus)
    return asyncio.run(_aiohttp_load(target, connections, seconds))


# ---------------------------------------------------------------------------------------------
# answer checks


def check_stream(body: bytes, kind: str, events: int) -> str | None:
    """None when ``body`` is a complete stream of the expected shape, else what is wrong."""
    text = body.decode("utf-8", "replace")
    if kind == "openai":
        datas = [ln[6:] for ln in text.split("\n") if ln.startswith("data: ")]
        if not datas or datas[-1] != "[DONE]":
            return "stream does not end with data: [DONE]"
        content = 0
        for d in datas[:-1]:
            obj = orjson.loads(d)
            for choice in obj.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    content += 1
        if content < events - 2:
            return f"only {content} content chunks (expected {events - 2})"
        return None
    if "event: message_stop" not in text:
        return "stream has no message_stop event"
    deltas = text.count("event: content_block_delta")
    if deltas < 1:
        return "stream has no content_block_delta"
    return None
