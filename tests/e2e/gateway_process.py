"""Run a real ``crossroute serve`` process on a free loopback port for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Self

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedGateway:
    """A ``crossroute serve`` subprocess: started on ``argv()`` with ``env()``, ready once /healthz answers."""

    port: int
    dir: Path
    log_path: Path

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None  # inherit

    def start(self, timeout: float = 15.0) -> Self:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "crossroute", *self.argv()],
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, env=self.env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"crossroute exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"crossroute did not become ready:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class GatewayProcess(ServedGateway):
    """A gateway on a config written from ``config`` (a dict) in a temporary directory."""

    def __init__(self, config: dict[str, Any], workdir: Path | None = None) -> None:
        super().__init__()
        self.port = free_port()
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="crossroute-test-"))
        self.config_path = self.dir / "config.yaml"
        self.log_path = self.dir / "gateway.log"
        # never the account files, usage database or logs of whoever runs the tests (~/.crossroute)
        self.isolation = {"auth-dir": str(self.dir / "auth"), "data-dir": str(self.dir / "data"),
                          "logs-dir": str(self.dir / "logs")}
        self.config = {"host": "127.0.0.1", **self.isolation, **config, "port": self.port}
        self.write_config(self.config)

    def write_config(self, config: dict[str, Any]) -> None:
        config = {**self.isolation, **config, "port": self.port}
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, self.config_path)

    def argv(self) -> list[str]:
        return ["serve", "--config", str(self.config_path)]
