"""``GET /metrics`` of a real gateway process, parsed with prometheus_client's own text parser:
requests, tokens by kind (equal to the fixture's counts), latency and time-to-first-byte
histograms, failovers, cooldowns, the store's counters; the client key is required."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import CLIENT_KEY, provider_config
from .fake_upstream import FIXTURES, FakeUpstream
from .gateway_process import GatewayProcess


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("metrics")
    cfg = {"api-keys": [CLIENT_KEY], "usage-statistics-enabled": True, "data-dir": str(tmp / "data"),
           "logs-dir": str(tmp / "logs"), **provider_config(upstream, keys=2)}
    g = GatewayProcess(cfg, Path(tmp)).start()
    yield g
    g.stop()


def scrape(gw: GatewayProcess, key: str | None = CLIENT_KEY) -> tuple[int, str, dict[str, Any]]:
    req = urllib.request.Request(gw.url + "/metrics", headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("content-type", ""), {
                f.name: f for f in text_string_to_metric_families(r.read().decode())}
    except urllib.error.HTTPError as e:
        return e.code, "", {}


def samples(families: dict[str, Any], name: str, suffix: str = "") -> list[tuple[dict[str, str], float]]:
    fam = families.get(name)
    if fam is None:
        return []
    return [(s.labels, s.value) for s in fam.samples if s.name == name + suffix]


def value(families: dict[str, Any], name: str, suffix: str = "", **labels: str) -> float:
    return sum(v for ls, v in samples(families, name, suffix) if all(ls.get(k) == x for k, x in labels.items()))


def test_metrics_need_the_client_key(gw: GatewayProcess) -> None:
    assert scrape(gw, None)[0] == 401
    assert scrape(gw, "wrong-key")[0] == 401


def test_metrics_count_requests_tokens_latency_and_failovers(gw: GatewayProcess, upstream: FakeUpstream) -> None:
    status, ctype, before = scrape(gw)  # the first scrape starts the counting
    assert status == 200 and ctype.startswith("text/plain")
    an = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=30)
    an.messages.create(model="claude-text", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    chunks = list(oa.chat.completions.create(model="openai-text", stream=True,
                                             messages=[{"role": "user", "content": "hi"}]))
    assert chunks
    with pytest.raises(openai.RateLimitError):  # both keys answer 429: one failover, then the 429
        oa.chat.completions.create(model="openai-err429", messages=[{"role": "user", "content": "hi"}])
    _, _, after = scrape(gw)

    def delta(name: str, suffix: str = "", **labels: str) -> float:
        return value(after, name, suffix, **labels) - value(before, name, suffix, **labels)

    assert delta("crossroute_requests", "_total", format="claude", provider="claude", model="claude-text",
                 status="200") == 1
    oai = "openai-compatibility:fake-openai"  # the provider key of an openai-compatibility entry
    assert delta("crossroute_requests", "_total", format="openai", provider=oai, model="openai-text",
                 status="200") == 1
    assert delta("crossroute_requests", "_total", format="openai", provider=oai, model="openai-err429",
                 status="429") == 1
    for model, provider in (("claude-text", "claude"), ("openai-text", oai), ("openai-err429", oai)):
        labelled = {ls["provider"] for ls, v in samples(after, "crossroute_requests", "_total")
                    if ls.get("model") == model and v > 0}
        assert labelled == {provider}, (model, labelled)  # counted under its provider only
    u = json.loads((FIXTURES / "anthropic/nonstream_cache_read.json").read_text())["usage"]
    assert delta("crossroute_tokens", "_total", kind="cached", model="claude-text") == u["cache_read_input_tokens"]
    assert delta("crossroute_tokens", "_total", kind="cache_creation", model="claude-text") == \
        u["cache_creation_input_tokens"]
    assert delta("crossroute_tokens", "_total", kind="output", provider="claude", model="claude-text") == \
        u["output_tokens"]
    assert delta("crossroute_tokens", "_total", kind="input", model="claude-text") == \
        u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    assert delta("crossroute_upstream_latency_seconds", "_count", provider="claude") == 1
    assert delta("crossroute_upstream_ttft_seconds", "_count", provider="claude") == 1
    assert delta("crossroute_upstream_attempts", "_total", status="429") == 2
    assert delta("crossroute_failovers", "_total") == 1
    cooling = samples(after, "crossroute_cooldown_seconds")
    assert len({ls["credential"] for ls, v in cooling if v > 0}) == 2  # both keys cool down after their 429
    assert "crossroute_active_streams" in after and "crossroute_bound_sessions" in after
    assert "crossroute_quota_remaining" in after
    assert value(after, "crossroute_observer_dropped", "_total", observer="usage") == 0
    for _ in range(50):  # 4 records (the 429 call made two attempts), written within a batch interval
        if value(after, "crossroute_usage_written", "_total") >= 4:
            break
        time.sleep(0.1)
        after = scrape(gw)[2]
    assert value(after, "crossroute_usage_written", "_total") == 4
    assert delta("crossroute_requests", "_total", format="openai", provider="-", model="-") == 0
    text = "\n".join(str(f.samples) for f in after.values())
    assert "sk-openai" not in text and CLIENT_KEY not in text
