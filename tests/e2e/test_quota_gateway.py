"""Quota end to end: a real gateway process in front of a fake upstream whose credentials run out.

``QuotaUpstream`` behaves like the subscription services: every answer of a credential carries its
quota headers (Anthropic's unified 5 h / 7 d headers for the Claude kind, Codex's ``x-codex-*`` for
the Responses kind), and a credential that ran out answers 429 with ``status: rejected``, the
announced reset and a much longer ``Retry-After`` until that reset has passed, then refills.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from tests.redis_server import RedisServer, require_redis_server

from . import routing_support
from .conftest import CLIENT_KEY
from .fake_upstream import FakeUpstream, error_body
from .gateway_process import GatewayProcess
from .routing_support import BASE, post, served_by

start_gateway = routing_support.start_gateway


class QuotaUpstream(FakeUpstream):
    def __init__(self) -> None:
        super().__init__()
        # credential key -> {"used": 0..1, "reset_at": epoch, "refuse": bool, "week": 0..1}
        self.quota: dict[str, dict[str, Any]] = {}

    def make_app(self) -> web.Application:
        app = super().make_app()
        app.on_response_prepare.append(self._add_headers)
        return app

    @staticmethod
    def _key(request: web.Request) -> str:
        key = request.headers.get("authorization") or request.headers.get("x-api-key") or ""
        return key.removeprefix("Bearer ")

    def _state(self, key: str) -> dict[str, Any] | None:
        q = self.quota.get(key)
        if q is not None and q["refuse"] and time.time() >= q["reset_at"]:
            q.update(refuse=False, used=0.0, reset_at=time.time() + 5 * 3600)  # the window refilled
        return q

    def _headers(self, kind: str, q: dict[str, Any]) -> dict[str, str]:
        reset = str(int(q["reset_at"]))
        week_reset = str(int(time.time() + 3 * 86400))
        if kind == "claude":
            status = "rejected" if q["refuse"] else "allowed"
            h = {
                "anthropic-ratelimit-unified-status": status,
                "anthropic-ratelimit-unified-reset": reset,
                "anthropic-ratelimit-unified-5h-status": status,
                "anthropic-ratelimit-unified-5h-reset": reset,
                "anthropic-ratelimit-unified-7d-status": "allowed",
                "anthropic-ratelimit-unified-7d-utilization": f"{q['week']:.2f}",
                "anthropic-ratelimit-unified-7d-reset": week_reset,
                "anthropic-ratelimit-unified-representative-claim": "five_hour",
            }
            if not q["refuse"]:
                h["anthropic-ratelimit-unified-5h-utilization"] = f"{q['used']:.2f}"
            return h
        return {
            "x-codex-primary-used-percent": str(100 if q["refuse"] else round(q["used"] * 100)),
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-at": reset,
            "x-codex-secondary-used-percent": str(round(q["week"] * 100)),
            "x-codex-secondary-window-minutes": "10080",
            "x-codex-secondary-reset-at": week_reset,
            "x-codex-plan-type": "pro",
        }

    async def _add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        q = self._state(self._key(request))
        if q is not None:
            kind = "claude" if request.path.startswith("/v1/messages") else "responses"
            for name, value in self._headers(kind, q).items():
                response.headers[name] = value

    async def _serve(self, request: web.Request, kind: str, model: str | None, stream: bool | None
                     ) -> web.StreamResponse:
        q = self._state(self._key(request))
        if q is not None and q["refuse"]:
            await self._record(request, kind, model)
            # Retry-After far longer than the announced reset: the gateway must follow the reset
            return self._answer(request, kind, "", 429, error_body(kind, 429), headers={"Retry-After": "3600"})
        return await super()._serve(request, kind, model, stream)


def get(gw: GatewayProcess, path: str, key: str | None = CLIENT_KEY) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    req = urllib.request.Request(gw.url + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def chat(gw: GatewayProcess, model: str, trace: bool = False) -> tuple[int, dict[str, list[str]]]:
    status, _, headers = post(gw, {"model": model, "messages": [{"role": "user", "content": "hi"}]},
                              {"X-Crossroute-Trace": "1"} if trace else None)
    return status, headers


def claude_config(up: QuotaUpstream, keys: tuple[str, ...], **routing: Any) -> dict[str, Any]:
    return {
        **BASE,
        "routing": {"strategy": "fill-first", **routing},
        "claude-api-key": [{"api-key": k, "base-url": up.base,
                            "models": [{"name": "text", "alias": "c-text"}, {"name": "tools", "alias": "c-tools"}]}
                           for k in keys],
    }


def test_429_cools_the_account_until_its_reset_and_no_longer(
    quota_up: QuotaUpstream, start_gateway: Callable[..., GatewayProcess]
) -> None:
    keys = ("ck-a", "ck-b")
    for k in keys:
        quota_up.quota[k] = {"used": 0.5, "reset_at": time.time() + 3600, "refuse": False, "week": 0.2}
    gw = start_gateway(claude_config(quota_up, keys))
    assert chat(gw, "c-text")[0] == 200
    first = served_by(quota_up.requests[-1])  # fill-first: this key takes everything while it can
    other = next(k for k in keys if k != first)
    reset = int(time.time()) + 3
    quota_up.quota[first].update(refuse=True, reset_at=reset)

    n = len(quota_up.requests)
    assert chat(gw, "c-text")[0] == 200  # 429 from the first key, failed over to the other
    assert [served_by(r) for r in quota_up.requests[n:]] == [first, other]

    # the whole account rests, for every model: the first key is not even tried for c-tools
    n = len(quota_up.requests)
    status, headers = chat(gw, "c-tools", trace=True)
    assert status == 200
    assert [served_by(r) for r in quota_up.requests[n:]] == [other]
    trace = json.loads(headers["x-crossroute-trace"][0])
    skips = [s for s in trace["steps"] if s["step"] == "skip"]
    assert len(skips) == 1 and skips[0]["reason"] == "cooling" and skips[0]["scope"] == "credential"
    assert skips[0]["until"] == reset  # exactly the announced reset, not Retry-After's hour
    chose = [s for s in trace["steps"] if s["step"] == "chose"]
    assert chose and chose[-1]["by"] in ("only", "selector")
    assert trace["attempts"][-1]["status"] == 200

    # once the reset has passed the first key serves again at once (fill-first prefers it)
    time.sleep(max(0.0, reset - time.time()) + 0.3)
    n = len(quota_up.requests)
    assert chat(gw, "c-text")[0] == 200
    assert [served_by(r) for r in quota_up.requests[n:]] == [first]


def test_every_account_refusing_says_when_to_come_back(
    quota_up: QuotaUpstream, start_gateway: Callable[..., GatewayProcess]
) -> None:
    reset = int(time.time()) + 60
    quota_up.quota["ck-solo"] = {"used": 1.0, "reset_at": reset, "refuse": True, "week": 0.5}
    gw = start_gateway(claude_config(quota_up, ("ck-solo",)))
    status, headers = chat(gw, "c-text")
    assert status == 429
    n = len(quota_up.requests)
    status, headers = chat(gw, "c-text", trace=True)  # cooling: answered without asking the upstream
    assert status == 429 and len(quota_up.requests) == n
    wait = int(headers["retry-after"][0])
    assert 50 <= wait <= 61  # until the reset, not Retry-After's 3600


def codex_config(up: QuotaUpstream, keys: tuple[str, ...], **routing: Any) -> dict[str, Any]:
    return {
        **BASE,
        "routing": {"strategy": "round-robin", **routing},
        "codex-api-key": [{"api-key": k, "base-url": up.base + "/v1", "models": [{"name": "text", "alias": "x-text"}]}
                          for k in keys],
    }


def test_codex_usage_route_answers_from_pooled_quota(
    quota_up: QuotaUpstream, start_gateway: Callable[..., GatewayProcess]
) -> None:
    now = time.time()
    quota_up.quota["cx-a"] = {"used": 0.2, "reset_at": now + 3600, "refuse": False, "week": 0.1}
    quota_up.quota["cx-b"] = {"used": 0.6, "reset_at": now + 1200, "refuse": False, "week": 0.3}
    gw = start_gateway(codex_config(quota_up, ("cx-a", "cx-b")))
    assert get(gw, "/backend-api/wham/usage") == (200, {"plan_type": "plus", "rate_limit": None})  # nothing seen yet
    for _ in range(2):
        assert chat(gw, "x-text")[0] == 200
    assert sorted(served_by(r) for r in quota_up.requests) == ["cx-a", "cx-b"]
    for path in ("/backend-api/wham/usage", "/api/codex/usage"):
        status, body = get(gw, path)
        assert status == 200, body
        assert body["plan_type"] == "pro"
        rl = body["rate_limit"]
        assert rl["allowed"] is True and rl["limit_reached"] is False
        p = rl["primary_window"]
        assert p["used_percent"] == 40 and p["limit_window_seconds"] == 18000
        assert p["reset_at"] == int(now + 1200) and 1100 <= p["reset_after_seconds"] <= 1200
        assert rl["secondary_window"]["used_percent"] == 20
        assert rl["secondary_window"]["limit_window_seconds"] == 604800
    status, _ = get(gw, "/backend-api/wham/usage", key=None)
    assert status == 401
    status, _ = get(gw, "/backend-api/wham/usage", key="wrong-key")
    assert status == 401


def test_quota_aware_sends_new_sessions_to_the_most_headroom(
    quota_up: QuotaUpstream, start_gateway: Callable[..., GatewayProcess]
) -> None:
    now = time.time()
    quota_up.quota["cx-full"] = {"used": 0.9, "reset_at": now + 4 * 3600, "refuse": False, "week": 0.1}
    quota_up.quota["cx-room"] = {"used": 0.1, "reset_at": now + 4 * 3600, "refuse": False, "week": 0.1}
    gw = start_gateway(codex_config(quota_up, ("cx-full", "cx-room"), **{"quota-aware": True,
                                                                          "session-affinity": True}))
    # learn both accounts (each is tried first while it has no reading)
    for i in range(2):
        status, _, _ = post(gw, {"model": "x-text", "messages": [{"role": "user", "content": f"warm {i}"}]},
                            {"X-Session-ID": f"warm-{i}"})
        assert status == 200
    assert sorted(served_by(r) for r in quota_up.requests) == ["cx-full", "cx-room"]
    n = len(quota_up.requests)
    for i in range(6):
        status, _, headers = post(gw, {"model": "x-text", "messages": [{"role": "user", "content": f"new {i}"}]},
                                  {"X-Session-ID": f"new-{i}", "X-Crossroute-Trace": "1"})
        assert status == 200
    assert [served_by(r) for r in quota_up.requests[n:]] == ["cx-room"] * 6
    trace = json.loads(headers["x-crossroute-trace"][0])
    quota = next(s for s in trace["steps"] if s["step"] == "quota")
    assert len(quota["headroom"]) == 2 and all(v is not None for v in quota["headroom"].values())


def test_quota_aware_replicas_route_by_what_another_one_read(
    quota_up: QuotaUpstream, start_gateway: Callable[..., GatewayProcess]
) -> None:
    now = time.time()
    quota_up.quota["cx-full"] = {"used": 0.97, "reset_at": now + 4 * 3600, "refuse": False, "week": 0.1}
    quota_up.quota["cx-room"] = {"used": 0.1, "reset_at": now + 4 * 3600, "refuse": False, "week": 0.1}
    with RedisServer(require_redis_server()) as redis:
        cfg = {**codex_config(quota_up, ("cx-full", "cx-room"), **{"quota-aware": True, "session-affinity": True}),
               "state": {"redis-url": redis.url}}
        a = start_gateway(cfg, "gw-a")
        b = start_gateway(cfg, "gw-b")
        for i in range(2):  # a learns both accounts (each is tried first while it has no reading)
            status, _, _ = post(a, {"model": "x-text", "messages": [{"role": "user", "content": f"warm {i}"}]},
                                {"X-Session-ID": f"warm-{i}"})
            assert status == 200
        assert sorted(served_by(r) for r in quota_up.requests) == ["cx-full", "cx-room"]
        time.sleep(3.0)  # a publishes its readings and b takes them in (a round a second each)
        n = len(quota_up.requests)
        for i in range(4):  # b never heard from either account, yet knows cx-full is nearly spent
            status, _, _ = post(b, {"model": "x-text", "messages": [{"role": "user", "content": f"new {i}"}]},
                                {"X-Session-ID": f"new-{i}"})
            assert status == 200
        assert [served_by(r) for r in quota_up.requests[n:]] == ["cx-room"] * 4
        # and a bound session leaves the nearly spent account on either replica
        n = len(quota_up.requests)
        assert post(b, {"model": "x-text", "messages": [{"role": "user", "content": "warm 0"}]},
                    {"X-Session-ID": "warm-0"})[0] == 200
        assert post(b, {"model": "x-text", "messages": [{"role": "user", "content": "warm 1"}]},
                    {"X-Session-ID": "warm-1"})[0] == 200
        assert [served_by(r) for r in quota_up.requests[n:]] == ["cx-room"] * 2
