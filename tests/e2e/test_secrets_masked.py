"""A real gateway whose upstream echoes every credential it was sent (api-key, a credential header
from ``${NAME}``): neither the client's error nor the gateway's log shows any of them in full."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from .gateway_process import free_port

API_KEY = "sk-echo-api-key-0001"
HEADER_TOKEN = "hdr-echo-token-0002"


class EchoUpstream:
    """Answers 401 with a message quoting the request's Authorization and X-Service-Token."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def handler(request: web.Request) -> web.Response:
            got = f"{request.headers.get('Authorization')} / {request.headers.get('X-Service-Token')}"
            body = {"error": {"message": f"Incorrect API key provided: {got}", "type": "invalid_request_error"}}
            return web.json_response(body, status=401)

        async def main() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handler)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._ready.set()
            await asyncio.Event().wait()  # serve until the process ends (daemon thread)

        self._loop.run_until_complete(main())

    def start(self) -> EchoUpstream:
        self._thread.start()
        assert self._ready.wait(10)
        return self


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    up = EchoUpstream().start()
    workdir = Path(tmp_path_factory.mktemp("secrets"))
    cfg = workdir / "config.yaml"
    cfg.write_text(
        "openai-compatibility:\n"
        "  - name: echo\n"
        f"    base-url: http://127.0.0.1:{up.port}/v1\n"
        "    api-key-entries:\n"
        "      - api-key: ${ECHO_API_KEY}\n"
        "    headers:\n"
        "      X-Service-Token: ${ECHO_SERVICE_TOKEN}\n"
        "    models: [{name: m, alias: echo-model}]\n"
    )
    port = free_port()
    log = workdir / "gateway.log"
    env = {**os.environ, "ECHO_API_KEY": API_KEY, "ECHO_SERVICE_TOKEN": HEADER_TOKEN}
    with log.open("ab") as out:
        cmd = [sys.executable, "-m", "crossroute", "serve", "--config", str(cfg), "--port", str(port)]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_echoed_credentials_are_masked_for_the_client_and_in_the_log(gateway: tuple[str, Path]) -> None:
    url, log = gateway
    body = json.dumps({"model": "echo-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=20)
    answer = exc.value.read().decode()
    assert "Incorrect API key provided" in answer
    time.sleep(0.3)  # the log line is written as the answer goes out
    text = log.read_text()
    assert "upstream" in text
    for secret in (API_KEY, HEADER_TOKEN):
        assert secret not in answer and secret not in text
    assert "hdr...0002" in answer + text
