"""granian's own connection settings for the edge, from crossroute's settings.

- ``idle-timeout-seconds`` is hyper's HTTP/1 header read timeout: it runs from the moment a
  connection is ready for a request (a new connection, or a keep-alive one after its last
  response) until that request's headers are in, so an idle keep-alive connection, or one that
  sends nothing or dribbles its headers, is closed by the server after that long. This needs
  granian's HTTP/1-only mode: in its default auto mode a new connection first waits, without any
  deadline, for enough bytes to tell HTTP/2 prior knowledge from HTTP/1, so a connection that
  sends nothing stayed open forever. (LLM clients speak HTTP/1.1 to a plain-HTTP gateway; h2c is
  not offered.)
- ``max-connections`` caps requests in flight in the app (past it: 503, ``Retry-After``,
  ``Connection: close``). granian's ``backpressure`` caps open connections, but a connection past
  it is not refused: it waits in the listen backlog, unanswered. So it is set well above the
  request cap (twice, at least 64 more), where only idle connections can reach it, and those are
  closed by the idle timeout.
"""

from __future__ import annotations

from typing import Any

from granian.constants import HTTPModes
from granian.http import HTTP1Settings

from .config import Settings


def connection_cap(settings: Settings) -> int:
    """Open client connections granian accepts (each one past it waits in the backlog)."""
    return max(2 * settings.max_connections, settings.max_connections + 64)


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for granian's ``Server(...)`` and ``Granian(...)``."""
    return {
        "http1_settings": HTTP1Settings(header_read_timeout=max(1, int(settings.idle_timeout * 1000)),
                                        keep_alive=True),
        "backpressure": connection_cap(settings),
        "http": HTTPModes.http1,
        "websockets": True,  # upgrades reach the app, which refuses them with an HTTP status
    }
