"""Tool names over 64 characters: shortened alike in every request, unique, and restored."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute.providers.stream_assembly import RenamedStream
from crossroute.providers.tool_names import MAX_TOOL_NAME, NameMap, short_name, shorten_tools

LONG = "mcp__corporate-knowledge-base__search_documents_by_semantic_similarity_v2"  # 72 characters
LONG2 = LONG[:-1] + "3"  # the same first 55 characters


def body_with(*names: str) -> dict[str, Any]:
    return {
        "tools": [{"type": "function", "name": n, "parameters": {"type": "object"}} for n in names],
        "tool_choice": {"type": "function", "name": names[0]},
        "input": [{"type": "function_call", "call_id": "c1", "name": names[0], "arguments": "{}"},
                  {"type": "function_call_output", "call_id": "c1", "output": "ok"}],
    }


def test_short_names_fit_and_are_stable_across_requests() -> None:
    a, b = body_with(LONG, "read_file"), body_with(LONG, "read_file")
    ma, mb = shorten_tools(a), shorten_tools(b)
    short = a["tools"][0]["name"]
    assert len(LONG) > MAX_TOOL_NAME and len(short) <= MAX_TOOL_NAME
    assert short == b["tools"][0]["name"] == short_name(LONG)
    assert a["tool_choice"]["name"] == short and a["input"][0]["name"] == short
    assert a["tools"][1]["name"] == "read_file"  # short names untouched
    assert ma.short_to_long == mb.short_to_long == {short: LONG}


def test_names_with_one_prefix_stay_distinct() -> None:
    body = body_with(LONG, LONG2)
    names = shorten_tools(body)
    s1, s2 = body["tools"][0]["name"], body["tools"][1]["name"]
    assert s1 != s2 and s1[:55] == s2[:55]
    assert names.short_to_long == {s1: LONG, s2: LONG2}


def test_a_short_name_never_takes_an_existing_tool_name() -> None:
    taken = short_name(LONG)  # a client tool that happens to be named like LONG's short form
    body = body_with(LONG, taken)
    shorten_tools(body)
    assert body["tools"][0]["name"] != taken and body["tools"][1]["name"] == taken
    assert len(body["tools"][0]["name"]) <= MAX_TOOL_NAME


def test_nothing_changes_without_long_names() -> None:
    body = body_with("read_file", "write_file")
    before = orjson.dumps(body)
    assert not shorten_tools(body)
    assert orjson.dumps(body) == before


def test_namespace_tools_and_custom_tools() -> None:
    body = {"tools": [{"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": LONG}]},
                      {"type": "custom", "name": LONG2}]}
    names = shorten_tools(body)
    assert set(names.short_to_long.values()) == {LONG, LONG2}
    assert all(len(n) <= 64 for n in names.short_to_long)


def test_restore_touches_only_name_fields() -> None:
    names = NameMap()
    short = names.add(LONG, set())
    answer = {"output": [{"type": "function_call", "name": short, "arguments": f'{{"x": "{short}"}}'}],
              "text": short}
    names.restore(answer)
    assert answer["output"][0]["name"] == LONG
    assert short in answer["output"][0]["arguments"] and answer["text"] == short


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=120),
                min_size=1, max_size=12, unique=True))
def test_any_tool_set_gets_unique_fitting_names_that_restore(names: list[str]) -> None:
    body = {"tools": [{"type": "function", "name": n} for n in names]}
    mapping = shorten_tools(body)
    sent = [t["name"] for t in body["tools"]]
    assert len(set(sent)) == len(sent)
    assert all(len(n) <= MAX_TOOL_NAME for n in sent)
    assert [mapping.short_to_long.get(n, n) for n in sent] == names


class Chunks:
    """An ``Upstream`` that hands out given chunks."""

    io_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, chunks: list[bytes]) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}
        self._chunks = list(chunks)
        self.read_chunk: Callable[[], Awaitable[bytes]] = self._read

    async def _read(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""

    def body(self, limit: int) -> Awaitable[bytes]:
        raise NotImplementedError

    def at_eof(self) -> bool:
        return not self._chunks

    def close(self, reuse: bool) -> None:
        pass


def read_all(up: RenamedStream) -> bytes:
    async def run() -> bytes:
        out = b""
        while chunk := await up.read_chunk():
            out += chunk
        return out

    return asyncio.run(run())


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
@settings(max_examples=80, deadline=None)
def test_stream_restores_names_cut_at_any_byte(cuts: list[int]) -> None:
    names = NameMap()
    short = names.add(LONG, set())
    events = (
        b"event: response.output_item.added\ndata: "
        + orjson.dumps({"type": "response.output_item.added", "item": {"type": "function_call", "name": short}})
        + b"\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}"
        + b"\r\n\r\nevent: response.output_item.done\r\ndata: "
        + orjson.dumps({"type": "response.output_item.done", "item": {"type": "function_call", "name": short}})
        + b"\r\n\r\n"
    )
    chunks, i = [], 0
    for n in cuts:
        if i >= len(events):
            break
        chunks.append(events[i:i + n])
        i += n
    if i < len(events):
        chunks.append(events[i:])
    out = read_all(RenamedStream(Chunks(chunks), names))
    assert short.encode() not in out
    assert out.count(LONG.encode()) == 2
    assert b'"delta":"hi"' in out and out.count(b"\n\n") + out.count(b"\r\n\r\n") == 3
