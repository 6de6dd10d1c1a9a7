"""Start and stop a real PostgreSQL server (Debian's binaries) on a free 127.0.0.1 port in a
temporary directory, for the usage store's tests.

``require_postgres()`` finds ``/usr/lib/postgresql/<version>/bin/{initdb,postgres}`` (or on PATH);
without them the test is skipped, or fails when ``CROSSROUTE_REQUIRE_SERVICES=1`` (CI, where
``.ci/run`` installs the ``postgresql`` package). PostgreSQL refuses to run as root: as root, the
cluster directory is given to the unprivileged ``nobody`` user and the binaries run as it
(``runuser -u nobody``). Authentication is ``trust`` on loopback only; the socket directory is the
temporary directory, so nothing touches the system's own cluster.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "require_postgres"]


def _find_bin_dir() -> str | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2])
                        if p.split("/")[-2].isdigit() else 0, reverse=True)
    for d in candidates:
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "postgres")):
            return d
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return os.path.dirname(initdb)
    return None


def require_postgres() -> str:
    """The directory holding initdb and postgres; skip (or fail under CI) without them."""
    d = _find_bin_dir()
    if d is None:
        msg = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("CROSSROUTE_REQUIRE_SERVICES") == "1":
            pytest.fail(msg + " and CROSSROUTE_REQUIRE_SERVICES=1")
        pytest.skip(msg)
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        msg = "running as root needs runuser to start PostgreSQL as an unprivileged user"
        if os.environ.get("CROSSROUTE_REQUIRE_SERVICES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return d


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster and server; ``url`` names its ``postgres`` database as user ``crossroute``."""

    USER = "crossroute"

    def __init__(self, bin_dir: str | None = None) -> None:
        self.bin_dir = bin_dir or require_postgres()
        self.port = _free_port()
        self._tmp = tempfile.mkdtemp(prefix="crossroute-pg-")
        self.dir = Path(self._tmp)
        self.data = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/postgres"

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", "nobody", "--", *args] if self._as_root else list(args)

    def start(self, timeout: float = 30.0) -> None:
        if self._as_root:
            os.chmod(self.dir, 0o755)
            shutil.chown(self.dir, "nobody")
        if not self.data.exists():
            subprocess.run(self._cmd(os.path.join(self.bin_dir, "initdb"), "-D", str(self.data), "-U", self.USER,
                                     "-A", "trust", "-E", "UTF8", "--no-sync"),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        log = open(self.dir / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            self._cmd(os.path.join(self.bin_dir, "postgres"), "-D", str(self.data), "-p", str(self.port),
                      "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                      "-c", "fsync=off", "-c", "max_connections=40", "-c", "shared_buffers=16MB"),
            stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: "
                                   f"{(self.dir / 'postgres.log').read_text()[-2000:]}")
            if self._ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postgres did not accept connections on port {self.port}")

    def _ready(self) -> bool:
        import asyncio

        import asyncpg

        async def ping() -> bool:
            try:
                conn = await asyncpg.connect(self.url, timeout=1.0)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                return False
            await conn.close()
            return True

        return asyncio.run(ping())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # smart shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
