"""PKCE (RFC 7636, S256) and the authorization URL."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from ..oauth_params import OAuthParams

__all__ = ["Pkce", "authorize_url", "challenge_of", "new_pkce", "new_state"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def challenge_of(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode()).digest())


@dataclass(frozen=True, slots=True)
class Pkce:
    verifier: str
    challenge: str
    method: str = "S256"


def new_pkce() -> Pkce:
    verifier = _b64(secrets.token_bytes(64))  # 86 characters, within RFC 7636's 43..128
    return Pkce(verifier, challenge_of(verifier))


def new_state() -> str:
    return _b64(secrets.token_bytes(24))


def authorize_url(params: OAuthParams, pkce: Pkce, state: str, redirect_uri: str) -> str:
    query: list[tuple[str, str]] = []
    for key, value in params.extra_authorize:
        if key == "code":  # Claude's "code=true" goes first, as its CLI sends it
            query.append((key, value))
    query += [
        ("client_id", params.client_id),
        ("response_type", "code"),
        ("redirect_uri", redirect_uri),
        ("scope", params.scope),
        ("code_challenge", pkce.challenge),
        ("code_challenge_method", pkce.method),
        ("state", state),
    ]
    query += [(k, v) for k, v in params.extra_authorize if k != "code"]
    sep = "&" if "?" in params.authorize_url else "?"
    return params.authorize_url + sep + urlencode(query)
