"""Usage records from a real gateway process: official SDK clients of three formats against the
fake upstream's recorded answers, the records' tokens equal to the fixtures' own counts; records
survive a restart; a kill -9 loses at most the last batch; PostgreSQL with a real server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as gtypes

from crossroute.usage.records import key_id
from crossroute.usage.store import FLUSH_SECONDS
from tests.postgres_server import PostgresServer

from .conftest import CLIENT_KEY, provider_config
from .fake_upstream import FIXTURES, FakeUpstream
from .gateway_process import GatewayProcess


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def _expected() -> dict[str, dict[str, int]]:
    """Token counts straight from the recorded answers (each provider's own fields)."""
    cu = _fixture("anthropic/nonstream_cache_read.json")["usage"]
    ou = _fixture("openai_chat/nonstream_text_reasoning_tokens.json")["usage"]
    gu = _fixture("gemini/nonstream_cached_content.json")["usageMetadata"]
    return {
        "claude-text": {"input_tokens": cu["input_tokens"] + cu["cache_read_input_tokens"]
                        + cu["cache_creation_input_tokens"], "output_tokens": cu["output_tokens"],
                        "cached_tokens": cu["cache_read_input_tokens"],
                        "cache_creation_tokens": cu["cache_creation_input_tokens"], "reasoning_tokens": 0},
        "openai-text": {"input_tokens": ou["prompt_tokens"], "output_tokens": ou["completion_tokens"],
                        "cached_tokens": ou["prompt_tokens_details"]["cached_tokens"], "cache_creation_tokens": 0,
                        "reasoning_tokens": ou["completion_tokens_details"]["reasoning_tokens"]},
        "gemini-text": {"input_tokens": gu["promptTokenCount"],
                        "output_tokens": gu["candidatesTokenCount"] + gu["thoughtsTokenCount"],
                        "cached_tokens": gu["cachedContentTokenCount"], "cache_creation_tokens": 0,
                        "reasoning_tokens": gu["thoughtsTokenCount"]},
    }


TOKENS = ("input_tokens", "output_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens")


def _config(upstream: FakeUpstream, tmp: Path, url: str | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "api-keys": [CLIENT_KEY], "disable-cooling": True, "usage-statistics-enabled": True,
        "data-dir": str(tmp / "data"), "logs-dir": str(tmp / "logs"), **provider_config(upstream),
    }
    if url:
        cfg["usage-database-url"] = url
    return cfg


def _sdk_calls(gw: GatewayProcess) -> None:
    an = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=30)
    an.messages.create(model="claude-text", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert an.messages.count_tokens(model="claude-text", messages=[{"role": "user", "content": "hi"}]).input_tokens
    oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    oa.chat.completions.create(model="openai-text", messages=[{"role": "user", "content": "hi"}])
    ge = genai.Client(api_key=CLIENT_KEY, http_options=gtypes.HttpOptions(base_url=gw.url, api_version="v1beta"))
    ge.models.generate_content(model="gemini-text", contents="hi")
    with pytest.raises(openai.BadRequestError):
        oa.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])


def _sqlite_rows(tmp: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(tmp / "data" / "usage.sqlite3")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM usage_records ORDER BY id")]
    finally:
        conn.close()


def _pg_rows(url: str) -> list[dict[str, Any]]:
    import asyncpg

    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(r) for r in await conn.fetch("SELECT * FROM usage_records ORDER BY id")]
        finally:
            await conn.close()

    return asyncio.run(go())


def _wait_rows(read: Any, n: int, seconds: float = 10.0) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            rows = read()
        except (sqlite3.OperationalError, OSError):
            rows = []
        if len(rows) >= n:
            return rows
        time.sleep(0.1)
    return rows


def _check_tokens(rows: list[dict[str, Any]]) -> None:
    expected = _expected()
    counts = [r for r in rows if r["operation"] == "count_tokens"]
    assert len(counts) == 1 and counts[0]["status"] == 200 and counts[0]["attempt"] == 0  # token counting too
    assert counts[0]["endpoint"] == "/v1/messages/count_tokens"
    rows = [r for r in rows if r["operation"] != "count_tokens"]
    by_model = {r["model"]: r for r in rows}
    for model, tokens in expected.items():
        r = by_model[model]
        assert {k: r[k] for k in TOKENS} == tokens, model
        assert r["status"] == 200 and r["client_key"] == key_id(CLIENT_KEY) and r["attempt"] == 1
        assert r["latency_ms"] > 0 and r["ttft_ms"] is not None and r["transport"] == "http"
    assert by_model["claude-text"]["client_format"] == "claude"
    assert by_model["gemini-text"]["client_format"] == "gemini"
    assert by_model["openai-text"]["provider"] == "openai-compatibility:fake-openai"
    miss = by_model["no-such-model"]
    assert miss["status"] == 400 and miss["attempt"] == 0 and miss["input_tokens"] == 0
    assert not any(CLIENT_KEY in json.dumps(r, default=str) for r in rows)


def test_sqlite_records_match_the_fixtures_and_survive_restart(upstream: FakeUpstream, tmp_path: Path) -> None:
    gw = GatewayProcess(_config(upstream, tmp_path), tmp_path).start()
    try:
        _sdk_calls(gw)
        rows = _wait_rows(lambda: _sqlite_rows(tmp_path), 5)
        assert len(rows) == 5
        _check_tokens(rows)
    finally:
        gw.stop()
    gw = GatewayProcess(_config(upstream, tmp_path), tmp_path).start()  # same data dir
    try:
        _sdk_calls(gw)
        rows = _wait_rows(lambda: _sqlite_rows(tmp_path), 10)
        assert len(rows) == 10  # the first run's records are still there
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def test_postgres_records_match_the_fixtures(upstream: FakeUpstream, tmp_path: Path, pg: PostgresServer) -> None:
    gw = GatewayProcess(_config(upstream, tmp_path, pg.url), tmp_path).start()
    try:
        _sdk_calls(gw)
        rows = _wait_rows(lambda: _pg_rows(pg.url), 5)
        assert len(rows) == 5
        _check_tokens(rows)
        assert not (tmp_path / "data" / "usage.sqlite3").exists()
    finally:
        gw.stop()


def test_kill_9_loses_at_most_the_last_batch(upstream: FakeUpstream, tmp_path: Path) -> None:
    gw = GatewayProcess(_config(upstream, tmp_path), tmp_path).start()
    oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    try:
        for _ in range(30):
            oa.chat.completions.create(model="openai-text", messages=[{"role": "user", "content": "hi"}])
        time.sleep(FLUSH_SECONDS * 3)  # these 30 are older than one batch interval
        for _ in range(5):
            oa.chat.completions.create(model="openai-text", messages=[{"role": "user", "content": "hi"}])
        assert gw.proc is not None
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(10)
    finally:
        gw.stop()
    conn = sqlite3.connect(tmp_path / "data" / "usage.sqlite3")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n = conn.execute("SELECT COUNT(*) FROM usage_records").fetchone()[0]
    finally:
        conn.close()
    assert 30 <= n <= 35, n  # every record older than the batch interval survived
    gw = GatewayProcess(_config(upstream, tmp_path), tmp_path).start()
    try:
        oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
        oa.chat.completions.create(model="openai-text", messages=[{"role": "user", "content": "hi"}])
        rows = _wait_rows(lambda: _sqlite_rows(tmp_path), n + 1)
        assert len(rows) == n + 1  # the store opens and appends after the crash
    finally:
        gw.stop()


def test_two_workers_share_the_sqlite_file(upstream: FakeUpstream, tmp_path: Path) -> None:
    import urllib.request

    from .lifecycle_support import Gateway as WorkerGateway

    gw = WorkerGateway(_config(upstream, tmp_path), tmp_path, ("--workers", "2")).start()
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 15
        while gw.log().count(" ready") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gw.log().count(" ready") >= 2
        workers = gw.children
        body = json.dumps({"model": "openai-text", "messages": [{"role": "user", "content": "hi"}]}).encode()
        for _ in range(40):  # a new connection each: both workers serve some
            req = urllib.request.Request(gw.url + "/v1/chat/completions", data=body, headers={
                "Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 200
        rows = _wait_rows(lambda: _sqlite_rows(tmp_path), 40)
        assert len(rows) == 40 and len({r["request_id"] for r in rows}) == 40
    finally:
        workers = workers or gw.children
        gw.signal(signal.SIGTERM)  # the workers stop with the main process
        if gw.wait(15) is None:
            gw.stop()
        for pid in workers:  # and none is left behind whatever happened
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
