"""Google service accounts (Vertex): validate and import the key file, mint access tokens.

``import_vertex`` turns a service-account key (the JSON Google's console downloads) into
CLIProxyAPI's ``vertex-<project>.json`` (``service_account``, ``project_id``, ``email``,
``location``, ``prefix``, ``type: vertex``). ``mint`` makes an access token with the JWT bearer
grant (RFC 7523): a JWT signed RS256 with the key, posted to the key's ``token_uri``. Minted tokens
live in memory only (``ServiceAccountToken``), reused until 5 minutes before they expire.

Signing needs the ``cryptography`` package (imported on first use).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ... import redaction
from ..accounts import Account, vertex_file_name
from ..grants import Grant, GrantError, InvalidGrant, grant_of, post_token
from ..store import AuthStore

__all__ = ["SCOPE", "ServiceAccountToken", "import_vertex", "mint", "signed_assertion", "validate_key"]

log = logging.getLogger("crossroute.auth")

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
LEAD = 300.0
_REQUIRED = ("type", "project_id", "private_key", "client_email")


def validate_key(obj: Any) -> dict[str, Any]:
    """The service-account key, or ``ValueError`` naming what is wrong with it."""
    if not isinstance(obj, dict):
        raise ValueError("is not a JSON object")
    missing = [k for k in _REQUIRED if not isinstance(obj.get(k), str) or not obj[k]]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)} (is it a service-account key file?)")
    if obj["type"] != "service_account":
        raise ValueError(f"has type {obj['type']!r}, not 'service_account'")
    if "PRIVATE KEY" not in obj["private_key"]:
        raise ValueError("has a private_key that is not a PEM key")
    return obj


def import_vertex(store: AuthStore, key_file: Path, *, prefix: str | None = None,
                  location: str | None = None) -> Account:
    try:
        raw = key_file.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or exc})") from None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("is not valid JSON") from None
    sa = validate_key(obj)
    redaction.add_secrets([sa["private_key"], sa.get("private_key_id")])
    out: dict[str, Any] = {"service_account": sa, "project_id": sa["project_id"], "email": sa["client_email"],
                           "type": "vertex"}
    if location:
        out["location"] = location
    if prefix:
        out["prefix"] = prefix
    name = vertex_file_name(sa["project_id"])
    existing = store.get(name)
    merged = {**(existing.raw if existing else {}), **out}
    return store.write(name, merged)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_assertion(sa: dict[str, Any], audience: str, now: float, scope: str = SCOPE) -> str:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    header = {"alg": "RS256", "typ": "JWT"}
    if sa.get("private_key_id"):
        header["kid"] = sa["private_key_id"]
    claims = {"iss": sa["client_email"], "scope": scope, "aud": audience, "iat": int(now), "exp": int(now) + 3600}
    signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}".encode()
    key = serialization.load_pem_private_key(sa["private_key"].encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise GrantError("the service-account key is not an RSA key")
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{_b64(signature)}"


async def mint(session: aiohttp.ClientSession, sa: dict[str, Any], *, token_url: str | None = None,
               now: float | None = None) -> Grant:
    now = time.time() if now is None else now
    url = token_url or sa.get("token_uri") or GOOGLE_TOKEN_URL
    try:
        assertion = await asyncio.to_thread(signed_assertion, sa, url, now)
    except (ValueError, TypeError) as exc:
        raise InvalidGrant(f"the service-account key cannot sign ({type(exc).__name__})") from None
    what = f"token for {sa.get('client_email', 'the service account')}"
    status, obj, _ = await post_token(session, url, {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                                     "assertion": assertion}, what=what)
    if status != 200 or obj.get("error"):
        detail = f"{obj.get('error', '')}: {obj.get('error_description', '')}".strip(": ")
        cls = InvalidGrant if obj.get("error") in ("invalid_grant", "unauthorized_client") else GrantError
        raise cls(f"{what} refused ({status} {detail or 'no detail'})", status=status, error=str(obj.get("error", "")))
    return grant_of(obj, now)


class ServiceAccountToken:
    """A ``TokenSource`` for a Vertex account: minted on first use and 5 minutes before expiry;
    concurrent callers share one mint."""

    def __init__(self, name: str, store: AuthStore, session_factory: Any, token_url: str | None = None) -> None:
        self.name = name
        self._store = store
        self._session = session_factory
        self._token_url = token_url
        self._token = ""
        self._expires = 0.0
        self._inflight: asyncio.Future[bool] | None = None
        self._not_before = 0.0  # after a failed mint, the background waits before trying again

    def token(self) -> str:
        return self._token

    def due(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return now >= self._not_before and now >= self._expires - LEAD

    async def fresh_token(self) -> str:
        if self.due():
            await self.refresh()
        return self._token

    async def refresh(self, stale: str | None = None) -> bool:
        if stale is not None and self._token and self._token != stale:
            return True
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._mint())
            self._inflight.add_done_callback(lambda _f: setattr(self, "_inflight", None))
        return await asyncio.shield(self._inflight)

    async def _mint(self) -> bool:
        acct = self._store.get(self.name)
        if acct is None or not acct.usable:
            return False
        sa = acct.raw.get("service_account")
        if not isinstance(sa, dict):
            return False
        try:
            grant = await mint(self._session(), sa, token_url=self._token_url)
        except InvalidGrant as exc:
            self._store.mark_needs_login(self.name, str(exc))
            return False
        except GrantError as exc:
            self._not_before = time.time() + (exc.retry_after or 300.0)
            log.warning("token for %s not minted: %s", self.name, redaction.scrub(str(exc)))
            return False
        redaction.add_secrets([grant.access_token])  # masked in logs and errors from now on
        self._token = grant.access_token
        self._expires = grant.expires_at or time.time() + 3600
        return True
