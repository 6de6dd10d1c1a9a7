"""Shared pieces of the routing, reload and replica end-to-end tests.

- ``RoutingUpstream``: the fixture-replaying fake upstream plus two things these tests need: a
  ``slow`` scenario (the text stream spread over about a second, to keep a stream in flight while
  something else happens) and extra response headers on non-stream answers (passthrough tests).
- config builders for pools of credentials, a gateway factory that stops every process it
  started, ``served_by`` (which credential an upstream request used), and small HTTP helpers.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from .conftest import CLIENT_KEY
from .fake_upstream import FILES, FIXTURES, FakeUpstream
from .gateway_process import GatewayProcess

KEYS = ("sk-a", "sk-b", "sk-c")


class RoutingUpstream(FakeUpstream):
    def __init__(self) -> None:
        super().__init__()
        # added to every non-stream answer (streams are prepared before they could be changed)
        self.extra_headers: list[tuple[str, str]] = []
        self.slow_delay = 0.05  # seconds between the chunks of the ``slow`` scenario
        # the ``slow`` stream pauses half-way until this is set (tests clear it to hold a stream open)
        self.slow_gate = threading.Event()
        self.slow_gate.set()

    async def _serve(
        self, request: web.Request, kind: str, model: str | None, stream: bool | None
    ) -> web.StreamResponse:
        if kind == "openai":
            try:
                body = orjson.loads(await request.read())  # aiohttp caches the body for super()
            except orjson.JSONDecodeError:
                body = None
            if isinstance(body, dict) and body.get("model") == "slow" and body.get("stream"):
                await self._record(request, kind, None)
                return await self._slow(request)
        resp = await super()._serve(request, kind, model, stream)
        if self.extra_headers and isinstance(resp, web.Response) and not resp.prepared:
            for name, value in self.extra_headers:
                resp.headers.add(name, value)
        return resp

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        data = (FIXTURES / str(FILES["openai"]["text"][0])).read_bytes()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "x-upstream-id": "fake-1"})
        await resp.prepare(request)
        self.active_streams += 1
        try:
            step = max(1, len(data) // 12)
            for n, pos in enumerate(range(0, len(data), step)):
                if n == 6:
                    await asyncio.to_thread(self.slow_gate.wait, 15)
                await resp.write(data[pos : pos + step])
                await asyncio.sleep(self.slow_delay)
            await resp.write_eof()
        finally:
            self.active_streams -= 1
        return resp


@pytest.fixture(scope="module")
def up() -> Iterator[RoutingUpstream]:
    u = RoutingUpstream()
    u.start()
    yield u
    u.stop()


@pytest.fixture
def fresh(up: RoutingUpstream) -> RoutingUpstream:
    up.clear()
    up.extra_headers = []
    up.slow_gate.set()
    return up


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(cfg: dict[str, Any], name: str = "gw") -> GatewayProcess:
        workdir = tmp_path / f"{name}{len(started)}"
        workdir.mkdir()
        gw = GatewayProcess(cfg, workdir)
        started.append(gw)
        return gw.start()

    yield start
    for gw in started:
        gw.stop()


# ---------------------------------------------------------------- configs

BASE: dict[str, Any] = {
    "api-keys": [CLIENT_KEY],
    "read-timeout-seconds": 5,
    "connect-timeout-seconds": 2,
    "transient-error-cooldown-seconds": 1,
}


def pool(up: FakeUpstream, keys: tuple[str, ...] = KEYS, *, models: list[Any] | None = None,
         name: str = "pool", **entry: Any) -> dict[str, Any]:
    """One openai-compatibility entry with several api-key-entries (one provider, many keys)."""
    return {
        "name": name,
        "base-url": up.base + "/v1",
        "api-key-entries": [{"api-key": k} for k in keys],
        "models": models if models is not None else [{"name": "text", "alias": "m"}, "cut", "slow", "hang"],
        **entry,
    }


def config(up: FakeUpstream, *, strategy: str = "round-robin", affinity: bool = True,
           entries: list[dict[str, Any]] | None = None, **top: Any) -> dict[str, Any]:
    return {
        **BASE,
        "routing": {"strategy": strategy, "session-affinity": affinity, "session-affinity-ttl": "1h"},
        "openai-compatibility": entries if entries is not None else [pool(up)],
        **top,
    }


# ---------------------------------------------------------------- observing the upstream


def served_by(req: dict[str, Any]) -> str:
    h = {k.lower(): v for k, v in req["headers"].items()}
    key = h.get("authorization") or h.get("x-api-key") or h.get("x-goog-api-key") or ""
    return key.removeprefix("Bearer ")


def keys_since(up: FakeUpstream, start: int) -> list[str]:
    return [served_by(r) for r in up.requests[start:]]


def last_key(up: FakeUpstream) -> str:
    return served_by(up.requests[-1])


# ---------------------------------------------------------------- clients


_CLIENTS: dict[tuple[str, str], openai.OpenAI] = {}


def client(gw: GatewayProcess, key: str = CLIENT_KEY) -> openai.OpenAI:
    """An openai SDK client for the gateway, kept per URL and key (its connections are reused)."""
    c = _CLIENTS.get((gw.url, key))
    if c is None:
        c = _CLIENTS[(gw.url, key)] = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0,
                                                     timeout=20)
    return c


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def ask(gw: GatewayProcess, text: str = "hi", *, model: str = "m", headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None, messages: list[dict[str, Any]] | None = None) -> str:
    """One non-stream chat completion through the openai SDK; returns the answer text."""
    r = client(gw).chat.completions.create(
        model=model, messages=messages or msgs(text), extra_headers=headers or None, extra_body=body or None
    )  # type: ignore[call-overload]
    return str(r.choices[0].message.content)


def post(gw: GatewayProcess, body: dict[str, Any], headers: dict[str, str] | None = None,
         path: str = "/v1/chat/completions", key: str = CLIENT_KEY) -> tuple[int, bytes, dict[str, list[str]]]:
    """A raw POST (no SDK headers at all): status, body, headers (lower-case names, every value)."""
    h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(gw.url + path, data=json.dumps(body).encode(), headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            status, raw, msg = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, raw, msg = e.code, e.read(), e.headers
    out: dict[str, list[str]] = {}
    for name, value in msg.items():
        out.setdefault(name.lower(), []).append(value)
    return status, raw, out


def log_count(gw: GatewayProcess, text: str) -> int:
    return gw.log().count(text)


def wait_log(gw: GatewayProcess, text: str, count: int = 1, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_count(gw, text) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} did not appear {count} time(s) in the gateway log:\n{gw.log()[-3000:]}")


def write_raw(gw: GatewayProcess, text: str) -> None:
    """Replace config.yaml atomically with ``text`` as it is (no port fix-up)."""
    tmp = gw.config_path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(gw.config_path)


def reload_to(gw: GatewayProcess, cfg: dict[str, Any], timeout: float = 5.0) -> None:
    """Write ``cfg`` atomically and wait until the gateway logged that it applied it."""
    n = log_count(gw, "config reloaded")
    gw.write_config(cfg)
    wait_log(gw, "config reloaded", n + 1, timeout)
