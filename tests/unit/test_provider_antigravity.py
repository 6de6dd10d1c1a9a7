"""Antigravity executor: the envelope and its cleaned schemas, answers and stream events unwrapped
(split at any byte), project discovery once per account, hosts tried in order; real HTTP against
the strict fake (tests/e2e/fake_cloud.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from crossroute.formats.sse import SSEParser
from crossroute.providers import EXECUTORS, Outbound, UpstreamError
from crossroute.providers.antigravity import DAILY_HOST, PROD_HOST, AntigravityExecutor, envelope_body
from crossroute.providers.envelope import Unwrapped, unwrap_body
from tests.e2e.fake_cloud import PROJECT, TOKEN, FakeCloud, account, drain, entry_for
from tests.provider_support import loopback_io, serving
from tests.upstream_io import LoopbackIO

TOOL_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
    "properties": {"city": {"type": "string", "minLength": 1, "format": "uri"},
                   "unit": {"enum": ["c", "f"], "default": "c"},
                   "when": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                   "opts": {"type": "object"}},
    "required": ["city"],
}


def gemini_body(model: str = "text", tools: bool = False, **extra: Any) -> bytes:
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
                            **extra}
    if tools:
        body["tools"] = [{"functionDeclarations": [{"name": "weather", "description": "w",
                                                    "parametersJsonSchema": TOOL_SCHEMA}]}]
    return orjson.dumps(body)


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    yield from serving(FakeCloud())


@pytest.fixture
async def io() -> AsyncIterator[LoopbackIO]:
    async with loopback_io() as io:
        yield io


def ag_account(name: str = "antigravity-a@example.com.json", **extra: Any) -> Any:
    return account(name, type="antigravity", access_token=TOKEN, refresh_token="r", email="a@example.com", **extra)


# ------------------------------------------------------------------ the envelope
def test_registered_gemini_wire_and_hosts_in_order() -> None:
    ex = EXECUTORS["antigravity"]
    assert isinstance(ex, AntigravityExecutor)
    e = entry_for("antigravity", AntigravityExecutor.default_base_url, ag_account(project_id=PROJECT))
    assert all(ex.wire_format(e, f) == "gemini" for f in ("openai", "responses", "claude", "gemini"))
    assert ex.hosts_for(e) == (DAILY_HOST, PROD_HOST)
    custom = entry_for("antigravity", "http://127.0.0.1:9", ag_account(base_url="http://127.0.0.1:9/"))
    assert ex.hosts_for(custom) == ("http://127.0.0.1:9",)
    r = ex.build(e, Outbound("generate", "gemini", "gemini-3-flash", gemini_body(), True, {}))
    assert r.url == DAILY_HOST + "/v1internal:streamGenerateContent?alt=sse"
    assert r.headers["Authorization"] == f"Bearer {TOKEN}" and r.headers["User-Agent"].startswith("crossroute/")
    assert ex.build(e, Outbound("generate", "gemini", "m", gemini_body(), False, {})).url.endswith(
        "/v1internal:generateContent")
    assert ex.build(e, Outbound("count_tokens", "gemini", "m", b'{"contents": []}', False, {})).url.endswith(
        "/v1internal:countTokens")


def test_envelope_fields_and_cleaned_tools() -> None:
    env = orjson.loads(envelope_body(Outbound("generate", "gemini", "gemini-3-flash", gemini_body(tools=True),
                                              False, {}), PROJECT))
    assert set(env) == {"project", "model", "request", "requestType", "requestId"}
    assert env["project"] == PROJECT and env["model"] == "gemini-3-flash" and env["requestType"] == "agent"
    assert env["requestId"].startswith("agent-")
    req = env["request"]
    assert "safetySettings" not in req and req["sessionId"].startswith("-")
    decl = req["tools"][0]["functionDeclarations"][0]
    assert "parametersJsonSchema" not in decl
    params = decl["parameters"]
    assert params["properties"]["city"] == {"type": "string", "description": "minLength: 1 (format: uri)"}
    assert "enum" not in params["properties"]["unit"] and "Allowed: c, f" in params["properties"]["unit"]["description"]
    assert params["properties"]["when"]["nullable"] is True
    assert "additionalProperties" not in params and "$schema" not in params
    assert "toolConfig" not in req  # Gemini models: calls not VALIDATED
    # the same conversation keeps its session id
    again = orjson.loads(envelope_body(Outbound("generate", "gemini", "m", gemini_body(), False, {}), PROJECT))
    assert again["request"]["sessionId"] == req["sessionId"]


def test_claude_models_get_validated_calls_and_placeholders() -> None:
    env = orjson.loads(envelope_body(Outbound("generate", "gemini", "claude-sonnet-4-6", gemini_body(tools=True),
                                              False, {}), PROJECT))
    req = env["request"]
    assert req["toolConfig"]["functionCallingConfig"]["mode"] == "VALIDATED"
    opts = req["tools"][0]["functionDeclarations"][0]["parameters"]["properties"]["opts"]
    assert opts["required"] == ["reason"] and opts["properties"]["reason"]["type"] == "string"
    forced = gemini_body(tools=True, toolConfig={"functionCallingConfig": {"mode": "NONE"}})
    env = orjson.loads(envelope_body(Outbound("generate", "gemini", "claude-sonnet-4-6", forced, False, {}), PROJECT))
    assert env["request"]["toolConfig"]["functionCallingConfig"]["mode"] == "NONE"  # the client's choice kept


def test_count_envelope_and_response_schema() -> None:
    count = {"generateContentRequest": {"model": "models/m", "contents": [{"role": "user", "parts": [{"text": "x"}]}]}}
    env = orjson.loads(envelope_body(Outbound("count_tokens", "gemini", "m", orjson.dumps(count), False, {}), ""))
    assert env == {"request": {"contents": count["generateContentRequest"]["contents"]}}
    body = gemini_body(generationConfig={"responseMimeType": "application/json", "responseJsonSchema": {
        "type": "object", "properties": {"ok": {"type": "boolean", "enum": [True]}, "n": {"type": "integer",
                                                                                        "minimum": 1}},
        "additionalProperties": False}})
    gen = orjson.loads(envelope_body(Outbound("generate", "gemini", "m", body, False, {}), PROJECT))
    schema = gen["request"]["generationConfig"]["responseJsonSchema"]
    assert schema["additionalProperties"] is False and "enum" not in schema["properties"]["ok"]
    assert schema["properties"]["n"] == {"type": "integer", "description": "minimum: 1"}
    with pytest.raises(UpstreamError) as info:
        envelope_body(Outbound("generate", "gemini", "m", b"[1]", False, {}), PROJECT)
    assert info.value.scope == "request"


# ------------------------------------------------------------------ unwrapping
class Chunked:
    """An Upstream that hands out ``data`` in pieces of ``size`` bytes."""

    io_errors = (OSError,)
    status = 200
    headers: dict[str, str] = {}

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.pos, self.closed = data, size, 0, False

    async def read_chunk(self) -> bytes:
        piece = self.data[self.pos:self.pos + self.size]
        self.pos += len(piece)
        return piece

    async def body(self, limit: int) -> bytes:
        return self.data

    def at_eof(self) -> bool:
        return self.pos >= len(self.data)

    def close(self, reuse: bool) -> None:
        self.closed = True


WRAPPED = (b'data: {"response":{"candidates":[{"content":{"parts":[{"text":"Hel"}]}}]},"traceId":"t"}\r\n\r\n'
           b': keep-alive\n\n'
           b'data: {"response":{"candidates":[{"content":{"parts":[{"text":"lo"}]}}],"usageMetadata":'
           b'{"promptTokenCount":3}}}\n\n'
           b'data: {"error":{"code":500,"message":"boom"}}\r\r')


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50, 10_000])
async def test_stream_events_unwrapped_at_any_split(size: int) -> None:
    up = Unwrapped(Chunked(WRAPPED, size))  # type: ignore[arg-type]
    out = b""
    while chunk := await up.read_chunk():
        out += chunk
    assert up.at_eof()
    datas = [orjson.loads(e.data) for e in SSEParser().feed(out) if e.data]
    assert [d.get("candidates", [{}])[0].get("content", {}).get("parts", [{}])[0].get("text") for d in datas[:2]] \
        == ["Hel", "lo"]
    assert datas[1]["usageMetadata"] == {"promptTokenCount": 3}
    assert datas[2] == {"error": {"code": 500, "message": "boom"}}  # not enveloped: passed unchanged


async def test_pending_bytes_are_bounded() -> None:
    up = Unwrapped(Chunked(b"data: " + b"x" * 5000, 100), max_pending=1000)  # type: ignore[arg-type]
    first = await up.read_chunk()
    assert 1000 < len(first) <= 1100  # passed through once past the bound, not buffered forever


def test_whole_answers_unwrapped() -> None:
    assert orjson.loads(unwrap_body(b'{"response": {"candidates": []}, "traceId": "t"}')) == {"candidates": []}
    html = b"<html>oops</html>"
    assert unwrap_body(html) is html
    err = b'{"error": {"code": 403, "message": "no"}}'
    assert unwrap_body(err) is err


# ------------------------------------------------------------------ real HTTP
@pytest.mark.parametrize("stream", [False, True])
async def test_generate_against_the_fake(cloud: FakeCloud, io: LoopbackIO, stream: bool) -> None:
    cloud.clear()
    ex = AntigravityExecutor(hosts=(cloud.base,))
    e = entry_for("antigravity", cloud.base, ag_account(project_id=PROJECT))
    up = await ex.send(e, Outbound("generate", "gemini", "text", gemini_body(tools=True), stream, {}), io)
    assert up.headers.get("Content-Encoding") == "gzip"  # compressed, as Google answers when allowed
    raw = await drain(up) if stream else await up.body(1 << 20)
    assert cloud.of("antigravity")[-1].problems == []
    if stream:
        chunks = [orjson.loads(ev.data) for ev in SSEParser().feed(raw)]
        assert chunks and all("response" not in c and "candidates" in c for c in chunks)
    else:
        obj = orjson.loads(raw)
        assert "response" not in obj and obj["candidates"]


async def test_project_discovered_once_for_concurrent_first_requests(io: LoopbackIO) -> None:
    fake = FakeCloud().start()
    try:
        ex = AntigravityExecutor(hosts=(fake.base,), discovery_host=fake.base)
        e = entry_for("antigravity", fake.base, ag_account())  # no project_id in the file
        outs = [ex.send(e, Outbound("generate", "gemini", "text", gemini_body(), False, {}), io) for _ in range(3)]
        for up in await asyncio.gather(*outs):
            await up.body(1 << 20)
            up.close(True)
        assert [s.path for s in fake.of("discovery")] == ["/v1internal:loadCodeAssist"]
        assert all(s.problems == [] for s in fake.requests)
        assert ex.project_known(e) == PROJECT
        assert fake.of("discovery")[0].body == {"metadata": AntigravityExecutor.discovery_metadata}
    finally:
        fake.stop()


async def test_onboarding_polled_until_done(io: LoopbackIO) -> None:
    fake = FakeCloud(project=None, onboard_polls=2).start()
    try:
        ex = AntigravityExecutor(hosts=(fake.base,), discovery_host=fake.base, onboard_wait=0.01)
        e = entry_for("antigravity", fake.base, ag_account("antigravity-b@example.com.json"))
        up = await ex.send(e, Outbound("generate", "gemini", "text", gemini_body(), False, {}), io)
        await up.body(1 << 20)
        up.close(True)
        assert [s.path for s in fake.of("discovery")] == ["/v1internal:loadCodeAssist"] + \
            ["/v1internal:onboardUser"] * 3
        assert fake.of("discovery")[1].body["tier_id"] == "standard-tier"
        assert fake.of("antigravity")[-1].body["project"] == PROJECT
    finally:
        fake.stop()


async def test_discovery_failure_is_the_credentials(io: LoopbackIO) -> None:
    fake = FakeCloud().start()
    try:
        fake.fail_next["discovery"] = [(403, b'{"error": {"code": 403, "message": "denied"}}', {})]
        ex = AntigravityExecutor(hosts=(fake.base,), discovery_host=fake.base)
        e = entry_for("antigravity", fake.base, ag_account("antigravity-c@example.com.json"))
        with pytest.raises(UpstreamError) as info:
            await ex.send(e, Outbound("generate", "gemini", "text", gemini_body(), False, {}), io)
        assert info.value.status == 403 and info.value.scope == "credential"
        assert fake.of("antigravity") == []
    finally:
        fake.stop()


def _dead_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("failure", ["refused", "503-html", "429"])
async def test_next_host_tried_within_the_attempt(io: LoopbackIO, failure: str) -> None:
    first, second = FakeCloud().start(), FakeCloud().start()
    try:
        base1 = _dead_port() if failure == "refused" else first.base
        if failure == "503-html":
            first.fail_next["antigravity"] = [(503, b"<html><h1>503</h1></html>", {})]
        elif failure == "429":
            first.fail_next["antigravity"] = [(429, b'{"error":{"code":429,"message":"slow"}}', {"Retry-After": "3"})]
        ex = AntigravityExecutor(hosts=(base1, second.base))
        e = entry_for("antigravity", DAILY_HOST, ag_account(project_id=PROJECT))
        up = await ex.send(e, Outbound("generate", "gemini", "text", gemini_body(), True, {}), io)
        assert b"candidates" in await drain(up)
        assert len(second.of("antigravity")) == 1
        assert second.of("antigravity")[0].body["requestId"] == (
            first.of("antigravity")[0].body["requestId"] if failure != "refused" else
            second.of("antigravity")[0].body["requestId"])  # one request, sent again: the same id
    finally:
        first.stop()
        second.stop()


async def test_a_request_error_is_not_retried_on_the_next_host(io: LoopbackIO) -> None:
    first, second = FakeCloud().start(), FakeCloud().start()
    try:
        ex = AntigravityExecutor(hosts=(first.base, second.base))
        e = entry_for("antigravity", DAILY_HOST, ag_account(project_id="wrong-project"))
        with pytest.raises(UpstreamError) as info:
            await ex.send(e, Outbound("generate", "gemini", "text", gemini_body(), False, {}), io)
        assert info.value.status == 400 and "project must be" in info.value.message
        assert second.requests == []
    finally:
        first.stop()
        second.stop()


async def test_the_last_hosts_429_keeps_the_wait_its_body_asks_for(io: LoopbackIO) -> None:
    fake = FakeCloud().start()
    try:
        body = orjson.dumps({"error": {"code": 429, "message": "quota will reset after 33s.",
                                       "status": "RESOURCE_EXHAUSTED"}})
        fake.fail_next["antigravity"] = [(429, body, {}), (429, body, {})]
        ex = AntigravityExecutor(hosts=(fake.base, fake.base + "/"))
        e = entry_for("antigravity", DAILY_HOST, ag_account(project_id=PROJECT))
        with pytest.raises(UpstreamError) as info:
            await ex.send(e, Outbound("generate", "gemini", "text", gemini_body(), False, {}), io)
        assert info.value.status == 429 and info.value.retry_after == 33.0
        assert len(fake.of("antigravity")) == 2  # both hosts tried
    finally:
        fake.stop()


async def test_401_refreshes_and_resends_to_the_same_host_once(cloud: FakeCloud, io: LoopbackIO) -> None:
    cloud.clear()

    class Refreshing:
        refreshed = 0

        def token(self) -> str:
            return TOKEN

        async def refresh(self) -> bool:
            self.refreshed += 1
            return True

    cloud.fail_next["antigravity"] = [(401, b'{"error": {"code": 401, "message": "expired"}}', {})]
    ex = AntigravityExecutor(hosts=(cloud.base, "http://127.0.0.1:9"))
    e = entry_for("antigravity", DAILY_HOST, ag_account(project_id=PROJECT))
    src = e.derived["token"] = Refreshing()
    up = await ex.send(e, Outbound("generate", "gemini", "text", gemini_body(), False, {}), io)
    assert orjson.loads(await up.body(1 << 20))["candidates"]
    up.close(True)
    seen = cloud.of("antigravity")
    assert src.refreshed == 1 and len(seen) == 2 and seen[0].body == seen[1].body


def test_a_conversation_opening_with_a_model_turn_gets_a_user_turn_first() -> None:
    body = orjson.dumps({"contents": [{"role": "model", "parts": [{"text": "Hello, how can I help?"}]},
                                      {"role": "user", "parts": [{"text": "hi"}]}]})
    req = orjson.loads(envelope_body(Outbound("generate", "gemini", "gemini-3-flash", body, False, {}), PROJECT))
    assert [c["role"] for c in req["request"]["contents"]] == ["user", "model", "user"]
    claude = orjson.loads(envelope_body(Outbound("generate", "gemini", "claude-sonnet-4-6", body, False, {}), PROJECT))
    assert [c["role"] for c in claude["request"]["contents"]] == ["model", "user"]


# ------------------------------------------------------------------ the request spliced in when it need not change
PLAIN = b'{"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"temperature": 0.50}}'


def test_a_request_that_need_not_change_goes_into_the_envelope_as_it_came() -> None:
    raw = envelope_body(Outbound("generate", "gemini", "gemini-3-flash", PLAIN, True, {}), PROJECT)
    assert PLAIN[1:-1] in raw  # not dumped again: spacing and 0.50 kept
    env = orjson.loads(raw)
    assert env["request"] == {**orjson.loads(PLAIN), "sessionId": env["request"]["sessionId"]}
    assert env["request"]["sessionId"] == orjson.loads(
        envelope_body(Outbound("generate", "gemini", "m", gemini_body(), False, {}), PROJECT))["request"]["sessionId"]
    assert {k: v for k, v in env.items() if k not in ("request", "requestId")} == \
        {"model": "gemini-3-flash", "requestType": "agent", "project": PROJECT}
    assert env["requestId"].startswith("agent-")
    counted = envelope_body(Outbound("count_tokens", "gemini", "m", PLAIN, False, {}), "")
    assert counted == b'{"request":' + PLAIN + b"}"


@pytest.mark.parametrize("body", [
    b'{"contents": [], "sessionId": "-7"}', b'{"sessionId": "", "contents": []}', b'{"sessionId": null}', b"{}",
    b' {"contents": [{"role": "model", "parts": [{"text": "x"}]}], "model": "m", "safetySettings": []} ',
])
def test_the_envelope_has_one_session_id_and_no_refused_fields(body: bytes) -> None:
    raw = envelope_body(Outbound("generate", "gemini", "gemini-3-flash", body, False, {}), PROJECT)
    env = orjson.loads(raw)
    assert raw.count(b'"sessionId"') == 1 and env["request"]["sessionId"]
    assert "model" not in env["request"] and "safetySettings" not in env["request"]
    if env["request"].get("contents"):
        assert env["request"]["contents"][0]["role"] == "user"


# ------------------------------------------------------------------ a discovered project written to the file
class Remembering:
    """A token source that, like an account's, can write what is learnt into the account's file."""

    def __init__(self, fail: bool = False) -> None:
        self.kept: list[dict[str, Any]] = []
        self.fail = fail

    def token(self) -> str:
        return TOKEN

    async def refresh(self) -> bool:
        return False

    async def remember(self, **fields: Any) -> bool:
        if self.fail:
            raise OSError("read-only file system")
        self.kept.append(fields)
        return True


async def settle(ex: AntigravityExecutor) -> None:
    for _ in range(100):
        if not ex._writes:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the project write did not finish")


@pytest.mark.parametrize("fail", [False, True])
async def test_a_discovered_project_is_handed_to_the_account_once(io: LoopbackIO, fail: bool) -> None:
    fake = FakeCloud().start()
    try:
        ex = AntigravityExecutor(hosts=(fake.base,), discovery_host=fake.base)
        e = entry_for("antigravity", fake.base, ag_account("antigravity-k@example.com.json"))
        src = e.derived["token"] = Remembering(fail)
        for _ in range(2):
            up = await ex.send(e, Outbound("generate", "gemini", "text", gemini_body(), False, {}), io)
            await up.body(1 << 20)  # a failed write never fails the request
            up.close(True)
        await settle(ex)
        assert src.kept == ([] if fail else [{"project_id": PROJECT}])
        assert len(fake.of("discovery")) == 1 and fake.of("antigravity")[-1].body["project"] == PROJECT
    finally:
        fake.stop()


async def test_a_known_project_or_a_source_that_cannot_write_writes_nothing(io: LoopbackIO, cloud: FakeCloud) -> None:
    ex = AntigravityExecutor(hosts=(cloud.base,), discovery_host=cloud.base)
    known = entry_for("antigravity", cloud.base, ag_account("antigravity-m@example.com.json", project_id=PROJECT))
    src = known.derived["token"] = Remembering()
    up = await ex.send(known, Outbound("generate", "gemini", "text", gemini_body(), False, {}), io)
    up.close(False)
    plain = entry_for("antigravity", cloud.base, ag_account("antigravity-n@example.com.json"))  # StaticKey
    up = await ex.send(plain, Outbound("generate", "gemini", "text", gemini_body(), False, {}), io)
    up.close(False)
    await settle(ex)
    assert src.kept == [] and ex.project_known(plain) == PROJECT
