"""The server edge: an RSGI application (granian) around the request pipeline.

It does what every route shares — Host and Origin checks, the client key, the body limit,
routing by path — and writes replies, streaming them event by event. A client that goes away
cancels the stream task, which closes the upstream request at once.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from . import __version__
from .api import claude, completions, gemini, models, openai_chat, responses
from .api.request import ApiError, Request
from .config import is_loopback
from .gateway import Gateway
from .replies import Reply, StreamReply, error_reply, json_reply

log = logging.getLogger("crossroute")

Handler = Callable[[Gateway, Request], Awaitable[Reply | StreamReply]]


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


def _format_for_path(path: str) -> str:
    if path.startswith("/v1/messages"):
        return "claude"
    if path.startswith("/v1beta/") or ":" in path:
        return "gemini"
    if path.startswith("/v1/responses"):
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


class App:
    """RSGI application. ``gateway`` may be swapped on reload."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._keys: list[bytes] = []
        self._allowed_hosts: set[str] = set()
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

    # ------------------------------------------------------------ RSGI hooks

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.create_task(self.gateway.ensure_started())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        pass

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            proto.close(1008)
            return
        method = scope.method
        try:
            checked = self._check(scope, method)
            if isinstance(checked, Reply):
                reply: Reply | StreamReply = checked
            else:
                route, req, cors = checked
                if method in ("POST", "PUT", "PATCH"):
                    length = req.headers.get("content-length")
                    if length is not None and length.isdigit() and int(length) <= self.gateway.settings.body_limit:
                        req.body = await proto()  # the common case: one read, the length is known and allowed
                    else:
                        failed = await self._read_into(req, proto, route.fmt)
                        if failed is not None:
                            reply = failed
                            route = None
                gw = self.gateway
                if route is not None:
                    if not gw.started:
                        await gw.start()
                    reply = await route.handler(gw, req)
                    if cors:
                        reply.headers = [*reply.headers, *cors]
        except ApiError as exc:
            reply = exc.reply
        except Exception:  # never a traceback to the client
            log.exception("unhandled error for %s %s", method, scope.path)
            reply = error_reply(_format_for_path(scope.path), 500, "internal error in crossroute (see its log)")
        if isinstance(reply, StreamReply):
            await self._stream(proto, reply)
        elif method == "HEAD":
            proto.response_empty(reply.status, reply.headers)
        else:
            proto.response_bytes(reply.status, reply.headers, reply.body)

    def _check(self, scope: Any, method: str) -> Reply | tuple[Route, Request, list[tuple[str, str]]]:
        """Everything decided from the request line and headers: Host, Origin, route, client key."""
        headers = scope.headers
        path = scope.path
        if not self._host_allowed(headers.get("host")):
            return error_reply(_format_for_path(path), 403, "Host header not allowed (add it to allowed-hosts)")
        origin = headers.get("origin")
        cors: list[tuple[str, str]] = []
        if origin is not None:
            if origin.rstrip("/") not in self._allowed_origins:
                return error_reply(_format_for_path(path), 403,
                                   f"Origin {origin!r} is not allowed (see allowed-origins)")
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
        if params is not None:
            req.path_params = params
        if route.auth and self._keys:
            key = _client_key(req)
            if not key:
                return error_reply(route.fmt, 401, "missing API key (send Authorization: Bearer <key>)")
            if not _key_matches(key, self._keys):
                return error_reply(route.fmt, 401, "invalid API key")
            req.client_key = key
        return route, req, cors

    async def _read_into(self, req: Request, proto: Any, fmt: str) -> Reply | None:
        """The body whose length is not declared, or declared over the limit (``__rsgi__`` reads
        the others itself): read within the limit, else a 413 in the client's format."""
        limit = self.gateway.settings.body_limit
        length = req.headers.get("content-length")
        if length is None or not length.isdigit():  # (a length declared over the limit is not read)
            body = await _read_body(proto, limit)
            if body is not None:
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

    async def _stream(self, proto: Any, reply: StreamReply) -> None:
        """Write the stream from this task; a client that goes away cancels it at once (which
        closes the upstream response inside the chunk generator)."""
        transport = proto.response_stream(reply.status, reply.headers)
        chunks = reply.chunks
        me = asyncio.current_task()
        state = {"writing": True}

        def on_gone(_: asyncio.Future[Any]) -> None:
            if state["writing"] and me is not None:
                me.cancel()

        gone = asyncio.ensure_future(proto.client_disconnect())
        gone.add_done_callback(on_gone)
        try:
            async for chunk in chunks:
                await transport.send_bytes(chunk)
        except asyncio.CancelledError:
            if not (gone.done() and not gone.cancelled()):
                raise  # cancelled from outside (shutdown): let it propagate
            if me is not None:
                me.uncancel()  # our own cancellation: the client is gone, nothing left to tell it
        except Exception as exc:  # client gone mid-write: nothing left to tell it
            log.debug("stream ended early: %r", exc)
        finally:
            state["writing"] = False
            gone.remove_done_callback(on_gone)
            gone.cancel()
            await chunks.aclose()  # type: ignore[attr-defined]


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
    """Factory for multi-worker mode: each worker process loads the config named in the env."""
    from .config import load
    from .logs import setup_logging

    settings = load(os.environ["CROSSROUTE_CONFIG"])
    setup_logging(settings.debug)
    return App(Gateway(settings))
