"""Byte-level tests for the Responses passthrough SSE framer (one test per framing rule, then
fixture replays split at every byte offset / at random)."""

from __future__ import annotations

import random
from pathlib import Path

import httpx2
import openai
import orjson
import pytest
from openai.types.responses import Response as SDKResponse

from crossroute.formats.responses_framer import (
    ResponsesFramer,
    is_codex_client,
    sanitize_error_text,
    usage_from_responses,
)
from crossroute.formats.sse import SSEParser

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "openai_responses"
ALL_SSE = sorted(p.name for p in FIX.glob("*.sse"))
SMALL = [
    "stream_text_2025.sse",
    "stream_function_call.sse",
    "stream_failed.SYNTHETIC.sse",
    "stream_error_event.SYNTHETIC.sse",
]


def run(chunks: list[bytes], codex: bool = False) -> tuple[bytes, ResponsesFramer]:
    f = ResponsesFramer(codex_client=codex)
    out = b"".join(f.feed(c) for c in chunks) + f.finish()
    return out, f


def frames(out: bytes) -> list[tuple[str | None, dict]]:
    evs = SSEParser().feed(out)
    return [(e.event, orjson.loads(e.data)) for e in evs]


def ev(name: str | None, payload: dict) -> bytes:
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


CREATED = {
    "type": "response.created",
    "sequence_number": 0,
    "response": {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": "m",
        "status": "in_progress",
        "output": [],
    },
}
DELTA = {
    "type": "response.output_text.delta",
    "item_id": "msg_1",
    "output_index": 0,
    "content_index": 0,
    "delta": "hi",
    "sequence_number": 1,
}
ITEM = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "status": "completed",
    "content": [{"type": "output_text", "text": "hi", "annotations": []}],
}
USAGE = {
    "input_tokens": 7,
    "input_tokens_details": {"cached_tokens": 3},
    "output_tokens": 5,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 12,
}


def completed(output: list | None = None, seq: int = 3, drop_output: bool = False) -> dict:
    resp = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": "m",
        "status": "completed",
        "output": output if output is not None else [],
        "usage": USAGE,
    }
    if drop_output:
        del resp["output"]
    return {"type": "response.completed", "response": resp, "sequence_number": seq}


def item_done(item: dict, idx: int | None, seq: int) -> dict:
    d = {"type": "response.output_item.done", "item": item, "sequence_number": seq}
    if idx is not None:
        d["output_index"] = idx
    return d


GOOD = (
    ev("response.created", CREATED)
    + ev("response.output_text.delta", DELTA)
    + ev("response.output_item.done", item_done(ITEM, 0, 2))
    + ev("response.completed", completed([ITEM]))
)


# ---------------------------------------------------------------- pass-through


def test_well_formed_stream_passes_through_byte_for_byte() -> None:
    out, f = run([GOOD])
    assert out == GOOD
    assert f.completed and f.terminal and f.error is None


@pytest.mark.parametrize(
    "name",
    [
        "stream_text_2025.sse",
        "stream_function_call.sse",
        "stream_reasoning_summary_text.sse",
        "stream_reasoning_summary_code_interpreter_cached.sse",
    ],
)
def test_real_fixtures_pass_through_unchanged(name: str) -> None:
    data = (FIX / name).read_bytes()
    out, f = run([data])
    assert out == data
    assert f.completed
    last = frames(data)[-1][1]
    assert f.usage == usage_from_responses(last["response"]["usage"])


def test_usage_taken_from_completed_for_accounting() -> None:
    _, f = run([GOOD])
    assert f.usage is not None
    assert (f.usage.input_tokens, f.usage.output_tokens, f.usage.cached_tokens, f.usage.reasoning_tokens) == (
        7,
        5,
        3,
        2,
    )


def test_incomplete_is_a_successful_terminal_with_usage() -> None:
    inc = {
        "type": "response.incomplete",
        "sequence_number": 1,
        "response": {
            "id": "resp_1",
            "status": "incomplete",
            "output": [ITEM],
            "usage": USAGE,
            "incomplete_details": {"reason": "max_output_tokens"},
        },
    }
    out, f = run([ev("response.created", CREATED) + ev("response.incomplete", inc)])
    assert [e for e, _ in frames(out)] == ["response.created", "response.incomplete"]
    assert f.completed and f.usage is not None and f.usage.output_tokens == 5


# ---------------------------------------------------------------- chunk splits


def test_event_line_split_from_data_line_at_newline() -> None:
    a = ev("response.created", CREATED)
    cut = a.index(b"\n") + 1
    out, _ = run([a[:cut], a[cut:] + ev("response.completed", completed([ITEM]))])
    assert out.startswith(a)
    assert [e for e, _ in frames(out)] == ["response.created", "response.completed"]


def test_event_line_without_newline_then_data_chunk_gets_one_newline() -> None:
    a = ev("response.created", CREATED)
    cut = a.index(b"\n")  # the chunk ends right before the line break, next starts with "data:"
    chunk2 = a[cut + 1 :]
    assert chunk2.startswith(b"data:")
    f = ResponsesFramer()
    assert f.feed(a[:cut]) == b""
    assert f.feed(chunk2) == a


def test_no_extra_newline_before_chunk_starting_with_line_break() -> None:
    a = ev("response.created", CREATED)
    cut = a.index(b"\n")
    f = ResponsesFramer()
    assert f.feed(a[:cut]) == b""
    out = f.feed(a[cut:])  # starts with "\n"
    assert out == a
    assert b"\n\ndata:" not in out


def test_no_newline_inserted_when_pending_ends_with_newline() -> None:
    a = ev("response.created", CREATED)
    cut = a.index(b"\n") + 1
    f = ResponsesFramer()
    assert f.feed(a[:cut]) == b""
    assert f.feed(a[cut:]) == a


def test_data_json_split_in_two() -> None:
    a = ev("response.output_text.delta", DELTA)
    mid = a.index(b'"delta"')
    f = ResponsesFramer()
    assert f.feed(a[:mid]) == b""
    assert f.feed(a[mid:]) == a


@pytest.mark.parametrize("marker", [b":", b"data:", b"event:", b"id:"])
def test_json_split_before_field_like_text_is_not_broken(marker: bytes) -> None:
    # a JSON payload cut so that the remainder starts with ':' / 'data:' must not get a newline
    payload = dict(DELTA, delta=marker.decode() + " tricky")
    a = ev("response.output_text.delta", payload)
    body = a
    if marker == b":":
        cut = a.index(b'":"') + 1  # after a key's closing quote, the rest starts with ':'
    else:
        cut = a.index(b'"' + marker) + 1
    assert body[cut:].startswith(marker)
    f = ResponsesFramer()
    out = f.feed(a[:cut]) + f.feed(a[cut:])
    assert out == a


def test_split_between_cr_and_lf_of_crlf_delimiter() -> None:
    a = ev("response.created", CREATED).replace(b"\n", b"\r\n")
    cut = len(a) - 1  # ends with "\r\n\r", then "\n"
    f = ResponsesFramer()
    out = f.feed(a[:cut]) + f.feed(a[cut:])
    assert frames(out) == frames(ev("response.created", CREATED))


def test_crlf_delimited_frames_are_split() -> None:
    data = GOOD.replace(b"\n", b"\r\n")
    out, f = run([data])
    assert out == GOOD  # re-framed with LF line ends
    assert f.completed


def test_earliest_delimiter_wins_when_lf_and_crlf_mix() -> None:
    a = ev("response.created", CREATED)
    b = ev("response.output_text.delta", DELTA).replace(b"\n", b"\r\n")
    out, _ = run([a + b + ev("response.completed", completed([ITEM]))])
    assert [e for e, _ in frames(out)] == ["response.created", "response.output_text.delta", "response.completed"]


# ---------------------------------------------------------------- undelimited frames


def test_undelimited_frame_with_event_and_valid_json_is_emitted_at_once() -> None:
    a = ev("response.created", CREATED)
    f = ResponsesFramer()
    assert f.feed(a[:-2]) == a  # no blank line yet, but complete: sent without waiting
    assert f.feed(b"\n\n") == b""  # its delimiter arrives later: nothing doubled
    assert f.feed(ev("response.completed", completed([ITEM]))).startswith(b"event: response.completed")


def test_undelimited_frame_with_incomplete_json_is_held() -> None:
    a = ev("response.created", CREATED)
    f = ResponsesFramer()
    assert f.feed(a[:-5]) == b""
    assert f.feed(a[-5:]) == a


def test_undelimited_data_only_frame_waits_for_next_data_chunk() -> None:
    a = ev(None, CREATED)
    b = ev(None, completed([ITEM]))
    f = ResponsesFramer()
    assert f.feed(a[:-2]) == b""  # no event: field -> not emitted on its own
    out = f.feed(b[:-2])  # the next chunk starts with "data:": the pending frame is closed
    assert out == a
    out += f.feed(b"\n\n")
    assert out == a + b


def test_data_only_frames_pass_through() -> None:
    data = ev(None, CREATED) + ev(None, DELTA) + ev(None, completed([ITEM]))
    out, f = run([data])
    assert out == data
    assert f.completed


def test_data_before_event_frame_is_accepted() -> None:
    frame = b"data: " + orjson.dumps(CREATED) + b"\nevent: response.created\n\n"
    out, _ = run([frame, ev("response.completed", completed([ITEM]))])
    assert frames(out)[0] == ("response.created", CREATED)


def test_comments_and_keepalives_are_dropped_not_forwarded() -> None:
    out, _ = run([b": keep-alive\n\n", GOOD])
    assert out == GOOD


# ---------------------------------------------------------------- finish / EOF


def test_finish_flushes_complete_data_only_frame() -> None:
    tail = ev(None, completed([ITEM]))[:-2]
    out, f = run([ev("response.created", CREATED), tail])
    assert frames(out)[-1][1]["type"] == "response.completed"
    assert f.completed


def test_incomplete_trailing_frame_is_dropped_then_error() -> None:
    cut = ev("response.completed", completed([ITEM]))[:-30]
    out, f = run([ev("response.created", CREATED), cut])
    fr = frames(out)
    assert [e for e, _ in fr] == ["response.created", "error"]
    err = fr[-1][1]
    assert err["type"] == "error"
    assert err["message"] == "upstream stream closed before a terminal event (last event: response.created)"
    assert err["sequence_number"] == 1
    assert not f.completed and f.error is not None and f.error[0] == 502


def test_no_terminal_event_gives_error_with_last_event_none() -> None:
    out, _ = run([b""])
    fr = frames(out)
    assert fr == [
        (
            "error",
            {
                "type": "error",
                "code": "server_error",
                "message": "upstream stream closed before a terminal event (last event: none)",
                "param": None,
                "sequence_number": 0,
            },
        )
    ]


def test_no_terminal_event_codex_gets_response_failed() -> None:
    out, _ = run([ev("response.created", CREATED)], codex=True)
    name, payload = frames(out)[-1]
    assert name == "response.failed"
    assert payload["type"] == "response.failed"
    assert payload["sequence_number"] == 1
    assert payload["response"]["status"] == "failed"
    assert payload["response"]["id"] == "resp_1"
    assert payload["response"]["error"]["message"].startswith("upstream stream closed before a terminal event")


def test_invalid_json_payload_becomes_terminal_error() -> None:
    out, f = run([ev("response.created", CREATED), b"event: response.output_text.delta\ndata: {nope\n\n", GOOD])
    fr = frames(out)
    assert [e for e, _ in fr] == ["response.created", "error"]
    assert "not valid JSON" in fr[-1][1]["message"]
    assert f.terminal and not f.completed


def test_done_marker_before_terminal_becomes_error() -> None:
    out, _ = run([ev(None, CREATED), b"data: [DONE]\n\n"])
    fr = frames(out)
    assert fr[-1][0] == "error"
    assert b"[DONE]" not in out


def test_nothing_after_terminal_frame() -> None:
    f = ResponsesFramer()
    out = f.feed(GOOD + ev("response.output_text.delta", DELTA))
    assert out == GOOD
    assert f.feed(ev("response.output_text.delta", DELTA)) == b""
    assert f.finish() == b""


def test_nothing_after_terminal_error() -> None:
    err = {"type": "error", "code": "server_error", "message": "boom", "param": None, "sequence_number": 1}
    f = ResponsesFramer()
    out = f.feed(ev("response.created", CREATED) + ev("error", err) + ev("response.completed", completed()))
    assert [e for e, _ in frames(out)] == ["response.created", "error"]
    assert f.feed(GOOD) == b"" and f.finish() == b""


# ---------------------------------------------------------------- output rebuild


def test_empty_completed_output_is_rebuilt_from_item_done_events() -> None:
    fc = {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "status": "completed"}
    rs = {"id": "rs_1", "type": "reasoning", "summary": []}
    extra = {"id": "x_1", "type": "message", "role": "assistant", "content": []}
    data = (
        ev("response.created", CREATED)
        + ev("response.output_item.done", item_done(fc, 2, 1))  # out of order
        + ev("response.output_item.done", item_done(extra, None, 2))  # unindexed -> last
        + ev("response.output_item.done", item_done(rs, 0, 3))
        + ev("response.output_item.done", item_done(ITEM, 1, 4))
        + ev("response.completed", completed([], seq=5))
    )
    out, f = run([data])
    last = frames(out)[-1][1]
    assert [i["id"] for i in last["response"]["output"]] == ["rs_1", "msg_1", "fc_1", "x_1"]
    assert f.completed


def test_missing_completed_output_is_rebuilt() -> None:
    data = ev("response.output_item.done", item_done(ITEM, 0, 0)) + ev(
        "response.completed", completed(drop_output=True, seq=1)
    )
    out, _ = run([data])
    assert frames(out)[-1][1]["response"]["output"] == [ITEM]


def test_non_empty_completed_output_is_left_alone() -> None:
    other = dict(ITEM, id="msg_2")
    data = ev("response.output_item.done", item_done(ITEM, 0, 0)) + ev("response.completed", completed([other]))
    out, _ = run([data])
    assert out == data


def test_rebuilt_output_is_what_the_sdk_returns() -> None:
    data = (
        ev("response.created", CREATED)
        + ev("response.output_item.done", item_done(ITEM, 0, 1))
        + ev("response.completed", completed([], seq=2))
    )
    out, _ = run([data])
    final = _sdk_final(out)
    assert final.output_text == "hi"


# ---------------------------------------------------------------- terminal errors


def test_upstream_error_event_is_sanitised_and_keeps_sequence_number() -> None:
    err = {
        "type": "error",
        "code": "server_error",
        "param": None,
        "sequence_number": 2,
        "message": "failed for api_key=sk-live-123 with Authorization: Bearer abc.def",
    }
    out, f = run([ev("response.created", CREATED) + ev("error", err)])
    name, payload = frames(out)[-1]
    assert name == "error"
    assert payload == {
        "type": "error",
        "code": "server_error",
        "message": "failed for api_key=[REDACTED] with Authorization: Bearer [REDACTED]",
        "param": None,
        "sequence_number": 2,
    }
    assert f.error == (502, "server_error", payload["message"])


@pytest.mark.parametrize("codex", [False, True])
def test_response_failed_fixture(codex: bool) -> None:
    data = (FIX / "stream_failed.SYNTHETIC.sse").read_bytes()
    out, f = run([data], codex=codex)
    name, payload = frames(out)[-1]
    if codex:
        assert name == "response.failed"
        assert payload["response"]["status"] == "failed"
        assert payload["response"]["error"] == {
            "code": "server_error",
            "message": "An error occurred while processing your request.",
        }
        assert payload["response"]["id"] == "resp_01000000000000000000000000000000000000000000000000"
    else:
        assert name == "error"
        assert payload["code"] == "server_error"
        assert payload["message"] == "An error occurred while processing your request."
    assert payload["sequence_number"] == 2
    assert not f.completed


def test_non_null_error_key_is_terminal() -> None:
    out, _ = run([ev(None, {"error": {"message": "quota", "code": "insufficient_quota"}})])
    name, payload = frames(out)[-1]
    assert (name, payload["code"], payload["message"]) == ("error", "insufficient_quota", "quota")


def test_nested_response_error_is_terminal() -> None:
    body = {"type": "response.in_progress", "response": {"id": "r", "error": {"code": "x", "message": "y"}}}
    out, _ = run([ev("response.in_progress", body)])
    assert frames(out)[-1][1]["code"] == "x"


def test_code_and_message_payload_is_terminal_with_status() -> None:
    out, f = run([ev(None, {"code": "rate_limit_exceeded", "message": "slow down", "status": 429})])
    assert frames(out)[-1][1]["code"] == "rate_limit_exceeded"
    assert f.error is not None and f.error[0] == 429


def test_status_defaults_code_when_missing() -> None:
    _, f = run([ev("error", {"type": "error", "message": "busy", "status_code": 503})])
    assert f.error == (503, "server_error", "busy")


def test_terminal_event_name_overrides_payload_type() -> None:
    out, f = run([b"event: error\ndata: " + orjson.dumps({"detail": "x"}) + b"\n\n"])
    assert frames(out)[-1][0] == "error"
    assert f.terminal and not f.completed


def test_terminal_completed_event_name_with_untyped_payload() -> None:
    body = {"response": {"id": "r", "output": [ITEM], "usage": USAGE}}
    out, f = run([b"event: response.completed\ndata: " + orjson.dumps(body) + b"\n\n"])
    assert f.completed and f.usage is not None and f.usage.input_tokens == 7
    assert frames(out)[-1][0] == "response.completed"


def test_error_fields_are_truncated() -> None:
    err = {"type": "error", "code": "c" * 1000, "message": "m" * 5000, "param": "p" * 1000}
    out, _ = run([ev("error", err)])
    payload = frames(out)[-1][1]
    assert payload["message"] == "m" * 2048 + "…"
    assert payload["code"] == "c" * 256 + "…"
    assert payload["param"] == "p" * 256 + "…"


def test_sanitize_error_text_variants() -> None:
    s = sanitize_error_text('{"token": "abc123", "secret":"s3"} access_token=zz Bearer tok.en max_tokens=10')
    assert "abc123" not in s and "s3" not in s and "zz" not in s and "tok.en" not in s
    assert "Bearer [REDACTED]" in s and "max_tokens=10" in s


def test_framer_error_events_parse_in_openai_sdk() -> None:
    out, _ = run([ev("response.created", CREATED)])
    events = _sdk_events(out)
    assert [e.type for e in events] == ["response.created", "error"]
    out, _ = run([ev("response.created", CREATED)], codex=True)
    events = _sdk_events(out)
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed"


# ---------------------------------------------------------------- codex detection


@pytest.mark.parametrize(
    ("ua", "orig", "want"),
    [
        ("codex_cli_rs/0.50.0 (Mac OS 15.1; arm64) iTerm.app", None, True),
        (None, "codex_cli_rs", True),
        ("codex-tui/1.0", None, True),
        ("Codex Desktop/1.2", None, True),
        ("OpenAI/Python 3.54.0", "", False),
        (None, None, False),
    ],
)
def test_is_codex_client(ua: str | None, orig: str | None, want: bool) -> None:
    assert is_codex_client(ua, orig) is want


# ---------------------------------------------------------------- replay at every split


def _reference(data: bytes) -> bytes:
    out, _ = run([data])
    return out


@pytest.mark.parametrize("name", SMALL)
def test_fixture_split_at_every_byte_offset(name: str) -> None:
    data = (FIX / name).read_bytes()
    ref = _reference(data)
    for cut in range(1, len(data)):
        out, _ = run([data[:cut], data[cut:]])
        assert out == ref, f"split at {cut}"


@pytest.mark.parametrize("name", ALL_SSE)
def test_fixture_random_multi_splits(name: str) -> None:
    data = (FIX / name).read_bytes()
    ref = _reference(data)
    ref_events = [(e.event, e.data) for e in SSEParser().feed(ref)]
    rnd = random.Random(name)
    offsets = rnd.sample(range(1, len(data)), min(len(data) - 1, 300))
    for cut in offsets:
        assert run([data[:cut], data[cut:]])[0] == ref, f"split at {cut}"
    for trial in range(25):
        chunks, pos = [], 0
        hi = rnd.choice([3, 17, 64, 400, 3000])
        while pos < len(data):
            n = rnd.randint(1, hi)
            chunks.append(data[pos : pos + n])
            pos += n
        out, _ = run(chunks)
        assert [(e.event, e.data) for e in SSEParser().feed(out)] == ref_events, f"trial {trial}"


def test_crlf_fixture_random_splits_match_lf() -> None:
    data = (FIX / "stream_function_call.sse").read_bytes()
    crlf = data.replace(b"\n", b"\r\n")
    rnd = random.Random(7)
    for _ in range(20):
        chunks, pos = [], 0
        while pos < len(crlf):
            n = rnd.randint(1, 90)
            chunks.append(crlf[pos : pos + n])
            pos += n
        assert run(chunks)[0] == data


# ---------------------------------------------------------------- SDK helpers


def _client(body: bytes) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return openai.OpenAI(
        api_key="test",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def _sdk_events(body: bytes) -> list:
    return list(_client(body).responses.create(model="m", input="hi", stream=True))


def _sdk_final(body: bytes) -> SDKResponse:
    with _client(body).responses.stream(model="m", input="hi") as s:
        return s.get_final_response()


def test_public_fail_ends_the_stream_once() -> None:
    f = ResponsesFramer()
    out = f.feed(ev("response.created", CREATED) + b"event: response.output_text.delta\ndata: {\"ty")
    out += f.fail(504, "upstream timed out")
    name, payload = frames(out)[-1]
    assert (name, payload["code"], payload["message"], payload["sequence_number"]) == (
        "error",
        "server_error",
        "upstream timed out",
        1,
    )
    assert f.error == (504, "server_error", "upstream timed out")
    assert f.fail(500, "again") == b"" and f.feed(GOOD) == b"" and f.finish() == b""
