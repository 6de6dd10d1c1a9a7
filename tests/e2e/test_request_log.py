"""Request and error logs of a real gateway process: with ``request-log`` off only failed requests
leave a log (error-...), with it on every request does; sections, masked secrets, the routing
trace, and (once the pipeline's taps are in) the translated upstream body, the upstream's chunks
with timestamps and what the client got."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest

from crossroute import redaction
from crossroute.call import Call

from .conftest import CLIENT_KEY, provider_config
from .fake_upstream import FakeUpstream
from .gateway_process import GatewayProcess
from .management_support import MGMT_KEY, MgmtGateway

SECTIONS = ("=== REQUEST INFO ===", "=== HEADERS ===", "=== REQUEST BODY ===", "=== TIMELINE ===",
            "=== ATTEMPTS ===", "=== RESPONSE ===", "=== ROUTING TRACE ===")


def _gateway(upstream: FakeUpstream, tmp: Path, **extra: Any) -> GatewayProcess:
    cfg = {"api-keys": [CLIENT_KEY], "disable-cooling": True, "logs-dir": str(tmp / "logs"),
           "data-dir": str(tmp / "data"), **extra, **provider_config(upstream, kinds=("openai", "claude"))}
    return GatewayProcess(cfg, tmp).start()


def _logs(tmp: Path, n: int, seconds: float = 10.0) -> list[Path]:
    deadline = time.monotonic() + seconds
    found: list[Path] = []
    while time.monotonic() < deadline:
        found = sorted((tmp / "logs").glob("*.log"))
        if len(found) >= n:
            break
        time.sleep(0.05)
    return found


def test_error_log_when_the_request_log_is_off(upstream: FakeUpstream, tmp_path: Path) -> None:
    gw = _gateway(upstream, tmp_path)
    try:
        oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
        oa.chat.completions.create(model="openai-text", messages=[{"role": "user", "content": "fine"}])
        with pytest.raises(openai.InternalServerError):
            oa.chat.completions.create(model="openai-err500", messages=[{"role": "user", "content": "broken please"}])
        logs = _logs(tmp_path, 1)
        time.sleep(0.3)  # nothing else arrives
        logs = sorted((tmp_path / "logs").glob("*.log"))
        assert len(logs) == 1 and logs[0].name.startswith("error-v1-chat-completions-"), logs
        text = logs[0].read_text()
        for s in SECTIONS:
            assert s in text
        assert "broken please" in text and "status=500" in text and "Status: 500" in text
        assert CLIENT_KEY not in text and "sk-openai-0" not in text
        assert "Authorization: Bearer tes...-key" in text or "authorization: Bearer tes...-key" in text
    finally:
        gw.stop()


def test_request_log_writes_every_request(upstream: FakeUpstream, tmp_path: Path) -> None:
    gw = _gateway(upstream, tmp_path, **{"request-log": True})
    try:
        oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
        chunks = list(oa.chat.completions.create(model="claude-text", stream=True,
                                                 messages=[{"role": "user", "content": "stream to me"}]))
        assert chunks
        oa.chat.completions.create(model="openai-text", messages=[{"role": "user", "content": "whole"}])
        logs = _logs(tmp_path, 2)
        assert len(logs) == 2 and not any(p.name.startswith("error-") for p in logs)
        texts = [p.read_text() for p in logs]
        stream_log = next(t for t in texts if "stream to me" in t)
        for s in SECTIONS:
            assert s in stream_log
        assert '"step"' in stream_log or '"attempts"' in stream_log  # the routing trace
        assert "Stream: True" in stream_log and "wire=claude" in stream_log
        assert CLIENT_KEY not in stream_log and "sk-claude-0" not in stream_log
        assert not list((tmp_path / "logs" / ".spool").glob("*"))
    finally:
        gw.stop()


@pytest.mark.skipif("log" not in Call.__slots__, reason="the pipeline's request-log taps (call.log) are not in "
                    "dispatch.py/app.py yet (requested in /tmp/notes/F.md)")
def test_request_log_has_the_upstream_and_client_bodies(upstream: FakeUpstream, tmp_path: Path) -> None:
    gw = _gateway(upstream, tmp_path, **{"request-log": True})
    try:
        oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
        list(oa.chat.completions.create(model="claude-text", stream=True,
                                        messages=[{"role": "user", "content": "stream to me"}]))
        text = _logs(tmp_path, 1)[0].read_text()
        assert "API REQUEST #1" in text and '"max_tokens"' in text  # the translated (Claude) body
        assert "API RESPONSE #1" in text and "message_start" in text  # the upstream's own events
        assert "RESPONSE to client" in text and "chat.completion.chunk" in text
        assert "sk-claude-0" not in text
    finally:
        gw.stop()


def test_request_log_body_through_the_management_api(upstream: FakeUpstream, tmp_path: Path) -> None:
    """A logged request found with the management API (``request-logs``, then ``request-log-by-id/<id>``
    and ``request-logs/<name>``): the client's body, the translated upstream body and the
    upstream's answer are there; every secret, also one the client put in its own body, is masked."""
    cfg = {"api-keys": [CLIENT_KEY], "disable-cooling": True, "request-log": True, "logs-dir": str(tmp_path / "logs"),
           "data-dir": str(tmp_path / "data"), "auth-dir": str(tmp_path / "auth"),
           "remote-management": {"secret-key": MGMT_KEY}, **provider_config(upstream, kinds=("openai", "claude"))}
    gw = MgmtGateway(cfg, tmp_path).start()
    try:
        oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
        said = f"log me please, keys {CLIENT_KEY} and sk-claude-0"
        answer = oa.chat.completions.create(model="claude-text", messages=[{"role": "user", "content": said}])
        files = gw.wait_for(lambda: gw.call("GET", "/v0/management/request-logs")[1]["files"], what="a request log")
        assert len(files) == 1 and files[0]["kind"] == "request", files
        name = files[0]["name"]
        request_id = name.removesuffix(".log").rsplit("-", 1)[1]
        status, by_id, hdrs = gw.call("GET", f"/v0/management/request-log-by-id/{request_id}")
        assert status == 200 and hdrs["content-type"].startswith("text/plain"), by_id
        status, by_name, _ = gw.call("GET", f"/v0/management/request-logs/{name}")
        assert status == 200 and by_name == by_id
        assert f"Request-ID: {request_id}" in by_id
        body = by_id.split("=== REQUEST BODY ===", 1)[1].split("=== TIMELINE ===", 1)[0]
        assert "log me please, keys" in body and '"model": "claude-text"' in body  # the client's body
        timeline = by_id.split("=== TIMELINE ===", 1)[1]
        assert "API REQUEST #1" in timeline and '"max_tokens"' in timeline  # the translated (Claude) body
        upstream_part = timeline.split("API RESPONSE #1", 1)[1].split("RESPONSE to client", 1)[0]
        content = answer.choices[0].message.content
        assert content and content in upstream_part and '"type":"message"' in upstream_part  # Claude's answer
        for secret in (CLIENT_KEY, "sk-claude-0", MGMT_KEY):
            assert secret not in by_id, secret
        assert redaction.mask(CLIENT_KEY) in body and redaction.mask("sk-claude-0") in body
        # a log written by something else (an older version, a copy): the API masks what the writer did not
        (tmp_path / "logs" / "v1-messages-2026-01-01T000000-0badc0de.log").write_text(f"key {CLIENT_KEY}\n")
        status, shown, _ = gw.call("GET", "/v0/management/request-log-by-id/0badc0de")
        assert status == 200 and CLIENT_KEY not in shown and redaction.mask(CLIENT_KEY) in shown, shown
        assert gw.call("GET", "/v0/management/request-log-by-id/ffffffff")[0] == 404
        assert gw.call("GET", "/v0/management/request-log-by-id/..%2F..%2Fconfig.yaml")[0] in (400, 404)
    finally:
        gw.stop()
