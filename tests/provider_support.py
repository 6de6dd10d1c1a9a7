"""Fixture bodies the provider tests share: a loopback fake served for as long as its fixture
lives, and an ``UpstreamIO`` over a fresh aiohttp session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp

from tests.loopback import ThreadedApp
from tests.upstream_io import LoopbackIO

__all__ = ["loopback_io", "serving"]

App = TypeVar("App", bound=ThreadedApp)


def serving(app: App) -> Iterator[App]:
    """``app`` started, yielded once, then stopped: ``yield from serving(FakeCloud())`` in a fixture."""
    srv = app.start()
    try:
        yield srv
    finally:
        srv.stop()


@asynccontextmanager
async def loopback_io(**kw: Any) -> AsyncIterator[LoopbackIO]:
    """A ``LoopbackIO`` (``kw`` passed on) over a session closed on exit."""
    async with aiohttp.ClientSession() as session:
        yield LoopbackIO(session, **kw)
