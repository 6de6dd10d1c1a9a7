"""``GET /metrics``: Prometheus text (observe/metrics.py).

Counting starts with the first scrape (a gateway nobody scrapes pays nothing per request). The
route needs a client key when ``api-keys`` are configured, like the model APIs (the metrics name
models and credential ids; a scraper sends ``Authorization: Bearer <key>``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..observe.metrics import Metrics
from ..observe.setup import put
from ..replies import Reply

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["metrics_of", "routes"]


def metrics_of(gw: Gateway) -> Metrics:
    """The gateway's metrics observer, made (and counting from now on) at the first call."""
    m = gw.observers.named.get("metrics")
    if m is None:
        m = Metrics(gw)
        put(gw, "metrics", m)
    return m  # type: ignore[no-any-return]


async def scrape(gw: Gateway, req: Any) -> Reply:
    return Reply(200, generate_latest(metrics_of(gw).registry), [("content-type", CONTENT_TYPE_LATEST)])


def routes() -> list[tuple[str, str, Any, str, bool, bool]]:
    return [("GET", "/metrics", scrape, "openai", True, False)]
