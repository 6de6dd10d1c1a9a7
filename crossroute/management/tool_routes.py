"""Management tools that act on one credential: ``POST /reset-quota`` and ``POST /api-call``
(CLIProxyAPI's routes and bodies; a credential is named by ``auth_index``, which in crossroute is
the credential id the listings show: ``auth:<file name>`` for an account, or the config key's id;
an account's file name is accepted too).

- ``reset-quota {"auth_index"}`` drops the credential's cooldowns (every model, the 429 ladder
  too) in the configured state, so every process sharing it sees the change, and the quota
  book's windows that say it is spent (``Router.reset_cooldowns``); session bindings stay.
  ``redeem: true`` (spending a provider-side reset credit) is refused with 422.
- ``api-call {"auth_index", "method", "url", "header", "data"}`` sends one HTTP request with the
  credential's proxy; ``$TOKEN$`` in a header value becomes the credential's token, from the token
  source the request path uses: an OAuth account's token that is due (or expired) is refreshed first
  (CLIProxyAPI does so for its Google accounts; here every refreshable account), through the
  refresher, so it is one refresh per account however many callers want it. A 401 answer to a
  request that carried the token gets one refresh and one resend with the new token, as on the
  request path (CLIProxyAPI answers that 401 as it is); without ``$TOKEN$`` nothing is refreshed.
  Unlike CLIProxyAPI it only reaches the credential's own upstream: the URL must be on the
  credential's base URL (same scheme, host and port, under its path; no ``..``), redirects are not
  followed, the body sent and the answer read are bounded (``MAX_SEND_BYTES``, ``MAX_ANSWER_BYTES``)
  and so is the time (``CALL_TIMEOUT``). The answer is ``{"status_code", "header", "body"}`` with
  every known secret masked (the token among them), plus ``"truncated": true`` when the upstream
  said more than was read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import aiohttp

from .. import redaction
from ..providers import executor_for
from . import accounts
from .http import BadInput, error, json_object, reply

if TYPE_CHECKING:
    from ..api.request import Request
    from ..config import ProviderEntry
    from ..gateway import Gateway
    from ..providers.base import TokenSource
    from ..replies import Reply

__all__ = ["CALL_TIMEOUT", "MAX_ANSWER_BYTES", "MAX_SEND_BYTES", "ROUTES"]

log = logging.getLogger("crossroute.management")

Handler = Callable[["Gateway", "Request"], Awaitable["Reply"]]
CALL_TIMEOUT = 30.0
MAX_SEND_BYTES = 1024 * 1024
MAX_ANSWER_BYTES = 1024 * 1024
MAX_HEADERS = 64
MAX_HEADER_BYTES = 8 * 1024
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
_TOKEN = "$TOKEN$"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
# headers the caller may not set: the transport's own, and ones that would send it elsewhere
_NOT_SETTABLE = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
                 "keep-alive", "proxy-authorization", "proxy-connection", "expect"}


def _auth_index(body: dict[str, Any]) -> str:
    for key in ("auth_index", "authIndex", "AuthIndex"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise BadInput(f"'{key}' must be a credential id (see GET /credentials)", key)
            return value.strip()
    raise BadInput("auth_index is required", "auth_index")


def _served(gw: Gateway, index: str) -> ProviderEntry | None:
    """The entry serving credential ``index`` (its id, or an account's file name)."""
    wanted = {index, f"auth:{index}"}
    for e in (*gw.settings.providers, *gw.registry.accounts):
        if e.id in wanted:
            return e
    return None


async def _known_ids(gw: Gateway) -> set[str]:
    """Every credential id there is: config keys, served accounts, and account files (also disabled ones)."""
    store = await accounts.loaded(gw)
    ids = {e.id for e in (*gw.settings.providers, *gw.registry.accounts)}
    ids.update(f"auth:{a.name}" for a in store.accounts())
    return ids


# ------------------------------------------------------------------ reset-quota
async def reset_quota(gw: Gateway, req: Request) -> Reply:
    body = json_object(req)
    index = _auth_index(body)
    redeem = body.get("redeem", False)
    if not isinstance(redeem, bool):
        raise BadInput("'redeem' must be true or false", "redeem")
    known = await _known_ids(gw)
    cid = index if index in known else f"auth:{index}" if f"auth:{index}" in known else None
    if cid is None:
        return error(404, "auth not found", "auth_index")
    if redeem:
        return error(422, "crossroute cannot redeem provider-side quota reset credits", "redeem")
    cooling, _ = accounts.router_view(gw)
    models = sorted({c["model"] for c in cooling.get(cid, [])})
    cleared = await gw.router.reset_cooldowns(cid)
    return reply({"status": "ok", "auth_index": cid, "cleared": cleared, "models": models})


# ------------------------------------------------------------------ api-call
def _within(url: str, base: str) -> str | None:
    """None when ``url`` is on ``base`` (scheme, host, port equal; the path under base's path, no
    dot segments); else why not."""
    try:
        u, b = urlsplit(url), urlsplit(base)
        u_port, b_port = u.port, b.port
    except ValueError:
        return "it is not a valid URL"
    if u.scheme not in ("http", "https") or not u.hostname:
        return "it must be an absolute http(s) URL"
    if u.username is not None or u.password is not None or "@" in u.netloc:
        return "it must not hold a user name or password"
    if u.fragment:
        return "it must not have a fragment"
    default = {"http": 80, "https": 443}
    if (u.scheme, u.hostname.lower(), u_port or default[u.scheme]) != (
            b.scheme, (b.hostname or "").lower(), b_port or default.get(b.scheme, 0)):
        return "it is not on the credential's upstream"
    segments = unquote(u.path).replace("\\", "/").split("/")
    if any(s in (".", "..") for s in segments):
        return "its path must not have '.' or '..' segments"
    prefix = b.path.rstrip("/")
    if prefix and u.path != prefix and not u.path.startswith(prefix + "/"):
        return "its path is not under the credential's base URL"
    return None


def _headers(raw: Any) -> dict[str, str]:
    """The checked headers, ``$TOKEN$`` still in them."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadInput("'header' must be an object of header names to strings", "header")
    if len(raw) > MAX_HEADERS:
        raise BadInput(f"'header' has more than {MAX_HEADERS} headers", "header")
    out: dict[str, str] = {}
    for name, value in raw.items():
        field = f"header.{name}"
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise BadInput(f"{name!r} is not a header name", "header")
        if name.lower() in _NOT_SETTABLE:
            raise BadInput(f"header {name!r} cannot be set here", field)
        if not isinstance(value, str) or "\r" in value or "\n" in value or "\0" in value:
            raise BadInput(f"header {name!r} must be a string on one line", field)
        if len(value.encode()) > MAX_HEADER_BYTES:
            raise BadInput(f"header {name!r} is longer than {MAX_HEADER_BYTES} bytes", field)
        out[name] = value
    return out


def _with_token(headers: dict[str, str], secret: str) -> dict[str, str]:
    return {name: value.replace(_TOKEN, secret) for name, value in headers.items()}


async def _fresh_token(source: TokenSource, entry: ProviderEntry) -> str:
    """The token to send: refreshed first when it is due (a source that can tell), else the current one."""
    fresh: Callable[[], Awaitable[str]] | None = getattr(source, "fresh_token", None)
    if fresh is not None:
        try:
            return await fresh()
        except Exception as exc:  # e.g. a service account that cannot mint: the current token, if any
            log.warning("api-call: no fresh token for %s (%s)", entry.name,
                        redaction.scrub(f"{type(exc).__name__}: {exc}"))
    return source.token()


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of the answer (fewer at its end)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await resp.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _masked(text: str, secrets: list[str]) -> str:
    text = redaction.scrub(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, redaction.mask(secret))
    return text


async def api_call(gw: Gateway, req: Request) -> Reply:
    body = json_object(req)
    index = _auth_index(body)
    method = body.get("method")
    if not isinstance(method, str) or method.strip().upper() not in METHODS:
        raise BadInput(f"'method' must be one of {', '.join(METHODS)}", "method")
    method = method.strip().upper()
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise BadInput("missing url", "url")
    url = url.strip()
    data = body.get("data", "")
    if data is None:
        data = ""
    if not isinstance(data, str):
        raise BadInput("'data' must be a string (the raw request body)", "data")
    payload = data.encode()
    if len(payload) > MAX_SEND_BYTES:
        raise BadInput(f"'data' is larger than {MAX_SEND_BYTES} bytes", "data")
    entry = _served(gw, index)
    if entry is None:
        return error(404, "auth not found (or not served: disabled, needs login)", "auth_index")
    base = entry.base_url or getattr(executor_for(entry.kind), "default_base_url", "")
    if not base:
        return error(409, f"credential {entry.id} has no base URL to call", "auth_index")
    why = _within(url, base)
    if why is not None:
        raise BadInput(f"'url' {why}: api-call only reaches the credential's own upstream, {base}", "url")
    headers = _headers(body.get("header"))
    source = executor_for(entry.kind).token_source(entry)
    uses_token = any(_TOKEN in value for value in headers.values())
    secret = await _fresh_token(source, entry) if uses_token else ""
    if uses_token and not secret:
        raise BadInput("auth token not found for this credential", "auth_index")
    used = [secret]
    proxy_url = entry.proxy_url or gw.settings.proxy_url
    session, proxy = gw.client_for(proxy_url), gw.proxy_arg(proxy_url)
    resent = False
    while True:
        try:
            async with session.request(method, url, data=payload or None, headers=_with_token(headers, secret),
                                       proxy=proxy, allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT)) as resp:
                raw = await _read_bounded(resp, MAX_ANSWER_BYTES + 1)
                status, answer_headers = resp.status, resp.headers
        except TimeoutError:
            return error(504, f"the upstream did not answer within {CALL_TIMEOUT:g} s")
        except (aiohttp.ClientError, ValueError) as exc:
            return error(502, _masked(f"request failed: {type(exc).__name__}: {exc}", used))
        if status != 401 or not uses_token or resent or not await source.refresh():
            break
        new = source.token()
        if not new or new == secret:  # nothing new to send (refreshed just before, or no token left)
            break
        secret, resent = new, True
        used.append(secret)
    out: dict[str, Any] = {"status_code": status, "header": {}, "body": ""}
    for name in answer_headers:
        if name not in out["header"]:
            out["header"][name] = [_masked(v, used) for v in answer_headers.getall(name)]
    if len(raw) > MAX_ANSWER_BYTES:
        raw, out["truncated"] = raw[:MAX_ANSWER_BYTES], True
    out["body"] = _masked(raw.decode("utf-8", "replace"), used)
    return reply(out)


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "reset-quota"): reset_quota,
    ("POST", "api-call"): api_call,
}
