"""Device-code logins: print a URL and a code, poll at the interval asked until the user approves.

Two shapes:
- RFC 8628 (Kimi): ``device_authorization`` gives ``device_code``, ``user_code``, the verification
  URL, ``expires_in`` and ``interval``; the token endpoint answers ``authorization_pending``
  (keep polling), ``slow_down`` (poll 5 s slower from now on), ``expired_token`` or
  ``access_denied`` (stop), with status 400 or, as Kimi does, 200.
- Codex's: ``deviceauth/usercode`` gives ``device_auth_id``, ``user_code`` and ``interval``; its poll
  answers 403/404 while pending and finally an authorization code plus PKCE verifier, exchanged at
  the ordinary token endpoint.

Polling stops at the code's expiry or the login timeout, whichever is first (``LoginTimeout``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..grants import Grant, GrantError, exchange_code, grant_of, post_token
from ..oauth_params import OAuthParams
from . import LoginDenied, LoginError, LoginTimeout

__all__ = ["SLOW_DOWN_STEP", "DeviceCode", "codex_device_login", "rfc8628_login"]

SLOW_DOWN_STEP = 5.0


@dataclass(slots=True)
class DeviceCode:
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    interval: float
    expires_in: float | None
    device_code: str = ""  # RFC 8628
    device_auth_id: str = ""  # Codex


def _num(value: Any, default: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if v > 0 else default


async def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _deadline(code: DeviceCode, wait_s: float) -> tuple[float, str]:
    now = time.monotonic()
    if code.expires_in is not None and code.expires_in < wait_s:
        return now + code.expires_in, "the device code expired"
    return now + wait_s, f"no approval within {int(wait_s // 60)} minutes" if wait_s >= 60 else \
        f"no approval within {wait_s:g} seconds"


async def rfc8628_login(session: aiohttp.ClientSession, params: OAuthParams, *, wait_s: float,
                        show: Callable[[DeviceCode], None], headers: dict[str, str] | None = None) -> Grant:
    form0 = {"client_id": params.client_id}
    if params.scope:
        form0["scope"] = params.scope
    status, obj, _ = await post_token(session, params.device_url, form0, headers=headers,
                                      what="device authorization")
    if status != 200 or not isinstance(obj.get("device_code"), str) or not isinstance(obj.get("user_code"), str):
        err = obj.get("error_description") or obj.get("error") or f"status {status}"
        raise LoginError(f"the device authorization request failed ({err})")
    code = DeviceCode(
        user_code=obj["user_code"], device_code=obj["device_code"],
        verification_uri=str(obj.get("verification_uri") or obj.get("verification_url") or ""),
        verification_uri_complete=obj.get("verification_uri_complete"),
        interval=_num(obj.get("interval"), 5.0), expires_in=_num(obj.get("expires_in"), 0) or None)
    show(code)
    deadline, why = _deadline(code, wait_s)
    interval = code.interval
    next_poll = time.monotonic() + interval
    form = {"client_id": params.client_id, "device_code": code.device_code,
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code"}
    while True:
        if next_poll >= deadline:
            await _sleep_until(deadline)
            raise LoginTimeout(why)
        await _sleep_until(next_poll)
        status, obj, _ = await post_token(session, params.token_url, form, headers=headers, what="device token poll")
        error = obj.get("error")
        if status == 200 and not error:
            return grant_of(obj, time.time())
        if error == "authorization_pending":
            pass
        elif error == "slow_down":
            interval += SLOW_DOWN_STEP
        elif error == "expired_token":
            raise LoginTimeout("the device code expired")
        elif error == "access_denied":
            raise LoginDenied("the login was denied on the verification page")
        else:
            detail = obj.get("error_description") or error or f"status {status}"
            raise LoginError(f"the device login failed ({detail})")
        next_poll = time.monotonic() + interval


async def codex_device_login(session: aiohttp.ClientSession, params: OAuthParams, *, wait_s: float,
                             show: Callable[[DeviceCode], None]) -> Grant:
    status, obj, _ = await _post_json(session, params.device_url, {"client_id": params.client_id})
    if status != 200 or not isinstance(obj.get("device_auth_id"), str) or not isinstance(obj.get("user_code"), str):
        raise LoginError(f"the Codex device code request failed (status {status}); "
                         "is device login enabled for this ChatGPT workspace?")
    code = DeviceCode(user_code=obj["user_code"], device_auth_id=obj["device_auth_id"],
                      verification_uri=params.device_verification_url, verification_uri_complete=None,
                      interval=_num(obj.get("interval"), 5.0), expires_in=_num(obj.get("expires_in"), 0) or None)
    show(code)
    deadline, why = _deadline(code, min(wait_s, params.device_timeout))
    interval = code.interval
    next_poll = time.monotonic() + interval
    body = {"device_auth_id": code.device_auth_id, "user_code": code.user_code}
    while True:
        if next_poll >= deadline:
            await _sleep_until(deadline)
            raise LoginTimeout(why)
        await _sleep_until(next_poll)
        status, obj, _ = await _post_json(session, params.device_token_url, body)
        if status == 200 and isinstance(obj.get("authorization_code"), str):
            verifier = obj.get("code_verifier")
            if not isinstance(verifier, str):
                raise LoginError("the Codex device poll answered without a code_verifier")
            return await exchange_code(session, params, code=obj["authorization_code"], verifier=verifier,
                                       redirect_uri=params.device_redirect_uri)
        error = obj.get("error")
        error = error.get("code") if isinstance(error, dict) else error
        if status in (403, 404) or error == "authorization_pending":
            pass
        elif error == "slow_down" or status == 429:
            interval += SLOW_DOWN_STEP
        elif error == "access_denied":
            raise LoginDenied("the login was denied on the verification page")
        elif error in ("expired_token", "deviceauth_expired"):
            raise LoginTimeout("the device code expired")
        else:
            raise LoginError(f"the Codex device poll failed (status {status}{', ' + str(error) if error else ''})")
        next_poll = time.monotonic() + interval


async def _post_json(session: aiohttp.ClientSession, url: str, body: dict[str, str]) -> tuple[int, dict[str, Any], Any]:
    try:
        return await post_token(session, url, body, as_json=True, what="Codex device login")
    except GrantError as exc:
        if exc.status:  # an answer that is not JSON (Codex's pending 403/404 may be empty or HTML)
            return exc.status, {}, {}
        raise LoginError(str(exc)) from None
