"""``GET /metrics``: Prometheus text (observe/metrics.py).

Counting starts with the first scrape (a gateway nobody scrapes pays nothing per request). The
route needs a client key when ``api-keys`` are configured, like the model APIs (the metrics name
models and credential ids; a scraper sends ``Authorization: Bearer <key>``). Before rendering, a
scrape reads what the text needs from elsewhere: the other workers' snapshots under ``crossroute
serve --workers N`` (observe/metrics_share.py, in a thread) and the routing gauges from Redis when
the state is there (observe/metrics_state.py, bounded in time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..observe.metrics import Metrics
from ..observe.metrics_share import enable
from ..observe.metrics_state import read_redis
from ..replies import Reply

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["metrics_of", "routes"]


def metrics_of(gw: Gateway) -> Metrics:
    """The gateway's metrics observer, made (and counting from now on) at the first call."""
    return enable(gw)


async def scrape(gw: Gateway, req: Any) -> Reply:
    m = metrics_of(gw)
    if m.workers is not None:
        await m.workers.counting()
    m.redis = await read_redis(gw)
    return Reply(200, generate_latest(m.registry), [("content-type", CONTENT_TYPE_LATEST)])


def routes() -> list[tuple[str, str, Any, str, bool, bool]]:
    return [("GET", "/metrics", scrape, "openai", True, False)]
