"""Many credentials, one conversation per credential: selection, session affinity, failover,
cooldowns, Idempotency-Key and passthrough headers, through real ``crossroute serve`` processes,
the official SDKs and a fake upstream that tells which credential served each request."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import orjson
import pytest

from . import routing_support
from .conftest import CLIENT_KEY
from .gateway_process import GatewayProcess, free_port
from .routing_support import (
    KEYS,
    RoutingUpstream,
    ask,
    client,
    config,
    keys_since,
    last_key,
    msgs,
    pool,
    post,
    reload_to,
)

up = routing_support.up
fresh = routing_support.fresh
start_gateway = routing_support.start_gateway

Start = Callable[..., GatewayProcess]


_CLAUDE: dict[str, anthropic.Anthropic] = {}


def claude_ask(gw: GatewayProcess, user_id: str, text: str = "hi") -> None:
    c = _CLAUDE.get(gw.url)
    if c is None:
        c = _CLAUDE[gw.url] = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=20)
    c.messages.create(model="m", max_tokens=64, messages=[{"role": "user", "content": text}],
                      metadata={"user_id": user_id})


# Each source: how to send request ``i`` of session ``s`` with it.
SOURCES: dict[str, Callable[[GatewayProcess, str, int], None]] = {
    "x-session-id": lambda gw, s, i: ask(gw, f"turn {i}", headers={"X-Session-ID": s}) and None,
    "codex-session-id": lambda gw, s, i: ask(gw, f"turn {i}", headers={"Session-Id": s}) and None,
    "claude-code-user-id": lambda gw, s, i: claude_ask(
        gw, orjson.dumps({"device_id": "d1", "account_uuid": "a1", "session_id": s}).decode(), f"turn {i}"),
    "claude-code-legacy-user-id": lambda gw, s, i: claude_ask(
        gw, f"user_{'ab' * 32}_account_0c8b7b0a-1111-2222-3333-444455556666_session_{s}", f"turn {i}"),
    "prompt-cache-key": lambda gw, s, i: ask(gw, f"turn {i}", body={"prompt_cache_key": s}) and None,
}


def test_sessions_stick_and_new_sessions_spread(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh))
    for source, send in SOURCES.items():
        sessions = [f"5e5510{n:02d}-0000-4000-8000-{len(source):06d}00000{n}" for n in range(6)]
        per_session: dict[str, list[str]] = {s: [] for s in sessions}
        for i in range(3):  # interleaved: plain round-robin would move every session each turn
            for s in sessions:
                send(gw, s, i)
                per_session[s].append(last_key(fresh))
        for s, keys in per_session.items():
            assert len(set(keys)) == 1, f"{source}: session {s} moved: {keys}"
        first = Counter(keys[0] for keys in per_session.values())
        assert first == Counter({k: 2 for k in KEYS}), f"{source}: new sessions were not spread round-robin"


def test_growing_conversation_keeps_its_credential(fresh: RoutingUpstream, start_gateway: Start) -> None:
    """No explicit id: the message hash of turn 1 is inherited by turns 2 and 3."""
    gw = start_gateway(config(fresh))
    system = {"role": "system", "content": "You are terse."}
    convs = {n: [system, {"role": "user", "content": f"question number {n}"}] for n in range(4)}
    placed: dict[int, list[str]] = {n: [] for n in convs}
    for turn in range(3):
        for n, messages in convs.items():
            answer = ask(gw, messages=messages)
            placed[n].append(last_key(fresh))
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": f"more {turn}"}]
    for n, keys in placed.items():
        assert len(set(keys)) == 1, f"conversation {n} moved: {keys}"
    assert len({keys[0] for keys in placed.values()}) == 3  # 4 conversations over 3 keys


def _turns(fmt: str, system: str, exchanges: list[tuple[str, str]], question: str) -> tuple[str, dict[str, Any]]:
    """(path, body) of the next request of a conversation in the client format ``fmt``."""
    if fmt == "claude":
        messages: list[dict[str, Any]] = []
        for q, a in exchanges:
            messages += [{"role": "user", "content": [{"type": "text", "text": q}]},
                         {"role": "assistant", "content": [{"type": "text", "text": a}]}]
        messages.append({"role": "user", "content": question})
        return "/v1/messages", {"model": "m", "max_tokens": 64, "system": [{"type": "text", "text": system}],
                                "messages": messages}
    if fmt == "responses":
        items: list[dict[str, Any]] = []
        for q, a in exchanges:  # inline messages (role, no type) and typed ones, plus a reasoning item
            items += [{"role": "user", "content": q},
                      {"type": "reasoning", "id": "rs_1", "summary": []},
                      {"type": "message", "role": "assistant",
                       "content": [{"type": "output_text", "text": a}]}]
        items.append({"role": "user", "content": question})
        return "/v1/responses", {"model": "m", "instructions": system, "input": items}
    contents: list[dict[str, Any]] = []
    for q, a in exchanges:
        contents += [{"role": "user", "parts": [{"text": q}]}, {"role": "model", "parts": [{"text": a}]}]
    contents.append({"role": "user", "parts": [{"text": question}]})
    return "/v1beta/models/m:generateContent", {"systemInstruction": {"parts": [{"text": system}]},
                                                 "contents": contents}


def test_growing_conversation_in_other_client_formats(fresh: RoutingUpstream, start_gateway: Start) -> None:
    """Claude (system blocks), Responses (instructions, inline and typed items, reasoning skipped)
    and Gemini (systemInstruction, role model) conversations keep their first credential too."""
    gw = start_gateway(config(fresh))
    for fmt in ("claude", "responses", "gemini"):
        exchanges: list[tuple[str, str]] = []
        first = ""
        for turn in range(3):
            path, body = _turns(fmt, "Be brief.", exchanges, f"{fmt} question {turn}")
            status, raw, _ = post(gw, body, path=path)
            assert status == 200, raw
            if turn == 0:
                first = last_key(fresh)
            assert last_key(fresh) == first, f"{fmt}: turn {turn} moved"
            exchanges.append((f"{fmt} question {turn}", f"answer {turn}"))
            ask(gw, f"unrelated {fmt} {turn}")  # a new conversation in between moves the round-robin cursor


def test_affinity_off_is_plain_round_robin(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh, affinity=False))
    for _ in range(6):
        ask(gw, headers={"X-Session-ID": "same"})
    keys = keys_since(fresh, 0)
    assert keys[:3] != keys[3:4] * 3 and sorted(keys[:3]) == sorted(KEYS)
    assert keys[3:] == keys[:3]  # a b c a b c in the stable order


def test_fill_first(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh, strategy="fill-first", affinity=False))
    for i in range(4):
        ask(gw, f"q{i}")
    keys = keys_since(fresh, 0)
    assert len(set(keys)) == 1
    first = keys[0]
    fresh.fail_next[first] = [429]  # Retry-After: 1
    ask(gw)
    second = last_key(fresh)
    assert second != first
    n = len(fresh.requests)
    ask(gw)
    assert keys_since(fresh, n) == [second]  # the first is cooling down: not even tried
    time.sleep(1.1)
    ask(gw)
    assert last_key(fresh) == first  # cooldown over: fill-first returns to it


def claude_pool(upstream: RoutingUpstream, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """claude-api-key entries (one provider, one entry per key) with priority / weight."""
    return [{"base-url": upstream.base, "models": [{"name": "text", "alias": "m"}], **s} for s in specs]


def test_weighted_round_robin(fresh: RoutingUpstream, start_gateway: Start) -> None:
    cfg = config(fresh, strategy="weighted-round-robin", affinity=False, entries=[])
    cfg["claude-api-key"] = claude_pool(fresh, [
        {"api-key": "sk-heavy", "weight": 3}, {"api-key": "sk-light", "weight": 1},
        {"api-key": "sk-one", "weight": 1}, {"api-key": "sk-zero", "weight": 0},
    ])
    gw = start_gateway(cfg)
    for i in range(10):
        ask(gw, f"q{i}")
    keys = keys_since(fresh, 0)
    assert Counter(keys) == Counter({"sk-heavy": 6, "sk-light": 2, "sk-one": 2})  # weight 0: excluded
    # smooth: the heavy key never serves more than twice in a row
    assert all(keys[i:i + 3] != ["sk-heavy"] * 3 for i in range(len(keys) - 2))


def test_priority_tiers_and_affinity_above_priority(fresh: RoutingUpstream, start_gateway: Start) -> None:
    cfg = config(fresh, entries=[])
    cfg["claude-api-key"] = claude_pool(fresh, [
        {"api-key": "sk-hi1", "priority": 10}, {"api-key": "sk-hi2", "priority": 10}, {"api-key": "sk-lo"},
    ])
    gw = start_gateway(cfg)
    for i in range(6):
        ask(gw, headers={"X-Session-ID": f"s{i}"})
    assert Counter(keys_since(fresh, 0)) == Counter({"sk-hi1": 3, "sk-hi2": 3})
    fresh.fail_next.update({"sk-hi1": [429], "sk-hi2": [429]})
    ask(gw, headers={"X-Session-ID": "low"})
    assert last_key(fresh) == "sk-lo"  # the high tier is cooling down: the next tier serves
    time.sleep(1.1)
    ask(gw, headers={"X-Session-ID": "low"})
    assert last_key(fresh) == "sk-lo"  # a binding outranks priority
    ask(gw, headers={"X-Session-ID": "new"})
    assert last_key(fresh) in ("sk-hi1", "sk-hi2")  # new sessions go to the best tier again


@pytest.mark.parametrize("force", [False, True])
def test_prefix_and_force_model_prefix(force: bool, fresh: RoutingUpstream, start_gateway: Start) -> None:
    entries = [pool(fresh, ("sk-team",), name="team", prefix="team"), pool(fresh, ("sk-plain",), name="plain")]
    gw = start_gateway(config(fresh, affinity=False, entries=entries, **{"force-model-prefix": force}))
    for _ in range(4):
        ask(gw, model="team/m")
    assert set(keys_since(fresh, 0)) == {"sk-team"}
    assert all(r["body"]["model"] == "text" for r in fresh.requests)  # prefix and alias stripped
    n = len(fresh.requests)
    for _ in range(4):
        ask(gw, model="m")
    assert set(keys_since(fresh, n)) == ({"sk-plain"} if force else {"sk-plain", "sk-team"})
    status, _, _ = post(gw, {"model": "plain/m", "messages": msgs("hi")})
    assert status == 400  # no entry has the prefix "plain"
    listed = {m.id for m in client(gw).models.list()}
    assert "team/m" in listed and "m" in listed


def test_excluded_models_wildcards(fresh: RoutingUpstream, start_gateway: Start) -> None:
    models = ["gpt-4o", "gpt-4o-mini", "o3-pro", "claude-x"]
    entries = [
        pool(fresh, ("sk-a",), name="a", models=models, **{"excluded-models": ["*-mini", "claude-*"]}),
        pool(fresh, ("sk-b",), name="b", models=models, **{"excluded-models": ["o3*", "CLAUDE-?"]}),
    ]
    gw = start_gateway(config(fresh, affinity=False, entries=entries))

    def served(model: str) -> set[str]:
        n = len(fresh.requests)
        for _ in range(4):
            ask(gw, model=model)
        return set(keys_since(fresh, n))

    assert served("gpt-4o") == {"sk-a", "sk-b"}
    assert served("gpt-4o-mini") == {"sk-b"}
    assert served("o3-pro") == {"sk-a"}
    n = len(fresh.requests)
    status, raw, _ = post(gw, {"model": "claude-x", "messages": msgs("hi")})
    assert status == 400 and b"claude-x" in raw and len(fresh.requests) == n


# ---------------------------------------------------------------- failover and cooldowns


def test_failover_moves_the_session_and_it_stays(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh))
    c = client(gw)
    # 403 last: its cooldown (30 min) keeps that credential out for the rest of the test
    for status, stream in ((429, False), (429, True), (500, False), (500, True), (403, False)):
        h = {"X-Session-ID": f"conv-{status}-{stream}"}

        def send(h: dict[str, str] = h, stream: bool = stream) -> str:
            if stream:
                chunks = list(c.chat.completions.create(model="m", messages=msgs("hi"), stream=True,
                                                        extra_headers=h))
                return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            return str(c.chat.completions.create(model="m", messages=msgs("hi"), extra_headers=h)
                       .choices[0].message.content)

        assert send()
        bound = last_key(fresh)
        fresh.fail_next[bound] = [status]
        n = len(fresh.requests)
        assert send()  # the client sees success
        tried = keys_since(fresh, n)
        assert len(tried) == 2 and tried[0] == bound and tried[1] != bound, (status, stream, tried)
        moved = tried[1]
        time.sleep(1.1)  # the failed credential's cooldown (Retry-After 1 / transient 1 s) is over
        for _ in range(3):
            send()
            assert last_key(fresh) == moved, (status, stream)  # the session stays on its new credential
        assert f"(status {status})" in gw.log()  # the cooldown was logged


def test_a_credential_put_back_in_the_config_starts_without_its_cooldowns(fresh: RoutingUpstream,
                                                                          start_gateway: Start) -> None:
    cfg = config(fresh, strategy="fill-first", affinity=False)
    gw = start_gateway(cfg)
    ask(gw)
    first = last_key(fresh)
    fresh.fail_next[first] = [403, 401]  # 403: this model rests 30 min; 401: every model, 30 min
    ask(gw)
    assert last_key(fresh) != first
    fresh.fail_next[first] = [401]
    ask(gw, model="cut")  # another model: its 403 cooldown does not cover it, the 401 one will
    n = len(fresh.requests)
    ask(gw)
    assert first not in keys_since(fresh, n)  # resting
    reload_to(gw, config(fresh, strategy="fill-first", affinity=False,
                         entries=[pool(fresh, tuple(k for k in KEYS if k != first))]))
    reload_to(gw, cfg)  # put back (or enabled again): it starts clean, fill-first goes to it at once
    n = len(fresh.requests)
    ask(gw)
    ask(gw, model="cut")
    assert keys_since(fresh, n) == [first, first]


def test_connection_error_fails_over(fresh: RoutingUpstream, start_gateway: Start) -> None:
    dead = pool(fresh, ("sk-dead",), name="dead")
    dead["base-url"] = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    gw = start_gateway(config(fresh, affinity=False, entries=[dead, pool(fresh, ("sk-a",), name="live")]))
    for i in range(4):
        assert ask(gw, f"q{i}")
    assert set(keys_since(fresh, 0)) == {"sk-a"} and len(fresh.requests) == 4
    assert gw.log().count("connection error") == 1  # tried once, then cooling down


def test_timeout_before_the_first_byte_fails_over(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh, strategy="fill-first", affinity=False, **{"read-timeout-seconds": 1}))
    ask(gw)
    first = last_key(fresh)
    fresh.fail_next[first] = [0]  # this credential answers nothing
    n = len(fresh.requests)
    started = time.monotonic()
    assert ask(gw)  # the client still gets its answer, from the next credential
    assert 1.0 <= time.monotonic() - started < 10
    tried = keys_since(fresh, n)
    assert tried[0] == first and tried[-1] != first and len(tried) == 2
    assert "did not answer in time" in gw.log()


def test_disable_cooling(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh, strategy="fill-first", affinity=False, **{"disable-cooling": True}))
    ask(gw)
    first = last_key(fresh)
    fresh.fail_next[first] = [429]
    ask(gw)
    assert keys_since(fresh, 1)[0] == first and last_key(fresh) != first  # failover still happens
    ask(gw)
    assert last_key(fresh) == first  # but no cooldown: fill-first goes straight back
    assert "cooling down" not in gw.log()


def test_deprecated_claude_code_session_affinity_key(fresh: RoutingUpstream, start_gateway: Start) -> None:
    cfg = config(fresh)
    cfg["routing"] = {"strategy": "round-robin"}
    cfg["claude-code-session-affinity"] = True
    gw = start_gateway(cfg)
    assert "claude-code-session-affinity: deprecated" in gw.log()
    for s in ("one", "two", "three"):
        ask(gw, headers={"X-Session-ID": s})
        first = last_key(fresh)
        for _ in range(2):
            ask(gw, headers={"X-Session-ID": s})
            assert last_key(fresh) == first


def test_request_error_is_not_retried(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh))
    h = {"X-Session-ID": "conv-400"}
    ask(gw, headers=h)
    bound = last_key(fresh)
    fresh.fail_next[bound] = [400]
    n = len(fresh.requests)
    with pytest.raises(openai.BadRequestError) as exc:
        ask(gw, headers=h)
    assert exc.value.status_code == 400
    assert keys_since(fresh, n) == [bound]  # exactly one upstream request
    ask(gw, headers=h)
    assert last_key(fresh) == bound  # no cooldown, binding kept


def test_stream_cut_after_first_bytes_is_not_retried(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh))
    status, raw, headers = post(gw, {"model": "cut", "messages": msgs("hi"), "stream": True})
    assert status == 200 and headers["content-type"] == ["text/event-stream"]
    assert len(fresh.requests) == 1
    events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    parsed = [orjson.loads(e) for e in events[:-1]]
    assert parsed[0]["choices"][0]["delta"] is not None  # real content came first
    assert "error" in parsed[-1] and "broke off" in parsed[-1]["error"]["message"]
    assert all("error" not in e for e in parsed[:-1])
    with pytest.raises(openai.APIError):  # the SDK sees the in-stream error
        list(client(gw).chat.completions.create(model="cut", messages=msgs("hi"), stream=True))
    assert len(fresh.requests) == 2


def test_every_credential_cooling_down_gives_429_with_retry_after(fresh: RoutingUpstream,
                                                                  start_gateway: Start) -> None:
    gw = start_gateway(config(fresh, affinity=False))
    fresh.fail_next.update({k: [429] for k in KEYS})
    status, raw, headers = post(gw, {"model": "m", "messages": msgs("hi")})
    assert status == 429 and sorted(keys_since(fresh, 0)) == sorted(KEYS)
    assert headers.get("retry-after") == ["1"]
    n = len(fresh.requests)
    status, raw, headers = post(gw, {"model": "m", "messages": msgs("hi")})
    assert status == 429 and headers.get("retry-after") == ["1"]
    assert len(fresh.requests) == n  # nobody was asked: everyone is cooling down
    assert b"cooling down" in raw
    with pytest.raises(openai.RateLimitError) as exc:
        ask(gw)
    assert exc.value.response.headers["retry-after"] == "1"
    time.sleep(1.1)
    assert ask(gw)  # recovered


def test_request_retry_extra_round(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh, affinity=False, **{"request-retry": 1, "max-retry-interval": 3}))
    fresh.fail_next.update({k: [429] for k in KEYS})
    t0 = time.monotonic()
    assert ask(gw)
    assert len(fresh.requests) == 4  # three failures, then the second round succeeds
    assert time.monotonic() - t0 >= 0.9  # it waited for the Retry-After
    # waits longer than max-retry-interval are not made: the client gets the 429 at once
    gw2 = start_gateway(config(fresh, affinity=False, **{"request-retry": 2, "max-retry-interval": 0.5}))
    fresh.clear()
    fresh.fail_next.update({k: [429] for k in KEYS})
    t0 = time.monotonic()
    status, _, headers = post(gw2, {"model": "m", "messages": msgs("hi")})
    assert status == 429 and "retry-after" in headers and time.monotonic() - t0 < 0.9


# ---------------------------------------------------------------- headers


def test_idempotency_key_forwarded_only_when_sent_and_not_a_session_signal(fresh: RoutingUpstream,
                                                                           start_gateway: Start) -> None:
    gw = start_gateway(config(fresh))
    assert post(gw, {"model": "m", "messages": msgs("one")}, {"Idempotency-Key": "idem-123"})[0] == 200
    assert post(gw, {"model": "m", "messages": msgs("two")})[0] == 200
    sent = [{k.lower(): v for k, v in r["headers"].items()} for r in fresh.requests]
    assert sent[0].get("idempotency-key") == "idem-123"
    assert "idempotency-key" not in sent[1]  # never generated
    fresh.clear()
    for i in range(3):
        post(gw, {"model": "m", "messages": msgs(f"different conversation {i}")}, {"Idempotency-Key": "same"})
    assert sorted(keys_since(fresh, 0)) == sorted(KEYS)  # spread, not bound to one key


def test_passthrough_headers(fresh: RoutingUpstream, start_gateway: Start) -> None:
    fresh.extra_headers = [
        ("X-Request-Id", "req-42"), ("Set-Cookie", "a=b"), ("Keep-Alive", "timeout=5"),
        ("X-Hop", "1"), ("Connection", "X-Hop"), ("Trailer", "X-T"), ("Content-Encoding", "identity"),
        ("x-litellm-model", "x"), ("Access-Control-Allow-Origin", "*"),
    ]
    gw = start_gateway(config(fresh, **{"passthrough-headers": True}))
    status, raw, h = post(gw, {"model": "m", "messages": msgs("hi")})
    assert status == 200 and orjson.loads(raw)["choices"]
    assert h["x-upstream-id"] == ["fake-1"] and h["x-request-id"] == ["req-42"]
    for gone in ("set-cookie", "keep-alive", "x-hop", "trailer", "content-encoding", "x-litellm-model",
                 "access-control-allow-origin"):
        assert gone not in h, gone
    assert h["content-type"] == ["application/json"]
    assert h["content-length"] == [str(len(raw))]  # ours, not the upstream's
    assert h["server"] == ["granian"]  # the gateway's own header is not replaced by the upstream's
    status, raw, h = post(gw, {"model": "m", "messages": msgs("hi"), "stream": True})
    assert h["x-upstream-id"] == ["fake-1"] and h["content-type"] == ["text/event-stream"]


def test_upstream_cookies_are_never_kept_or_sent(fresh: RoutingUpstream, start_gateway: Start) -> None:
    """A CDN in front of a provider sets cookies (Cloudflare's __cf_bm, a backend's device id). A
    gateway that kept them would send one client's or account's cookies with every later request
    of every other one (linking accounts, leaking state): none is kept. The upstream is reached by
    host name, as real ones are (aiohttp's default jar ignores cookies from IP addresses)."""
    fresh.extra_headers = [("Set-Cookie", "__cf_bm=tracker-1; Path=/; HttpOnly"),
                           ("Set-Cookie", "device_id=dev-7; Path=/; Max-Age=3600")]
    entry = pool(fresh)
    entry["base-url"] = entry["base-url"].replace("127.0.0.1", "localhost")
    gw = start_gateway(config(fresh, entries=[entry]))
    for i in range(4):  # several keys of the pool, and the same key again
        assert post(gw, {"model": "m", "messages": msgs(f"conversation {i}")})[0] == 200
    assert len(fresh.requests) == 4
    for r in fresh.requests:
        assert "cookie" not in {k.lower() for k in r["headers"]}, r["headers"]


def test_passthrough_headers_off_by_default(fresh: RoutingUpstream, start_gateway: Start) -> None:
    fresh.extra_headers = [("X-Request-Id", "req-42")]
    gw = start_gateway(config(fresh))
    status, _, h = post(gw, {"model": "m", "messages": msgs("hi")})
    assert status == 200 and "x-upstream-id" not in h and "x-request-id" not in h
    _, _, h = post(gw, {"model": "m", "messages": msgs("hi"), "stream": True})
    assert "x-upstream-id" not in h


def test_routing_trace_header(fresh: RoutingUpstream, start_gateway: Start) -> None:
    """``X-Crossroute-Trace: 1``: candidates, skips and why, how each pick was made, each attempt."""
    import json

    backup = pool(fresh, ("sk-low",), name="low", priority=-1)
    gw = start_gateway(config(fresh, entries=[pool(fresh), backup]))
    body = {"model": "m", "messages": msgs("hi")}
    status, _, headers = post(gw, body, {"X-Session-ID": "traced"})
    assert status == 200 and "x-crossroute-trace" not in headers  # only when asked
    bound = last_key(fresh)
    fresh.fail_next[bound] = [500]
    status, _, headers = post(gw, body, {"X-Session-ID": "traced", "X-Crossroute-Trace": "1"})
    assert status == 200
    trace = json.loads(headers["x-crossroute-trace"][0])
    steps = trace["steps"]
    assert steps[0]["step"] == "candidates" and len(steps[0]["credentials"]) == 4
    chose = [s for s in steps if s["step"] == "chose"]
    assert chose[0]["by"] == "session"  # the binding decided the first pick
    assert chose[1]["by"] == "selector" and chose[1]["credential"] != chose[0]["credential"]
    skips = [s for s in steps if s["step"] == "skip"]
    assert {"lower priority", "already tried"} <= {s["reason"] for s in skips}
    assert [a["status"] for a in trace["attempts"]] == [500, 200]
    # the failed credential now cools for its model: the next traced call says until when
    status, _, headers = post(gw, body, {"X-Session-ID": "other", "X-Crossroute-Trace": "1"})
    trace = json.loads(headers["x-crossroute-trace"][0])
    cooling = [s for s in trace["steps"] if s["step"] == "skip" and s["reason"] == "cooling"]
    assert len(cooling) == 1 and cooling[0]["credential"] == chose[0]["credential"]
    assert cooling[0]["scope"] == "model text" and cooling[0]["until"] > time.time()
