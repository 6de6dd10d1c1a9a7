"""Start and stop a real ``redis-server`` on a free 127.0.0.1 port in a temporary directory.

Tests that need one call ``require_redis_server()`` first: it skips the test when the binary is
missing, unless ``CROSSROUTE_REQUIRE_SERVICES=1`` is set, in which case the test fails instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

__all__ = ["RedisServer", "free_port", "require_redis_server"]


def require_redis_server() -> str:
    """Path of the redis-server binary; skip (or fail when services are required) without it."""
    path = shutil.which("redis-server")
    if path is None:
        msg = "redis-server binary not found (apt-get install redis-server)"
        if os.environ.get("CROSSROUTE_REQUIRE_SERVICES") == "1":
            pytest.fail(msg + " and CROSSROUTE_REQUIRE_SERVICES=1")
        pytest.skip(msg)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process; ``stop()`` then ``start()`` restarts it on the same port."""

    def __init__(self, binary: str | None = None, port: int | None = None) -> None:
        self.binary = binary or require_redis_server()
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="crossroute-redis-")
        self.dir = Path(self._tmp.name)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.dir}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()  # abrupt, like a crash; also what the outage tests want
            proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
