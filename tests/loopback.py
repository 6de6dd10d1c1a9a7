"""An aiohttp web app served on 127.0.0.1 from a daemon thread with its own event loop, so tests that
use blocking clients (the official SDKs, subprocesses) cannot stall it.

Subclass ``ThreadedApp`` and implement ``make_app``; ``on_start``/``on_stop`` run on the server's loop
before the app is built and after the runner is cleaned up (to open and close client sessions)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

from aiohttp import web

T = TypeVar("T")

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class ThreadedApp:
    """``port`` 0 picks a free port at start. ``runner_options`` go to ``web.AppRunner``."""

    runner_options: dict[str, Any] = {"access_log": None, "shutdown_timeout": 0.5}
    path_prefix = ""  # appended to ``base``

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path_prefix}"

    def make_app(self) -> web.Application:
        raise NotImplementedError

    async def on_start(self) -> None:
        """Runs on the server's loop before ``make_app``."""

    async def on_stop(self) -> None:
        """Runs on the server's loop after the runner is cleaned up."""

    def start(self) -> Self:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # handed to start() below
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name=type(self).__name__)
        self._thread.start()
        if not ready.wait(START_TIMEOUT) or failure:
            raise RuntimeError(f"{type(self).__name__} did not start") from (failure[0] if failure else None)
        return self

    async def _listen(self) -> None:
        await self.on_start()
        self._runner = web.AppRunner(self.make_app(), **self.runner_options)
        await self._runner.setup()
        sock = socket.socket()
        if self.port:  # a fixed port may be in TIME_WAIT from an earlier server on it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = STOP_TIMEOUT) -> T:
        """Runs ``coro`` on the server's loop and waits (bounded) for its result."""
        assert self._loop is not None, "not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return

        async def close() -> None:
            await runner.cleanup()
            await self.on_stop()

        self.call(close())
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        self._loop = self._runner = None
