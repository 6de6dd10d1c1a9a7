"""Logins per provider: run the flow, turn the tokens into the provider's file, write it.

- ``claude``, ``codex``, ``antigravity``: authorization code with PKCE (S256) and the provider's
  registered loopback callback; the browser opens the URL (or, with ``no_browser``, the user opens
  it anywhere and pastes the redirect URL back).
- ``codex`` with ``device``, ``kimi``, ``xai``: device code (xAI's endpoints from its OIDC
  discovery document; the token endpoint is kept in the file, as CLIProxyAPI does, for refreshes).

The file is named and filled the way CLIProxyAPI does it; logging in again to an account that has
a file keeps that file's other fields (priority, prefix, ...) and clears "needs login".
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import socket
import time
import uuid
import webbrowser
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from .. import __version__, redaction
from .accounts import (
    Account,
    claude_file_name,
    codex_file_name,
    email_file_name,
    format_time,
    kimi_file_name,
    xai_file_name,
)
from .files import ensure_private_dir, write_atomic
from .flows import LoginError
from .flows.device import DeviceCode, codex_device_login, rfc8628_login
from .flows.loopback import wait_for_code
from .flows.pkce import authorize_url, new_pkce, new_state
from .grants import Grant, exchange_code, jwt_claims
from .oauth_params import OAuthParams, params_for, trusted_xai_endpoint
from .store import AuthStore

__all__ = ["DEVICE_PROVIDERS", "PKCE_PROVIDERS", "device_login", "kimi_device_id", "kimi_headers", "pkce_login"]

PKCE_PROVIDERS = ("claude", "codex", "antigravity")
DEVICE_PROVIDERS = ("codex", "kimi", "xai")
XAI_BASE_URL = "https://api.x.ai/v1"
TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)

Say = Callable[[str], None]


def _write(store: AuthStore, name: str, obj: dict[str, Any]) -> Account:
    """Write a new login, keeping the other fields of an existing file of the same account."""
    existing = store.get(name)
    if existing is None and (store.dir / name).is_file():
        store.load()
        existing = store.get(name)
    merged = dict(existing.raw) if existing is not None else {}
    merged.pop("needs_login", None)
    merged.update(obj)
    return store.write(name, merged)


# ------------------------------------------------------------------ provider files
async def _get_json(session: aiohttp.ClientSession, url: str, token: str) -> dict[str, Any]:
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                               timeout=TIMEOUT) as resp:
            raw = await resp.content.read(256 * 1024)
            if resp.status != 200:
                raise LoginError(f"{url} answered {resp.status} when asked for the account's email")
    except aiohttp.ClientError as exc:
        raise LoginError(f"{url} is unreachable ({type(exc).__name__})") from None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise LoginError(f"{url} answered something that is not JSON") from None
    return obj if isinstance(obj, dict) else {}


async def _claude_file(session: aiohttp.ClientSession, params: OAuthParams, g: Grant) -> tuple[str, dict[str, Any]]:
    account = g.body.get("account") if isinstance(g.body.get("account"), dict) else {}
    org = g.body.get("organization") if isinstance(g.body.get("organization"), dict) else {}
    email = account.get("email_address") or account.get("email")
    if not email and params.userinfo_url:
        profile = await _get_json(session, params.userinfo_url, g.access_token)
        account = profile.get("account") if isinstance(profile.get("account"), dict) else {}
        org = profile.get("organization") if isinstance(profile.get("organization"), dict) else org
        email = account.get("email_address") or account.get("email")
    if not isinstance(email, str) or not email:
        raise LoginError("Claude's answer named no account email")
    now = time.time()
    obj = {"type": "claude", "id_token": g.id_token or "", "access_token": g.access_token,
           "refresh_token": g.refresh_token or "", "last_refresh": format_time(now), "email": email,
           "account_uuid": account.get("uuid", ""), "organization_uuid": org.get("uuid", ""),
           "organization_name": org.get("name", ""),
           "expired": format_time(g.expires_at) if g.expires_at else ""}
    return claude_file_name(email), obj


def _codex_file(g: Grant) -> tuple[str, dict[str, Any]]:
    claims = jwt_claims(g.id_token)
    auth = claims.get("https://api.openai.com/auth") if isinstance(claims.get("https://api.openai.com/auth"), dict) \
        else {}
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        raise LoginError("the Codex id_token names no email")
    account_id = auth.get("chatgpt_account_id") if isinstance(auth.get("chatgpt_account_id"), str) else ""
    plan = auth.get("chatgpt_plan_type") if isinstance(auth.get("chatgpt_plan_type"), str) else ""
    now = time.time()
    obj = {"type": "codex", "id_token": g.id_token or "", "access_token": g.access_token,
           "refresh_token": g.refresh_token or "", "account_id": account_id, "last_refresh": format_time(now),
           "email": email, "expired": format_time(g.expires_at) if g.expires_at else ""}
    return codex_file_name(email, plan, account_id), obj


async def _antigravity_file(session: aiohttp.ClientSession, params: OAuthParams, g: Grant
                            ) -> tuple[str, dict[str, Any]]:
    info = await _get_json(session, params.userinfo_url, g.access_token)
    email = info.get("email")
    if not isinstance(email, str) or not email:
        raise LoginError("Google's userinfo named no email")
    now = time.time()
    obj: dict[str, Any] = {"type": "antigravity", "access_token": g.access_token,
                           "refresh_token": g.refresh_token or "", "email": email,
                           "timestamp": int(now * 1000), "last_refresh": format_time(now)}
    if g.expires_at:
        obj["expires_in"] = int(g.expires_at - now)
        obj["expired"] = format_time(g.expires_at)
    for key in ("token_type", "scope"):
        if isinstance(g.body.get(key), str):
            obj[key] = g.body[key]
    return email_file_name("antigravity", email), obj


# ------------------------------------------------------------------ xAI
async def xai_endpoints(session: aiohttp.ClientSession, params: OAuthParams) -> OAuthParams:
    """``params`` with the device and token endpoints of xAI's discovery document (unless given)."""
    if params.device_url and params.token_url:
        return params
    try:
        async with session.get(params.discovery_url, headers={"Accept": "application/json"}, timeout=TIMEOUT) as r:
            raw = await r.content.read(256 * 1024)
            if r.status != 200:
                raise LoginError(f"xAI's discovery document answered {r.status}")
    except aiohttp.ClientError as exc:
        raise LoginError(f"xAI's discovery document is unreachable ({type(exc).__name__})") from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise LoginError("xAI's discovery document is not JSON") from None
    found: dict[str, str] = {}
    for key, fld in (("device_authorization_endpoint", "device_url"), ("token_endpoint", "token_url")):
        value = doc.get(key) if isinstance(doc, dict) else None
        if not isinstance(value, str) or not trusted_xai_endpoint(value, params.discovery_url):
            raise LoginError(f"xAI's discovery document gives no usable {key}")
        found[fld] = getattr(params, fld) or value
    from dataclasses import replace

    return replace(params, **found)


def _xai_file(g: Grant, token_endpoint: str) -> tuple[str, dict[str, Any]]:
    claims = jwt_claims(g.id_token) if g.id_token else {}
    email = claims.get("email") if isinstance(claims.get("email"), str) else ""
    sub = claims.get("sub") if isinstance(claims.get("sub"), str) else ""
    now = time.time()
    obj: dict[str, Any] = {"type": "xai", "access_token": g.access_token, "refresh_token": g.refresh_token or "",
                           "last_refresh": format_time(now), "base_url": XAI_BASE_URL,
                           "token_endpoint": token_endpoint, "auth_kind": "oauth"}
    for key, value in (("id_token", g.id_token), ("token_type", g.body.get("token_type")), ("email", email),
                       ("sub", sub)):
        if isinstance(value, str) and value:
            obj[key] = value
    if g.expires_at:
        obj["expires_in"] = max(0, int(g.expires_at - now))
        obj["expired"] = format_time(g.expires_at)
    return xai_file_name(email, sub, now), obj


# ------------------------------------------------------------------ Kimi's device identity
def kimi_device_id(store: AuthStore) -> str:
    """This install's stable device id: kept in ``.kimi-device-id``, else taken from an existing
    Kimi file, else new."""
    path = store.dir / ".kimi-device-id"
    with contextlib.suppress(OSError):
        value = path.read_text().strip()
        if value:
            return value
    value = next((str(a.raw["device_id"]) for a in store.accounts()
                  if a.provider == "kimi" and isinstance(a.raw.get("device_id"), str) and a.raw["device_id"]),
                 str(uuid.uuid4()))
    ensure_private_dir(store.dir)
    write_atomic(path, value.encode() + b"\n")
    return value


def kimi_headers(device_id: str) -> dict[str, str]:
    """The ``X-Msh-*`` headers Kimi's OAuth and API expect, naming crossroute honestly."""
    return {
        "X-Msh-Platform": "crossroute",
        "X-Msh-Version": __version__,
        "X-Msh-Device-Name": socket.gethostname() or "unknown",
        "X-Msh-Device-Model": f"{platform.system()} {platform.machine()}".strip() or "unknown",
        "X-Msh-Device-Id": device_id,
    }


# ------------------------------------------------------------------ flows
async def pkce_login(provider: str, store: AuthStore, *, say: Say, wait_s: float = 600.0, no_browser: bool = False,
                     read_paste: Callable[[], Awaitable[str | None]] | None = None,
                     env: dict[str, str] | None = None) -> Account:
    params = params_for(provider, env)
    pkce, state = new_pkce(), new_state()
    redirect_uri = params.redirect_uri
    url = authorize_url(params, pkce, state, redirect_uri)
    async with aiohttp.ClientSession() as session:
        opened = False

        def ready(_port: int) -> None:
            say(f"Open this URL to sign in to {provider}:\n\n    {url}\n")
            if no_browser:
                say(f"After approving, your browser is sent to {redirect_uri} (it may show an error page "
                    "on this machine). Paste that full URL here and press Enter:")

        async def open_browser() -> None:
            nonlocal opened
            opened = await asyncio.to_thread(webbrowser.open, url)
            if not opened:
                say("(no browser could be opened here: open the URL above yourself)")

        browser_task: asyncio.Task[None] | None = None

        def started(port: int) -> None:
            nonlocal browser_task
            ready(port)
            if not no_browser:
                browser_task = asyncio.ensure_future(open_browser())

        try:
            result = await wait_for_code(port=params.callback_port, path=params.callback_path, state=state,
                                         host=params.callback_host,
                                         wait_s=wait_s, pasted=read_paste if no_browser else None,
                                         on_bad_paste=lambda msg: say(f"{msg}. Paste the redirect URL again:"),
                                         ready=started)
        finally:
            if browser_task is not None:
                browser_task.cancel()
        grant = await exchange_code(session, params, code=result.code, verifier=pkce.verifier,
                                    redirect_uri=redirect_uri, state=result.state)
        if provider == "claude":
            name, obj = await _claude_file(session, params, grant)
        elif provider == "codex":
            name, obj = _codex_file(grant)
        else:
            name, obj = await _antigravity_file(session, params, grant)
    return _write(store, name, obj)


async def device_login(provider: str, store: AuthStore, *, say: Say, wait_s: float = 600.0,
                       env: dict[str, str] | None = None) -> Account:
    params = params_for(provider, env)

    def show(code: DeviceCode) -> None:
        where = code.verification_uri_complete or code.verification_uri
        say(f"To sign in to {provider}, open\n\n    {where}\n\nand enter the code  {code.user_code}\n")
        say("Waiting for approval...")

    async with aiohttp.ClientSession() as session:
        if provider == "codex":
            grant = await codex_device_login(session, params, wait_s=wait_s, show=show)
            name, obj = _codex_file(grant)
            return _write(store, name, obj)
        if provider == "xai":
            params = await xai_endpoints(session, params)
            grant = await rfc8628_login(session, params, wait_s=wait_s, show=show)
            redaction.add_secrets([grant.access_token, grant.refresh_token, grant.id_token])
            name, obj = _xai_file(grant, params.token_url)
            return _write(store, name, obj)
        device_id = kimi_device_id(store)
        headers = kimi_headers(device_id)
        grant = await rfc8628_login(session, params, wait_s=wait_s, show=show, headers=headers)
    obj: dict[str, Any] = {"type": "kimi", "access_token": grant.access_token,
                           "refresh_token": grant.refresh_token or "",
                           "token_type": str(grant.body.get("token_type") or "Bearer"),
                           "scope": str(grant.body.get("scope") or ""), "device_id": device_id,
                           "expired": format_time(grant.expires_at) if grant.expires_at else "",
                           "last_refresh": format_time(time.time()), "headers": headers}
    redaction.add_secrets([grant.access_token, grant.refresh_token])
    return _write(store, kimi_file_name(), obj)

