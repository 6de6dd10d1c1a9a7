"""The server edge: an RSGI application (granian) around the request pipeline.

It does what every route shares — Host and Origin checks, the client key, the body (limit,
deadline, Content-Encoding), routing by path, the cap on concurrent requests, draining on
shutdown, the access log — and writes replies, streaming them event by event at the client's
pace (edge_stream.py, edge_flow.py). A client that goes away cancels the stream task, which closes the upstream
request at once. WebSocket upgrades on the Responses paths (``WS_PATHS``) pass the same Host, Origin
and client-key checks and are then served by ``api/responses_ws.py``; a refused upgrade is an HTTP
status before ``accept()`` (403 Host/Origin, 401 key, 404 other paths, 503 draining or full), never a
WebSocket close code (granian takes that as an HTTP status and aborts).

Over 500 lines on purpose: the RSGI entry point, the checks every HTTP request and WebSocket upgrade
share (Host, Origin, key, the caps), body reading and drain all act on one App's state.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import __version__
from .api import claude, completions, gemini, models, openai_chat, responses
from .api.request import ApiError, Request
from .api.responses_ws import WsSession, log_rejected
from .bodies import BodyError, decode
from .config import is_loopback
from .edge_access import AccessLog
from .edge_stream import SHUTDOWN_MESSAGE, DisconnectWatch, write_stream
from .gateway import Gateway
from .observe import CallEnded
from .observe.traces import allowed as trace_allowed
from .observe.traces import header_value as trace_header
from .replies import Reply, StreamReply, error_reply, json_reply

log = logging.getLogger("crossroute")

Handler = Callable[[Gateway, Request], Awaitable[Reply | StreamReply]]

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Paths a WebSocket client may try before falling back to HTTP (Codex: the Responses API).
WS_PATHS = frozenset({"/v1/responses", "/backend-api/codex/responses"})
STREAM_CLOSE_WAIT = 5.0  # drain: how long ended streams get to close


class Route:
    __slots__ = ("auth", "fmt", "handler")

    def __init__(self, handler: Handler, fmt: str = "openai", auth: bool = True) -> None:
        self.handler = handler
        self.fmt = fmt
        self.auth = auth


async def _healthz(gw: Gateway, req: Request) -> Reply:
    return json_reply({"status": "ok"})


async def _root(gw: Gateway, req: Request) -> Reply:
    return json_reply({"message": f"crossroute {__version__}", "endpoints": sorted(f"{m} {p}" for m, p in ROUTES)})


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/healthz"): Route(_healthz, auth=False),
    ("HEAD", "/healthz"): Route(_healthz, auth=False),
    ("GET", "/"): Route(_root, auth=False),
    ("HEAD", "/"): Route(_root, auth=False),  # Claude Code sends it at start
    ("GET", "/v1/models"): Route(models.list_models),
    ("POST", "/v1/chat/completions"): Route(openai_chat.chat_completions),
    ("POST", "/v1/completions"): Route(completions.completions),
    ("POST", "/v1/messages"): Route(claude.messages, "claude"),
    ("POST", "/v1/messages/count_tokens"): Route(claude.messages_count_tokens, "claude"),
    ("POST", "/v1/responses"): Route(responses.responses, "responses"),
    ("POST", "/v1/responses/compact"): Route(responses.compact, "responses"),
    ("GET", "/v1beta/models"): Route(gemini.list_models, "gemini"),
}
# Paths served under a prefix with a path parameter (Gemini's /v1beta/models/{model}:{action}).
PREFIX_ROUTES: list[tuple[str, str, Route]] = [
    ("POST", "/v1beta/models/", Route(gemini.model_action, "gemini")),
    ("POST", "/v1/models/", Route(gemini.model_action, "gemini")),
    ("GET", "/v1beta/models/", Route(gemini.get_model, "gemini")),
    ("GET", "/v1/models/", Route(models.get_model)),
]


def register(method: str, path: str, route: Route) -> None:
    ROUTES[(method, path)] = route


def register_prefix(method: str, prefix: str, route: Route) -> None:
    PREFIX_ROUTES.append((method, prefix, route))


# API modules that bring their own routes (``routes()`` -> (method, path, handler, fmt, auth, is_prefix)),
# mounted when present
_OPTIONAL_APIS = ("management", "metrics", "codex_usage")


def _mount_optional() -> None:
    for name in _OPTIONAL_APIS:
        try:
            mod = importlib.import_module(f"crossroute.api.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"crossroute.api.{name}":
                raise
            continue
        for method, path, handler, fmt, auth, is_prefix in mod.routes():
            if is_prefix:
                register_prefix(method, path, Route(handler, fmt, auth))
            else:
                register(method, path, Route(handler, fmt, auth))


_mount_optional()


def _same_origin(origin: str, host: str | None) -> bool:
    """A page served by the gateway itself (the panel): the Origin's host[:port] is the Host header.
    The Host header itself was checked first (loopback or allowed-hosts), so DNS rebinding stays out."""
    if not host:
        return False
    scheme, sep, rest = origin.partition("://")
    return bool(sep) and scheme.lower() in ("http", "https") and rest.rstrip("/").lower() == host.lower()


def _format_for_path(path: str) -> str:
    if path.startswith("/v1/messages"):
        return "claude"
    if path.startswith("/v1beta/") or ":" in path:
        return "gemini"
    if path.startswith("/v1/responses") or path.startswith("/backend-api/codex/"):
        return "responses"
    return "openai"


def _client_key(req: Request) -> str | None:
    auth = req.headers.get("authorization")
    if auth and auth.startswith("Bearer "):
        return auth[7:].strip()
    if auth:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else auth.strip()
    return req.headers.get("x-api-key") or req.headers.get("x-goog-api-key") or req.query("key")


def _key_matches(presented: str, keys: list[bytes]) -> bool:
    candidate = presented.encode()
    ok = False
    for key in keys:  # compare against every key, in constant time each
        ok |= hmac.compare_digest(candidate, key)
    return ok


class _BodyWatch:
    """The requests whose body is being read, and one timer for all of them: every
    ``body-timeout / 4`` s (at most 1 s) it cancels those reading for longer than the deadline.
    Per request that is a dict insert and a pop, no timer and no task."""

    __slots__ = ("_handle", "expired", "reading", "timeout")

    def __init__(self) -> None:
        self.reading: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self._handle: asyncio.TimerHandle | None = None
        self.timeout = 60.0

    def start(self, task: asyncio.Task[Any]) -> None:
        self.reading[task] = time.monotonic()
        if self._handle is None:
            self._schedule()

    def _schedule(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(min(1.0, self.timeout / 4), self._check)

    def _check(self) -> None:
        self._handle = None
        if not self.reading:
            return  # started again by the next body read
        limit = time.monotonic() - self.timeout
        for task, began in list(self.reading.items()):
            if began <= limit:
                del self.reading[task]
                self.expired.add(task)
                task.cancel()
        self._schedule()


class App:
    """RSGI application. ``gateway`` may be swapped on reload."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._keys: list[bytes] = []
        self._allowed_hosts: set[str] = set()
        self._inflight = 0
        self._watch = DisconnectWatch()
        self._streams = self._watch.streams
        self._draining = False
        self._wakeup: asyncio.Event | None = None
        self._ws_sessions: set[WsSession] = set()
        self.access = AccessLog()
        self._body_watch = _BodyWatch()
        self.configure()

    def configure(self) -> None:
        s = self.gateway.settings
        self._keys = [k.encode() for k in s.api_keys]
        hosts = {h.lower() for h in s.allowed_hosts}
        if s.host not in ("0.0.0.0", "::", ""):
            hosts.add(s.host.lower())
        self._allowed_hosts = hosts
        self._allowed_origins = set(s.allowed_origins)
        self._host_cache: dict[str, bool] = {}
        self._max_inflight = max(1, s.max_connections)
        self._body_timeout = s.body_timeout
        self._body_watch.timeout = s.body_timeout
        self._body_limit = s.body_limit
        self._idle_timeout = s.idle_timeout
        self.access.configure(s.access_log)
        self._access = self.access.enabled
        obs = self.gateway.observers  # read by GET /metrics
        obs.count_streams = lambda: len(self._streams)
        obs.count_websockets = lambda: len(self._ws_sessions)

    @property
    def in_flight(self) -> int:
        """Requests being served now (streams included)."""
        return self._inflight

    # ------------------------------------------------------------ RSGI hooks

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop.is_running():  # granian embedded in crossroute serve: the gateway is started already
            loop.create_task(self.gateway.ensure_started())
            return
        from . import worker  # a worker process of --workers N: start before serving

        worker.start(self, loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop.is_running():
            return  # embedded: crossroute serve stops the gateway itself
        from . import worker

        worker.stop(self, loop)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            await self._websocket(scope, proto)
            return
        method = scope.method
        if self._draining or self._inflight >= self._max_inflight:
            self._refuse(scope, proto, method)
            return
        self._inflight += 1
        started = time.perf_counter() if self._access else 0.0
        observers = self.gateway.observers
        t0 = time.monotonic() if observers.watching else 0.0
        reply: Reply | StreamReply | None = None
        fmt = "openai"
        try:
            try:
                checked = self._check(scope, method)
                if isinstance(checked, Reply):
                    reply = checked
                    fmt = _format_for_path(scope.path)
                else:
                    route: Route | None
                    route, req, cors = checked
                    fmt = route.fmt
                    if method in BODY_METHODS:  # the body, within the deadline, the limit, decoded
                        headers = req.headers
                        length = headers.get("content-length")
                        task = asyncio.current_task()
                        watch = self._body_watch
                        watch.start(task)  # type: ignore[arg-type]
                        try:
                            if (length is not None and length.isdigit() and int(length) <= self._body_limit
                                    and headers.get("content-encoding") is None):
                                req.body = await proto()  # the common case: one read, known and allowed
                            elif (failed := await self._read_into(req, proto, fmt)) is not None:
                                reply = failed
                                route = None
                        except asyncio.CancelledError:
                            if task not in watch.expired:
                                raise
                            watch.expired.discard(task)
                            task.uncancel()  # type: ignore[union-attr]
                            reply = self._late_body(fmt)
                            route = None
                        finally:
                            watch.reading.pop(task, None)  # type: ignore[arg-type]
                    gw = self.gateway
                    if route is not None:
                        if not gw.started:
                            await gw.start()
                        reply = await route.handler(gw, req)
                        if cors:
                            reply.headers = [*reply.headers, *cors]
                        if (call := reply.call) is not None and call.trace is not None and (
                                req.headers.get("x-crossroute-trace") == "1") and trace_allowed(gw, call):
                            reply.headers = [*reply.headers, ("x-crossroute-trace", trace_header(call))]
            except ApiError as exc:
                reply = exc.reply
            except Exception:  # never a traceback to the client
                log.exception("unhandled error for %s %s", method, scope.path)
                reply = error_reply(_format_for_path(scope.path), 500, "internal error in crossroute (see its log)")
            if isinstance(reply, StreamReply):
                await write_stream(proto, scope, reply, fmt, self._watch, self._idle_timeout)
            elif method == "HEAD":
                proto.response_empty(reply.status, reply.headers)
            else:
                proto.response_bytes(reply.status, reply.headers, reply.body)
                if (c := reply.call) is not None and c.log is not None:
                    c.log.client(reply.body)
        finally:
            self._inflight -= 1
            if self._wakeup is not None:
                self._wakeup.set()
        if t0:
            status = reply.status if reply is not None else 500
            if observers.enabled or status >= 400:  # failure-only observers (the error log) see no successes
                observers.call_ended(CallEnded(method, scope.path, fmt, status,
                                               reply.call if reply is not None else None, t0, time.monotonic()))
        if self._access:
            call = reply.call if reply is not None else None
            if call is None:
                self.access.line(method, scope.path, reply.status if reply is not None else 500, fmt, None, None,
                                 started)
            else:
                self.access.line(method, scope.path, reply.status, fmt, call.model,  # type: ignore[union-attr]
                                 call.credential_id, started)

    def _late_body(self, fmt: str) -> Reply:
        return error_reply(fmt, 408, f"the request body did not arrive within {self._body_timeout:g} s "
                           "(body-timeout-seconds)", headers=[("connection", "close")])

    def _refuse(self, scope: Any, proto: Any, method: str) -> None:
        """Shutting down, or at the cap of concurrent requests: a clean 503 that closes the connection."""
        fmt = _format_for_path(scope.path)
        if self._draining:
            message = SHUTDOWN_MESSAGE
        else:
            message = (f"crossroute is serving its maximum of {self._max_inflight} concurrent requests "
                       "(max-connections); retry shortly")
        reply = error_reply(fmt, 503, message, headers=[("retry-after", "1"), ("connection", "close")])
        proto.response_bytes(reply.status, reply.headers, reply.body)
        if self._access:
            self._log_access(scope, method, reply, fmt, time.perf_counter())

    def _refused_by_host_or_origin(self, host: str | None, origin: str | None) -> str | None:
        if not self._host_allowed(host):
            return "Host header not allowed (add it to allowed-hosts)"
        if origin is not None and origin.rstrip("/") not in self._allowed_origins and not _same_origin(origin, host):
            return f"Origin {origin!r} is not allowed (see allowed-origins)"
        return None

    def _key_problem(self, req: Request) -> str | None:
        """Why the request's client key is refused (None: accepted, or no keys configured)."""
        if not self._keys:
            return None
        key = _client_key(req)
        if not key:
            return "missing API key (send Authorization: Bearer <key>)"
        if not _key_matches(key, self._keys):
            return "invalid API key"
        req.client_key = key
        return None

    def _check(self, scope: Any, method: str) -> Reply | tuple[Route, Request, list[tuple[str, str]]]:
        """Everything decided from the request line and headers: Host, Origin, route, client key."""
        headers = scope.headers
        path = scope.path
        origin = headers.get("origin")
        refused = self._refused_by_host_or_origin(headers.get("host"), origin)
        if refused is not None:
            return error_reply(_format_for_path(path), 403, refused)
        cors: list[tuple[str, str]] = []
        if origin is not None:
            cors = [("access-control-allow-origin", origin), ("vary", "Origin")]
            if method == "OPTIONS":
                return Reply(204, b"", [*cors, ("access-control-allow-methods", "GET, POST, OPTIONS"),
                                        ("access-control-allow-headers", headers.get(
                                            "access-control-request-headers", "authorization, content-type")),
                                        ("access-control-max-age", "600")])
        route = ROUTES.get((method, path))
        params: dict[str, str] | None = None
        if route is None:
            for m, prefix, r in PREFIX_ROUTES:
                if m == method and path.startswith(prefix):
                    route, params = r, {"rest": path[len(prefix):]}
                    break
        if route is None:
            fmt = _format_for_path(path)
            if any(p == path for _, p in ROUTES) or any(path.startswith(p) for _, p, _ in PREFIX_ROUTES):
                return error_reply(fmt, 405, f"method {method} is not allowed on {path}")
            return error_reply(fmt, 404, f"no route for {method} {path}")
        req = Request(method, path, scope.query_string, headers, b"")
        req.client = scope.client
        if params is not None:
            req.path_params = params
        if route.auth and self._keys:
            problem = self._key_problem(req)
            if problem is not None:
                return error_reply(route.fmt, 401, problem)
        return route, req, cors

    def _upgrade_check(self, scope: Any) -> tuple[int, str, str | None]:
        """(HTTP status that refuses the WebSocket upgrade or 0 to accept it, why, the client key):
        the same Host, Origin and key checks as HTTP, then 404 on paths other than ``WS_PATHS``."""
        if self._draining:
            return 503, SHUTDOWN_MESSAGE, None
        headers = scope.headers
        refused = self._refused_by_host_or_origin(headers.get("host"), headers.get("origin"))
        if refused is not None:
            return 403, refused, None
        req = Request(scope.method, scope.path, scope.query_string, headers, b"")
        req.client = scope.client
        problem = self._key_problem(req)
        if problem is not None:
            return 401, problem, None
        if scope.path not in WS_PATHS:
            return 404, f"no WebSocket endpoint at {scope.path}", None
        if len(self._ws_sessions) >= self._max_inflight:
            return 503, f"crossroute is serving its maximum of {self._max_inflight} WebSocket sessions", None
        return 0, "", req.client_key

    async def _websocket(self, scope: Any, proto: Any) -> None:
        """A WebSocket upgrade: refused with an HTTP status, or accepted and served until it closes."""
        started = time.perf_counter()
        try:
            status, reason, key = self._upgrade_check(scope)
        except Exception:
            log.exception("unhandled error for a WebSocket upgrade on %s", scope.path)
            status, reason, key = 500, "internal error", None
        if status:
            proto.close(status)  # before accept(): an HTTP status, an empty body
            if self._access:
                self.access.line("WS", scope.path, status, _format_for_path(scope.path), None, None, started)
            log_rejected(self.gateway, {"path": scope.path, "headers": scope.headers, "client_key": None,
                                        "model": None}, status, reason)
            return
        gw = self.gateway
        if not gw.started:
            await gw.start()
        try:
            transport = await proto.accept()
        except Exception as exc:
            log.debug("WebSocket accept failed: %r", exc)
            return
        session = WsSession(lambda: self.gateway, transport, scope.path, scope.headers, key, self._body_limit,
                            self._ws_turn_line if self._access else None)
        self._ws_sessions.add(session)
        try:
            await session.run()
        except Exception:
            log.exception("WebSocket session on %s failed", scope.path)
        finally:
            self._ws_sessions.discard(session)
            if self._wakeup is not None:
                self._wakeup.set()
            del transport, session  # granian sends its close frame once the transport is dropped
            proto.close(None)
            if self._access:
                self.access.line("WS", scope.path, 101, "responses", None, None, started)

    def _ws_turn_line(self, path: str, status: int, call: Any, started: float) -> None:
        """One access-log line per WebSocket turn (``WS-TURN``), like an HTTP request's."""
        self.access.line("WS-TURN", path, status, "responses", call.model if call is not None else None,
                         call.credential_id if call is not None else None, started)

    def _log_access(self, scope: Any, method: str, reply: Reply | StreamReply | None, fmt: str,
                    started: float) -> None:
        call = reply.call if reply is not None else None
        self.access.line(method, scope.path, reply.status if reply is not None else 500, fmt,
                         call.model if call is not None else None,
                         call.credential_id if call is not None else None, started)

    async def _read_into(self, req: Request, proto: Any, fmt: str) -> Reply | None:
        """The body whose length is not declared, or declared over the limit, or encoded
        (``__rsgi__`` reads the others itself): read within the limit, decoded within the limit."""
        limit = self.gateway.settings.body_limit
        length = req.headers.get("content-length")
        if length is None or not length.isdigit() or int(length) <= limit:  # (one declared over it is not read)
            body = await _read_body(proto, limit)
            if body is not None:
                encoding = req.headers.get("content-encoding")
                if encoding is not None:
                    try:
                        body = decode(body, encoding, limit)
                    except BodyError as exc:
                        return error_reply(fmt, exc.status, exc.message)
                req.body = body
                return None
        return error_reply(fmt, 413, f"request body is larger than the {limit} byte limit (body-limit-mb)")

    def _host_allowed(self, host: str | None) -> bool:
        if not host:
            return True  # HTTP/1.0 clients; DNS rebinding needs a browser, which always sends Host
        known = self._host_cache.get(host)
        if known is None:
            known = self._check_host(host)
            if len(self._host_cache) < 1024:
                self._host_cache[host] = known
        return known

    def _check_host(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]").lower()
        if is_loopback(name) or name in self._allowed_hosts or "*" in self._allowed_hosts:
            return True
        return False

    # ------------------------------------------------------------ streams and shutdown

    def begin_drain(self) -> None:
        """From now on, new requests get 503 (client format, ``Connection: close``); the ones in
        flight go on."""
        self._draining = True
        if self._wakeup is None:
            self._wakeup = asyncio.Event()

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 (the shutdown deadline)
        """Wait up to ``timeout`` s for the requests and streams in flight to finish; then end
        every stream still open with its format's terminal error event, and return once they are
        closed (or after ``STREAM_CLOSE_WAIT`` more seconds)."""
        try:
            self.begin_drain()
            for session in list(self._ws_sessions):
                session.close()  # idle ones end now, the others after their turn
            wakeup = self._wakeup
            assert wakeup is not None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(0.0, timeout)
            while self._inflight and (left := deadline - loop.time()) > 0:
                wakeup.clear()
                try:
                    await asyncio.wait_for(wakeup.wait(), left)
                except TimeoutError:
                    break
            await self._close_ws_sessions(max(0.0, deadline - loop.time()) + STREAM_CLOSE_WAIT)
            open_streams = [s for s in self._streams if s.writing and s.task is not None]
            if not open_streams:
                return
            log.info("shutdown: ending %d open stream%s", len(open_streams), "" if len(open_streams) == 1 else "s")
            for s in open_streams:
                s.ending = True
                s.task.cancel()  # type: ignore[union-attr]
            deadline = loop.time() + STREAM_CLOSE_WAIT
            while any(s in self._streams for s in open_streams) and (left := deadline - loop.time()) > 0:
                wakeup.clear()
                try:
                    await asyncio.wait_for(wakeup.wait(), left)
                except TimeoutError:
                    break
        finally:
            self.access.flush()


    async def _close_ws_sessions(self, wait: float) -> None:
        """Shutdown: every WebSocket session ends after its turn in flight; those still open after
        ``wait`` seconds have their turn cancelled."""
        sessions = list(self._ws_sessions)
        if not sessions:
            return
        log.info("shutdown: closing %d WebSocket session%s", len(sessions), "" if len(sessions) == 1 else "s")
        for session in sessions:
            session.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        wakeup = self._wakeup
        while self._ws_sessions and wakeup is not None and (left := deadline - loop.time()) > 0:
            wakeup.clear()
            try:
                await asyncio.wait_for(wakeup.wait(), left)
            except TimeoutError:
                break
        for session in list(self._ws_sessions):
            session.abort()


async def _read_body(proto: Any, limit: int) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    async for chunk in proto:
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts) if len(parts) != 1 else parts[0]


def app_from_env() -> App:
    """Factory for multi-worker mode: each worker process loads the config named in the env
    (and the listening address the parent was given, which may override the file's)."""
    from .config import load
    from .logs import setup_logging

    settings = load(os.environ["CROSSROUTE_CONFIG"])
    listen = os.environ.get("CROSSROUTE_LISTEN")
    if listen:
        host, _, port = listen.rpartition(" ")
        settings.host, settings.port = host, int(port)
    setup_logging(settings.debug)
    return App(Gateway(settings))
