"""The cloud fake (tests/e2e/fake_cloud.py) compresses every answer like Google's front ends (when
Accept-Encoding allows it, or always when forced), and the Antigravity and Vertex executors read
each of them decoded: streams through the envelope, whole answers, discovery, counts and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from crossroute.config import ProviderEntry
from crossroute.formats.sse import SSEParser
from crossroute.providers import Outbound, UpstreamError
from crossroute.providers.antigravity import AntigravityExecutor
from crossroute.providers.vertex import VertexExecutor
from tests.e2e.fake_cloud import API_KEY, TOKEN, FakeCloud, account, drain, entry_for
from tests.upstream_io import LoopbackIO

BODY = orjson.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})


@pytest.fixture
async def fake() -> AsyncIterator[FakeCloud]:
    srv = FakeCloud().start()
    try:
        yield srv
    finally:
        srv.stop()


async def session(accept: str | None) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"Accept-Encoding": accept} if accept else None)


async def run_antigravity(fake: FakeCloud, io: LoopbackIO) -> None:
    ex = AntigravityExecutor(hosts=(fake.base,), discovery_host=fake.base)
    acct = account("antigravity-z@example.com.json", type="antigravity", access_token=TOKEN, refresh_token="r")
    e = entry_for("antigravity", fake.base, acct)  # no project in the file: discovered (compressed answers)
    for stream in (False, True):
        up = await ex.send(e, Outbound("generate", "gemini", "text", BODY, stream, {}), io)
        raw = await drain(up) if stream else await up.body(1 << 20)
        objs = [orjson.loads(ev.data) for ev in SSEParser().feed(raw)] if stream else [orjson.loads(raw)]
        assert objs and all("candidates" in o and "response" not in o for o in objs)
    up = await ex.send(e, Outbound("count_tokens", "gemini", "text", BODY, False, {}), io)
    assert orjson.loads(await up.body(4096)) == {"totalTokens": 42}
    up.close(True)
    fake.fail_next["antigravity"] = [(429, orjson.dumps({"error": {"code": 429, "message": "reset after 33s."}}), {})]
    with pytest.raises(UpstreamError) as info:
        await ex.send(e, Outbound("generate", "gemini", "text", BODY, False, {}), io)
    assert info.value.retry_after == 33.0 and b"reset after" in (info.value.body or b"")  # the error body decoded
    with pytest.raises(UpstreamError) as info:  # a 400 the fake refuses with (problems named in the body)
        await ex.send(e, Outbound("generate", "gemini", "text", b'{"contents": []}', False, {}), io)
    assert info.value.status == 400 and "contents" in info.value.message


async def test_every_answer_is_gzipped_when_the_client_allows_it(fake: FakeCloud) -> None:
    async with await session("gzip, deflate") as http:
        await run_antigravity(fake, LoopbackIO(http))
    paths = {path for path, _ in fake.encodings}
    assert {"/v1internal:loadCodeAssist", "/v1internal:generateContent", "/v1internal:streamGenerateContent",
            "/v1internal:countTokens"} <= paths
    assert all(enc == "gzip" for _, enc in fake.encodings), fake.encodings


async def test_nothing_is_compressed_for_a_client_asking_for_identity(fake: FakeCloud) -> None:
    async with await session("identity") as http:
        await run_antigravity(fake, LoopbackIO(http))
    assert fake.encodings and all(enc is None for _, enc in fake.encodings)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
async def test_forced_encodings_are_decoded_as_a_gateway_asking_for_identity_gets_them(
        fake: FakeCloud, encoding: str) -> None:
    fake.force_encoding = encoding
    async with await session("identity") as http:  # what crossroute's gateway asks upstreams for
        io = LoopbackIO(http)
        await run_antigravity(fake, io)
        e = ProviderEntry(kind="vertex", provider="vertex", name="vk", api_key=API_KEY, base_url=fake.base)
        up = await VertexExecutor().send(e, Outbound("generate", "gemini", "text", BODY, True, {}), io)
        assert all("candidates" in orjson.loads(ev.data) for ev in SSEParser().feed(await drain(up)))
    assert fake.encodings and all(enc == encoding for _, enc in fake.encodings)
