"""Vertex executor: regional and global endpoints from the account's location, API keys (express
mode) on the publishers path, count bodies as Vertex takes them, the first token minted before the
first request; real HTTP against the strict fake (tests/e2e/fake_cloud.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from crossroute.config import ProviderEntry
from crossroute.formats.sse import SSEParser
from crossroute.providers import EXECUTORS, Outbound, UpstreamError
from crossroute.providers.vertex import VertexExecutor, count_request, host_for
from tests.e2e.fake_cloud import API_KEY, PROJECT, TOKEN, FakeCloud, account, drain, entry_for
from tests.provider_support import loopback_io, serving
from tests.upstream_io import LoopbackIO

SA = {"type": "service_account", "project_id": PROJECT, "client_email": "sa@fake.iam.gserviceaccount.com",
      "private_key": "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n"}
BODY = orjson.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})


def sa_account(**extra: Any) -> Any:
    return account(f"vertex-{PROJECT}.json", type="vertex", service_account=SA, project_id=PROJECT,
                   email=SA["client_email"], **extra)


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    yield from serving(FakeCloud())


@pytest.fixture
async def io() -> AsyncIterator[LoopbackIO]:
    async with loopback_io() as io:
        yield io


def test_hosts_per_location() -> None:
    assert host_for("us-central1") == "https://us-central1-aiplatform.googleapis.com"
    assert host_for("europe-west4") == "https://europe-west4-aiplatform.googleapis.com"
    assert host_for("global") == "https://aiplatform.googleapis.com"


@pytest.mark.parametrize(("location", "url"), [
    (None, "https://us-central1-aiplatform.googleapis.com/v1/projects/fake-project-123/locations/us-central1"),
    ("europe-west4", "https://europe-west4-aiplatform.googleapis.com/v1/projects/fake-project-123/locations/"
                     "europe-west4"),
    ("global", "https://aiplatform.googleapis.com/v1/projects/fake-project-123/locations/global"),
])
def test_service_account_urls(location: str | None, url: str) -> None:
    ex = EXECUTORS["vertex"]
    assert isinstance(ex, VertexExecutor)
    acct = sa_account(**({"location": location} if location else {}))
    e = entry_for("vertex", VertexExecutor.default_base_url, acct)
    gen = ex.build(e, Outbound("generate", "gemini", "gemini-2.5-pro", BODY, False, {}))
    assert gen.url == url + "/publishers/google/models/gemini-2.5-pro:generateContent"
    assert gen.headers["Authorization"] == f"Bearer {TOKEN}" and "x-goog-api-key" not in gen.headers
    st = ex.build(e, Outbound("generate", "gemini", "gemini-2.5-pro", BODY, True, {}))
    assert st.url == url + "/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    ct = ex.build(e, Outbound("count_tokens", "gemini", "gemini-2.5-pro", BODY, False, {}))
    assert ct.url == url + "/publishers/google/models/gemini-2.5-pro:countTokens"
    assert all(ex.wire_format(e, f) == "gemini" for f in ("openai", "responses", "claude", "gemini"))


def test_api_key_urls() -> None:
    ex = VertexExecutor()
    e = ProviderEntry(kind="vertex", provider="vertex", name="vk", api_key=API_KEY,
                      base_url="https://aiplatform.googleapis.com")
    r = ex.build(e, Outbound("generate", "gemini", "gemini-2.5-flash", BODY, False, {}))
    assert r.url == "https://aiplatform.googleapis.com/v1/publishers/google/models/gemini-2.5-flash:generateContent"
    assert r.headers["x-goog-api-key"] == API_KEY and "Authorization" not in r.headers
    custom = ProviderEntry(kind="vertex", provider="vertex", name="vk", api_key=API_KEY,
                           base_url="https://zenmux.example/api")
    assert ex.build(custom, Outbound("generate", "gemini", "m", BODY, True, {})).url == \
        "https://zenmux.example/api/v1/publishers/google/models/m:streamGenerateContent?alt=sse"
    # an account file holding an express-mode key instead of a service account
    keyed = entry_for("vertex", VertexExecutor.default_base_url,
                      account("vertex-k.json", type="vertex", api_key=API_KEY), token=API_KEY)
    r = ex.build(keyed, Outbound("generate", "gemini", "m", BODY, False, {}))
    assert r.url == "https://aiplatform.googleapis.com/v1/publishers/google/models/m:generateContent"
    assert r.headers["x-goog-api-key"] == API_KEY


def test_count_body_as_vertex_takes_it() -> None:
    wrapped = {"generateContentRequest": {"model": "models/m", "contents": [{"role": "user", "parts": []}],
                                          "systemInstruction": {"parts": [{"text": "s"}]},
                                          "generationConfig": {"temperature": 0.1}, "safetySettings": []}}
    assert orjson.loads(count_request(orjson.dumps(wrapped))) == {
        "contents": [{"role": "user", "parts": []}], "systemInstruction": {"parts": [{"text": "s"}]}}
    assert orjson.loads(count_request(BODY)) == orjson.loads(BODY)


def test_an_account_without_a_project_is_refused_clearly() -> None:
    acct = account("vertex-x.json", type="vertex", service_account={**SA, "project_id": ""})
    with pytest.raises(UpstreamError) as info:
        VertexExecutor().build(entry_for("vertex", VertexExecutor.default_base_url, acct),
                               Outbound("generate", "gemini", "m", BODY, False, {}))
    assert "project_id" in info.value.message and info.value.scope == "credential"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("by", ["service-account", "api-key"])
async def test_against_the_fake(cloud: FakeCloud, io: LoopbackIO, stream: bool, by: str) -> None:
    cloud.clear()
    if by == "api-key":
        e = ProviderEntry(kind="vertex", provider="vertex", name="vk", api_key=API_KEY, base_url=cloud.base)
    else:
        e = entry_for("vertex", VertexExecutor.default_base_url, sa_account(base_url=cloud.base, location="global"))
    up = await VertexExecutor().send(e, Outbound("generate", "gemini", "text", BODY, stream, {}), io)
    raw = await drain(up) if stream else await up.body(1 << 20)
    seen = cloud.of("vertex")[-1]
    assert seen.problems == []
    if by == "service-account":
        assert seen.path == f"/v1/projects/{PROJECT}/locations/global/publishers/google/models/" + \
            ("text:streamGenerateContent" if stream else "text:generateContent")
    if stream:
        assert all("candidates" in orjson.loads(ev.data) for ev in SSEParser().feed(raw))
    else:
        assert orjson.loads(raw)["candidates"]
    count = orjson.dumps({"generateContentRequest": {"model": "models/text", **orjson.loads(BODY),
                                                     "safetySettings": []}})
    up = await VertexExecutor().send(e, Outbound("count_tokens", "gemini", "text", count, False, {}), io)
    assert orjson.loads(await up.body(4096))["totalTokens"] == 42
    up.close(True)
    assert cloud.of("vertex")[-1].problems == []


class Minting:
    """A token source that, like ServiceAccountToken, has no token until it mints one."""

    def __init__(self) -> None:
        self.value, self.mints = "", 0

    def token(self) -> str:
        return self.value

    async def fresh_token(self) -> str:
        if not self.value:
            self.mints += 1
            self.value = TOKEN
        return self.value

    async def refresh(self) -> bool:
        return False


async def test_first_token_minted_before_the_first_request(cloud: FakeCloud, io: LoopbackIO) -> None:
    cloud.clear()
    e = entry_for("vertex", VertexExecutor.default_base_url, sa_account(base_url=cloud.base))
    src = e.derived["token"] = Minting()
    up = await VertexExecutor().send(e, Outbound("generate", "gemini", "text", BODY, False, {}), io)
    await up.body(1 << 20)
    up.close(True)
    assert src.mints == 1 and len(cloud.of("vertex")) == 1 and cloud.of("vertex")[0].problems == []


async def test_html_error_page_and_error_in_a_200(cloud: FakeCloud, io: LoopbackIO) -> None:
    cloud.clear()
    e = ProviderEntry(kind="vertex", provider="vertex", name="vk", api_key=API_KEY, base_url=cloud.base)
    with pytest.raises(UpstreamError) as info:
        await VertexExecutor().send(e, Outbound("generate", "gemini", "err503", BODY, False, {}), io)
    assert info.value.status == 503 and info.value.scope == "model"
    up = await VertexExecutor().send(e, Outbound("generate", "gemini", "err200", BODY, False, {}), io)
    assert b'"error"' in await up.body(4096)  # a 200 that is an error: dispatch's answer check refuses it
    up.close(True)


def test_google_retry_delays() -> None:
    from crossroute.providers.google_retry import MAX_WAIT, google_retry_after, wait_of

    assert wait_of("3.5s") == 3.5 and wait_of("1h2m3s") == 3723 and wait_of("250ms") == 0.25 and wait_of("5") == 5
    assert wait_of("soon") is None and wait_of("-3s") == 0 and wait_of("9999h") == MAX_WAIT
    info = {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
         "metadata": {"quotaResetDelay": "41m2.5s"}},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.25s"}]}}
    assert google_retry_after(orjson.dumps(info)) == 12.25  # RetryInfo first
    info["error"]["details"].pop()
    assert google_retry_after(orjson.dumps(info)) == 41 * 60 + 2.5
    msg = {"error": {"code": 429, "message": "You have exhausted your capacity. Your quota will reset after 17s."}}
    assert google_retry_after(orjson.dumps([msg])) == 17
    assert google_retry_after(b"<html>429</html>") is None and google_retry_after(None) is None


async def test_a_429_waits_as_long_as_its_body_says(cloud: FakeCloud, io: LoopbackIO) -> None:
    cloud.clear()
    body = orjson.dumps({"error": {"code": 429, "message": "slow down", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}]}})
    cloud.fail_next["vertex"] = [(429, body, {})]
    e = ProviderEntry(kind="vertex", provider="vertex", name="vk", api_key=API_KEY, base_url=cloud.base)
    with pytest.raises(UpstreamError) as info:
        await VertexExecutor().send(e, Outbound("generate", "gemini", "text", BODY, False, {}), io)
    assert info.value.status == 429 and info.value.retry_after == 9.0


async def test_a_token_source_that_fails_gives_a_401_not_a_crash(cloud: FakeCloud, io: LoopbackIO) -> None:
    cloud.clear()

    class Broken(Minting):
        async def fresh_token(self) -> str:
            raise OSError("token endpoint unreachable")

    e = entry_for("vertex", VertexExecutor.default_base_url, sa_account(base_url=cloud.base))
    e.derived["token"] = Broken()
    cloud.fail_next["vertex"] = [(401, b'{"error": {"code": 401, "message": "no token"}}', {})]
    with pytest.raises(UpstreamError) as info:
        await VertexExecutor().send(e, Outbound("generate", "gemini", "text", BODY, False, {}), io)
    assert info.value.status == 401 and info.value.scope == "credential"
