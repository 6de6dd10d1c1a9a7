"""xAI executor: the Responses API for every client format (chat completions still buildable), exact
URLs and auth, a token read per request; real HTTP against the strict fake (tests/e2e/fake_cloud.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import orjson
import pytest

from crossroute.config import ProviderEntry
from crossroute.formats.sse import SSEParser
from crossroute.providers import EXECUTORS, Outbound, UpstreamError
from crossroute.providers.xai import XaiExecutor
from tests.e2e.fake_cloud import API_KEY, FakeCloud, account, drain, entry_for
from tests.provider_support import loopback_io, serving
from tests.upstream_io import LoopbackIO

CHAT = orjson.dumps({"model": "text", "messages": [{"role": "user", "content": "hi"}]})
RESP = orjson.dumps({"model": "text", "input": "hi"})


def key_entry(base: str = "https://api.x.ai/v1") -> ProviderEntry:
    return ProviderEntry(kind="xai", provider="xai", name="xai", api_key=API_KEY, base_url=base)


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    yield from serving(FakeCloud())


@pytest.fixture
async def io() -> AsyncIterator[LoopbackIO]:
    async with loopback_io() as io:
        yield io


def test_wire_and_urls() -> None:
    ex = EXECUTORS["xai"]
    assert isinstance(ex, XaiExecutor)
    e = key_entry()
    assert all(ex.wire_format(e, f) == "responses" for f in ("openai", "responses", "claude", "gemini"))
    r = ex.build(e, Outbound("generate", "openai", "grok-4.6", CHAT, True, {"user-agent": "my-app/1"}))
    assert r.url == "https://api.x.ai/v1/chat/completions"
    assert r.headers["Authorization"] == f"Bearer {API_KEY}" and r.headers["Accept"] == "text/event-stream"
    assert r.headers["user-agent"] == "my-app/1"
    assert ex.build(e, Outbound("generate", "responses", "m", RESP, False, {})).url == "https://api.x.ai/v1/responses"
    assert ex.build(e, Outbound("compact", "responses", "m", RESP, False, {})).url == \
        "https://api.x.ai/v1/responses/compact"
    assert ex.supports == {"generate", "compact"}


def test_an_account_token_is_read_per_request() -> None:
    class Rotating:
        def __init__(self) -> None:
            self.n = 0

        def token(self) -> str:
            self.n += 1
            return f"tok-{self.n}"

        async def refresh(self) -> bool:
            return True

    acct = account("xai-a@example.com.json", type="xai", access_token="tok-0")
    e = entry_for("xai", XaiExecutor.default_base_url, acct)
    e.derived["token"] = Rotating()
    ex = XaiExecutor()
    first = ex.build(e, Outbound("generate", "openai", "m", CHAT, False, {}))
    second = ex.build(e, Outbound("generate", "openai", "m", CHAT, False, {}))
    assert (first.headers["Authorization"], second.headers["Authorization"]) == ("Bearer tok-1", "Bearer tok-2")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("wire", ["openai", "responses"])
async def test_against_the_fake(cloud: FakeCloud, io: LoopbackIO, wire: str, stream: bool) -> None:
    cloud.clear()
    body = orjson.dumps({**orjson.loads(CHAT if wire == "openai" else RESP), "stream": stream})
    up = await XaiExecutor().send(key_entry(cloud.base + "/v1"), Outbound("generate", wire, "text", body, stream, {}),
                                  io)
    raw = await drain(up) if stream else await up.body(1 << 20)
    assert cloud.of("xai")[-1].problems == []
    if stream:
        events = SSEParser().feed(raw)
        assert events
        if wire == "responses":
            assert events[-1].event == "response.completed"
    else:
        assert orjson.loads(raw)["object"] == ("chat.completion" if wire == "openai" else "response")


async def test_429_and_rejected_key(cloud: FakeCloud, io: LoopbackIO) -> None:
    cloud.clear()
    body = orjson.dumps({**orjson.loads(CHAT), "model": "err429"})
    with pytest.raises(UpstreamError) as info:
        await XaiExecutor().send(key_entry(cloud.base + "/v1"), Outbound("generate", "openai", "err429", body, False,
                                                                         {}), io)
    assert info.value.status == 429 and info.value.retry_after == 7.0
    wrong = ProviderEntry(kind="xai", provider="xai", name="xai", api_key="wrong", base_url=cloud.base + "/v1")
    with pytest.raises(UpstreamError) as info:
        await XaiExecutor().send(wrong, Outbound("generate", "openai", "text", CHAT, False, {}), io)
    assert info.value.status == 400 and "Authorization" in info.value.message
