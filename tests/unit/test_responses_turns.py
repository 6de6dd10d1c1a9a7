"""The Responses item rules of a conversation turn (crossroute/formats/responses_turns.py): input as
items, what is history, tool calls and their outputs, orphan repair, merge without duplicates and the
prefix an upstream connection already holds."""

from __future__ import annotations

import random
from typing import Any

import pytest

from crossroute.formats.responses_turns import (
    COMPACTION_PREFIX,
    ItemIndex,
    answered_calls,
    as_items,
    extends,
    is_history,
    merge_items,
    only_developer,
    pending_calls,
    repair_orphans,
    text_of,
)


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def call(cid: str, kind: str = "function_call") -> dict[str, Any]:
    return {"type": kind, "id": f"fc_{cid}", "call_id": cid, "name": "f", "arguments": "{}"}


def output(cid: str, kind: str = "function_call_output") -> dict[str, Any]:
    return {"type": kind, "call_id": cid, "output": "ok"}


def test_input_as_items() -> None:
    assert as_items(None) == []
    assert as_items("hi") == [{"type": "message", "role": "user", "content": "hi"}]
    items = [user("a")]
    assert as_items(items) is items
    assert as_items({"role": "user"}) is None and as_items(3) is None


@pytest.mark.parametrize("item", [
    {"type": "message", "role": "assistant", "content": "x"},
    {"role": "assistant", "content": "x"},  # no type: a message
    call("c1"), call("c2", "custom_tool_call"),
    {"type": "reasoning", "id": "rs_1", "summary": []},
    {"type": "compaction", "encrypted_content": "e"},
    {"type": "web_search_call", "id": "ws_1"},
    {"type": "message", "role": "user", "content": COMPACTION_PREFIX + " — the summary"},
    user(COMPACTION_PREFIX + " — the summary"),
])
def test_history_items(item: dict[str, Any]) -> None:
    assert is_history(item)


@pytest.mark.parametrize("item", [user("a"), output("c1"), {"type": "message", "role": "developer", "content": "d"},
                                  "text", None, {"type": "input_image"}])
def test_not_history(item: Any) -> None:
    assert not is_history(item)


def test_text_of_message_content() -> None:
    assert text_of({"content": "plain"}) == "plain"
    assert text_of(user("a")) == "a"
    assert text_of({"content": [{"text": "x"}, "junk", {"type": "input_image"}, {"text": "y"}]}) == "xy"
    assert text_of({"content": 5}) == ""


def test_calls_and_outputs() -> None:
    items = [call("a"), call("b", "custom_tool_call"), output("a"), output("z", "custom_tool_call_output"), user("u")]
    assert pending_calls(items) == {"a", "b"}
    assert answered_calls(items) == {"a", "z"}
    assert pending_calls([{"type": "function_call"}]) == set()  # no call_id: not counted


def test_repair_orphans() -> None:
    paired = [user("a"), call("x"), output("x")]
    assert repair_orphans(paired) is paired  # nothing to repair: the same list
    assert repair_orphans([call("x")]) == []
    assert repair_orphans([user("a"), output("stray"), call("x"), output("x"), call("lost")]) == \
        [user("a"), call("x"), output("x")]
    assert repair_orphans([call("k", "custom_tool_call"), output("k", "custom_tool_call_output"), output("j")]) == \
        [call("k", "custom_tool_call"), output("k", "custom_tool_call_output")]


def test_merge_drops_duplicates_by_id_and_call_id() -> None:
    history = [user("a"), {"type": "message", "id": "msg_1", "role": "assistant", "content": []}, call("c1")]
    new = [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed"},
           {**call("c1"), "id": "other"}, output("c1"), user("b")]
    assert merge_items(history, new) == [*history, output("c1"), user("b")]
    assert merge_items([user("a")], [user("a")]) == [user("a"), user("a")]  # no id: kept
    twice = {"type": "message", "id": "m2", "role": "user", "content": "x"}
    assert merge_items([], [twice, twice]) == [twice]  # a duplicate within the new items too
    assert history == [user("a"), {"type": "message", "id": "msg_1", "role": "assistant", "content": []}, call("c1")]


def test_extends_the_remembered_prefix() -> None:
    mem = [user("a"), {"type": "message", "id": "msg_1", "role": "assistant", "content": []}]
    assert extends(mem, [*mem, user("b")])
    assert extends(mem, list(mem)) and extends([], [user("x")])
    # the client sent the output item back in another shape, same id and type
    assert extends(mem, [user("a"), {"type": "message", "id": "msg_1", "role": "assistant", "status": "x"}, user("b")])
    assert not extends(mem, [user("a"), {"type": "reasoning", "id": "msg_1"}, user("b")])
    assert not extends(mem, [user("z"), *mem[1:], user("b")])
    assert not extends(mem, [user("a")])


def test_only_developer() -> None:
    assert only_developer([{"role": "developer", "content": "d"}, {"role": "system", "content": "s"}])
    assert not only_developer([])
    assert not only_developer([{"role": "developer", "content": "d"}, user("u")])


def _random_items(rng: random.Random, n: int) -> list[Any]:
    out: list[Any] = []
    for _ in range(n):
        r = rng.random()
        cid = f"c{rng.randrange(6)}"
        iid = f"i{rng.randrange(12)}" if rng.random() < 0.6 else None
        if r < 0.25:
            item: Any = call(cid, rng.choice(["function_call", "custom_tool_call"]))
        elif r < 0.5:
            item = output(cid, rng.choice(["function_call_output", "custom_tool_call_output"]))
        elif r < 0.55:
            item = {"type": "function_call"}  # no call_id
        elif r < 0.6:
            item = "not an object"
        else:
            item = user(f"u{rng.randrange(4)}")
        if isinstance(item, dict):
            item = {k: v for k, v in item.items() if k != "id"}
            if iid:
                item["id"] = iid
        out.append(item)
    return out


def test_index_agrees_with_merge_and_repair() -> None:
    """ItemIndex (grown with add) decides exactly what merge_items and repair_orphans do."""
    rng = random.Random(7)
    for _ in range(3000):
        history = _random_items(rng, rng.randrange(8))
        index = ItemIndex(history[:2])
        index.add(history[2:])
        new = _random_items(rng, rng.randrange(5))
        kept = index.new_items(new)
        assert [*history, *kept] == merge_items(history, new)
        merged = [*history, *kept]
        assert index.has_orphans_with(kept) == (repair_orphans(merged) is not merged), (history, new)
