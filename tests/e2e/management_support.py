"""A real gateway process with the management API on, and a small client for it."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from .gateway_process import GatewayProcess

MGMT_KEY = "mgmt-key-for-tests-0123"
CLIENT_KEY = "client-key-for-tests-0123"
UPSTREAM_KEY = "sk-ant-upstream-secret-0123456789"
HEADER_COMMENT = "# crossroute management test config (this comment must survive edits)\n"


class MgmtGateway(GatewayProcess):
    def __init__(self, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(config, workdir)
        self._env = env

    def write_config(self, config: dict[str, Any]) -> None:
        super().write_config(config)
        self.config_path.write_text(HEADER_COMMENT + self.config_path.read_text())

    def env(self) -> dict[str, str] | None:
        if self._env is None:
            return None
        return {**os.environ, **self._env}

    def call(self, method: str, path: str, body: Any = None, *, key: str | None = MGMT_KEY,
             headers: dict[str, str] | None = None, base: str | None = None) -> tuple[int, Any, dict[str, str]]:
        data: bytes | None
        if body is None or isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        req = urllib.request.Request((base or self.url) + path, data=data, method=method)
        if key is not None:
            req.add_header("Authorization", f"Bearer {key}")
        if data is not None and not (headers and "Content-Type" in headers):
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, raw, hdrs = resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as exc:
            status, raw, hdrs = exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()}
        ctype = hdrs.get("content-type", "")
        value: Any = json.loads(raw) if "json" in ctype and raw else raw.decode("utf-8", "replace")
        return status, value, hdrs

    def wait_for(self, check: Any, timeout: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"{what} not reached within {timeout} s\n{self.log()[-4000:]}")


class WorkersGateway(MgmtGateway):
    """The same, served by ``serve --workers 2`` (each request on a new connection: both get some)."""

    def argv(self) -> list[str]:
        return [*super().argv(), "--workers", "2"]


def base_config(workdir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "api-keys": [CLIENT_KEY],
        "auth-dir": str(workdir / "auth"),
        "data-dir": str(workdir / "data"),
        "logs-dir": str(workdir / "logs"),
        "remote-management": {"secret-key": MGMT_KEY},
        "mock": [{"name": "m", "models": ["mock-1"]}],
        "claude-api-key": [{"api-key": UPSTREAM_KEY, "base-url": "http://127.0.0.1:9"}],
        **extra,
    }


def claude_account(email: str = "ops@example.com") -> tuple[str, dict[str, Any]]:
    return f"claude-{email}.json", {
        "type": "claude", "email": email, "access_token": f"sk-ant-oat01-{uuid.uuid4().hex}",
        "refresh_token": f"sk-ant-ort01-{uuid.uuid4().hex}", "expired": "2099-01-01T00:00:00Z",
    }


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = f"----crossroute{uuid.uuid4().hex}"
    parts = []
    for name, data in files:
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                     "Content-Type: application/json\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
