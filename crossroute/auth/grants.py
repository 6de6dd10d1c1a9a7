"""Token endpoint requests, per provider, as their own CLIs make them.

``refresh_grant`` posts a refresh-token grant and returns a ``Grant``; ``exchange_code`` swaps an
authorization code (PKCE) for tokens. A rejected refresh token (``invalid_grant``, Google's
``unauthorized_client``, Kimi's 401/403) raises ``InvalidGrant``: the account needs a new login.
Anything else that fails raises ``GrantError`` (transient: retry later), with ``retry_after`` for
a 429. Error texts never carry a token: the response body is not quoted, only its ``error`` code
and description, scrubbed.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from .. import redaction
from .accounts import Account
from .oauth_params import OAuthParams

__all__ = ["Grant", "GrantError", "InvalidGrant", "exchange_code", "grant_of", "jwt_claims", "post_token",
           "refresh_grant"]

MAX_TOKEN_BODY = 256 * 1024
TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


class GrantError(Exception):
    def __init__(self, message: str, *, status: int = 0, error: str = "", retry_after: float | None = None) -> None:
        super().__init__(redaction.scrub(message))
        self.status = status
        self.error = error
        self.retry_after = retry_after


class InvalidGrant(GrantError):
    """The refresh token (or code) was rejected for good."""


@dataclass(slots=True)
class Grant:
    access_token: str
    refresh_token: str | None
    id_token: str | None
    expires_at: float | None
    body: dict[str, Any] = field(default_factory=dict)  # the whole answer (account info, scope, ...)


def jwt_claims(token: str | None) -> dict[str, Any]:
    """The payload of a JWT, unverified (it came straight from the issuer over TLS)."""
    if not token or token.count(".") < 2:
        return {}
    part = token.split(".")[1]
    try:
        data = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    try:
        return min(300.0, max(5.0, float(value))) if value else None
    except ValueError:
        return None


async def post_token(session: aiohttp.ClientSession, url: str, data: dict[str, str], *, as_json: bool = False,
                     headers: dict[str, str] | None = None, proxy: str | None = None,
                     what: str = "token request") -> tuple[int, dict[str, Any], Any]:
    """POST to a token endpoint: ``(status, parsed object or {}, headers)``; ``GrantError`` when
    the endpoint cannot be reached or answers something that is not JSON."""
    hdrs = {"Accept": "application/json", **(headers or {})}
    kwargs: dict[str, Any] = {"json": data} if as_json else {"data": data}
    try:
        async with session.post(url, headers=hdrs, proxy=proxy, timeout=TIMEOUT, **kwargs) as resp:
            raw = await resp.content.read(MAX_TOKEN_BODY)
            status, resp_headers = resp.status, resp.headers
    except TimeoutError:
        raise GrantError(f"{what}: {url} did not answer in time") from None
    except aiohttp.ClientError as exc:
        raise GrantError(f"{what}: {url} is unreachable ({type(exc).__name__}: {exc})") from None
    try:
        obj = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        raise GrantError(f"{what}: {url} answered {status} with a body that is not a JSON object", status=status,
                         retry_after=_retry_after(resp_headers) if status == 429 else None)
    return status, obj, resp_headers


def _error_text(obj: dict[str, Any]) -> tuple[str, str]:
    err = obj.get("error")
    if isinstance(err, dict):  # {"error": {"type"/"code", "message"}}
        code = str(err.get("code") or err.get("type") or "")
        desc = str(err.get("message") or "")
    else:
        code = str(err or "")
        desc = str(obj.get("error_description") or obj.get("message") or "")
    return code, desc[:300]


def grant_of(obj: dict[str, Any], now: float) -> Grant:
    access = obj.get("access_token")
    if not isinstance(access, str) or not access:
        raise GrantError("the token endpoint answered without an access_token")
    expires_in = obj.get("expires_in")
    expires_at = now + float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else None
    if expires_at is None:
        exp = jwt_claims(access).get("exp")
        if isinstance(exp, int | float):
            expires_at = float(exp)
    refresh = obj.get("refresh_token") if isinstance(obj.get("refresh_token"), str) else None
    id_token = obj.get("id_token") if isinstance(obj.get("id_token"), str) else None
    grant = Grant(access, refresh or None, id_token or None, expires_at, obj)
    redaction.add_secrets([access, refresh, id_token])
    return grant


_REJECTED = ("invalid_grant", "unauthorized_client", "invalid_token")


def _check(status: int, obj: dict[str, Any], headers: Any, what: str, *, rejected_statuses: tuple[int, ...] = ()
           ) -> None:
    code, desc = _error_text(obj)
    if 200 <= status < 300 and not code:
        return
    detail = f"{code}: {desc}" if code and desc else (code or desc or "no detail")
    if code in _REJECTED or status in rejected_statuses:
        raise InvalidGrant(f"{what} rejected ({status} {detail})", status=status, error=code or "invalid_grant")
    raise GrantError(f"{what} failed ({status} {detail})", status=status, error=code,
                     retry_after=_retry_after(headers) if status == 429 else None)


def _msh_headers(account: Account) -> dict[str, str]:
    return {k: v for k, v in account.headers.items() if k.lower().startswith("x-msh-")}


async def refresh_grant(session: aiohttp.ClientSession, params: OAuthParams, account: Account,
                        now: float | None = None) -> Grant:
    """Trade the account's refresh token for new tokens (the old refresh token is kept when the
    answer has none)."""
    if not account.refresh_token:
        raise InvalidGrant(f"{account.name} has no refresh token")
    if not params.token_url:
        raise GrantError(f"{params.provider} tokens cannot be refreshed by crossroute")
    now = time.time() if now is None else now
    data = {"client_id": params.client_id, "grant_type": "refresh_token", "refresh_token": account.refresh_token}
    headers: dict[str, str] = {}
    rejected: tuple[int, ...] = ()
    if params.provider == "claude":
        data["scope"] = params.scope
    elif params.provider == "codex":
        data["scope"] = params.refresh_scope
    elif params.provider in ("antigravity", "vertex"):
        data["client_secret"] = params.client_secret
    elif params.provider == "kimi":
        headers = _msh_headers(account)
        rejected = (401, 403)
    what = f"refresh of {account.name}"
    status, obj, resp_headers = await post_token(session, params.token_url, data, as_json=params.refresh_json,
                                                 headers=headers, proxy=_http_proxy(account.proxy_url), what=what)
    _check(status, obj, resp_headers, what, rejected_statuses=rejected)
    return grant_of(obj, now)


async def exchange_code(session: aiohttp.ClientSession, params: OAuthParams, *, code: str, verifier: str,
                        redirect_uri: str, state: str | None = None, headers: dict[str, str] | None = None,
                        now: float | None = None) -> Grant:
    """Authorization code + PKCE verifier -> tokens."""
    now = time.time() if now is None else now
    data = {"grant_type": "authorization_code", "client_id": params.client_id, "code": code,
            "redirect_uri": redirect_uri, "code_verifier": verifier}
    if params.provider == "claude" and state:
        data["state"] = state
    if params.client_secret:
        data["client_secret"] = params.client_secret
    what = f"{params.provider} code exchange"
    status, obj, resp_headers = await post_token(session, params.token_url, data, as_json=params.refresh_json,
                                                 headers=headers, what=what)
    _check(status, obj, resp_headers, what)
    return grant_of(obj, now)


def _http_proxy(url: str | None) -> str | None:
    """aiohttp's ``proxy=`` takes HTTP proxies only; SOCKS for token calls is not supported yet."""
    if url and url.lower().startswith(("http://", "https://")):
        return url
    return None
