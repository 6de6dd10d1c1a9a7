"""The running gateway: settings, model registry, router, the shared upstream HTTP client.

Everything a request needs hangs off one Gateway object; a config reload swaps its parts
atomically (requests in flight keep the objects they started with).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aiohttp

from .config import Settings
from .registry import Registry
from .routing.router import Router, RoutingSettings
from .state.base import State
from .state.memory import MemoryState

if TYPE_CHECKING:
    from .dispatch import Call

log = logging.getLogger("crossroute")
usage_log = logging.getLogger("crossroute.usage")


def routing_settings(s: Settings) -> RoutingSettings:
    return RoutingSettings(
        strategy=s.routing.strategy,
        session_affinity=s.routing.session_affinity,
        session_affinity_ttl=s.routing.session_affinity_ttl,
        disable_cooling=s.disable_cooling,
        transient_cooldown=s.transient_cooldown,
    )


def make_state(s: Settings) -> State:
    if s.redis_url:
        from .state.redis_state import RedisState

        return RedisState(s.redis_url)
    return MemoryState()


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry(settings)
        self.state = make_state(settings)
        self.router = Router(routing_settings(settings), self.state)
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        )
        self._http: aiohttp.ClientSession | None = None
        # The latest failure of each credential (status, message), to explain cooldowns.
        self.last_failures: dict[str, tuple[int, str]] = {}
        self.started = False
        self._lock = asyncio.Lock()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "Gateway.start() was not awaited"
        return self._http

    async def start(self) -> None:
        async with self._lock:
            if self.started:
                return
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
            self._http = aiohttp.ClientSession(
                connector=connector, auto_decompress=False,
            )
            await self.state.start()
            await self.router.start()
            self.started = True

    async def ensure_started(self) -> None:
        if not self.started:
            await self.start()

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.router.stop()
        await self.state.stop()
        if self._http is not None:
            await self._http.close()

    async def apply(self, settings: Settings) -> None:
        """Hot reload: swap registry and settings; rebuild routing when its fields changed."""
        old = self.settings
        old_ids = {p.id for p in old.providers if not p.disabled}
        new_ids = {p.id for p in settings.providers if not p.disabled}
        self.registry = Registry(settings)
        self.settings = settings
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        )
        await self.router.apply_settings(routing_settings(settings))
        for cred_id in old_ids - new_ids:
            await self.router.invalidate_credential(cred_id)

    @property
    def recording(self) -> bool:
        """Whether finished calls are recorded (today: the usage log line at debug level)."""
        return usage_log.isEnabledFor(logging.INFO)

    def record(self, call: Call) -> None:
        """Usage accounting hook: one line per finished call (a usage store plugs in here)."""
        u = call.usage
        usage_log.info(
            "%s model=%s upstream=%s cred=%s status=%s in=%s out=%s cached=%s reasoning=%s",
            call.client_format, call.model, call.upstream_model, call.credential_id, call.status,
            u.input_tokens if u else "-", u.output_tokens if u else "-", u.cached_tokens if u else "-",
            u.reasoning_tokens if u else "-",
        )
