"""The executor seam: what every upstream kind supplies, and the HTTP I/O they share.

An ``Executor`` owns one upstream kind: its credentials (a ``TokenSource``), URLs, headers, body
rewrites and I/O. ``dispatch`` hands it an ``Outbound`` (the request already translated into the
upstream's wire format) and gets back an ``Upstream`` (an answer with a 2xx status, read whole or
in chunks) or an ``UpstreamError`` that says whose fault the failure is (``scope``):

- ``request``: the request itself is wrong (400, 413, 422, an unknown ``previous_response_id``);
  nothing cools down and the session keeps its credential.
- ``model``: this credential cannot serve this upstream model now (429, 5xx, 403, an unknown
  model); it rests for this model only.
- ``credential``: the whole credential is unusable (401 after a failed refresh, 402, the host is
  unreachable); it rests for every model.

The operations an executor serves are declared in ``supports`` (``generate``, ``count_tokens``,
``compact``), never discovered. The HTTP executor does 401 -> ``TokenSource.refresh()`` -> one
resend, here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import aiohttp

from .. import redaction
from ..config import ProviderEntry
from ..formats import errors
from .failures import CREDENTIAL, MODEL, REQUEST, BadAnswer, UpstreamError, scope_for
from .http1 import Http1Error, Http1Pool, Response

if TYPE_CHECKING:
    from ..config import Settings
    from ..routing.quota import QuotaBook

__all__ = [
    "CREDENTIAL", "MODEL", "REQUEST", "BadAnswer", "Executor", "HttpExecutor", "HttpUpstream", "Outbound",
    "StaticKey", "TokenSource", "Upstream", "UpstreamError", "UpstreamIO", "UpstreamRequest", "config_headers",
    "join_versioned", "scope_for",
]

MAX_ERROR_BODY = 64 * 1024
IO_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError,)


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# ------------------------------------------------------------------ requests and answers
class Outbound:
    """What dispatch asks an executor to send: the body in the upstream's wire format."""

    __slots__ = ("body", "client_headers", "model", "operation", "stream", "wire")

    def __init__(self, operation: str, wire: str, model: str, body: bytes, stream: bool,
                 client_headers: Mapping[str, str]) -> None:
        self.operation = operation
        self.wire = wire
        self.model = model
        self.body = body
        self.stream = stream
        self.client_headers = client_headers


class UpstreamRequest:
    """One HTTP request as an executor builds it."""

    __slots__ = ("body", "headers", "url")

    def __init__(self, url: str, headers: dict[str, str], body: bytes) -> None:
        self.url = url
        self.headers = headers  # may be shared by many requests: replace it, never change it in place
        self.body = body


class Upstream(Protocol):
    """A 2xx upstream answer, read the same way whatever carried it.

    ``read_chunk()``: the next bytes, ``b""`` at the end (bound directly to the transport's reader:
    no extra coroutine per chunk); ``body(limit)``: the whole body, raising ``BadAnswer`` past
    ``limit`` bytes. Reads raise ``TimeoutError`` or one of ``io_errors``. ``close(reuse)``: done with
    it (``reuse`` False when it was not read to the end cleanly).
    """

    status: int
    headers: Mapping[str, str]
    io_errors: tuple[type[BaseException], ...]
    read_chunk: Callable[[], Awaitable[bytes]]

    def body(self, limit: int) -> Awaitable[bytes]: ...
    def at_eof(self) -> bool: ...
    def close(self, reuse: bool) -> None: ...


class HttpUpstream:
    __slots__ = ("_resp", "headers", "read_chunk", "status")
    io_errors = IO_ERRORS

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self.read_chunk = resp.content.readany

    def body(self, limit: int) -> Awaitable[bytes]:
        length = self._resp.content_length
        if length is not None and length <= limit:
            return self._resp.read()
        if length is not None:
            raise BadAnswer(f"an answer larger than the limit ({length} > {limit} bytes)")
        return self._bounded(limit)

    async def _bounded(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        read = self._resp.content.readany
        while chunk := await read():
            size += len(chunk)
            if size > limit:
                raise BadAnswer(f"an answer larger than the limit ({limit} bytes)")
            parts.append(chunk)
        return b"".join(parts)

    def at_eof(self) -> bool:
        return self._resp.content.at_eof()

    def close(self, reuse: bool) -> None:
        if reuse:
            self._resp.release()
        else:
            self._resp.close()


# ------------------------------------------------------------------ credentials
class TokenSource(Protocol):
    """Where an executor gets the secret it sends. ``refresh()``: get a new one after a 401; True
    when there is a new one to retry with (a static key cannot refresh)."""

    def token(self) -> str: ...
    async def refresh(self) -> bool: ...


class StaticKey:
    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        self._key = key

    def token(self) -> str:
        return self._key

    async def refresh(self) -> bool:
        return False


# ------------------------------------------------------------------ what executors get for I/O
class UpstreamIO(Protocol):
    """What the gateway lends an executor: an HTTP session per effective proxy URL (SOCKS
    included) with the ``proxy=`` argument to pass along, the timeout, the settings."""

    settings: Settings
    timeout: aiohttp.ClientTimeout
    quota: QuotaBook  # every answer's headers go to quota.note(entry, status, headers)
    direct: Http1Pool | None  # direct connections (no proxy); None: the aiohttp session serves them too

    @property
    def http(self) -> aiohttp.ClientSession:
        """The shared session (direct connections)."""
        ...

    def client_for(self, proxy_url: str | None) -> aiohttp.ClientSession: ...
    def proxy_arg(self, proxy_url: str | None) -> str | None: ...
    def component(self, name: str, factory: Any) -> Any:
        """The gateway's component ``name`` (e.g. the WebSocket pool), made by ``factory(gw)`` once."""
        ...


# ------------------------------------------------------------------ executors
class Executor(Protocol):
    """``kind``: the config/account kind it serves; ``supports``: the operations it serves;
    ``models``: the upstream model names an account of this kind serves when nothing narrower
    is configured (contributed to ``/v1/models``); ``default_base_url``: where it sends when the
    entry or account names no ``base_url``."""

    kind: str
    supports: frozenset[str]
    models: tuple[str, ...]
    default_base_url: str

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        """The upstream format this credential is spoken to in, for a client of that format."""
        ...

    def token_source(self, entry: ProviderEntry) -> TokenSource: ...

    async def send(self, entry: ProviderEntry, out: Outbound, io: UpstreamIO) -> Upstream:
        """Send ``out``; a 2xx answer, or raise ``UpstreamError``."""
        ...


class HttpExecutor:
    """The HTTP part every HTTP upstream shares; a subclass says how to ``build`` the request."""

    kind: ClassVar[str] = ""
    supports: ClassVar[frozenset[str]] = frozenset({"generate"})
    models: ClassVar[tuple[str, ...]] = ()
    default_base_url: ClassVar[str] = ""

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        raise NotImplementedError

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        raise NotImplementedError

    def token_source(self, entry: ProviderEntry) -> TokenSource:
        src = entry.derived.get("token")
        if src is None:
            src = entry.derived["token"] = StaticKey(entry.api_key)
        return src  # type: ignore[no-any-return]

    def _request(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        req = self.build(entry, out)
        if idem := out.client_headers.get("idempotency-key"):
            req.headers = {**req.headers, "Idempotency-Key": idem}
        return req

    async def send(self, entry: ProviderEntry, out: Outbound, io: UpstreamIO) -> Upstream:
        """Direct calls go through crossroute's HTTP/1.1 client (``io.direct``, http1.py), proxied
        ones (and all of them when ``io.direct`` is None) through the aiohttp session."""
        req = self._request(entry, out)
        proxy_url = entry.proxy_url or io.settings.proxy_url
        direct = io.direct if not proxy_url or proxy_url.lower() in ("direct", "none") else None
        if direct is None:
            session, proxy = (io.client_for(proxy_url), io.proxy_arg(proxy_url)) if proxy_url else (io.http, None)
        timeout = io.timeout
        resent = False
        while True:
            try:  # inline, not a helper coroutine: this is every request's path
                if direct is not None:
                    resp: aiohttp.ClientResponse | Response = await direct.post(
                        req.url, req.headers, req.body, timeout.sock_connect or timeout.connect or timeout.total,
                        timeout.sock_read or timeout.total)
                else:
                    resp = await session.post(req.url, data=req.body, headers=req.headers, proxy=proxy,
                                              timeout=timeout)
            except TimeoutError:
                raise UpstreamError(504, f"upstream {entry.name} did not answer in time", scope=MODEL) from None
            except (aiohttp.ClientError, Http1Error) as exc:
                detail = redaction.scrub(str(exc) if isinstance(exc, Http1Error) else f"{type(exc).__name__}: {exc}")
                raise UpstreamError(0, f"upstream {entry.name} is unreachable ({detail})") from None
            io.quota.note(entry, resp.status, resp.headers)
            if resp.status < 400:
                return resp if isinstance(resp, Response) else HttpUpstream(resp)
            if resp.status == 401 and not resent:
                try:
                    refreshed = await self.token_source(entry).refresh()
                except BaseException:
                    resp.release()
                    raise
                if refreshed:
                    resp.release()
                    resent = True
                    req = self._request(entry, out)  # with the new token
                    continue
            raise await self._failure(entry, resp)

    async def _failure(self, entry: ProviderEntry, resp: aiohttp.ClientResponse | Response) -> UpstreamError:
        try:
            if isinstance(resp, Response):
                body = await resp.read_upto(MAX_ERROR_BODY)
            else:
                body = await resp.content.read(MAX_ERROR_BODY)
        except (aiohttp.ClientError, Http1Error, TimeoutError):
            body = b""
        finally:
            resp.release()
        body = redaction.scrub_bytes(body)
        message, _ = errors.upstream_error_message(body)
        return UpstreamError(resp.status, f"upstream {entry.name} answered {resp.status}: {redaction.scrub(message)}",
                             body=body, retry_after=retry_after_of(resp.headers))


# ------------------------------------------------------------------ helpers for building requests
def config_headers(entry: ProviderEntry, client_headers: Mapping[str, str]) -> dict[str, str]:
    """Configured extra headers; a value ``$Name`` copies the client's header ``Name``."""
    if not entry.headers:
        return {}
    out: dict[str, str] = {}
    for name, value in entry.headers.items():
        if value.startswith("$"):
            copied = client_headers.get(value[1:].lower())
            if copied:
                out[name] = copied
        else:
            out[name] = value
    return out


@lru_cache(maxsize=4096)
def join_versioned(base: str, version: str, path: str) -> str:
    """``base`` + ``path``, adding ``/<version>`` only when ``base`` has no path of its own.

    http://h:11434 -> http://h:11434/v1/chat/completions; http://h/v1 -> http://h/v1/chat/completions;
    https://h/api/paas/v4 -> https://h/api/paas/v4/chat/completions (a custom path is used as given).
    """
    base = base.rstrip("/")
    tail = base.split("://", 1)[-1]
    has_path = "/" in tail
    if not has_path:
        base = f"{base}/{version}"
    return base + path
