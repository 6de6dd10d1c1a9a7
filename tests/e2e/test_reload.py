"""Hot reload of config.yaml under traffic: credentials, api-keys, models and routing change
without a restart; invalid files and no-op writes change nothing; streams in flight survive."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import openai
import pytest
import yaml

from . import routing_support
from .conftest import CLIENT_KEY
from .gateway_process import GatewayProcess
from .routing_support import (
    KEYS,
    RoutingUpstream,
    ask,
    client,
    config,
    last_key,
    log_count,
    msgs,
    pool,
    post,
    reload_to,
    wait_log,
    write_raw,
)

up = routing_support.up
fresh = routing_support.fresh
start_gateway = routing_support.start_gateway

Start = Callable[..., GatewayProcess]


def test_credentials_added_and_removed(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh, entries=[pool(fresh, ("sk-a", "sk-b"))]))
    bound: dict[str, str] = {}
    for i in range(4):
        ask(gw, headers={"X-Session-ID": f"s{i}"})
        bound[f"s{i}"] = last_key(fresh)
    assert Counter(bound.values()) == Counter({"sk-a": 2, "sk-b": 2})

    reload_to(gw, config(fresh, entries=[pool(fresh, ("sk-b", "sk-c"))]))  # sk-a out, sk-c in
    wait_log(gw, "dropped 2 session binding(s)")
    for _ in range(2):
        for s, before in bound.items():
            ask(gw, headers={"X-Session-ID": s})
            now = last_key(fresh)
            if before == "sk-a":
                assert now in ("sk-b", "sk-c"), "a removed credential served"
                bound[s] = now  # moved once, then stays
            else:
                assert now == before, "a session on a kept credential moved"
    seen = set()
    for i in range(4):
        ask(gw, headers={"X-Session-ID": f"new{i}"})
        seen.add(last_key(fresh))
    assert seen == {"sk-b", "sk-c"}  # the added credential serves new sessions
    assert "sk-a" not in {routing_support.served_by(r) for r in fresh.requests[4:]}


def test_disabling_a_credential_moves_its_sessions(fresh: RoutingUpstream, start_gateway: Start) -> None:
    entries = [pool(fresh, ("sk-a",), name="one"), pool(fresh, ("sk-b",), name="two")]
    gw = start_gateway(config(fresh, entries=entries))
    bound = {}
    for s in ("s1", "s2"):
        ask(gw, headers={"X-Session-ID": s})
        bound[s] = last_key(fresh)
    assert sorted(bound.values()) == ["sk-a", "sk-b"]
    entries[1]["disabled"] = True
    reload_to(gw, config(fresh, entries=entries))
    wait_log(gw, "dropped 1 session binding(s)")
    for s in ("s1", "s2", "s1", "s2"):
        ask(gw, headers={"X-Session-ID": s})
        assert last_key(fresh) == "sk-a"
    entries[1]["disabled"] = False
    reload_to(gw, config(fresh, entries=entries))
    for s in ("s1", "s2"):
        ask(gw, headers={"X-Session-ID": s})
        assert last_key(fresh) == "sk-a"  # re-enabled later: the moved sessions stay where they are


def test_api_keys_change(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh))
    assert ask(gw)
    reload_to(gw, {**config(fresh), "api-keys": ["new-client-key"]})
    with pytest.raises(openai.AuthenticationError):
        ask(gw)
    assert client(gw, "new-client-key").chat.completions.create(model="m", messages=msgs("hi")).choices


def test_model_alias_change(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh))
    assert ask(gw, model="m")
    reload_to(gw, config(fresh, entries=[pool(fresh, models=[{"name": "text", "alias": "renamed"}])]))
    assert ask(gw, model="renamed")
    assert fresh.requests[-1]["body"]["model"] == "text"
    status, raw, _ = post(gw, {"model": "m", "messages": msgs("hi")})
    assert status == 400 and b"'m'" in raw
    listed = {m.id for m in client(gw).models.list()}
    assert "renamed" in listed and "m" not in listed


def test_routing_fields_change(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh, affinity=False))
    for _ in range(3):
        ask(gw)
    assert sorted(routing_support.keys_since(fresh, 0)) == sorted(KEYS)  # round-robin

    reload_to(gw, config(fresh, strategy="fill-first", affinity=False))
    wait_log(gw, "routing selector rebuilt: fill-first")
    n = len(fresh.requests)
    for _ in range(3):
        ask(gw)
    assert len(set(routing_support.keys_since(fresh, n))) == 1  # fill-first

    reload_to(gw, config(fresh, strategy="round-robin", affinity=True))
    wait_log(gw, "routing selector rebuilt: session-affinity(round-robin)")
    for s in ("x", "y", "z"):
        ask(gw, headers={"X-Session-ID": s})
        first = last_key(fresh)
        for _ in range(2):
            ask(gw, headers={"X-Session-ID": s})
            assert last_key(fresh) == first  # affinity on now


@pytest.mark.parametrize("bad", ["yaml", "port"])
def test_invalid_file_is_rejected_and_the_old_config_keeps_serving(bad: str, fresh: RoutingUpstream,
                                                                    start_gateway: Start) -> None:
    gw = start_gateway(config(fresh))
    good = gw.config_path.read_text()
    if bad == "yaml":
        write_raw(gw, good.replace("api-keys:", "api-keys: [unclosed\n  oops:", 1))
        wait_log(gw, "YAML syntax error")
    else:
        write_raw(gw, yaml.safe_dump({**config(fresh), "api-keys": ["other"], "port": 0}))
        wait_log(gw, "port: must be between 1 and 65535, got 0")
    assert log_count(gw, "config reload rejected") == 1
    assert log_count(gw, "config reloaded") == 0
    assert ask(gw)  # the running config (and its client key) still serves
    # the watcher is still alive: a valid change afterwards is applied
    reload_to(gw, config(fresh, entries=[pool(fresh, models=[{"name": "text", "alias": "after"}])]))
    assert ask(gw, model="after")


def test_state_backend_change_needs_a_restart(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh))
    reload_to(gw, {**config(fresh, affinity=False), "state": {"redis-url": "redis://127.0.0.1:1/0"}})
    assert "state.redis-url changes need a restart" in gw.log()
    for _ in range(3):
        assert ask(gw)  # still in-process state, and the rest of the change applied
    assert sorted(routing_support.keys_since(fresh, 0)) == sorted(KEYS)
    assert "unreachable" not in gw.log()


def test_writing_the_same_content_does_nothing(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh))
    gw.write_config(gw.config)  # same bytes as at start
    time.sleep(0.6)
    assert log_count(gw, "config reloaded") == 0
    changed = config(fresh, affinity=False)
    reload_to(gw, changed)
    gw.write_config(changed)  # written a second time with the same content
    gw.write_config(changed)
    time.sleep(0.6)
    assert log_count(gw, "config reloaded") == 1
    assert ask(gw)


def test_stream_in_flight_survives_a_reload(fresh: RoutingUpstream, start_gateway: Start) -> None:
    gw = start_gateway(config(fresh, entries=[pool(fresh, ("sk-a",))]))
    result: dict[str, object] = {}

    def consume() -> None:
        try:
            chunks = list(client(gw).chat.completions.create(model="slow", messages=msgs("hi"), stream=True))
            result["text"] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            result["finish"] = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        except Exception as exc:  # reported below
            result["error"] = exc

    fresh.slow_gate.clear()  # the upstream holds the stream half-way until released
    t = threading.Thread(target=consume)
    t.start()
    deadline = time.monotonic() + 5
    while fresh.active_streams == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fresh.active_streams == 1
    # the serving credential is removed, the client key and the routing change, all mid-stream
    reload_to(gw, {**config(fresh, strategy="fill-first", entries=[pool(fresh, ("sk-b",))]),
                   "api-keys": [CLIENT_KEY, "k2"]})
    time.sleep(0.2)
    assert fresh.active_streams == 1 and t.is_alive(), "the stream should still be in flight"
    fresh.slow_gate.set()
    t.join(10)
    assert "error" not in result, result.get("error")
    assert str(result["text"]).startswith("The") and result["finish"] == "stop"
    ask(gw)
    assert last_key(fresh) == "sk-b"
