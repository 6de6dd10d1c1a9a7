"""Kimi executor: the wire per client format, exact URLs and device headers, and real HTTP against
the strict fake (tests/e2e/fake_cloud.py) streamed and not, with its faults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import orjson
import pytest

from crossroute.formats.sse import SSEParser
from crossroute.providers import EXECUTORS, Outbound, UpstreamError
from crossroute.providers.kimi import KimiExecutor, device_headers
from tests.e2e.fake_cloud import DEVICE_ID, KIMI_API_KEY, TOKEN, FakeCloud, account, drain, entry_for
from tests.provider_support import loopback_io, serving
from tests.upstream_io import LoopbackIO

CLAUDE_BODY = orjson.dumps({"model": "text", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
CHAT_BODY = orjson.dumps({"model": "text", "messages": [{"role": "user", "content": "hi"}]})
HEADERS = {"X-Msh-Platform": "crossroute", "X-Msh-Version": "0.1.0", "X-Msh-Device-Name": "host",
           "X-Msh-Device-Model": "Linux x86_64", "X-Msh-Device-Id": DEVICE_ID}


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    yield from serving(FakeCloud())


@pytest.fixture
async def io() -> AsyncIterator[LoopbackIO]:
    async with loopback_io() as io:
        yield io


def kimi_account(**extra: object) -> object:
    return account("kimi-1700000000000.json", type="kimi", access_token=TOKEN, refresh_token="r-1",
                   device_id=DEVICE_ID, headers=HEADERS, **extra)


def test_registered_and_wire_per_client() -> None:
    ex = EXECUTORS["kimi"]
    assert isinstance(ex, KimiExecutor)
    e = entry_for("kimi", KimiExecutor.default_base_url, kimi_account())  # type: ignore[arg-type]
    assert ex.wire_format(e, "claude") == "claude"
    for fmt in ("openai", "responses", "gemini"):
        assert ex.wire_format(e, fmt) == "openai"
    assert ex.supports == {"generate", "count_tokens"}
    assert "kimi-for-coding" in ex.models


def test_requests_built_exactly() -> None:
    ex = KimiExecutor()
    e = entry_for("kimi", "https://api.kimi.com/coding", kimi_account())  # type: ignore[arg-type]
    r = ex.build(e, Outbound("generate", "claude", "kimi-for-coding", CLAUDE_BODY, True,
                             {"anthropic-beta": "b1", "user-agent": "claude-cli/2.1"}))
    assert r.url == "https://api.kimi.com/coding/v1/messages"
    assert r.headers["Authorization"] == f"Bearer {TOKEN}"
    assert r.headers["anthropic-version"] == "2023-06-01" and r.headers["anthropic-beta"] == "b1"
    assert r.headers["Accept"] == "text/event-stream"
    assert r.headers["user-agent"] == "claude-cli/2.1"  # the real client, passed through
    assert [k for k in r.headers if k.lower() == "user-agent"] == ["user-agent"]  # once
    assert {k: r.headers[k] for k in HEADERS} == HEADERS
    assert r.body == CLAUDE_BODY
    c = ex.build(e, Outbound("count_tokens", "claude", "kimi-for-coding", b"{}", False, {}))
    assert c.url == "https://api.kimi.com/coding/v1/messages/count_tokens"
    o = ex.build(e, Outbound("generate", "openai", "kimi-for-coding", CHAT_BODY, False, {}))
    assert o.url == "https://api.kimi.com/coding/v1/chat/completions"
    assert "anthropic-version" not in o.headers and o.headers["Accept"] == "application/json"
    assert o.headers["user-agent"].startswith("crossroute/")  # no client UA: crossroute's own, never Kimi's


def test_device_headers_from_device_id_when_the_file_has_none() -> None:
    acct = account("kimi-1.json", type="kimi", access_token=TOKEN, device_id="dev-xyz")
    h = device_headers(acct)
    assert h["X-Msh-Device-Id"] == "dev-xyz" and h["X-Msh-Platform"] == "crossroute"
    assert device_headers(account("kimi-2.json", type="kimi", access_token=TOKEN)) == {}


@pytest.mark.parametrize("stream", [False, True])
async def test_messages_against_the_fake(cloud: FakeCloud, io: LoopbackIO, stream: bool) -> None:
    cloud.clear()
    ex = KimiExecutor()
    e = entry_for("kimi", cloud.base + "/coding", kimi_account())  # type: ignore[arg-type]
    body = orjson.dumps({**orjson.loads(CLAUDE_BODY), "stream": stream})
    up = await ex.send(e, Outbound("generate", "claude", "text", body, stream, {}), io)
    raw = await drain(up) if stream else await up.body(1 << 20)
    assert cloud.of("kimi")[-1].problems == []
    if stream:
        events = SSEParser().feed(raw)
        assert events[0].event == "message_start" and events[-1].event == "message_stop"
    else:
        assert orjson.loads(raw)["type"] == "message"


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_against_the_fake(cloud: FakeCloud, io: LoopbackIO, stream: bool) -> None:
    cloud.clear()
    e = entry_for("kimi", cloud.base + "/coding", kimi_account())  # type: ignore[arg-type]
    body = orjson.dumps({**orjson.loads(CHAT_BODY), "stream": stream})
    up = await KimiExecutor().send(e, Outbound("generate", "openai", "text", body, stream, {}), io)
    raw = await drain(up) if stream else await up.body(1 << 20)
    seen = cloud.of("kimi")[-1]
    assert seen.problems == [] and seen.path == "/coding/v1/chat/completions"
    if stream:
        assert b"data: [DONE]" in raw
    else:
        assert orjson.loads(raw)["object"] == "chat.completion"


async def test_the_fake_rejects_a_request_without_device_headers(cloud: FakeCloud, io: LoopbackIO) -> None:
    cloud.clear()
    bare = account("kimi-3.json", type="kimi", access_token=TOKEN)
    e = entry_for("kimi", cloud.base + "/coding", bare)
    with pytest.raises(UpstreamError) as info:
        await KimiExecutor().send(e, Outbound("generate", "openai", "text", CHAT_BODY, False, {}), io)
    assert info.value.status == 400 and "X-Msh-Device-Id" in info.value.message


async def test_429_with_retry_after_is_a_model_failure(cloud: FakeCloud, io: LoopbackIO) -> None:
    cloud.clear()
    e = entry_for("kimi", cloud.base + "/coding", kimi_account())  # type: ignore[arg-type]
    with pytest.raises(UpstreamError) as info:
        body = orjson.dumps({**orjson.loads(CLAUDE_BODY), "model": "err429"})
        await KimiExecutor().send(e, Outbound("generate", "claude", "err429", body, False, {}), io)
    assert info.value.status == 429 and info.value.retry_after == 7.0 and info.value.scope == "model"


def test_chat_history_repaired_for_kimi() -> None:
    from crossroute.providers.kimi import REASONING_UNAVAILABLE, chat_body

    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = orjson.dumps({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": ""},  # empty: dropped
        {"role": "assistant", "content": None, "tool_calls": [call]},  # no reasoning: the fallback
        {"role": "tool", "content": "42"},  # no id: the one pending call's
        {"role": "assistant", "content": "ok", "reasoning_content": "thought about it"},
        {"role": "assistant", "content": [{"type": "text", "text": "again"}], "tool_calls": [{**call, "id": "c2"}]},
        {"role": "tool", "call_id": "c2", "content": "43"},
    ]})
    msgs = orjson.loads(chat_body(body))["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant", "assistant", "tool"]
    assert msgs[1]["reasoning_content"] == REASONING_UNAVAILABLE and msgs[2]["tool_call_id"] == "call_1"
    assert msgs[4]["reasoning_content"] == "thought about it"  # the latest reasoning seen
    assert msgs[5]["tool_call_id"] == "c2"
    fine = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert chat_body(fine) is fine  # nothing to repair: not even parsed
    e = entry_for("kimi", "https://api.kimi.com/coding", kimi_account())  # type: ignore[arg-type]
    built = KimiExecutor().build(e, Outbound("generate", "openai", "m", body, False, {}))
    assert orjson.loads(built.body)["messages"][1]["reasoning_content"] == REASONING_UNAVAILABLE
    claude = KimiExecutor().build(e, Outbound("generate", "claude", "m", body, False, {}))
    assert claude.body is body  # the Messages endpoint gets the body as translated


async def test_an_api_key_account_needs_no_device(cloud: FakeCloud, io: LoopbackIO) -> None:
    cloud.clear()
    acct = account("kimi-9.json", type="kimi", api_key=KIMI_API_KEY)
    e = entry_for("kimi", cloud.base + "/coding", acct, token=KIMI_API_KEY)
    up = await KimiExecutor().send(e, Outbound("generate", "claude", "text", CLAUDE_BODY, False, {}), io)
    assert orjson.loads(await up.body(1 << 20))["type"] == "message"
    up.close(True)
    seen = cloud.of("kimi")[-1]
    assert seen.problems == [] and not any(k.lower().startswith("x-msh-") for k in seen.headers)
