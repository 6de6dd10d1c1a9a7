"""Each provider's OAuth parameters: endpoints, client ids, callback ports, scopes, refresh leads.

The values are the public ones the providers' own CLIs use (see the CLIProxyAPI reference,
section b and i). Every URL, the client id and the callback port can be replaced through the
environment, ``CROSSROUTE_<PROVIDER>_<FIELD>`` (``CROSSROUTE_CLAUDE_TOKEN_URL``,
``CROSSROUTE_CODEX_CALLBACK_PORT``, ...), for corporate proxies and for tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from urllib.parse import urlsplit

__all__ = ["HOUR", "PARAMS", "OAuthParams", "params_for", "trusted_xai_endpoint"]

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True, slots=True)
class OAuthParams:
    provider: str
    client_id: str
    token_url: str
    refresh_lead: float  # seconds before expiry a token is refreshed
    client_secret: str = ""  # Google's installed-app secret is public by design
    authorize_url: str = ""
    callback_port: int = 0
    callback_path: str = ""
    callback_host: str = "localhost"
    scope: str = ""
    refresh_scope: str = ""
    refresh_json: bool = False  # refresh body as JSON (Claude) rather than form-encoded
    device_url: str = ""  # device authorization / user code endpoint
    device_token_url: str = ""  # Codex polls its own endpoint, then exchanges a code at token_url
    device_verification_url: str = ""
    device_redirect_uri: str = ""
    device_timeout: float = 15 * 60
    userinfo_url: str = ""
    discovery_url: str = ""  # OIDC discovery: the device and token endpoints when not given here
    extra_authorize: tuple[tuple[str, str], ...] = ()

    @property
    def redirect_uri(self) -> str:
        return f"http://{self.callback_host}:{self.callback_port}{self.callback_path}"


PARAMS: dict[str, OAuthParams] = {
    "claude": OAuthParams(
        provider="claude",
        client_id="9d1c250a-e61b-44d9-88ed-5944d1962f5e",
        authorize_url="https://claude.ai/oauth/authorize",
        token_url="https://platform.claude.com/v1/oauth/token",
        callback_port=54545, callback_path="/callback",
        scope="user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload",
        refresh_json=True,
        userinfo_url="https://api.anthropic.com/api/oauth/profile",
        refresh_lead=4 * HOUR,
        extra_authorize=(("code", "true"),),
    ),
    "codex": OAuthParams(
        provider="codex",
        client_id="app_EMoamEEZ73f0CkXaXp7hrann",
        authorize_url="https://auth.openai.com/oauth/authorize",
        token_url="https://auth.openai.com/oauth/token",
        callback_port=1455, callback_path="/auth/callback",
        scope="openid email profile offline_access",
        refresh_scope="openid profile email",
        refresh_lead=5 * DAY,
        device_url="https://auth.openai.com/api/accounts/deviceauth/usercode",
        device_token_url="https://auth.openai.com/api/accounts/deviceauth/token",
        device_verification_url="https://auth.openai.com/codex/device",
        device_redirect_uri="https://auth.openai.com/deviceauth/callback",
        extra_authorize=(("prompt", "login"), ("id_token_add_organizations", "true"),
                         ("codex_cli_simplified_flow", "true")),
    ),
    "antigravity": OAuthParams(
        provider="antigravity",
        client_id="1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com",
        client_secret="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",
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",
        callback_port=51121, callback_path="/oauth-callback",
        scope=" ".join((
            "https://www.googleapis.com/auth/cloud-platform",
            "https://www.googleapis.com/auth/userinfo.email",
            "https://www.googleapis.com/auth/userinfo.profile",
            "https://www.googleapis.com/auth/cclog",
            "https://www.googleapis.com/auth/experimentsandconfigs",
        )),
        userinfo_url="https://www.googleapis.com/oauth2/v2/userinfo?alt=json",
        refresh_lead=5 * 60,
        extra_authorize=(("access_type", "offline"), ("prompt", "consent")),
    ),
    "kimi": OAuthParams(
        provider="kimi",
        client_id="17e5f671-d194-4dfb-9706-5516cb48c098",
        token_url="https://auth.kimi.com/api/oauth/token",
        device_url="https://auth.kimi.com/api/oauth/device_authorization",
        refresh_lead=5 * 60,
    ),
    "xai": OAuthParams(  # the Grok CLI's public client; endpoints from OIDC discovery (files keep token_endpoint)
        provider="xai",
        client_id="b1a00492-073a-47ea-816f-4c329264a828",
        token_url="",
        scope="openid profile email offline_access grok-cli:access api:access",
        discovery_url="https://auth.x.ai/.well-known/openid-configuration",
        refresh_lead=5 * 60,
    ),
    "vertex": OAuthParams(
        provider="vertex",
        client_id="",
        token_url="https://oauth2.googleapis.com/token",
        refresh_lead=5 * 60,
    ),
}

_OVERRIDABLE = {f.name for f in fields(OAuthParams)} - {"provider", "extra_authorize"}


def params_for(provider: str, env: dict[str, str] | None = None) -> OAuthParams:
    """The parameters of ``provider`` with any ``CROSSROUTE_<PROVIDER>_<FIELD>`` overrides."""
    base = PARAMS[provider]
    env = os.environ if env is None else env  # type: ignore[assignment]
    changes: dict[str, object] = {}
    prefix = f"CROSSROUTE_{provider.upper()}_"
    for name in _OVERRIDABLE:
        value = env.get(prefix + name.upper())
        if value is None:
            continue
        current = getattr(base, name)
        if isinstance(current, bool):
            changes[name] = value.strip().lower() in ("1", "true", "yes")
        elif isinstance(current, int | float):
            changes[name] = type(current)(value)
        else:
            changes[name] = value
    return replace(base, **changes) if changes else base  # type: ignore[arg-type]


def trusted_xai_endpoint(url: str, discovery_url: str) -> bool:
    """An endpoint xAI's discovery may send us to: https on x.ai, or, when the discovery URL was
    replaced (a corporate proxy, a test), on the discovery URL's own origin."""
    try:
        parts, disc = urlsplit(url), urlsplit(discovery_url)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and (host == "x.ai" or host.endswith(".x.ai")):
        return True
    default = PARAMS["xai"].discovery_url
    return discovery_url != default and (parts.scheme, parts.netloc) == (disc.scheme, disc.netloc)
