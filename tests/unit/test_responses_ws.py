"""The downstream WebSocket session loop (crossroute/api/responses_ws.py) without a server: each client
message is parsed once (lane, forwarding and the turn all read the same object), bad messages get
``error`` events in order, and ``stream_id`` messages go to their own lane."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest

from crossroute.api import responses_ws
from crossroute.api.responses_ws import WsSession
from crossroute.config import Settings
from crossroute.gateway import Gateway


class Msg:
    def __init__(self, kind: int, data: Any = None) -> None:
        self.kind = kind
        self.data = data


class Transport:
    """Gives the messages, then a close once every answer expected has been sent."""

    def __init__(self, messages: list[str | bytes], answers: int) -> None:
        self.messages = list(messages)
        self.answers = answers
        self.sent: list[dict[str, Any]] = []
        self.enough = asyncio.Event()

    async def receive(self) -> Msg:
        if self.messages:
            return Msg(1, self.messages.pop(0))
        await asyncio.wait_for(self.enough.wait(), 5)
        return Msg(0)

    async def send_str(self, data: str) -> None:
        self.sent.append(json.loads(data))  # not orjson.loads: a test counts its calls
        if len(self.sent) >= self.answers:
            self.enough.set()


def serve(messages: list[str | bytes], answers: int, history: list[Any] | None = None) -> list[dict[str, Any]]:
    """The events a session sends for ``messages``; with ``history``, its default lane continues from
    response ``r1`` whose context that is."""
    gw = Gateway(Settings())

    async def main() -> list[dict[str, Any]]:
        transport = Transport(messages, answers)
        session = WsSession(lambda: gw, transport, "/v1/responses", {"host": "127.0.0.1"}, None, 1 << 20)
        if history is not None:
            session.state.started({"model": "m"})
            session.state.completed(history, {"id": "r1", "output": []})
        await session.run()
        return transport.sent

    return asyncio.run(main())


def test_each_message_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = orjson.loads
    parsed: list[Any] = []

    def counting(data: Any) -> Any:
        parsed.append(data)
        return loads(data)

    monkeypatch.setattr(responses_ws.orjson, "loads", counting)
    messages: list[str | bytes] = [
        '{"type": "response.create", "input": "no model"}',
        b'{"type": "response.steer", "stream_id": "s1", "input": "x"}',
        '{"type": "nonsense", "stream_id": "s1"}',
        "not json",
    ]
    sent = serve(messages, 4)
    assert sorted(map(str, parsed)) == sorted(map(str, messages)), "every message parsed exactly once"
    by_lane: dict[Any, list[str]] = {}
    for ev in sent:
        assert ev["type"] == "error", ev
        by_lane.setdefault(ev.get("stream_id"), []).append(ev["error"]["message"])
    default, lane = by_lane[None], by_lane["s1"]
    assert "missing model" in default[0] and "not valid JSON" in default[1]
    assert "'response.steer' is not supported here" in lane[0] and "unsupported websocket message type" in lane[1]


def test_a_json_value_that_is_not_an_object_is_named() -> None:
    sent = serve(["[1, 2]", '"text"'], 2)
    assert [e["error"]["message"] for e in sent] == ["websocket message must be a JSON object, got list",
                                                     "websocket message must be a JSON object, got str"]


def test_a_continued_turn_checks_the_items_it_adds() -> None:
    """The new items are checked (an error names the item by its place in the message); the history
    they continue is not checked again on every turn (it was when it came)."""
    old = [{"type": "message", "role": "robot", "content": "kept from an earlier turn"}]
    bad = {"type": "response.create", "previous_response_id": "r1",
           "input": [{"type": "message", "role": "user", "content": "ok"}, {"type": "message", "role": "robot"}]}
    good = {"type": "response.create", "previous_response_id": "r1", "input": "fine"}
    sent = serve([json.dumps(bad), json.dumps(good)], 2, history=old)
    assert sent[0]["error"]["param"] == "input[1].role", sent[0]
    assert "is not served" in sent[1]["error"]["message"], sent[1]  # it got past the checks to dispatch
