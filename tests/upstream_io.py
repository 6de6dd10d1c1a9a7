"""What a Gateway lends an executor (``providers.base.UpstreamIO``), without the rest of the gateway."""

from __future__ import annotations

import aiohttp

from crossroute.config import Settings
from crossroute.routing.quota import QuotaBook


class LoopbackIO:
    def __init__(self, session: aiohttp.ClientSession, settings: Settings | None = None,
                 quota: QuotaBook | None = None) -> None:
        self.settings = settings or Settings()
        self.timeout = aiohttp.ClientTimeout(total=5)
        self.quota = quota or QuotaBook()
        self._session = session
        self.direct = None  # the session serves direct calls too (tests choose its headers)

    @property
    def http(self) -> aiohttp.ClientSession:
        return self._session

    def client_for(self, proxy_url: str | None) -> aiohttp.ClientSession:
        return self._session

    def proxy_arg(self, proxy_url: str | None) -> str | None:
        return None
