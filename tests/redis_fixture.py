"""The ``server`` fixture: a real ``redis-server`` on a free 127.0.0.1 port for one test, closed
after it (skipped without the binary, failed under ``CROSSROUTE_REQUIRE_SERVICES=1``; see
``tests/redis_server.py``). A test module imports it by name:
``from tests.redis_fixture import server as server``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer, require_redis_server

__all__ = ["server"]


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(require_redis_server()) as srv:
        yield srv
