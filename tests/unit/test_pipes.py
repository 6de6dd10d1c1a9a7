from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crossroute.formats import translate
from crossroute.formats.pipes import (
    ChatPassthrough,
    ClaudePassthrough,
    GeminiPassthrough,
    UpstreamEventError,
    _Shape,
)
from crossroute.formats.sse import MAX_EVENT_BYTES, SSEParser

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def run(pipe: object, data: bytes, size: int = 7) -> bytes:
    out = b"".join(pipe.feed(data[i:i + size]) for i in range(0, len(data), size))  # type: ignore[attr-defined]
    return out + pipe.finish()  # type: ignore[attr-defined]


def datas(raw: bytes) -> list[bytes]:
    return [e.data for e in SSEParser().feed(raw)]


def test_chat_passthrough_drops_the_usage_chunk_it_asked_for() -> None:
    data = (FIXTURES / "openai_chat/stream_text_usage.sse").read_bytes()
    pipe = ChatPassthrough(client_wants_usage=False)
    out = datas(run(pipe, data))
    assert out[-1] == b"[DONE]"
    assert all(orjson.loads(d)["choices"] for d in out[:-1])
    assert pipe.usage is not None and pipe.usage.input_tokens > 0 and pipe.usage.output_tokens > 0


def test_chat_passthrough_keeps_usage_when_asked_and_events_unchanged() -> None:
    data = (FIXTURES / "openai_chat/stream_text_usage_2025.sse").read_bytes()
    out = datas(run(ChatPassthrough(client_wants_usage=True), data))
    assert out == datas(data)  # the same event bytes, re-framed


def test_chat_passthrough_usage_has_cached_and_reasoning() -> None:
    body = (b'data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,'
            b'"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":3}}}\n\n'
            b"data: [DONE]\n\n")
    pipe = ChatPassthrough(client_wants_usage=True)
    run(pipe, body)
    u = pipe.usage
    assert u is not None and (u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens) == (10, 5, 4, 3)


def test_chat_midstream_error_ends_with_done() -> None:
    data = (FIXTURES / "openai_chat/stream_error_midstream.SYNTHETIC.sse").read_bytes()
    out = datas(run(ChatPassthrough(False), data))
    assert b'"error"' in out[-2] and out[-1] == b"[DONE]"


def test_chat_early_eof_becomes_error_event() -> None:
    data = (FIXTURES / "openai_chat/stream_text_usage.sse").read_bytes()[:500]
    out = datas(run(ChatPassthrough(False), data))
    assert b"closed before completion" in out[-2] and out[-1] == b"[DONE]"


def test_claude_passthrough_usage_and_missing_final_newline() -> None:
    data = (FIXTURES / "anthropic/stream_text_basic.sse").read_bytes()
    pipe = ClaudePassthrough()
    raw = run(pipe, data)
    events = SSEParser().feed(raw)
    assert events[-1].event == "message_stop"
    assert all(e.event for e in events)
    assert pipe.usage is not None and pipe.usage.output_tokens > 0


def test_gemini_passthrough_json_array() -> None:
    data = (FIXTURES / "gemini/stream_text.sse").read_bytes()
    pipe = GeminiPassthrough(sse=False)
    chunks = orjson.loads(run(pipe, data))
    assert len(chunks) == 3 and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert pipe.usage is not None and pipe.usage.input_tokens > 0


# ------------------------------------------------------------------ the failure contract

FORMATS = ["openai", "claude", "gemini", "responses"]

# per upstream format: (a good first event, an error event, an event with broken JSON)
GOOD = {
    "openai": b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
              b'[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n',
    "claude": b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
              b'"role":"assistant","content":[],"model":"m","usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
              b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
              b'"content_block":{"type":"text","text":""}}\n\n'
              b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
              b'"delta":{"type":"text_delta","text":"Hi"}}\n\n',
    "gemini": b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"}}]}\r\n\r\n',
    "responses": b'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":'
                 b'{"id":"resp_1","object":"response","status":"in_progress","model":"m","output":[]}}\n\n'
                 b'event: response.output_item.added\ndata: {"type":"response.output_item.added",'
                 b'"sequence_number":1,"output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant",'
                 b'"content":[],"status":"in_progress"}}\n\n'
                 b'event: response.content_part.added\ndata: {"type":"response.content_part.added",'
                 b'"sequence_number":2,"item_id":"msg_1","output_index":0,"content_index":0,'
                 b'"part":{"type":"output_text","text":""}}\n\n'
                 b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                 b'"sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi"}\n\n',
}
ERROR = {
    "openai": b'data: {"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limit_exceeded"}}\n\n',
    "claude": b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}\n\n',
    "gemini": b'data: {"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED"}}\r\n\r\n',
    "responses": b'event: response.failed\ndata: {"type":"response.failed","sequence_number":0,"response":'
                 b'{"id":"r","status":"failed","error":{"code":"rate_limit_exceeded","message":"slow down"}}}\n\n',
}
BROKEN = {
    "openai": b'data: {"id":"c1","choices":[{"delta":{"content":"Hel\n\n',
    "claude": b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"text\n\n',
    "gemini": b'data: {"candidates":[{"content":{"parts":[{"text":"Hel\r\n\r\n',
    "responses": b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"x\n\n',
}


def make_pipe(upstream: str, client: str) -> Any:
    body: dict[str, Any] = {"model": "m", "stream": True}
    if client == "openai":
        body["messages"] = [{"role": "user", "content": "hi"}]
    elif client == "claude":
        body.update(max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    elif client == "gemini":
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    else:
        body["input"] = "hi"
    return translate.Prepared(client, body, None, {}).pipe(upstream, "m")


PAIRS = [(u, c) for u in FORMATS for c in FORMATS]


def client_datas(client: str, raw: bytes) -> list[Any]:
    """Every data payload a client would parse; raises if one is not valid JSON."""
    if client == "gemini" and raw[:1] == b"[":
        return orjson.loads(raw)
    return [orjson.loads(ev.data) for ev in SSEParser().feed(raw) if ev.data != b"[DONE]"]


@pytest.mark.parametrize(("upstream", "client"), PAIRS)
def test_broken_json_first_raises_before_any_output(upstream: str, client: str) -> None:
    pipe = make_pipe(upstream, client)
    with pytest.raises(UpstreamEventError) as exc:
        pipe.feed(BROKEN[upstream])
    assert exc.value.status == 502 and "JSON" in exc.value.message
    assert not pipe.started and not pipe.done


@pytest.mark.parametrize(("upstream", "client"), PAIRS)
def test_broken_json_later_is_never_relayed(upstream: str, client: str) -> None:
    pipe = make_pipe(upstream, client)
    out = pipe.feed(GOOD[upstream])
    assert out and pipe.started
    try:
        tail = pipe.feed(BROKEN[upstream])
    except UpstreamEventError as exc:  # the caller then ends the stream with the pipe's error
        assert exc.status == 502
        tail = pipe.error(exc.status, exc.message)
    assert pipe.done
    events = client_datas(client, out + tail)  # all valid JSON
    assert "error" in orjson.dumps(events[-1]).decode()


@pytest.mark.parametrize(("upstream", "client"), PAIRS)
def test_broken_json_in_the_same_chunk_keeps_the_output_before_it(upstream: str, client: str) -> None:
    """Before any output a raise discards what the call rendered (the next credential answers
    afresh); after it, the output before the broken event is kept and the error follows."""
    pipe = make_pipe(upstream, client)
    with pytest.raises(UpstreamEventError):
        pipe.feed(GOOD[upstream] + BROKEN[upstream])
    assert not pipe.started
    pipe = make_pipe(upstream, client)
    out = pipe.feed(GOOD[upstream])
    more = GOOD[upstream].split(b"\n\n")[-2] + b"\n\n" if upstream != "gemini" else GOOD[upstream]
    out2 = pipe.feed(more + BROKEN[upstream])
    assert pipe.done and pipe.started
    events = client_datas(client, out + out2)
    assert out2.count(b"Hi") >= 1 and "error" in orjson.dumps(events[-1]).decode()


@pytest.mark.parametrize(("upstream", "client"), PAIRS)
def test_an_error_event_first_raises_with_the_upstream_status(upstream: str, client: str) -> None:
    pipe = make_pipe(upstream, client)
    with pytest.raises(UpstreamEventError) as exc:
        for i in range(0, len(ERROR[upstream]), 5):  # split anywhere
            pipe.feed(ERROR[upstream][i:i + 5])
    assert exc.value.status == 429 and "slow down" in exc.value.message
    assert not pipe.started and not pipe.done
    # a caller that cannot fail over any more ends the stream with the pipe's terminal error
    tail = pipe.error(exc.value.status, exc.value.message)
    assert pipe.done and "slow down" in orjson.dumps(client_datas(client, tail)[-1]).decode()


@pytest.mark.parametrize(("upstream", "client"), PAIRS)
def test_an_error_event_after_output_is_the_terminal_error(upstream: str, client: str) -> None:
    pipe = make_pipe(upstream, client)
    out = pipe.feed(GOOD[upstream])
    out += pipe.feed(ERROR[upstream])
    assert pipe.done
    assert "slow down" in orjson.dumps(client_datas(client, out)[-1]).decode()


HTML = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>\n\n"


@pytest.mark.parametrize(("upstream", "client"), PAIRS)
@pytest.mark.parametrize("body", [HTML, b'{"error": {"message": "x"}}\n\n', b"\xef\xbb\xbf\r\nHTTP/1.1 200"])
def test_bytes_that_are_not_an_event_stream_raise_502(upstream: str, client: str, body: bytes) -> None:
    pipe = make_pipe(upstream, client)
    with pytest.raises(UpstreamEventError) as exc:
        for i in range(0, len(body), 3):
            pipe.feed(body[i:i + 3])
        pipe.finish()
    assert exc.value.status == 502 and "not an event stream" in exc.value.message


@pytest.mark.parametrize(("upstream", "client"), PAIRS)
def test_eof_before_any_output_raises(upstream: str, client: str) -> None:
    pipe = make_pipe(upstream, client)
    assert pipe.feed(b": keep-alive\n\n") == b""
    with pytest.raises(UpstreamEventError) as exc:
        pipe.finish()
    assert exc.value.status == 502 and not pipe.started


@pytest.mark.parametrize(("upstream", "client"), PAIRS)
def test_an_event_that_never_ends_is_refused_past_the_limit(upstream: str, client: str) -> None:
    pipe = make_pipe(upstream, client)
    pipe.feed(GOOD[upstream])
    piece = b"x" * 65536
    pipe.feed(b'data: {"a":"')
    with pytest.raises(UpstreamEventError) as exc:
        for _ in range(MAX_EVENT_BYTES // len(piece) + 2):
            pipe.feed(piece)
    assert exc.value.status == 502 and "larger than" in exc.value.message


@pytest.mark.parametrize(("upstream", "client"), PAIRS)
def test_recorded_streams_still_pass_split_at_every_size(upstream: str, client: str) -> None:
    data = (FIXTURES / FILES[upstream]).read_bytes()
    whole = run(make_pipe(upstream, client), data, size=len(data))
    for size in (1, 2, 7, 61):
        assert len(run(make_pipe(upstream, client), data, size)) > 0
    client_datas(client, whole)


FILES = {
    "openai": "openai_chat/stream_text_usage_2025.sse",
    "claude": "anthropic/stream_thinking_signature_text.sse",
    "gemini": "gemini/stream_function_call_thought_signature.sse",
    "responses": "openai_responses/stream_reasoning_summary_text.sse",
}


def test_chat_passthrough_parses_every_event_once_and_keeps_its_bytes() -> None:
    data = (FIXTURES / "openai_chat/stream_tool_call_usage_2025.sse").read_bytes()
    pipe = ChatPassthrough(client_wants_usage=True)
    assert datas(run(pipe, data, 13)) == datas(data)
    assert pipe.usage is not None and pipe.started and pipe.done


@given(st.binary(max_size=40) | st.text(max_size=20).map(lambda t: orjson.dumps(t)[1:-1]))
def test_a_shape_match_is_always_valid_json(middle: bytes) -> None:
    """The passthrough's shortcut (_Shape) accepts an event only when the whole is valid JSON."""
    ref = b'{"id":"c","choices":[{"index":0,"delta":{"content":"He \\"said\\\\"},"finish_reason":null}]}'
    shape = _Shape.of(ref, b'"content":"', 'He "said\\')
    assert shape is not None
    event = shape.prefix + middle + shape.suffix
    if shape.match(event):
        orjson.loads(event)


def test_text_chunks_after_the_first_take_the_shortcut_and_others_do_not() -> None:
    pipe = ChatPassthrough(client_wants_usage=True)
    head = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"'
    tail = b'"},"finish_reason":null}]}\n\n'
    out = pipe.feed(head + b"a" + tail) + pipe.feed(head + b"b" + tail)
    assert out.count(b"data: ") == 2 and pipe._shape is not None
    with pytest.raises(UpstreamEventError):  # same shape, broken string: the full parse refuses it
        pipe.feed(head + b'x"y' + tail)
    done = pipe.feed(b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
                     b"data: [DONE]\n\n")
    assert pipe.done and done.endswith(b"data: [DONE]\n\n")


WRONG_TYPES = [
    b'{"choices":{"a":1}}', b'{"choices":[1,2]}', b'{"choices":[{"delta":"x"}]}',
    b'{"choices":[{"delta":{"tool_calls":[{"index":"x","function":5}]}}]}', b'{"usage":{"prompt_tokens":"x"}}',
    b'{"error":{"code":true,"message":5}}', b"[1]", b'"s"', b'{"candidates":[{"content":{"parts":"x"}}]}',
    b'{"usageMetadata":{"promptTokenCount":"x"}}', b'{"type":"message_start","message":{"usage":{"input_tokens":"x"}}}',
    b'{"type":"content_block_start","index":"x","content_block":5}', b'{"type":"message_delta","delta":5,"usage":"x"}',
    b'{"type":"response.completed","response":{"usage":{"input_tokens":"x"}}}',
]
NAMES = [b"", b"event: message_start\n", b"event: content_block_start\n", b"event: message_delta\n",
         b"event: response.completed\n"]


@pytest.mark.parametrize(("upstream", "client"), PAIRS)
def test_fields_of_the_wrong_type_end_the_stream_cleanly(upstream: str, client: str) -> None:
    """Whatever an upstream event holds, a pipe answers bytes or UpstreamEventError, never a crash."""
    end = b"\r\n\r\n" if upstream == "gemini" else b"\n\n"
    for body in WRONG_TYPES:
        for name in NAMES:
            for after_output in (False, True):
                pipe = make_pipe(upstream, client)
                out = b""
                try:
                    if after_output:
                        out = pipe.feed(GOOD[upstream])
                    out += pipe.feed(name + b"data: " + body + end)
                    out += pipe.finish()
                except UpstreamEventError as exc:
                    out += pipe.error(exc.status, exc.message)
                client_datas(client, out)  # what the client got is valid JSON throughout
