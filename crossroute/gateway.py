"""The running gateway: settings, model registry, router, the upstream HTTP clients.

Everything a request needs hangs off one Gateway object; a config reload swaps its parts
atomically (requests in flight keep the objects they started with). The accounts of ``auth-dir``
(``auth/serving.py``) are owned here too: started with the gateway, and every change to them
swaps the registry the same way.

Upstream HTTP: the executors' direct calls (no proxy) go through crossroute's own HTTP/1.1
client (``direct``, providers/http1.py: a keep-alive pool at a fraction of aiohttp's CPU per
request); one shared aiohttp ``ClientSession`` serves HTTP(S) proxies and everything else (OAuth,
WebSockets, management calls), plus one lazily made session per SOCKS proxy URL (``client_for``).
Both ask upstreams for ``ACCEPT_ENCODING`` and decode what comes back (gzip, deflate, zstd and br,
asked for or not, JSON, error bodies and streams alike, incrementally, with bounded output per
read), so what callers read is always the plain body; both pause the socket past a bounded buffer
per answer (back-pressure). Neither keeps cookies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import aiohttp

from .config import Settings
from .observe import Hub
from .observe.setup import install as install_observers
from .providers import http1
from .providers.http1 import Http1Pool
from .registry import Registry
from .routing.quota import QuotaBook
from .routing.router import Router, RoutingSettings
from .state.base import State
from .state.memory import MemoryState

if TYPE_CHECKING:
    from .auth.serving import AccountService
    from .call import Call

log = logging.getLogger("crossroute")
usage_log = logging.getLogger("crossroute.usage")

# What upstreams are asked for, chosen by bench/bench_decompress.py: decoding costs more CPU per
# answer (gzip: +9 µs codec on a 2 KB answer, +27 µs on a 50-event stream, +0.8 ms on 200 KB;
# more on aiohttp's path) than the bytes it saves are worth on the links upstream APIs are reached
# over, and the gateway is CPU-bound. An entry's ``headers: {Accept-Encoding: gzip}`` asks that
# upstream for gzip. Whatever is asked for, every answer is decoded.
ACCEPT_ENCODING = http1.ACCEPT_ENCODING
# aiohttp's per-response read buffer (its StreamReader pauses the socket past twice this).
READ_BUFSIZE = 64 * 1024
SOCKS_SCHEMES = ("socks5://", "socks5h://", "socks4://", "socks4a://")
# A SOCKS session that a reload no longer uses is closed this long after (streams in flight end).
RETIRE_GRACE = 30.0


def is_socks(proxy_url: str | None) -> bool:
    return bool(proxy_url) and proxy_url.lower().startswith(SOCKS_SCHEMES)  # type: ignore[union-attr]


def _direct(proxy_url: str | None) -> bool:
    return not proxy_url or proxy_url.lower() in ("direct", "none")


def new_session(connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
    """An upstream client session with crossroute's encoding and buffering choices."""
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # an upstream's cookies would reach every other client's requests
        auto_decompress=True,
        headers={"Accept-Encoding": ACCEPT_ENCODING},
        read_bufsize=READ_BUFSIZE,
    )


def socks_connector(proxy_url: str) -> aiohttp.BaseConnector:
    """A connector through a SOCKS proxy: ``socks5://`` resolves upstream names locally and
    sends the address, ``socks5h://`` sends the name for the proxy to resolve (as curl does);
    ``socks4://`` sends an IPv4 address, ``socks4a://`` the name. ``user:password@`` is used for
    SOCKS5 authentication (the user id for SOCKS4). The port defaults to 1080."""
    from urllib.parse import unquote, urlsplit

    from aiohttp_socks import ProxyConnector, ProxyType

    parts = urlsplit(proxy_url)
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme + "://" not in SOCKS_SCHEMES:
        raise ValueError(f"not a SOCKS proxy URL: {scheme}://…")
    return ProxyConnector(
        host=parts.hostname,
        port=parts.port or 1080,
        proxy_type=ProxyType.SOCKS5 if scheme.startswith("socks5") else ProxyType.SOCKS4,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        rdns=scheme in ("socks5h", "socks4a"),
        limit=0,
        ttl_dns_cache=300,
        enable_cleanup_closed=True,
    )


class Component(Protocol):
    """A part with a lifecycle the gateway owns (a WebSocket pool, a usage store, ...).

    Made on first use by ``Gateway.component(name, factory)``; told of every reload with the
    credential ids that went away (``reconfigure``); stopped once, in reverse order of creation."""

    def reconfigure(self, gw: Gateway, removed: set[str]) -> None: ...
    async def stop(self) -> None: ...


K = TypeVar("K", bound=Component)


def routing_settings(s: Settings) -> RoutingSettings:
    return RoutingSettings(
        strategy=s.routing.strategy,
        session_affinity=s.routing.session_affinity,
        session_affinity_ttl=s.routing.session_affinity_ttl,
        disable_cooling=s.disable_cooling,
        transient_cooldown=s.transient_cooldown,
        quota_aware=s.routing.quota_aware,
    )


def make_state(s: Settings) -> State:
    if s.redis_url:
        from .state.redis_state import RedisState

        return RedisState(s.redis_url)
    return MemoryState(max_bindings=s.max_session_bindings)


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
        # direct upstream calls of the executors (providers/http1.py); proxied ones use _http/_socks
        self.direct: Http1Pool | None = None
        self._socks: dict[str, aiohttp.ClientSession] = {}  # SOCKS proxy URL -> its session
        self._retiring: set[asyncio.Task[None]] = set()
        # The latest failure of each credential (status, message), to explain cooldowns.
        self.last_failures: dict[str, tuple[int, str]] = {}
        self.started = False
        self._lock = asyncio.Lock()
        self.observers = Hub()  # observe/: usage store, request log, metrics, traces
        self.quota = QuotaBook()  # what upstream answers say about each credential's quota
        self._components: dict[str, Component] = {}
        # the accounts of auth-dir (auth/serving.py), from start() on; None before and after
        self.accounts: AccountService | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def component(self, name: str, factory: Callable[[Gateway], K]) -> K:
        """The gateway's component called ``name``, made by ``factory(self)`` on first use."""
        comp = self._components.get(name)
        if comp is None:
            comp = self._components[name] = factory(self)
        return comp  # type: ignore[return-value]

    def find_component(self, name: str) -> Any:
        return self._components.get(name)

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "Gateway.start() was not awaited"
        return self._http

    async def start(self) -> None:
        async with self._lock:
            if self.started:
                return
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
            self._http = new_session(connector)
            self.direct = Http1Pool()
            await self.state.start()
            await self.router.start()
            await self._start_accounts(self.settings)
            self.registry = self._build_registry(self.settings)
            self.quota.attach(self.router, self.settings, self._auth_dir())
            install_observers(self)
            self.started = True

    async def ensure_started(self) -> None:
        if not self.started:
            await self.start()

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        try:  # what the accounts' quota looked like at the end, for `crossroute auth list`
            self.quota.flush_now()
        except OSError as exc:
            log.warning("could not write the quota snapshot: %s", exc)
        components, self._components = list(self._components.values()), {}
        for comp in reversed(components):
            try:
                await comp.stop()
            except Exception:
                log.exception("stopping %s failed", type(comp).__name__)
        await self._stop_accounts()
        pending = list(self._pending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.router.stop()
        await self.state.stop()
        retiring = list(self._retiring)
        for task in retiring:
            task.cancel()
        await asyncio.gather(*retiring, return_exceptions=True)
        socks, self._socks = list(self._socks.values()), {}
        for session in socks:
            await session.close()
        if self._http is not None:
            await self._http.close()
        if self.direct is not None:
            await self.direct.close()

    # ------------------------------------------------------------------ accounts (auth-dir)
    async def _start_accounts(self, settings: Settings) -> None:
        from .auth.serving import AccountService

        service = AccountService(settings.auth_dir, settings.redis_url, self._accounts_changed)
        try:
            await service.start()
        except Exception:
            log.exception("auth dir %s could not be read; serving without its accounts", settings.auth_dir)
            await service.stop()
            return
        self.accounts = service

    async def _stop_accounts(self) -> None:
        service, self.accounts = self.accounts, None
        if service is not None:
            await service.stop()

    def _auth_dir(self) -> Any:
        return self.accounts.store.dir if self.accounts is not None else None

    def _build_registry(self, settings: Settings) -> Registry:
        service = self.accounts
        if service is None:
            return Registry(settings)
        return Registry(settings, accounts=service.entries(settings), secrets=service.secrets())

    def _accounts_changed(self) -> None:
        """An account was added, changed or removed: serve the new set from the next request on;
        the credentials that left (removed, disabled, needs login) lose their session bindings and
        cooldowns (in whatever state is configured) and every component hears of them."""
        before = self.registry.credential_ids()
        self.registry = self._build_registry(self.settings)
        gone = before - self.registry.credential_ids()
        self._reconfigure(gone)
        if gone:
            task = asyncio.get_running_loop().create_task(self._invalidate(gone))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _invalidate(self, cred_ids: set[str]) -> None:
        """Drop the session bindings and cooldowns of credentials that left (``Router.
        invalidate_credential``, in whatever state is configured), so an account that comes back
        (enabled again, signed in again) starts clean."""
        for cred_id in cred_ids:
            try:
                await self.router.invalidate_credential(cred_id)
            except Exception:
                log.exception("dropping the bindings and cooldowns of %s failed", cred_id)

    def _reconfigure(self, removed: set[str]) -> None:
        for comp in list(self._components.values()):
            try:
                comp.reconfigure(self, removed)
            except Exception:
                log.exception("reconfiguring %s failed", type(comp).__name__)

    def client_for(self, proxy_url: str | None) -> aiohttp.ClientSession:
        """The session to send an upstream request with, for the entry's effective proxy URL
        (``entry.proxy_url or settings.proxy_url``: None, ``"direct"``/``"none"``, ``http(s)://…``
        or ``socks5://``, ``socks5h://``, ``socks4://``, ``socks4a://``).

        Direct connections and HTTP(S) proxies use the shared session; pass
        ``proxy=gw.proxy_arg(proxy_url)`` with the request (the HTTP proxy URL, or None). A SOCKS
        proxy gets its own session, made on first use and kept for that URL (its connector dials
        through the proxy, so ``proxy_arg`` is None). Typical use::

            url = entry.proxy_url or gw.settings.proxy_url
            resp = await gw.client_for(url).post(u, data=body, proxy=gw.proxy_arg(url), ...)

        SOCKS sessions are closed by ``stop()``, and by ``apply()`` when a reload no longer names
        their URL (after ``RETIRE_GRACE`` seconds, so requests in flight can finish).
        """
        if _direct(proxy_url) or not is_socks(proxy_url):
            return self.http
        assert proxy_url is not None
        session = self._socks.get(proxy_url)
        if session is None or session.closed:
            assert self._http is not None, "Gateway.start() was not awaited"
            session = self._socks[proxy_url] = new_session(socks_connector(proxy_url))
        return session

    @staticmethod
    def proxy_arg(proxy_url: str | None) -> str | None:
        """What to pass as aiohttp's ``proxy=`` for this effective proxy URL: the URL of an
        HTTP(S) proxy, else None (direct, or a SOCKS proxy that ``client_for`` dials itself)."""
        if _direct(proxy_url) or is_socks(proxy_url):
            return None
        return proxy_url

    def _proxies_in(self, settings: Settings) -> set[str]:
        urls = {p.proxy_url for p in settings.providers if p.proxy_url}
        urls.update(p.proxy_url for p in self.registry.accounts if p.proxy_url)
        if settings.proxy_url:
            urls.add(settings.proxy_url)
        return urls

    def _retire_unused_proxies(self) -> None:
        keep = self._proxies_in(self.settings)
        for url in [u for u in self._socks if u not in keep]:
            session = self._socks.pop(url)
            task = asyncio.get_running_loop().create_task(self._close_later(session))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _close_later(session: aiohttp.ClientSession) -> None:
        try:
            await asyncio.sleep(RETIRE_GRACE)
        finally:
            await session.close()

    async def apply(self, settings: Settings) -> None:
        """Hot reload: swap registry and settings; rebuild routing when its fields changed. A new
        ``auth-dir`` swaps the account store (the old directory's accounts leave)."""
        old = self.settings
        old_ids = {p.id for p in old.providers if not p.disabled} | self.registry.credential_ids()
        if self.started and (self.accounts is None or settings.auth_dir != old.auth_dir):
            await self._stop_accounts()
            await self._start_accounts(settings)
        self.registry = self._build_registry(settings)
        new_ids = {p.id for p in settings.providers if not p.disabled} | self.registry.credential_ids()
        self.settings = settings
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        )
        await self.router.apply_settings(routing_settings(settings))
        self.quota.attach(self.router, settings, self._auth_dir())
        install_observers(self)
        self._retire_unused_proxies()
        removed = old_ids - new_ids
        for cred_id in removed:
            await self.router.invalidate_credential(cred_id)
        self._reconfigure(removed)

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
