"""Claude by a subscription OAuth token (kind ``claude-oauth``) against the strict fake of
api.anthropic.com: the exact URL, headers and body it requires, streaming and not, count_tokens,
401 -> refresh -> one resend, 429 with the announced reset, and the client's own headers passed
through (to the API-key executor too) without anything forged for clients that did not send them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from crossroute.auth.accounts import Account
from crossroute.config import ProviderEntry
from crossroute.providers import EXECUTORS, Outbound, UpstreamError
from crossroute.providers.anthropic import AnthropicExecutor
from crossroute.providers.claude_code import OAUTH_BETA, ClaudeCodeExecutor, merge_beta
from crossroute.routing.quota import QuotaBook
from tests.e2e.fake_subscription import CLAUDE_TOKEN, TEXT, FakeSubscription
from tests.provider_support import loopback_io, serving
from tests.upstream_io import LoopbackIO

CLAUDE_CODE_HEADERS = {
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27",
    "x-app": "cli",
    "x-claude-code-session-id": "24d0c343-dd83-4302-8b82-f1d7ff44e6a5",
    "user-agent": "claude-cli/2.1.332 (external, sdk-cli)",
    "authorization": "Bearer client-key-of-the-gateway",
    "x-api-key": "client-key-of-the-gateway",
}
BODY = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]}


class Rotating:
    """A TokenSource whose refresh moves to the next token."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.refreshes = 0

    def token(self) -> str:
        return self.tokens[0]

    async def refresh(self) -> bool:
        self.refreshes += 1
        if len(self.tokens) > 1:
            self.tokens.pop(0)
            return True
        return False


class Noting(QuotaBook):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, dict[str, str]]] = []

        self.events: list[Mapping[str, Any]] = []
        self.errors: list[tuple[int, bytes]] = []

    def note(self, entry: Any, status: int, headers: Mapping[str, str]) -> None:
        self.seen.append((entry.id, status, dict(headers)))

    def note_event(self, entry: Any, event: Mapping[str, Any]) -> None:
        self.events.append(event)

    def note_error(self, entry: Any, status: int, body: bytes) -> None:
        self.errors.append((status, body))


def account_entry(base: str, token: Any = None) -> ProviderEntry:
    acct = Account(name="claude-user@example.com.json", path=Path("/nonexistent"), provider="claude",
                   raw={"type": "claude", "email": "user@example.com", "access_token": CLAUDE_TOKEN},
                   email="user@example.com", access_token=CLAUDE_TOKEN)
    e = ProviderEntry(kind="claude-oauth", provider="claude", name="claude-user@example.com.json", api_key="",
                      base_url=base, cred_id="auth:claude-user@example.com.json")
    e.derived["account"] = acct
    e.derived["token"] = token or Rotating(CLAUDE_TOKEN)
    return e


def outbound(body: dict[str, Any], stream: bool = False, headers: Mapping[str, str] | None = None,
             op: str = "generate") -> Outbound:
    return Outbound(op, "claude", body["model"], orjson.dumps({**body, "stream": stream} if op == "generate" else body),
                    stream, headers or {})


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSubscription]:
    yield from serving(FakeSubscription())


@pytest.fixture
async def io(fake: FakeSubscription) -> AsyncIterator[LoopbackIO]:
    fake.clear()
    fake.expired.clear()
    async with loopback_io(quota=Noting()) as io:
        yield io


EX = ClaudeCodeExecutor()


def test_registered_with_its_models_and_operations() -> None:
    ex = EXECUTORS["claude-oauth"]
    assert isinstance(ex, ClaudeCodeExecutor)
    assert ex.supports == {"generate", "count_tokens"}
    assert ex.default_base_url == "https://api.anthropic.com"
    assert ex.wire_format(account_entry("https://api.anthropic.com"), "openai") == "claude"
    assert "claude-sonnet-4-6" in ex.models and "claude-haiku-4-5" in ex.models


def test_merge_beta_keeps_the_clients_order_and_adds_the_oauth_flag_once() -> None:
    assert merge_beta(None) == OAUTH_BETA
    assert merge_beta("a, b,a") == f"a,b,{OAUTH_BETA}"
    assert merge_beta(f"{OAUTH_BETA},x") == f"{OAUTH_BETA},x"


def test_request_for_claude_code_carries_its_own_headers() -> None:
    req = EX.build(account_entry("https://api.anthropic.com"), outbound(BODY, True, CLAUDE_CODE_HEADERS))
    assert req.url == "https://api.anthropic.com/v1/messages?beta=true"
    h = req.headers
    assert h["Authorization"] == f"Bearer {CLAUDE_TOKEN}"
    assert "x-api-key" not in h and "authorization" not in h  # the gateway's client key never goes upstream
    assert h["anthropic-beta"] == CLAUDE_CODE_HEADERS["anthropic-beta"] + "," + OAUTH_BETA
    assert h["anthropic-version"] == "2023-06-01"
    for name in ("x-app", "x-claude-code-session-id", "user-agent"):
        assert h[name] == CLAUDE_CODE_HEADERS[name]
    assert h["Accept"] == "text/event-stream"


def test_nothing_is_forged_for_another_client() -> None:
    client = {"user-agent": "OpenAI/Python 2.3"}
    req = EX.build(account_entry("https://api.anthropic.com"), outbound(BODY, False, client))
    h = {k.lower(): v for k, v in req.headers.items()}
    assert h["anthropic-beta"] == OAUTH_BETA
    assert "x-app" not in h and "x-claude-code-session-id" not in h
    assert h["user-agent"] == "OpenAI/Python 2.3"  # the client's own, not Claude Code's
    assert not any("billing" in k for k in h)
    assert req.body == outbound(BODY).body  # the body (system prompt included) goes as given


def test_count_tokens_url_and_custom_base() -> None:
    req = EX.build(account_entry("http://127.0.0.1:1/corp"), outbound(BODY, op="count_tokens"))
    assert req.url == "http://127.0.0.1:1/corp/messages/count_tokens?beta=true"
    req = EX.build(account_entry("http://127.0.0.1:1"), outbound(BODY, op="count_tokens"))
    assert req.url == "http://127.0.0.1:1/v1/messages/count_tokens?beta=true"


def test_api_key_executor_passes_claude_codes_headers_too() -> None:
    e = ProviderEntry(kind="claude", provider="claude", name="k", api_key="sk-ant-api03-x", base_url="https://api.anthropic.com")
    h = AnthropicExecutor().build(e, outbound(BODY, True, CLAUDE_CODE_HEADERS)).headers
    assert h["x-api-key"] == "sk-ant-api03-x"
    for name in ("anthropic-beta", "x-app", "x-claude-code-session-id", "user-agent"):
        assert h[name] == CLAUDE_CODE_HEADERS[name]
    assert OAUTH_BETA not in h["anthropic-beta"]  # an API key needs no OAuth flag


async def test_whole_answer_from_the_fake(fake: FakeSubscription, io: LoopbackIO) -> None:
    up = await EX.send(account_entry(fake.base), outbound(BODY, False, CLAUDE_CODE_HEADERS), io)
    answer = orjson.loads(await up.body(1 << 20))
    up.close(True)
    assert answer["content"][0]["text"] == TEXT
    rec = fake.last("claude")
    assert rec["path"] == "/v1/messages" and rec["query"] == "beta=true"
    assert rec["headers"]["authorization"] == f"Bearer {CLAUDE_TOKEN}"
    assert rec["headers"]["x-claude-code-session-id"] == CLAUDE_CODE_HEADERS["x-claude-code-session-id"]
    assert rec["headers"]["user-agent"] == CLAUDE_CODE_HEADERS["user-agent"]
    assert rec["body"] == {**BODY, "stream": False}
    noted = io.quota.seen[-1]  # type: ignore[attr-defined]
    assert noted[1] == 200 and noted[2]["anthropic-ratelimit-unified-5h-utilization"] == "0.25"


async def test_stream_from_the_fake(fake: FakeSubscription, io: LoopbackIO) -> None:
    up = await EX.send(account_entry(fake.base), outbound(BODY, True), io)
    data = b""
    while chunk := await up.read_chunk():
        data += chunk
    up.close(True)
    assert b"event: message_stop" in data and b"text_delta" in data
    assert fake.last("claude")["headers"]["accept"] == "text/event-stream"


async def test_count_tokens_against_the_fake(fake: FakeSubscription, io: LoopbackIO) -> None:
    body = {"model": "claude-sonnet-4-6", "messages": BODY["messages"]}
    up = await EX.send(account_entry(fake.base), outbound(body, op="count_tokens"), io)
    assert orjson.loads(await up.body(1 << 16)) == {"input_tokens": 17}
    up.close(True)
    assert fake.last("claude")["path"] == "/v1/messages/count_tokens"


async def test_an_expired_token_is_refreshed_and_the_request_sent_once_more(fake: FakeSubscription,
                                                                            io: LoopbackIO) -> None:
    fake.expired.add("sk-ant-oat01-old")
    tokens = Rotating("sk-ant-oat01-old", CLAUDE_TOKEN)
    up = await EX.send(account_entry(fake.base, tokens), outbound(BODY), io)
    up.close(False)
    assert tokens.refreshes == 1
    sent = [r["headers"]["authorization"] for r in fake.requests]
    assert sent == ["Bearer sk-ant-oat01-old", f"Bearer {CLAUDE_TOKEN}"]


async def test_a_token_that_stays_bad_fails_the_credential(fake: FakeSubscription, io: LoopbackIO) -> None:
    with pytest.raises(UpstreamError) as err:
        await EX.send(account_entry(fake.base, Rotating("sk-ant-oat01-unknown")), outbound(BODY), io)
    assert err.value.status == 401 and err.value.scope == "credential"
    assert "sk-ant-oat01-unknown" not in err.value.message


async def test_429_carries_the_reset_and_the_quota_headers(fake: FakeSubscription, io: LoopbackIO) -> None:
    fake.fail_next["claude"] = ["429"]
    with pytest.raises(UpstreamError) as err:
        await EX.send(account_entry(fake.base), outbound(BODY), io)
    assert err.value.status == 429 and err.value.retry_after == 120
    status, headers = io.quota.seen[-1][1:]  # type: ignore[attr-defined]
    assert status == 429 and headers["anthropic-ratelimit-unified-5h-status"] == "rejected"


async def test_without_the_oauth_flag_the_fake_refuses(fake: FakeSubscription, io: LoopbackIO) -> None:
    """The fake is as strict as the service: the API-key executor's request (no OAuth flag) fails."""
    e = ProviderEntry(kind="claude", provider="claude", name="k", api_key=CLAUDE_TOKEN, base_url=fake.base)
    with pytest.raises(UpstreamError) as err:
        await AnthropicExecutor().send(e, outbound(BODY), io)
    assert err.value.status == 401 and "OAuth authentication is currently not supported" in err.value.message
