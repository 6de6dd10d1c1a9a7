"""A real ``crossroute serve`` on a copy of the repository's config.example.yaml, as a new user runs it
(fresh HOME, no Ollama, no account, nothing but the example file and ``--port``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .gateway_process import ServedGateway, free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.yaml"


class ExampleGateway(ServedGateway):
    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.dir = workdir
        self.config = workdir / "config.yaml"
        shutil.copyfile(EXAMPLE, self.config)
        self.port = free_port()
        self.log_path = workdir / "gateway.log"

    def argv(self) -> list[str]:
        return ["serve", "--config", str(self.config), "--port", str(self.port)]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_"))}
        env["HOME"] = str(self.dir)
        return env

    def start(self, timeout: float = 20.0) -> ExampleGateway:
        return super().start(timeout)
