"""The Responses API over WebSocket (issue 10) against a running gateway: the official openai SDK
(``client.responses.connect()``), raw WebSocket clients and the real Codex CLI downstream; the fake
WebSocket upstream (tests/e2e/fake_ws_upstream.py) and the HTTP fake upstream of all four formats
upstream."""

from __future__ import annotations

import json
import signal
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from . import cli_support as cs
from .conftest import CLIENT_KEY, provider_config
from .fake_upstream import FakeUpstream
from .fake_ws_upstream import KEY, TEXT, TOOL_TEXT, FakeWsUpstream
from .gateway_process import GatewayProcess
from .test_quota_accounts import auth_list

TERMINAL = ("response.completed", "response.failed", "response.incomplete", "error")
TOOL = {"type": "function", "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
WS_MODELS = ["text", "tools", "cut", "failed", "hang", "slow300", "slow500-mid", "ratelimited", "many400"]


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def ws_config(ws_up: FakeWsUpstream, http_up: FakeUpstream, **extra: Any) -> dict[str, Any]:
    cfg = provider_config(http_up)
    cfg["codex-api-key"] = [*cfg.get("codex-api-key", []), {
        "api-key": KEY, "base-url": ws_up.base + "/v1", "websockets": True,
        "models": [{"name": m, "alias": f"ws-{m}"} for m in WS_MODELS] + [{"name": "text", "alias": "gpt-5.5"}],
    }]
    cfg["openai-compatibility"] = [*cfg.get("openai-compatibility", []), {
        "name": "ws-compat", "base-url": ws_up.base + "/v1", "responses": True, "websockets": True,
        "api-key-entries": [{"api-key": KEY2}], "models": [{"name": "text", "alias": "oc-text"}],
    }]
    return {"api-keys": [CLIENT_KEY], "read-timeout-seconds": 10, "connect-timeout-seconds": 2,
            "disable-cooling": True, **cfg, **extra}


KEY2 = KEY + "-second"


@pytest.fixture(scope="module")
def ws_up() -> Iterator[FakeWsUpstream]:
    up = FakeWsUpstream(KEY, KEY2).start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gw(ws_up: FakeWsUpstream, upstream: FakeUpstream) -> Iterator[GatewayProcess]:
    g = GatewayProcess(ws_config(ws_up, upstream, **{"body-limit-mb": 1})).start()
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def _clean(ws_up: FakeWsUpstream, upstream: FakeUpstream) -> None:
    ws_up.clear()
    upstream.clear()


def ws_url(g: GatewayProcess, path: str = "/v1/responses") -> str:
    return g.url.replace("http://", "ws://") + path


def open_ws(g: GatewayProcess, **kw: Any) -> ClientConnection:
    headers = kw.pop("headers", {"Authorization": f"Bearer {CLIENT_KEY}"})
    return connect(ws_url(g, kw.pop("path", "/v1/responses")), additional_headers=headers, open_timeout=10,
                   max_size=None, **kw)


def turn(ws: ClientConnection, msg: dict[str, Any], timeout: float = 15) -> list[dict[str, Any]]:
    """Send one message; every event up to and including the terminal one."""
    ws.send(json.dumps({"type": "response.create", **msg}))
    events = []
    while True:
        ev = json.loads(ws.recv(timeout))
        events.append(ev)
        if ev.get("type") in TERMINAL:
            return events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e.get("delta", "") for e in events if e.get("type") == "response.output_text.delta")


def alive(g: GatewayProcess) -> bool:
    try:
        with urllib.request.urlopen(g.url + "/healthz", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def wait_for(pred: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def sdk(g: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=g.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def sdk_turn(conn: Any, **kw: Any) -> list[Any]:
    conn.response.create(**kw)
    events = []
    for ev in conn:
        events.append(ev)
        if ev.type in TERMINAL:
            break
    return events


# ------------------------------------------------------------------ the openai SDK, WebSocket upstream
def test_sdk_multi_turn_tool_calls_incremental(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    """Three turns with a tool call over client.responses.connect(): each later turn sends only its new
    items with previous_response_id, and only those reach the upstream, over one upstream connection."""
    with sdk(gw).responses.connect() as conn:
        ev1 = sdk_turn(conn, model="ws-tools", input=[user("Weather in Paris?")], tools=[TOOL])
        done1 = ev1[-1]
        assert done1.type == "response.completed", ev1[-1]
        call = done1.response.output[0]
        assert call.type == "function_call" and call.name == "get_weather"
        out = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}
        ev2 = sdk_turn(conn, model="ws-tools", previous_response_id=done1.response.id, input=[out], tools=[TOOL])
        assert ev2[-1].type == "response.completed", ev2[-1]
        assert ev2[-1].response.output[0].content[0].text == TOOL_TEXT
        ev3 = sdk_turn(conn, model="ws-tools", previous_response_id=ev2[-1].response.id, input=[user("Thanks")],
                       tools=[TOOL])
        assert ev3[-1].type == "response.completed"
    creates = ws_up.creates()
    assert len(creates) == 3
    assert len(ws_up.connections) == 1, "every turn must reuse the session's upstream connection"
    assert "previous_response_id" not in creates[0] and creates[0]["input"] == [user("Weather in Paris?")]
    assert creates[1]["previous_response_id"] == done1.response.id
    assert creates[1]["input"] == [out], "only the new item goes upstream"
    assert creates[2]["previous_response_id"] == ev2[-1].response.id and creates[2]["input"] == [user("Thanks")]
    headers = {k.lower(): v for k, v in ws_up.connections[0].headers.items()}
    assert headers["openai-beta"].startswith("responses_websockets=")
    assert headers["authorization"] == f"Bearer {KEY}"
    assert not any(k.startswith("x-crossroute") for k in headers), headers
    assert all("stream" not in c for c in creates)


def test_sdk_text_and_beta_header_kept(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    """The client's own responses_websockets beta value is the one that goes upstream."""
    client = sdk(gw)
    with client.responses.connect(extra_headers={"OpenAI-Beta": "responses_websockets=2099-01-01"}) as conn:
        events = sdk_turn(conn, model="ws-text", input="Say hello")
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == TEXT
    assert ws_up.connections[0].headers["OpenAI-Beta"] == "responses_websockets=2099-01-01"
    # one access-log line per turn, and one for the session
    assert wait_for(lambda: "WS-TURN /v1/responses 200 responses model=ws-text credential=codex#" in gw.log()), \
        gw.log()[-2000:]
    assert wait_for(lambda: "WS /v1/responses 101 responses" in gw.log())


# ------------------------------------------------------------------ prewarm
def test_prewarm_goes_to_a_websocket_upstream(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    with open_ws(gw) as ws:
        warm = turn(ws, {"model": "ws-text", "generate": False, "input": [user("context")], "tools": [TOOL]})
        assert [e["type"] for e in warm] == ["response.created", "response.completed"]
        done = turn(ws, {"model": "ws-text", "previous_response_id": warm[-1]["response"]["id"],
                         "input": [user("now answer")]})
    assert text_of(done) == TEXT
    creates = ws_up.creates()
    assert creates[0]["generate"] is False
    assert creates[1]["previous_response_id"] == warm[-1]["response"]["id"]
    assert creates[1]["input"] == [user("now answer")]
    assert len(ws_up.connections) == 1


def test_prewarm_answered_locally_for_an_http_upstream(gw: GatewayProcess, upstream: FakeUpstream) -> None:
    with open_ws(gw) as ws:
        warm = turn(ws, {"model": "responses-text", "generate": False, "input": [user("context")]})
        assert [e["type"] for e in warm] == ["response.created", "response.completed"]
        rid = warm[-1]["response"]["id"]
        assert rid.startswith("resp_prewarm_")
        assert warm[-1]["response"]["usage"]["total_tokens"] == 0
        assert not upstream.requests, "a prewarm must not reach an HTTP upstream"
        done = turn(ws, {"model": "responses-text", "previous_response_id": rid, "input": [user("now answer")]})
    assert done[-1]["type"] == "response.completed", done[-1]
    assert text_of(done) == cs.expected_text("responses")
    body = upstream.requests[-1]["body"]
    assert "previous_response_id" not in body and "generate" not in body
    assert body["input"] == [user("context"), user("now answer")]


# ------------------------------------------------------------------ transcript replacement, merge
def test_transcript_replacement_after_compaction(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    """A full history again without previous_response_id (as after a local compaction) goes out in full,
    never appended to the stale state, and orphaned function calls are removed."""
    with open_ws(gw) as ws:
        first = turn(ws, {"model": "ws-text", "input": [user("one")]})
        second = turn(ws, {"model": "ws-text", "previous_response_id": first[-1]["response"]["id"],
                           "input": [user("two")]})
        assert second[-1]["type"] == "response.completed"
        summary = user("Another language model started to solve this problem and produced a summary:\nstuff")
        assistant = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}
        orphan = {"type": "function_call", "call_id": "call_gone", "name": "get_weather", "arguments": "{}"}
        replaced = turn(ws, {"model": "ws-text", "input": [summary, assistant, orphan, user("three")]})
        assert replaced[-1]["type"] == "response.completed"
        after = turn(ws, {"model": "ws-text", "previous_response_id": replaced[-1]["response"]["id"],
                          "input": [user("four")]})
        assert after[-1]["type"] == "response.completed"
    creates = ws_up.creates()
    assert "previous_response_id" not in creates[2], creates[2]
    assert creates[2]["input"] == [summary, assistant, user("three")]
    assert creates[3]["input"] == [user("four")]
    assert creates[3]["previous_response_id"] == replaced[-1]["response"]["id"]


def test_follow_up_without_previous_id_is_merged(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    """A developer message after a turn, without previous_response_id, continues the conversation."""
    with open_ws(gw) as ws:
        first = turn(ws, {"model": "ws-text", "input": [user("one")]})
        dev = {"type": "message", "role": "developer", "content": "be brief"}
        turn(ws, {"model": "ws-text", "input": [dev]})
    creates = ws_up.creates()
    assert creates[1]["previous_response_id"] == first[-1]["response"]["id"]
    assert creates[1]["input"] == [dev]


def test_http_upstream_gets_the_merged_history(gw: GatewayProcess, upstream: FakeUpstream) -> None:
    with open_ws(gw) as ws:
        first = turn(ws, {"model": "responses-text", "input": [user("one")]})
        assert first[-1]["type"] == "response.completed", first[-1]
        output = first[-1]["response"]["output"]
        # the client repeats an output item it already got: removed as a duplicate by id
        second = turn(ws, {"model": "responses-text", "previous_response_id": first[-1]["response"]["id"],
                           "input": [output[-1], user("two")]})
        assert second[-1]["type"] == "response.completed"
    body = upstream.requests[-1]["body"]
    assert "previous_response_id" not in body
    assert body["input"] == [user("one"), *output, user("two")]


@pytest.mark.parametrize("kind", ["openai", "claude", "gemini", "responses"])
def test_ws_client_served_by_each_http_format(gw: GatewayProcess, kind: str) -> None:
    with sdk(gw).responses.connect() as conn:
        events = sdk_turn(conn, model=f"{kind}-text", input=[user("hi")])
        assert events[-1].type == "response.completed", events[-1]
        again = sdk_turn(conn, model=f"{kind}-text", previous_response_id=events[-1].response.id,
                         input=[user("again")])
        assert again[-1].type == "response.completed", again[-1]
    got = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert got.strip() == cs.expected_text(kind).strip()


def test_http_clients_served_by_a_websocket_upstream(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    client = sdk(gw)
    stream = client.responses.create(model="ws-text", input="hi", stream=True)
    assert "".join(e.delta for e in stream if e.type == "response.output_text.delta") == TEXT
    whole = client.responses.create(model="ws-text", input="hi")
    assert whole.output_text == TEXT
    chat = client.chat.completions.create(model="ws-text", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chat if c.choices) == TEXT
    plain = client.chat.completions.create(model="ws-text", messages=[{"role": "user", "content": "hi"}])
    assert plain.choices[0].message.content == TEXT
    assert len(ws_up.creates()) == 4


# ------------------------------------------------------------------ the pool: eviction and failures
def test_idle_connection_evicted_then_turn_sent_in_full(ws_up: FakeWsUpstream, upstream: FakeUpstream,
                                                        tmp_path: Path) -> None:
    g = GatewayProcess(ws_config(ws_up, upstream, **{"upstream-websocket-idle-seconds": 0.4}), tmp_path).start()
    try:
        with open_ws(g) as ws:
            first = turn(ws, {"model": "ws-text", "input": [user("one")]})
            assert wait_for(lambda: ws_up.connections[0].closed_by == "client", 5), "idle connection not closed"
            second = turn(ws, {"model": "ws-text", "previous_response_id": first[-1]["response"]["id"],
                               "input": [user("two")]})
            assert second[-1]["type"] == "response.completed", second[-1]
        creates = ws_up.creates()
        assert len(ws_up.connections) == 2
        assert "previous_response_id" not in creates[1], "a new connection cannot know the last response"
        assert creates[1]["input"] == [user("one"), *first[-1]["response"]["output"], user("two")]
    finally:
        g.stop()


def test_upstream_closes_mid_turn(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    with open_ws(gw) as ws:
        cut = turn(ws, {"model": "ws-cut", "input": [user("one")]})
        assert cut[-1]["type"] == "error", cut[-1]
        assert "closed" in json.dumps(cut[-1]).lower() or "broke off" in json.dumps(cut[-1]).lower()
        nxt = turn(ws, {"model": "ws-text", "input": [user("two")]})
        assert text_of(nxt) == TEXT
    assert len(ws_up.connections) == 2, "the next turn needs a fresh upstream connection"
    assert alive(gw)


def test_connection_limit_error_retried_in_full(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    ws_up.limit_after = 1
    with open_ws(gw) as ws:
        first = turn(ws, {"model": "ws-text", "input": [user("one")]})
        second = turn(ws, {"model": "ws-text", "previous_response_id": first[-1]["response"]["id"],
                           "input": [user("two")]})
    assert second[-1]["type"] == "response.completed", second[-1]
    assert len(ws_up.connections) == 2
    retried = ws_up.connections[1].messages[0]
    assert "previous_response_id" not in retried
    assert retried["input"] == [user("one"), *first[-1]["response"]["output"], user("two")]


def test_response_failed_evicts_the_connection(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    with open_ws(gw) as ws:
        failed = turn(ws, {"model": "ws-failed", "input": [user("one")]})
        assert failed[-1]["type"] in ("response.failed", "error"), failed[-1]
        ok = turn(ws, {"model": "ws-text", "input": [user("two")]})
        assert ok[-1]["type"] == "response.completed"
    assert len(ws_up.connections) == 2
    assert wait_for(lambda: ws_up.connections[0].closed_by == "client")


def test_client_disconnect_cancels_the_upstream_turn(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    ws = open_ws(gw)
    ws.send(json.dumps({"type": "response.create", "model": "ws-hang", "input": [user("one")]}))
    assert [json.loads(ws.recv(10))["type"] for _ in range(2)] == ["codex.rate_limits", "response.created"]
    t0 = time.monotonic()
    ws.close()
    # granian sends its close frame once the session is dropped: nothing of the cancelled turn may keep it
    assert time.monotonic() - t0 < 3, "the gateway's close frame came late (a reference cycle kept the session)"
    assert wait_for(lambda: ws_up.connections and ws_up.connections[0].closed_by == "client", 5), \
        "the upstream connection of a cancelled turn must be closed"
    assert alive(gw)


# ------------------------------------------------------------------ bad input and refused upgrades
def test_bad_messages_get_error_events_and_the_connection_stays(gw: GatewayProcess) -> None:
    with open_ws(gw) as ws:
        def error_for(raw: str | bytes) -> dict[str, Any]:
            ws.send(raw)
            ev = json.loads(ws.recv(10))
            assert ev["type"] == "error", ev
            assert ev["status"] == 400 and ev["error"]["message"]
            return ev

        assert "not valid JSON" in error_for("{nope")["error"]["message"]
        assert "JSON object" in error_for("[1, 2]")["error"]["message"]
        assert "before response.create" in error_for(json.dumps({"type": "response.append", "input": []}))[
            "error"]["message"]
        assert "'session.update'" in error_for(json.dumps({"type": "session.update"}))["error"]["message"]
        no_model = error_for(json.dumps({"type": "response.create", "input": []}))
        assert no_model["error"]["param"] == "model" and "model" in no_model["error"]["message"]
        bad_input = error_for(json.dumps({"type": "response.create", "model": "ws-text", "input": 42}))
        assert bad_input["error"]["param"] == "input"
        assert "'input'" in bad_input["error"]["message"]
        unknown = turn(ws, {"model": "no-such-model", "input": "hi"})
        assert unknown[-1]["type"] == "error" and unknown[-1]["status"] == 400
        binary = json.dumps({"type": "response.create", "model": "ws-text", "input": "hi"}).encode()
        ws.send(binary)  # a binary frame with JSON is a message too
        events = []
        while not events or events[-1]["type"] not in TERMINAL:
            events.append(json.loads(ws.recv(10)))
        assert text_of(events) == TEXT
        assert text_of(turn(ws, {"model": "ws-text", "input": "hi"})) == TEXT
    assert alive(gw)


def test_oversized_frame_closes_the_connection(gw: GatewayProcess) -> None:
    """Over body-limit-mb (1 MiB here): an error event that says so, then the gateway closes the
    connection (granian 2.8 sends its close frame without a code, so 1009 is in the event's text)."""
    with open_ws(gw) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "ws-text", "input": "x" * (2 * 1024 * 1024)}))
        ev = json.loads(ws.recv(10))
        assert ev["type"] == "error" and ev["error"]["code"] == "message_too_big", ev
        assert "1009" in ev["error"]["message"]
        with pytest.raises(ConnectionClosed):
            ws.recv(10)
    assert alive(gw)


@pytest.mark.parametrize(("headers", "path", "status"), [
    ({"Authorization": "Bearer wrong"}, "/v1/responses", 401),
    ({}, "/v1/responses", 401),
    ({"Authorization": f"Bearer {CLIENT_KEY}", "Origin": "https://evil.example"}, "/v1/responses", 403),
    ({"Authorization": f"Bearer {CLIENT_KEY}"}, "/v1/chat/completions", 404),
])
def test_refused_upgrades_are_http_statuses(gw: GatewayProcess, headers: dict[str, str], path: str,
                                            status: int) -> None:
    with pytest.raises(InvalidStatus) as info:
        open_ws(gw, headers=headers, path=path)
    assert info.value.response.status_code == status
    assert alive(gw)


def test_codex_path_upgrades(gw: GatewayProcess) -> None:
    with open_ws(gw, path="/backend-api/codex/responses") as ws:
        assert text_of(turn(ws, {"model": "ws-text", "input": "hi"})) == TEXT


# ------------------------------------------------------------------ the real Codex CLI
def test_codex_cli_over_websocket(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    """codex exec with supports_websockets = true: it prewarms, then sends its turn over the same
    WebSocket; both reach the WebSocket upstream over one upstream connection."""
    codex = codex_or_skip()
    home = Path(tempfile.mkdtemp(prefix="crossroute-codex-ws-"))
    (home / "work").mkdir()
    env = cs.codex_env(home, gw.url, CLIENT_KEY, "gpt-5.5", websockets=True)
    run = cs.run_cli([codex, "exec", "--skip-git-repo-check", "Say hello"], env, home / "work", timeout=120)
    info = f"rc={run.returncode}\nstdout:\n{run.stdout[-2000:]}\nstderr:\n{run.stderr[-3000:]}\n{gw.log()[-3000:]}"
    assert run.returncode == 0, info
    assert run.stdout.strip() == TEXT, info
    creates = ws_up.creates()
    assert len(creates) >= 2, info
    assert creates[0].get("generate") is False, "Codex prewarms first"
    assert creates[1]["previous_response_id"], "the turn continues the prewarmed response incrementally"
    assert len(ws_up.connections) == 1, info
    assert (ws_up.connections[0].headers.get("User-Agent") or "").startswith("codex")


# ------------------------------------------------------------------ newer client events
def test_steer_goes_to_the_websocket_upstream_of_the_turn_in_flight(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    with open_ws(gw) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "ws-slow500-mid", "input": [user("long task")]}))
        events = []
        while not any(e.get("type") == "response.output_text.delta" for e in events):
            events.append(json.loads(ws.recv(10)))
        ws.send(json.dumps({"type": "response.steer", "input": [user("also mention the weather")]}))
        while events[-1].get("type") not in TERMINAL:
            events.append(json.loads(ws.recv(10)))
    kinds = [e["type"] for e in events]
    assert "response.steer.accepted" in kinds and kinds[-1] == "response.completed", kinds
    accepted = next(e for e in events if e["type"] == "response.steer.accepted")
    assert accepted["in_progress"] is True
    assert [m["type"] for m in ws_up.connections[0].messages] == ["response.create", "response.steer"]


def test_steer_over_an_http_upstream_gets_an_error(gw: GatewayProcess) -> None:
    with open_ws(gw) as ws:
        turn(ws, {"model": "responses-text", "input": [user("one")]})
        ws.send(json.dumps({"type": "response.steer", "input": [user("more")]}))
        ev = json.loads(ws.recv(10))
    assert ev["type"] == "error" and "response.steer" in ev["error"]["message"]
    assert "not a WebSocket upstream" in ev["error"]["message"]


# ------------------------------------------------------------------ reload and shutdown
def wait_log(g: GatewayProcess, text: str, count: int = 1, timeout: float = 10) -> None:
    assert wait_for(lambda: g.log().count(text) >= count, timeout), f"no {text!r} in the log:\n{g.log()[-3000:]}"


def test_reload_removing_the_credential_closes_its_connections(ws_up: FakeWsUpstream, upstream: FakeUpstream,
                                                               tmp_path: Path) -> None:
    cfg = ws_config(ws_up, upstream)
    g = GatewayProcess(cfg, tmp_path).start()
    try:
        with open_ws(g) as ws:
            assert turn(ws, {"model": "ws-text", "input": [user("one")]})[-1]["type"] == "response.completed"
            assert ws_up.connections[0].closed_by == ""
            n = g.log().count("config reloaded")
            g.write_config({**cfg, "codex-api-key": cfg["codex-api-key"][:-1]})
            wait_log(g, "config reloaded", n + 1)
            assert wait_for(lambda: ws_up.connections[0].closed_by == "client", 5), \
                "a removed credential's pooled connection must be closed"
            gone = turn(ws, {"model": "ws-text", "input": [user("two")]})
            assert gone[-1]["type"] == "error" and "ws-text" in gone[-1]["error"]["message"]
            assert text_of(turn(ws, {"model": "responses-text", "input": [user("three")]})) == \
                cs.expected_text("responses")
    finally:
        g.stop()


def test_shutdown_closes_sessions_and_upstream_connections(ws_up: FakeWsUpstream, upstream: FakeUpstream,
                                                           tmp_path: Path) -> None:
    g = GatewayProcess(ws_config(ws_up, upstream), tmp_path).start()
    try:
        ws = open_ws(g)
        assert turn(ws, {"model": "ws-text", "input": [user("one")]})[-1]["type"] == "response.completed"
        assert g.proc is not None
        t0 = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            ws.recv(10)
        assert g.proc.wait(10) == 0
        assert time.monotonic() - t0 < 8, "an idle WebSocket session must not hold the shutdown"
        assert wait_for(lambda: ws_up.connections[0].closed_by == "client", 5)
    finally:
        g.stop()


def test_codex_cli_chatgpt_login_over_websocket(ws_up: FakeWsUpstream, upstream: FakeUpstream,
                                                 tmp_path: Path) -> None:
    """Codex's built-in openai provider with a ChatGPT login and openai_base_url at crossroute (the
    CLIProxyAPI-style set-up, gateway without api-keys): it talks WebSocket at once, no HTTP fallback."""
    codex = codex_or_skip()
    g = GatewayProcess({**ws_config(ws_up, upstream), "api-keys": []}, tmp_path).start()
    try:
        home = Path(tempfile.mkdtemp(prefix="crossroute-codex-ws-"))
        (home / "work").mkdir()
        env = cs.codex_chatgpt_env(home, g.url, "gpt-5.5")
        run = cs.run_cli([codex, "exec", "--skip-git-repo-check", "Say hello"], env, home / "work", timeout=120)
        info = f"rc={run.returncode}\nstdout:\n{run.stdout[-2000:]}\nstderr:\n{run.stderr[-3000:]}\n{g.log()[-3000:]}"
        assert run.returncode == 0, info
        assert run.stdout.strip() == TEXT, info
        assert ws_up.creates(), info
        assert "POST /v1/responses" not in g.log(), "Codex fell back to HTTP\n" + info
    finally:
        g.stop()


def test_request_log_records_the_session(ws_up: FakeWsUpstream, upstream: FakeUpstream, tmp_path: Path) -> None:
    """With request-log: true a session is logged like a request: handshake headers (the key masked),
    each client frame and upstream event, errors, and the close; a refused upgrade too."""
    logs = tmp_path / "logs"
    g = GatewayProcess({**ws_config(ws_up, upstream), "request-log": True, "logs-dir": str(logs)}, tmp_path).start()
    try:
        with open_ws(g) as ws:
            assert text_of(turn(ws, {"model": "ws-text", "input": [user("log me")]})) == TEXT
            ws.send("{nope")
            assert json.loads(ws.recv(10))["type"] == "error"
        with pytest.raises(InvalidStatus):
            open_ws(g, headers={"Authorization": "Bearer wrong-key-123"})

        def texts() -> list[str]:
            return [p.read_text(errors="replace") for p in logs.glob("*") if p.is_file()]

        assert wait_for(lambda: any("WEBSOCKET TIMELINE" in t and "closed by client" in t for t in texts()), 10), \
            f"no WebSocket session log in {list(logs.glob('*'))}"
        session = next(t for t in texts() if "WEBSOCKET TIMELINE" in t and "closed by client" in t)
        assert "client frame" in session and "upstream event" in session and "log me" in session
        assert "not valid JSON" in session
        assert "Model: ws-text" in session
        assert wait_for(lambda: any("upgrade refused with HTTP 401" in t for t in texts()), 10)
        assert not any(CLIENT_KEY in t or "wrong-key-123" in t for t in texts()), "a key reached a log"
    finally:
        g.stop()


def test_session_affinity_pins_each_sessions_credential(ws_up: FakeWsUpstream, upstream: FakeUpstream,
                                                        tmp_path: Path) -> None:
    """Two credentials in round-robin with session affinity on: every turn of a WebSocket session goes
    to the credential its first turn got, so each session keeps one upstream connection and sends
    only new items."""
    entry = {"base-url": ws_up.base + "/v1", "websockets": True, "models": [{"name": "text", "alias": "ws-aff"}]}
    cfg = {"api-keys": [CLIENT_KEY], "routing": {"strategy": "round-robin", "session-affinity": True},
           "codex-api-key": [{**entry, "api-key": KEY}, {**entry, "api-key": KEY2}]}
    g = GatewayProcess(cfg, tmp_path).start()
    try:
        with open_ws(g) as a, open_ws(g) as b:
            prev = {"a": None, "b": None}
            for name, ws in (("a", a), ("b", b)):  # one session's turns in a row: round-robin alone alternates
                for _ in range(4):
                    msg: dict[str, Any] = {"model": "ws-aff", "input": [user(f"turn for {name}")]}
                    if prev[name]:
                        msg["previous_response_id"] = prev[name]
                    done = turn(ws, msg)
                    assert done[-1]["type"] == "response.completed", done[-1]
                    prev[name] = done[-1]["response"]["id"]
        assert len(ws_up.connections) == 2, [c.headers.get("Authorization") for c in ws_up.connections]
        for conn in ws_up.connections:
            creates = [m for m in conn.messages if m["type"] == "response.create"]
            assert len(creates) == 4 and all(len(m["input"]) == 1 for m in creates)
            assert all(m.get("previous_response_id") for m in creates[1:])
    finally:
        g.stop()


def codex_or_skip() -> str:
    codex = cs.find_cli("codex")
    if codex is None:
        from .test_real_clis import need_cli

        codex = need_cli("codex")
    return codex


def test_codex_cli_tool_round_trip_over_websocket(ws_up: FakeWsUpstream, tmp_path: Path) -> None:
    """The upstream asks Codex to run its first function tool; Codex runs it and sends the output back
    over the same WebSocket: the output alone (with previous_response_id) reaches the upstream, on one
    upstream connection, and the final answer is printed."""
    codex = codex_or_skip()
    cfg = {"api-keys": [CLIENT_KEY], "codex-api-key": [{
        "api-key": KEY, "base-url": ws_up.base + "/v1", "websockets": True,
        "models": [{"name": "tools", "alias": "gpt-5.5"}]}]}
    g = GatewayProcess(cfg, tmp_path).start()
    try:
        home = Path(tempfile.mkdtemp(prefix="crossroute-codex-ws-"))
        (home / "work").mkdir()
        env = cs.codex_env(home, g.url, CLIENT_KEY, "gpt-5.5", websockets=True)
        run = cs.run_cli([codex, "exec", "--skip-git-repo-check", "Say hello"], env, home / "work", timeout=120)
        info = f"rc={run.returncode}\nstdout:\n{run.stdout[-2000:]}\nstderr:\n{run.stderr[-3000:]}\n{g.log()[-3000:]}"
        assert run.returncode == 0, info
        assert run.stdout.strip() == TOOL_TEXT, info
        creates = ws_up.creates()
        assert len(ws_up.connections) == 1, info
        after_tool = [c for c in creates if any(i.get("type") == "function_call_output" for i in c.get("input", []))]
        assert after_tool, info
        assert after_tool[0]["previous_response_id"], info
        assert all(i.get("type") != "function_call" for i in after_tool[0]["input"]), \
            "the call itself is on the upstream connection already; only its output goes"
    finally:
        g.stop()


def test_openai_compatibility_entry_with_responses_over_websocket(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    with open_ws(gw) as ws:
        first = turn(ws, {"model": "oc-text", "input": [user("one")]})
        second = turn(ws, {"model": "oc-text", "previous_response_id": first[-1]["response"]["id"],
                           "input": [user("two")]})
    assert text_of(second) == TEXT
    creates = ws_up.creates()
    assert len(ws_up.connections) == 1 and ws_up.connections[0].headers["Authorization"] == f"Bearer {KEY2}"
    assert creates[1]["input"] == [user("two")] and creates[1]["previous_response_id"]
    assert sdk(gw).responses.create(model="oc-text", input="hi").output_text == TEXT


def test_each_turn_is_its_own_usage_record(ws_up: FakeWsUpstream, upstream: FakeUpstream, tmp_path: Path) -> None:
    import sqlite3

    data = tmp_path / "data"
    g = GatewayProcess({**ws_config(ws_up, upstream), "usage-statistics-enabled": True, "data-dir": str(data)},
                       tmp_path).start()
    try:
        with open_ws(g) as ws:
            first = turn(ws, {"model": "ws-text", "input": [user("one")]})
            turn(ws, {"model": "ws-text", "previous_response_id": first[-1]["response"]["id"], "input": [user("2")]})
            turn(ws, {"model": "responses-text", "input": [user("three")]})

        def rows() -> list[tuple[Any, ...]]:
            try:
                with sqlite3.connect(data / "usage.sqlite3") as db:
                    return db.execute("SELECT transport, model, status, input_tokens, output_tokens, cached_tokens, "
                                      "ttft_ms FROM usage_records ORDER BY ts").fetchall()
            except sqlite3.Error:
                return []

        assert wait_for(lambda: len(rows()) >= 3, 10), rows()
        got = rows()
        assert [r[0] for r in got] == ["ws", "ws", "ws"] and [r[1] for r in got] == ["ws-text", "ws-text",
                                                                                     "responses-text"]
        assert all(r[2] == 200 for r in got)
        assert got[0][3] == 10 and got[0][4] == 7 and got[1][5] == 20, got  # the fake's usage, per turn
        assert all(r[6] is not None and r[6] >= 0 for r in got), got
    finally:
        g.stop()


def test_stream_id_lanes_run_side_by_side(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    """Two conversations on one connection (``stream_id``): they run at the same time, every event
    carries its lane's stream_id, and each lane continues incrementally on its own upstream connection."""
    with open_ws(gw) as ws:
        ws.send(json.dumps({"type": "response.create", "stream_id": "slow", "model": "ws-slow500-mid",
                            "input": [user("long")]}))
        ws.send(json.dumps({"type": "response.create", "stream_id": "fast", "model": "ws-text",
                            "input": [user("short")]}))
        done: dict[str, dict[str, Any]] = {}
        order = []
        while len(done) < 2:
            ev = json.loads(ws.recv(10))
            assert ev.get("stream_id") in ("slow", "fast"), ev
            if ev["type"] in TERMINAL:
                assert ev["type"] == "response.completed", ev
                done[ev["stream_id"]] = ev
                order.append(ev["stream_id"])
        assert order == ["fast", "slow"], "the fast lane must not wait for the slow one"
        again = turn(ws, {"stream_id": "slow", "model": "ws-text", "previous_response_id":
                          done["slow"]["response"]["id"], "input": [user("more")]})
        assert again[-1]["type"] == "response.completed" and all(e["stream_id"] == "slow" for e in again)
        plain = turn(ws, {"model": "ws-text", "input": [user("no lane")]})
        assert "stream_id" not in plain[-1]
    assert len(ws_up.connections) == 3  # one per lane
    slow = next(c for c in ws_up.connections if c.messages[0]["model"] == "slow500-mid")
    assert len(slow.messages) == 2 and slow.messages[1]["input"] == [user("more")]
    assert all("stream_id" not in m for c in ws_up.connections for m in c.messages)


def test_codex_account_file_with_websockets(ws_up: FakeWsUpstream, tmp_path: Path) -> None:
    """A Codex (ChatGPT) account file with ``websockets: true``: its turns go over WebSocket with its
    access token and account id, the body as the account executor rewrites it (store false), and
    whole-answer clients get the assembled answer."""
    token = "codex-ws-access-token-0001"
    ws_up.keys.add(token)
    auth = tmp_path / "auth"
    auth.mkdir(mode=0o700)
    (auth / "codex-ws@example.com-plus.json").write_text(json.dumps({
        "type": "codex", "access_token": token, "refresh_token": "codex-ws-refresh-0001", "account_id": "acct-ws",
        "email": "ws@example.com", "expired": "2030-01-01T00:00:00Z", "websockets": True,
        "base_url": ws_up.base + "/backend-api/codex"}))
    g = GatewayProcess({"api-keys": [CLIENT_KEY], "auth-dir": str(auth)}, tmp_path).start()
    try:
        with open_ws(g) as ws:
            first = turn(ws, {"model": "gpt-5.5", "input": [user("one")]})
            assert first[-1]["type"] == "response.completed", first[-1]
            second = turn(ws, {"model": "gpt-5.5", "previous_response_id": first[-1]["response"]["id"],
                               "input": [user("two")]})
            assert text_of(second) == TEXT
            assert sdk(g).responses.create(model="gpt-5.5", input="hi").output_text == TEXT
            # the account file goes away: its pooled connections close while the session is still open
            assert ws_up.connections[0].closed_by == ""
            (auth / "codex-ws@example.com-plus.json").unlink()
            assert wait_for(lambda: all(c.closed_by == "client" for c in ws_up.connections), 15), \
                [c.closed_by for c in ws_up.connections]
        conn = ws_up.connections[0]
        assert conn.path == "/backend-api/codex/responses"
        headers = {k.lower(): v for k, v in conn.headers.items()}
        assert headers["authorization"] == f"Bearer {token}" and headers["chatgpt-account-id"] == "acct-ws"
        creates = ws_up.creates()
        assert creates[0]["store"] is False and creates[1]["input"] == [user("two")]
        assert creates[1]["previous_response_id"] == first[-1]["response"]["id"]
    finally:
        g.stop()


def test_codex_rate_limits_events_reach_the_quota_book(ws_up: FakeWsUpstream, tmp_path: Path) -> None:
    """The service's ``codex.rate_limits`` events on a WebSocket turn reach the quota book: the
    snapshot ``crossroute auth list`` reads shows the windows after the first turn, and a later turn on
    the same pooled connection updates them; the client gets the event too."""
    token = "codex-ws-access-token-0002"
    ws_up.keys.add(token)
    auth = tmp_path / "auth"
    auth.mkdir(mode=0o700)
    name = "codex-quota-ws@example.com-plus.json"
    (auth / name).write_text(json.dumps({
        "type": "codex", "access_token": token, "refresh_token": "codex-ws-refresh-0002", "account_id": "acct-q",
        "email": "quota-ws@example.com", "expired": "2030-01-01T00:00:00Z", "websockets": True,
        "base_url": ws_up.base + "/backend-api/codex"}))
    g = GatewayProcess({"api-keys": [CLIENT_KEY], "auth-dir": str(auth)}, tmp_path).start()

    def listed() -> str:
        return next((line for line in auth_list(g.config_path).splitlines() if line.startswith(name)), "")

    try:
        with open_ws(g) as ws:
            first = turn(ws, {"model": "gpt-5.5", "input": [user("one")]})
            assert first[0]["type"] == "codex.rate_limits" and first[0]["rate_limits"]["primary"]["used_percent"] == 25
            assert first[-1]["type"] == "response.completed", first[-1]
            assert wait_for(lambda: "5h 75% left" in listed(), 20), listed()
            assert "7d 60% left" in listed() and "(plus)" in listed()
            ws_up.used = {"primary": 70.0, "secondary": 45.0}
            second = turn(ws, {"model": "gpt-5.5", "previous_response_id": first[-1]["response"]["id"],
                               "input": [user("two")]})
            assert second[-1]["type"] == "response.completed", second[-1]
            assert wait_for(lambda: "5h 30% left" in listed(), 20), listed()
            assert "7d 55% left" in listed()
        assert len(ws_up.connections) == 1, "both turns on one pooled connection"
        assert token not in auth_list(g.config_path)
    finally:
        g.stop()


def test_upstream_gone_between_turns_means_the_turn_goes_in_full(gw: GatewayProcess, ws_up: FakeWsUpstream) -> None:
    """The upstream closed the session's pooled connection while it was idle: the next turn is sent in
    full (no previous_response_id a new connection cannot know) on a new connection, and succeeds."""
    with open_ws(gw) as ws:
        first = turn(ws, {"model": "ws-text", "input": [user("one")]})
        ws_up.drop_all()
        second = turn(ws, {"model": "ws-text", "previous_response_id": first[-1]["response"]["id"],
                           "input": [user("two")]})
        assert second[-1]["type"] == "response.completed", second[-1]
        third = turn(ws, {"model": "ws-text", "previous_response_id": second[-1]["response"]["id"],
                          "input": [user("three")]})
        assert third[-1]["type"] == "response.completed"
    assert len(ws_up.connections) == 2
    resent = ws_up.connections[1].messages
    assert "previous_response_id" not in resent[0]
    assert resent[0]["input"] == [user("one"), *first[-1]["response"]["output"], user("two")]
    assert resent[1]["input"] == [user("three")], "incremental again on the new connection"


def test_upstream_error_before_output_is_the_turns_error_with_its_status(gw: GatewayProcess,
                                                                        ws_up: FakeWsUpstream) -> None:
    """An ``error`` event before any output (a rate limit) is an upstream failure with that status: the
    client gets an error event with status 429 and the service's message; the session goes on."""
    with open_ws(gw) as ws:
        limited = turn(ws, {"model": "ws-ratelimited", "input": [user("one")]})
        assert len(limited) == 1 and limited[0]["type"] == "error", limited
        assert limited[0]["status"] == 429 and "Rate limit" in limited[0]["error"]["message"], limited
        assert text_of(turn(ws, {"model": "ws-text", "input": [user("two")]})) == TEXT
    assert wait_for(lambda: ws_up.connections[0].closed_by == "client"), "a failed turn's connection is evicted"


def test_many_events_arrive_in_order(gw: GatewayProcess) -> None:
    """A turn's frames go to granian without waiting for each send (responses_ws.SEND_WINDOW): 400
    deltas in two lanes at once still arrive in order, each lane's sequence numbers strictly rising."""
    with open_ws(gw) as ws:
        for lane in ("a", "b"):
            ws.send(json.dumps({"type": "response.create", "stream_id": lane, "model": "ws-many400",
                                "input": [user("count")]}))
        events: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        done = 0
        while done < 2:
            ev = json.loads(ws.recv(20))
            events[ev["stream_id"]].append(ev)
            done += ev["type"] in TERMINAL
    for lane, evs in events.items():
        assert evs[0]["type"] == "codex.rate_limits"  # the service's own event, passed on first
        seqs = [e["sequence_number"] for e in evs[1:]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"lane {lane} out of order"
        assert evs[-1]["type"] == "response.completed"
        assert text_of(evs) == "".join(f"w{i} " for i in range(400))


def test_upstream_without_websockets_falls_back_to_http(upstream: FakeUpstream, tmp_path: Path) -> None:
    """``websockets: true`` on an upstream that refuses the upgrade (the HTTP fake answers 405): the turn
    goes over HTTP with the full history, and so do the next ones for a while (one refusal, not one per turn)."""
    cfg = {"api-keys": [CLIENT_KEY], "codex-api-key": [{
        "api-key": "sk-http-only", "base-url": upstream.base + "/v1", "websockets": True,
        "models": [{"name": "text", "alias": "fb-text"}]}]}
    g = GatewayProcess(cfg, tmp_path).start()
    try:
        with open_ws(g) as ws:
            first = turn(ws, {"model": "fb-text", "input": [user("one")]})
            assert first[-1]["type"] == "response.completed", first[-1]
            assert text_of(first) == cs.expected_text("responses")
            second = turn(ws, {"model": "fb-text", "previous_response_id": first[-1]["response"]["id"],
                               "input": [user("two")]})
            assert second[-1]["type"] == "response.completed"
        posts = [r for r in upstream.requests if r["path"] == "/v1/responses"]
        assert len(posts) == 2 and "previous_response_id" not in posts[1]["body"]
        assert posts[1]["body"]["input"] == [user("one"), *first[-1]["response"]["output"], user("two")]
        assert g.log().count("refused the WebSocket upgrade") == 1, g.log()[-2000:]
    finally:
        g.stop()
