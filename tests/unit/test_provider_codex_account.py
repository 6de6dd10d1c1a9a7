"""Codex by a ChatGPT account (kind ``codex-oauth``) against the strict fake of chatgpt.com's Codex
endpoint: URL, ``ChatGPT-Account-ID`` (from the file or the id_token), the body the service requires
(``stream: true``, ``store: false``, ``instructions``, no ``max_output_tokens``), a whole answer
assembled from the stream, long tool names shortened and restored (stream, whole answer,
compaction), failures in the stream and usage limits with their reset, 401 -> refresh, and the
Codex client's headers passed through without anything forged for other clients."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from crossroute.auth.accounts import Account
from crossroute.config import ProviderEntry
from crossroute.providers import EXECUTORS, Outbound, UpstreamError
from crossroute.providers.base import BadAnswer
from crossroute.providers.codex import CodexExecutor
from crossroute.providers.codex_account import CodexAccountExecutor, account_id_of
from crossroute.providers.stream_assembly import AssembledResponse
from crossroute.providers.tool_names import shorten_tools
from crossroute.routing.quota import QuotaBook
from tests.e2e.fake_subscription import CODEX_ACCOUNT, CODEX_TOKEN, TEXT, FakeSubscription
from tests.provider_support import loopback_io, serving
from tests.unit.test_provider_claude_code import Noting, Rotating
from tests.upstream_io import LoopbackIO

LONG = "mcp__corporate-knowledge-base__search_documents_by_semantic_similarity_v2"
CODEX_HEADERS = {
    "session-id": "01a2333e-1d16-7f63-a500-32f18ed6e475",
    "thread-id": "01a2333e-1d16-7f63-a500-32f18ed6e475",
    "x-client-request-id": "01a2333e-1d16-7f63-a500-32f18ed6e475",
    "x-codex-window-id": "01a2333e-1d16-7f63-a500-32f18ed6e475:0",
    "x-codex-beta-features": "remote_compaction_v2",
    "x-codex-turn-metadata": '{"turn_id":"t1"}',
    "originator": "codex_exec",
    "version": "0.171.0",
    "user-agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.171.0)",
    "chatgpt-account-id": "acct-of-the-clients-own-login",
    "authorization": "Bearer client-key-of-the-gateway",
}
BODY: dict[str, Any] = {"model": "gpt-5.5", "input": [{"role": "user", "content": "Say hello"}],
                        "max_output_tokens": 256, "store": True}


def id_token(account: str) -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    return b64({"alg": "none"}) + "." + b64({"email": "u@example.com", "https://api.openai.com/auth": {
        "chatgpt_account_id": account, "chatgpt_plan_type": "plus"}}) + ".sig"


def account_entry(base: str, token: Any = None, raw_account: bool = True) -> ProviderEntry:
    raw: dict[str, Any] = {"type": "codex", "email": "u@example.com", "access_token": CODEX_TOKEN,
                           "id_token": id_token(CODEX_ACCOUNT)}
    if raw_account:
        raw["account_id"] = CODEX_ACCOUNT
    acct = Account(name="codex-u@example.com-plus.json", path=Path("/nonexistent"), provider="codex", raw=raw,
                   email="u@example.com", access_token=CODEX_TOKEN, id_token=raw["id_token"])
    e = ProviderEntry(kind="codex-oauth", provider="codex", name="codex-u@example.com-plus.json", api_key="",
                      base_url=base, cred_id="auth:codex-u@example.com-plus.json")
    e.derived["account"] = acct
    e.derived["token"] = token or Rotating(CODEX_TOKEN)
    return e


def outbound(body: dict[str, Any], stream: bool = False, headers: Mapping[str, str] | None = None,
             op: str = "generate") -> Outbound:
    return Outbound(op, "responses", body["model"], orjson.dumps({**body, "stream": stream}), stream, headers or {})


def with_tools(*names: str) -> dict[str, Any]:
    return {**BODY, "tools": [{"type": "function", "name": n, "parameters": {"type": "object"}} for n in names]}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSubscription]:
    yield from serving(FakeSubscription())


@pytest.fixture
async def io(fake: FakeSubscription) -> AsyncIterator[LoopbackIO]:
    fake.clear()
    fake.expired.clear()
    async with loopback_io(quota=Noting()) as io:
        yield io


EX = CodexAccountExecutor()


async def read_stream(up: Any) -> bytes:
    data = b""
    while chunk := await up.read_chunk():
        data += chunk
    up.close(True)
    return data


def test_registered_with_its_models_and_operations() -> None:
    ex = EXECUTORS["codex-oauth"]
    assert isinstance(ex, CodexAccountExecutor)
    assert ex.supports == {"generate", "compact"}
    assert ex.default_base_url == "https://chatgpt.com/backend-api/codex"
    assert ex.wire_format(account_entry("x"), "claude") == "responses"
    assert "gpt-5.5" in ex.models


def test_account_id_from_the_file_or_the_id_token() -> None:
    assert account_id_of(account_entry("x")) == CODEX_ACCOUNT
    assert account_id_of(account_entry("x", raw_account=False)) == CODEX_ACCOUNT  # the id_token claim


def test_request_of_the_codex_client() -> None:
    req = EX.build(account_entry("https://chatgpt.com/backend-api/codex"), outbound(BODY, True, CODEX_HEADERS))
    assert req.url == "https://chatgpt.com/backend-api/codex/responses"
    h = req.headers
    assert h["Authorization"] == f"Bearer {CODEX_TOKEN}" and "authorization" not in h
    assert h["chatgpt-account-id"] == CODEX_ACCOUNT  # the account's, never the client's own login
    for name in ("session-id", "thread-id", "x-client-request-id", "x-codex-window-id", "x-codex-beta-features",
                 "x-codex-turn-metadata", "originator", "version", "user-agent"):
        assert h[name] == CODEX_HEADERS[name]
    assert h["Accept"] == "text/event-stream"


def test_nothing_is_forged_for_another_client() -> None:
    req = EX.build(account_entry("https://chatgpt.com/backend-api/codex"), outbound(BODY, False, {}))
    names = {k.lower() for k in req.headers}
    assert names == {"content-type", "accept", "authorization", "chatgpt-account-id"}


def test_the_body_is_what_the_service_requires() -> None:
    body, names = EX.rewrite(outbound({**with_tools(LONG, "read_file"), "prompt_cache_retention": "24h"}))
    sent = orjson.loads(body)
    assert sent["stream"] is True and sent["store"] is False and sent["instructions"] == ""
    assert "max_output_tokens" not in sent and "prompt_cache_retention" not in sent
    assert [t["name"] for t in sent["tools"]][1] == "read_file" and len(sent["tools"][0]["name"]) == 64
    assert names.short_to_long == {sent["tools"][0]["name"]: LONG}
    compact, _ = EX.rewrite(outbound(BODY, op="compact"))
    assert "stream" not in orjson.loads(compact)


def test_api_key_executor_passes_the_codex_headers_too() -> None:
    e = ProviderEntry(kind="codex", provider="codex", name="k", api_key="sk-x", base_url="https://api.openai.com/v1")
    h = CodexExecutor().build(e, outbound(BODY, True, CODEX_HEADERS)).headers
    for name in ("session-id", "thread-id", "x-codex-turn-metadata", "originator", "version", "user-agent"):
        assert h[name] == CODEX_HEADERS[name]
    assert h["Authorization"] == "Bearer sk-x"


async def test_a_whole_answer_is_assembled_from_the_stream(fake: FakeSubscription, io: LoopbackIO) -> None:
    up = await EX.send(account_entry(fake.codex_base), outbound(BODY, False, CODEX_HEADERS), io)
    assert isinstance(up, AssembledResponse) and up.headers["Content-Type"] == "application/json"
    answer = orjson.loads(await up.body(1 << 20))
    up.close(True)
    assert answer["object"] == "response" and answer["status"] == "completed"
    assert answer["output"][0]["content"][0]["text"] == TEXT  # rebuilt: the fake's completed event had none
    rec = fake.last("codex")
    assert rec["path"] == "/backend-api/codex/responses"
    assert rec["body"]["stream"] is True and rec["body"]["store"] is False
    assert rec["headers"]["chatgpt-account-id"] == CODEX_ACCOUNT
    assert rec["headers"]["session-id"] == CODEX_HEADERS["session-id"]
    assert io.quota.seen[-1][2]["x-codex-primary-used-percent"] == "12.0"  # type: ignore[attr-defined]


async def test_a_stream_passes_with_long_tool_names_restored(fake: FakeSubscription, io: LoopbackIO) -> None:
    up = await EX.send(account_entry(fake.codex_base), outbound(with_tools(LONG), True), io)
    data = await read_stream(up)
    sent = fake.last("codex")["body"]["tools"][0]["name"]
    assert len(sent) <= 64 and sent != LONG
    assert sent.encode() not in data
    assert data.count(LONG.encode()) >= 4  # added, arguments.done, output_item.done, the tools echoed
    assert b"event: response.completed" in data and b"codex.rate_limits" in data


async def test_a_whole_answer_gets_long_tool_names_back(fake: FakeSubscription, io: LoopbackIO) -> None:
    up = await EX.send(account_entry(fake.codex_base), outbound(with_tools(LONG)), io)
    answer = orjson.loads(await up.body(1 << 20))
    up.close(True)
    assert answer["output"][0]["type"] == "function_call" and answer["output"][0]["name"] == LONG


async def test_compaction_is_json_with_names_back(fake: FakeSubscription, io: LoopbackIO) -> None:
    body = {**BODY, "input": [{"type": "function_call", "call_id": "c1", "name": LONG, "arguments": "{}"},
                              {"type": "function_call_output", "call_id": "c1", "output": "ok"}]}
    up = await EX.send(account_entry(fake.codex_base), outbound(body, op="compact"), io)
    answer = orjson.loads(await up.body(1 << 20))
    up.close(True)
    assert fake.last("codex")["path"] == "/backend-api/codex/responses/compact"
    assert answer["object"] == "response.compaction" and answer["output"][0]["name"] == LONG


async def test_a_failure_inside_the_stream_is_a_typed_error(fake: FakeSubscription, io: LoopbackIO) -> None:
    fake.fail_next["codex"] = ["failed"]
    up = await EX.send(account_entry(fake.codex_base), outbound(BODY), io)
    with pytest.raises(UpstreamError) as err:
        await up.body(1 << 20)
    assert err.value.status == 502 and "An error occurred" in err.value.message


async def test_a_stream_cut_before_its_end_is_a_bad_answer() -> None:
    class Cut:
        status = 200
        headers: dict[str, str] = {}
        io_errors = (OSError,)

        def __init__(self) -> None:
            self.parts = [b'event: response.created\ndata: {"type":"response.created","response":{}}\n\n']

        async def read_chunk(self) -> bytes:
            return self.parts.pop(0) if self.parts else b""

        def at_eof(self) -> bool:
            return not self.parts

        def close(self, reuse: bool) -> None:
            pass

    with pytest.raises(BadAnswer, match=r"before response\.completed"):
        await AssembledResponse(Cut(), None, "codex").body(1 << 20)  # type: ignore[arg-type]


async def test_the_usage_limit_cools_until_its_reset(fake: FakeSubscription, io: LoopbackIO) -> None:
    fake.fail_next["codex"] = ["429"]
    with pytest.raises(UpstreamError) as err:
        await EX.send(account_entry(fake.codex_base), outbound(BODY, True), io)
    assert err.value.status == 429 and err.value.retry_after == 120 and err.value.scope == "model"
    assert io.quota.seen[-1][2]["x-codex-primary-used-percent"] == "100.0"  # type: ignore[attr-defined]
    status, body = io.quota.errors[-1]  # type: ignore[attr-defined]
    assert status == 429 and b"usage_limit_reached" in body and b"resets_at" in body


@pytest.mark.parametrize("stream", [False, True])
async def test_usage_events_reach_the_quota_book(fake: FakeSubscription, io: LoopbackIO, stream: bool) -> None:
    up = await EX.send(account_entry(fake.codex_base), outbound(BODY, stream), io)
    if stream:
        await read_stream(up)
    else:
        await up.body(1 << 20)
        up.close(True)
    events = io.quota.events  # type: ignore[attr-defined]
    assert [e["type"] for e in events] == ["codex.rate_limits"]
    assert events[0]["rate_limits"]["primary"]["used_percent"] == 12.0


async def test_a_usage_limit_inside_the_stream_reaches_the_quota_book(io: LoopbackIO) -> None:
    failed = {"type": "response.failed", "response": {"status": "failed", "error": {
        "code": "usage_limit_reached", "message": "limit", "resets_in_seconds": 60}}}
    data = b"event: response.failed\ndata: " + orjson.dumps(failed) + b"\n\n"

    class One:
        status = 200
        headers: dict[str, str] = {}
        io_errors = (OSError,)

        def __init__(self) -> None:
            self.parts = [data[:20], data[20:]]

        async def read_chunk(self) -> bytes:
            return self.parts.pop(0) if self.parts else b""

        def at_eof(self) -> bool:
            return not self.parts

        def close(self, reuse: bool) -> None:
            pass

    entry = account_entry("x")
    up = EX.wrap(entry, outbound(BODY), One(), shorten_tools({}), EX.watcher(entry, io))  # type: ignore[arg-type]
    with pytest.raises(UpstreamError) as err:
        await up.body(1 << 20)
    assert err.value.status == 429 and err.value.retry_after == 60
    assert b"usage_limit_reached" in io.quota.errors[-1][1]  # type: ignore[attr-defined]
    up = EX.wrap(entry, outbound(BODY, True), One(), shorten_tools({}), EX.watcher(entry, io))  # type: ignore[arg-type]
    assert await read_stream(up) == data  # passed on byte for byte
    assert len(io.quota.errors) == 2  # type: ignore[attr-defined]


async def test_an_expired_token_is_refreshed_once(fake: FakeSubscription, io: LoopbackIO) -> None:
    fake.expired.add("old-codex-token")
    tokens = Rotating("old-codex-token", CODEX_TOKEN)
    up = await EX.send(account_entry(fake.codex_base, tokens), outbound(BODY, True), io)
    await read_stream(up)
    assert tokens.refreshes == 1
    assert [r["headers"]["authorization"] for r in fake.requests] == ["Bearer old-codex-token", f"Bearer {CODEX_TOKEN}"]


async def test_the_fake_refuses_what_the_service_refuses(fake: FakeSubscription, io: LoopbackIO) -> None:
    """The plain Responses executor (no rewrite, no account header) is refused by the fake."""
    e = ProviderEntry(kind="codex", provider="codex", name="k", api_key=CODEX_TOKEN, base_url=fake.codex_base)
    with pytest.raises(UpstreamError) as err:
        await CodexExecutor().send(e, outbound(BODY, True), io)
    assert err.value.status == 403
    e2 = account_entry(fake.codex_base)
    with pytest.raises(UpstreamError) as err:
        await CodexExecutor().send(e2, outbound(with_tools(LONG), True, {"chatgpt-account-id": CODEX_ACCOUNT}), io)
    assert err.value.status == 403  # the API-key executor does not carry the account header itself


async def test_with_the_real_quota_book_an_in_stream_usage_limit_sets_the_reset(fake: FakeSubscription) -> None:
    """The real QuotaBook reads what the executor hands it: a ``response.failed`` usage limit
    inside a 200 stream makes the account exhausted until the announced reset."""
    book = QuotaBook()
    failed = {"type": "response.failed", "response": {"status": "failed", "error": {
        "code": "usage_limit_reached", "message": "limit", "resets_in_seconds": 300}}}

    class One:
        status = 200
        headers: dict[str, str] = {}
        io_errors = (OSError,)

        def __init__(self) -> None:
            self.parts = [b"event: response.failed\ndata: " + orjson.dumps(failed) + b"\n\n"]

        async def read_chunk(self) -> bytes:
            return self.parts.pop(0) if self.parts else b""

        def at_eof(self) -> bool:
            return not self.parts

        def close(self, reuse: bool) -> None:
            pass

    async with aiohttp.ClientSession() as session:
        io = LoopbackIO(session, quota=book)
        entry = account_entry(fake.codex_base)
        up = EX.wrap(entry, outbound(BODY), One(), shorten_tools({}), EX.watcher(entry, io))  # type: ignore[arg-type]
        with pytest.raises(UpstreamError):
            await up.body(1 << 20)
    hint = book.reset_hint(entry.id)
    assert hint is not None and hint[1] is True and 250 < hint[0] - time.time() <= 301


# ------------------------------------------------------------------ the body sent as it came when it may be
READY = (b'{"model": "gpt-5.5", "instructions": "Be brief.", "input": [{"role": "user", "content": "hi"}],'
         b' "stream": true, "store": false, "temperature": 0.50}')


def test_a_body_already_as_the_service_requires_it_is_sent_unchanged() -> None:
    out = Outbound("generate", "responses", "gpt-5.5", READY, True, {})
    body, names = EX.rewrite(out)
    assert body is READY and not names  # parsed to check it, not dumped again (spacing, 0.50 kept)
    sent, _ = EX.prepare(out)
    assert sent.body is READY and sent.stream is True


@pytest.mark.parametrize("change", [
    {"store": True}, {"stream": False}, {"max_output_tokens": 9}, {"instructions": None},
    {"tools": [{"type": "function", "name": "x" * 70, "parameters": {"type": "object"}}]},
])
def test_a_body_that_must_change_is_dumped_from_the_checked_object(change: dict[str, Any]) -> None:
    obj = {**orjson.loads(READY), **change}
    body, _ = EX.rewrite(Outbound("generate", "responses", "gpt-5.5", orjson.dumps(obj), True, {}))
    sent = orjson.loads(body)
    assert sent["stream"] is True and sent["store"] is False and isinstance(sent["instructions"], str)
    assert "max_output_tokens" not in sent and all(len(t["name"]) <= 64 for t in sent.get("tools", []))


def test_a_repeated_store_key_is_never_passed_on() -> None:
    raw = READY.replace(b'"store": false', b'"store": true, "store": false')  # the parsed body keeps the last
    body, _ = EX.rewrite(Outbound("generate", "responses", "gpt-5.5", raw, True, {}))
    assert body.count(b'"store"') == 1 and orjson.loads(body)["store"] is False


def test_compaction_drops_stream_else_is_kept() -> None:
    raw = b'{"model": "gpt-5.5", "instructions": "", "input": []}'
    assert EX.rewrite(Outbound("compact", "responses", "gpt-5.5", raw, False, {}))[0] is raw
    body, _ = EX.rewrite(Outbound("compact", "responses", "gpt-5.5", raw[:-1] + b', "stream": true}', False, {}))
    assert "stream" not in orjson.loads(body)
