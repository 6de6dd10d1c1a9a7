"""Turn state of a downstream Responses WebSocket (crossroute/api/ws_turns.py), the SSE-to-frame
split and WebSocket URLs (the item rules themselves: tests/unit/test_responses_turns.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from crossroute.api.responses_ws import frames_of
from crossroute.api.ws_turns import TurnError, TurnState
from crossroute.formats.responses_turns import COMPACTION_PREFIX, merge_items, repair_orphans
from crossroute.formats.sse import SSEParser
from crossroute.providers.ws_upstream import ws_url


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def call(cid: str) -> dict[str, Any]:
    return {"type": "function_call", "id": f"fc_{cid}", "call_id": cid, "name": "f", "arguments": "{}"}


def output(cid: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": cid, "output": "ok"}


def answer(rid: str, text: str = "hi") -> dict[str, Any]:
    return {"id": rid, "output": [{"type": "message", "id": f"msg_{rid}", "role": "assistant",
                                   "content": [{"type": "output_text", "text": text}]}]}


def run(state: TurnState, msg: dict[str, Any], response: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    body, rule, full = state.prepare({"type": "response.create", **msg})
    state.started(body)
    if response is not None:
        state.completed(full, response)
    return body, rule


def test_first_turn_needs_a_model() -> None:
    with pytest.raises(TurnError) as info:
        TurnState().prepare({"type": "response.create", "input": []})
    assert info.value.param == "model"


def test_input_of_the_wrong_type() -> None:
    with pytest.raises(TurnError) as info:
        TurnState().prepare({"type": "response.create", "model": "m", "input": {"role": "user"}})
    assert info.value.param == "input" and "'input'" in info.value.message


def test_transport_fields_dropped_and_string_input_is_a_user_message() -> None:
    body, rule = run(TurnState(), {"model": "m", "input": "hello", "stream": False, "background": True})
    assert rule == "first"
    assert "type" not in body and "stream" not in body and "background" not in body
    assert body["input"] == [{"type": "message", "role": "user", "content": "hello"}]


def test_previous_response_id_expands_to_the_full_history() -> None:
    s = TurnState()
    first = answer("r1")
    run(s, {"model": "m", "instructions": "be nice", "input": [user("a")]}, first)
    body, rule = run(s, {"previous_response_id": "r1", "input": [user("b")]})
    assert rule == "continue"
    assert "previous_response_id" not in body
    assert body["input"] == [user("a"), *first["output"], user("b")]
    assert body["model"] == "m" and body["instructions"] == "be nice"  # inherited


def test_unknown_previous_response_id_passes_through() -> None:
    s = TurnState()
    run(s, {"model": "m", "input": [user("a")]}, answer("r1"))
    body, rule = run(s, {"previous_response_id": "r_elsewhere", "input": [user("b")]})
    assert rule == "passthrough"
    assert body["previous_response_id"] == "r_elsewhere" and body["input"] == [user("b")]


def test_duplicates_by_id_and_call_id_removed() -> None:
    s = TurnState()
    resp = {"id": "r1", "output": [call("c1")]}
    run(s, {"model": "m", "input": [user("a")]}, resp)
    again = {**call("c1"), "id": "fc_other"}  # the same call under another item id
    body, _ = run(s, {"previous_response_id": "r1", "input": [call("c1"), again, output("c1")]})
    assert body["input"] == [user("a"), call("c1"), output("c1")]


def test_continuation_without_previous_id_when_every_tool_call_is_answered() -> None:
    s = TurnState()
    run(s, {"model": "m", "input": [user("a")]}, {"id": "r1", "output": [call("c1")]})
    body, rule = run(s, {"input": [output("c1")]})
    assert rule == "continue"
    assert body["input"] == [user("a"), call("c1"), output("c1")]


def test_unanswered_tool_call_means_a_fresh_start() -> None:
    s = TurnState()
    run(s, {"model": "m", "input": [user("a")]}, {"id": "r1", "output": [call("c1")]})
    body, rule = run(s, {"input": [user("never mind")]})
    assert rule == "replace"
    assert body["input"] == [user("never mind")]


def test_developer_follow_up_is_merged_and_orphans_repaired() -> None:
    s = TurnState()
    run(s, {"model": "m", "input": [user("a")]}, {"id": "r1", "output": [call("c1")]})
    dev = {"type": "message", "role": "developer", "content": "be brief"}
    body, rule = run(s, {"input": [dev]})
    assert rule == "continue"
    assert body["input"] == [user("a"), dev], "the unanswered call is not left orphaned"


@pytest.mark.parametrize("history_item", [
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x"}]},
    call("c9"),
    {"type": "reasoning", "id": "rs_1", "summary": []},
    user(COMPACTION_PREFIX + " and here is a summary"),
])
def test_transcript_replacement_resets_the_state(history_item: dict[str, Any]) -> None:
    s = TurnState()
    run(s, {"model": "m", "input": [user("a")]}, answer("r1"))
    sent = [user("start"), history_item, user("next")]
    if history_item.get("type") == "function_call":
        sent.insert(2, output("c9"))
    body, rule = run(s, {"input": sent})
    assert rule == "replace"
    assert body["input"] == sent, "sent as given, never appended to the old state"
    assert s.last_response_id is None and not s.history
    assert body["model"] == "m"


def test_replacement_drops_orphans() -> None:
    s = TurnState()
    run(s, {"model": "m", "input": [user("a")]}, answer("r1"))
    body, _ = run(s, {"input": [user("x"), call("lost"), output("stray"), call("c2"), output("c2")]})
    assert body["input"] == [user("x"), call("c2"), output("c2")]


def test_history_is_bounded() -> None:
    s = TurnState()
    run(s, {"model": "m", "input": [user("0")]}, answer("r0"))
    for i in range(1, 10):
        run(s, {"previous_response_id": f"r{i - 1}", "input": [user(str(i))]}, answer(f"r{i}"))
    assert len(s.history) == 4 and "r9" in s.history and "r0" not in s.history


def test_frames_and_urls() -> None:
    chunk = b'event: a\ndata: {"type":"a"}\n\nevent: b\ndata: {"type":"b"}\n\ndata: [DONE]\n\n'
    assert frames_of(chunk) == [b'{"type":"a"}', b'{"type":"b"}']
    assert ws_url("https://api.example/v1/responses") == "wss://api.example/v1/responses"
    assert ws_url("http://127.0.0.1:1/v1/responses") == "ws://127.0.0.1:1/v1/responses"


def test_frames_of_one_stream_put_split_events_back_together() -> None:
    parser = SSEParser()
    assert frames_of(b'event: a\ndata: {"ty', parser) == []
    assert frames_of(b'pe":"a"}\n\ndata: [DONE]\n\n', parser) == [b'{"type":"a"}']


def test_base_names_the_unchanged_prefix() -> None:
    s = TurnState()
    run(s, {"model": "m", "input": [user("a")]}, answer("r1"))
    body, _ = run(s, {"previous_response_id": "r1", "input": [user("b")]})
    assert s.base == ("r1", 2)
    assert body["input"][:2] == s.history["r1"]
    # a merge that had to drop an orphaned call from the history is no longer that prefix
    run(s, {"previous_response_id": "r1", "input": [user("c")]}, {"id": "r2", "output": [call("c1")]})
    run(s, {"input": [{"type": "message", "role": "developer", "content": "short"}]})
    assert s.base is None
    run(s, {"model": "m", "input": [user("fresh"), call("x"), output("x")]})
    assert s.base is None


def test_incremental_merge_matches_the_whole_merge() -> None:
    """Over a long conversation (tool calls answered or not, turns continuing the last response or an
    older one) each turn's input is what merging the whole history again gives."""
    rng = random.Random(3)
    s = TurnState()
    run(s, {"model": "m", "input": [user("start")]}, answer("r0"))
    for i in range(1, 400):
        rid = rng.choice(list(s.history)) if rng.random() < 0.1 else s.last_response_id
        known = s.history[rid]
        assert known is not None
        pending = [it["call_id"] for it in known[-2:] if it.get("type") == "function_call"]
        items: list[Any] = [output(c) for c in pending if rng.random() < 0.8]
        items += [user(f"q{i}")] + ([known[-1]] if rng.random() < 0.2 else [])  # an item sent back again
        expected = repair_orphans(merge_items(known, items))
        out = [call(f"c{i}")] if rng.random() < 0.4 else answer(f"r{i}")["output"]
        body, rule = run(s, {"previous_response_id": rid, "input": items}, {"id": f"r{i}", "output": out})
        assert rule == "continue" and body["input"] == expected, i
