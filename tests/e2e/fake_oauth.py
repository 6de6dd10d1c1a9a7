"""Fake OAuth servers on 127.0.0.1 for every login crossroute has, strict like the real ones.

One aiohttp server (own thread and loop) with a path prefix per provider: ``/claude``, ``/codex``,
``/antigravity``, ``/kimi``. It checks what the real authorization servers check:

- ``/<p>/authorize``: client id, redirect URI, ``response_type=code``, PKCE ``S256`` challenge and a
  state; then redirects to the redirect URI with a code and the state (``mode``: ``approve``,
  ``deny`` -> ``error=access_denied``, ``wrong_state`` -> a different state).
- ``/<p>/token``: code exchange (the code must be one it issued, for that client and redirect URI,
  and ``sha256(code_verifier)`` must equal the challenge), refresh (rotating: each refresh token
  works once; ``refresh_mode = "invalid_grant"`` rejects every one), and Kimi's device grant.
- device flows: Kimi's RFC 8628 ``/kimi/device``, xAI's (``/xai/device``, found through
  ``/xai/.well-known/openid-configuration``, scope required) and Codex's ``/codex/deviceauth/{usercode,token}``;
  a poll sooner than the interval asked is answered ``slow_down`` (and the interval grows by 5 s,
  as RFC 8628 says); ``/<p>/verify?user_code=...[&deny=1]`` is the page a user approves on.
- ``/claude/profile``, ``/antigravity/userinfo``: the account's email for the Bearer token.

``env()`` gives the ``CROSSROUTE_<PROVIDER>_*`` overrides that point crossroute at it.
``python -m tests.e2e.fake_oauth browse URL`` is a "browser": it GETs the URL and follows every
redirect (used as ``$BROWSER`` so the CLI's real ``webbrowser.open`` drives the login).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from ..loopback import ThreadedApp

CLIENT_IDS = {
    "claude": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    "codex": "app_EMoamEEZ73f0CkXaXp7hrann",
    "antigravity": "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com",
    "kimi": "17e5f671-d194-4dfb-9706-5516cb48c098",
    "xai": "b1a00492-073a-47ea-816f-4c329264a828",
}
EMAILS = {"claude": "ada@example.com", "codex": "grace@example.com", "antigravity": "alan@example.com",
          "xai": "lin@example.com"}
XAI_SCOPE = "openid profile email offline_access grok-cli:access api:access"
CODEX_ACCOUNT_ID = "acct-7f3e1c"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unsigned_jwt(claims: dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(orjson.dumps({"alg": "none"}))
    return f"{header}.{b64(orjson.dumps(claims))}.sig"


def codex_id_token(email: str = EMAILS["codex"], plan: str = "plus") -> str:
    return unsigned_jwt({"email": email, "exp": int(time.time()) + 3600,
                         "https://api.openai.com/auth": {"chatgpt_account_id": CODEX_ACCOUNT_ID,
                                                         "chatgpt_plan_type": plan}})


@dataclass
class Device:
    provider: str
    device_code: str
    user_code: str
    interval: float
    expires_at: float
    approved: bool = False
    denied: bool = False
    last_poll: float = 0.0
    polls: list[float] = field(default_factory=list)
    slow_downs: int = 0
    verifier: str = ""
    challenge: str = ""


class FakeOAuth(ThreadedApp):
    def __init__(self) -> None:
        super().__init__()
        self.mode = "approve"  # authorize: approve | deny | wrong_state
        self.refresh_mode = "rotate"  # rotate | invalid_grant | error500 | 429
        self.expires_in = 3600
        self.device_interval = 1.0
        self.device_expires_in = 60.0
        self.slow_down_first = False  # answer the first device poll slow_down whatever its timing
        self.redirect_uris: dict[str, str] = {}  # provider -> the redirect URI it must be sent
        self.codes: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: dict[str, str] = {}  # valid refresh token -> provider
        self.access_tokens: dict[str, str] = {}  # access token -> provider
        self.devices: dict[str, Device] = {}
        self.requests: list[dict[str, Any]] = []
        self.refresh_count = 0
        self.errors: list[str] = []  # every check that failed (a test asserts this is empty)
        self.refresh_delay = 0.0
        self.sa_keys: dict[str, Any] = {}  # service-account email -> its RSA public key
        self.minted = 0
        self._n = 0

    # ------------------------------------------------------------------ lifecycle
    def make_app(self) -> web.Application:
        app = web.Application()
        r = app.router
        for p in ("claude", "codex", "antigravity", "kimi", "xai"):
            r.add_get(f"/{p}/authorize", self._authorize(p))
            r.add_post(f"/{p}/token", self._token(p))
            r.add_get(f"/{p}/verify", self._verify(p))
        r.add_post("/kimi/device", self._kimi_device)
        r.add_get("/xai/.well-known/openid-configuration", self._xai_discovery)
        r.add_post("/xai/device", self._xai_device)
        r.add_post("/codex/deviceauth/usercode", self._codex_usercode)
        r.add_post("/codex/deviceauth/token", self._codex_device_token)
        r.add_post("/vertex/token", self._vertex_token)
        r.add_get("/claude/profile", self._profile("claude"))
        r.add_get("/antigravity/userinfo", self._profile("antigravity"))
        return app

    def env(self, provider: str, callback_port: int | None = None) -> dict[str, str]:
        """The overrides pointing ``provider`` at this server (and a free callback port)."""
        p = provider.upper()
        b = f"{self.base}/{provider}"
        env = {f"CROSSROUTE_{p}_AUTHORIZE_URL": f"{b}/authorize", f"CROSSROUTE_{p}_TOKEN_URL": f"{b}/token"}
        if provider in ("claude", "codex", "antigravity"):
            port = callback_port or free_port()
            env[f"CROSSROUTE_{p}_CALLBACK_PORT"] = str(port)
            path = {"claude": "/callback", "codex": "/auth/callback", "antigravity": "/oauth-callback"}[provider]
            self.redirect_uris[provider] = f"http://localhost:{port}{path}"
        if provider == "claude":
            env["CROSSROUTE_CLAUDE_USERINFO_URL"] = f"{b}/profile"
        if provider == "antigravity":
            env["CROSSROUTE_ANTIGRAVITY_USERINFO_URL"] = f"{b}/userinfo"
        if provider == "kimi":
            env["CROSSROUTE_KIMI_DEVICE_URL"] = f"{b}/device"
        if provider == "xai":  # xAI's endpoints are found through its discovery document
            env = {"CROSSROUTE_XAI_DISCOVERY_URL": f"{b}/.well-known/openid-configuration"}
        if provider == "codex":
            env["CROSSROUTE_CODEX_DEVICE_URL"] = f"{b}/deviceauth/usercode"
            env["CROSSROUTE_CODEX_DEVICE_TOKEN_URL"] = f"{b}/deviceauth/token"
            env["CROSSROUTE_CODEX_DEVICE_VERIFICATION_URL"] = f"{b}/verify"
            env["CROSSROUTE_CODEX_DEVICE_REDIRECT_URI"] = f"{b}/deviceauth/callback"
            self.redirect_uris.setdefault("codex-device", f"{b}/deviceauth/callback")
        return env

    # ------------------------------------------------------------------ tokens
    def mint(self, provider: str) -> dict[str, Any]:
        self._n += 1
        access = f"at-{provider}-{self._n}-{secrets.token_hex(8)}"
        refresh = f"rt-{provider}-{self._n}-{secrets.token_hex(8)}"
        self.access_tokens[access] = provider
        self.refresh_tokens[refresh] = provider
        body: dict[str, Any] = {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                                "expires_in": self.expires_in}
        if provider == "claude":
            body["account"] = {"uuid": "acc-uuid-1", "email_address": EMAILS["claude"]}
            body["organization"] = {"uuid": "org-uuid-1", "name": "Ada's Org"}
        if provider == "codex":
            body["id_token"] = codex_id_token()
        if provider == "kimi":
            body["scope"] = "kimi-code"
        if provider == "xai":
            body["id_token"] = unsigned_jwt({"email": EMAILS["xai"], "sub": "xai-user-1",
                                             "exp": int(time.time()) + 3600})
        return body

    def issue_refresh(self, provider: str) -> tuple[str, str]:
        """A valid access and refresh token pair (to seed an account file)."""
        body = self.mint(provider)
        return body["access_token"], body["refresh_token"]

    def _fail(self, msg: str) -> web.Response:
        self.errors.append(msg)
        return web.json_response({"error": "invalid_request", "error_description": msg}, status=400)

    # ------------------------------------------------------------------ authorize
    def _authorize(self, provider: str) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            q = request.query
            self.requests.append({"path": request.path, "query": dict(q)})
            if q.get("client_id") != CLIENT_IDS[provider]:
                return self._fail(f"authorize: wrong client_id {q.get('client_id')!r}")
            want = self.redirect_uris.get(provider)
            if want and q.get("redirect_uri") != want:
                return self._fail(f"authorize: redirect_uri {q.get('redirect_uri')!r} != {want!r}")
            if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256":
                return self._fail("authorize: needs response_type=code and code_challenge_method=S256")
            challenge, state = q.get("code_challenge", ""), q.get("state", "")
            if len(challenge) != 43 or not state:
                return self._fail("authorize: a S256 challenge (43 chars) and a state are required")
            redirect = q["redirect_uri"]
            if self.mode == "deny":
                params = {"error": "access_denied", "error_description": "The user denied access", "state": state}
            else:
                code = f"code-{secrets.token_hex(8)}"
                self.codes[code] = {"provider": provider, "challenge": challenge, "redirect_uri": redirect,
                                    "client_id": q["client_id"]}
                params = {"code": code, "state": state if self.mode != "wrong_state" else state + "-forged"}
            raise web.HTTPFound(f"{redirect}?{urlencode(params)}")

        return handle

    # ------------------------------------------------------------------ token endpoint
    def _token(self, provider: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            if provider == "claude":
                if request.content_type != "application/json":
                    return self._fail("claude token: body must be JSON")
                form = {k: str(v) for k, v in (await request.json()).items()}
            else:
                if request.content_type != "application/x-www-form-urlencoded":
                    return self._fail(f"{provider} token: body must be form-encoded")
                form = dict(await request.post())  # type: ignore[arg-type]
            self.requests.append({"path": request.path, "form": dict(form), "headers": dict(request.headers)})
            if form.get("client_id") != CLIENT_IDS[provider]:
                return self._fail(f"{provider} token: wrong client_id")
            if provider == "kimi" and not request.headers.get("X-Msh-Device-Id"):
                return self._fail("kimi token: X-Msh-Device-Id header missing")
            if provider == "antigravity" and not form.get("client_secret"):
                return self._fail("antigravity token: client_secret missing")
            grant = form.get("grant_type")
            if grant == "authorization_code":
                return self._exchange(provider, form)
            if grant == "refresh_token":
                return await self._refresh(provider, form)
            if grant == "urn:ietf:params:oauth:grant-type:device_code" and provider == "kimi":
                return self._kimi_poll(form)
            if grant == "urn:ietf:params:oauth:grant-type:device_code" and provider == "xai":
                return self._xai_poll(form)
            return self._fail(f"{provider} token: unsupported grant_type {grant!r}")

        return handle

    def _exchange(self, provider: str, form: dict[str, str]) -> web.Response:
        code = self.codes.pop(form.get("code", ""), None)
        if code is None or code["provider"] != provider:
            return web.json_response({"error": "invalid_grant", "error_description": "unknown code"}, status=400)
        if form.get("redirect_uri") != code["redirect_uri"]:
            return self._fail("token: redirect_uri differs from the authorize request")
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if digest != code["challenge"]:
            return self._fail("token: PKCE code_verifier does not match the challenge")
        if provider == "claude" and not form.get("state"):
            return self._fail("claude token: state missing")
        return web.json_response(self.mint(provider))

    async def _refresh(self, provider: str, form: dict[str, str]) -> web.Response:
        if self.refresh_delay:
            await asyncio.sleep(self.refresh_delay)
        if provider == "claude" and not form.get("scope"):
            return self._fail("claude refresh: scope missing")
        if provider == "codex" and form.get("scope") != "openid profile email":
            return self._fail("codex refresh: scope must be 'openid profile email'")
        if self.refresh_mode == "error500":
            return web.json_response({"error": "server_error"}, status=500)
        if self.refresh_mode == "429":
            return web.json_response({"error": {"type": "rate_limit_error", "message": "slow down"}}, status=429,
                                     headers={"Retry-After": "30"})
        token = form.get("refresh_token", "")
        if self.refresh_mode == "invalid_grant" or self.refresh_tokens.pop(token, None) != provider:
            return web.json_response({"error": "invalid_grant", "error_description": "refresh token is invalid"},
                                     status=400)
        self.refresh_count += 1
        return web.json_response(self.mint(provider))

    # ------------------------------------------------------------------ device flows
    def _new_device(self, provider: str) -> Device:
        dev = Device(provider, secrets.token_hex(12), f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}",
                     self.device_interval, time.monotonic() + self.device_expires_in)
        self.devices[dev.user_code] = dev
        return dev

    def _poll_timing(self, dev: Device) -> str | None:
        now = time.monotonic()
        dev.polls.append(now)
        if now >= dev.expires_at:
            return "expired_token"
        early = dev.last_poll and now - dev.last_poll < dev.interval - 0.15
        if (self.slow_down_first and not dev.slow_downs) or early:
            if early:
                self.errors.append(f"device poll {now - dev.last_poll:.2f}s after the last (interval {dev.interval})")
            dev.slow_downs += 1
            dev.interval += 5.0
            dev.last_poll = now
            return "slow_down"
        dev.last_poll = now
        if dev.denied:
            return "access_denied"
        if not dev.approved:
            return "authorization_pending"
        return None

    async def _kimi_device(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append({"path": request.path, "form": dict(form), "headers": dict(request.headers)})
        if form.get("client_id") != CLIENT_IDS["kimi"]:
            return self._fail("kimi device: wrong client_id")
        for h in ("X-Msh-Device-Id", "X-Msh-Platform", "X-Msh-Version", "X-Msh-Device-Name", "X-Msh-Device-Model"):
            if not request.headers.get(h):
                return self._fail(f"kimi device: header {h} missing")
        return self._device_answer("kimi")

    def _device_answer(self, provider: str) -> web.Response:
        """A new device code for ``provider`` in RFC 8628's answer shape."""
        dev = self._new_device(provider)
        verify = f"{self.base}/{provider}/verify"
        return web.json_response({"device_code": dev.device_code, "user_code": dev.user_code,
                                  "verification_uri": verify,
                                  "verification_uri_complete": f"{verify}?user_code={dev.user_code}",
                                  "expires_in": self.device_expires_in, "interval": dev.interval})

    def _kimi_poll(self, form: dict[str, str]) -> web.Response:
        dev = next((d for d in self.devices.values() if d.device_code == form.get("device_code")), None)
        if dev is None:
            return web.json_response({"error": "invalid_grant"}, status=400)
        err = self._poll_timing(dev)
        if err:  # Kimi answers pending states with 200 and an error field; 400 for the others
            return web.json_response({"error": err}, status=200 if err == "authorization_pending" else 400)
        del self.devices[dev.user_code]
        return web.json_response(self.mint("kimi"))

    async def _xai_discovery(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path})
        b = f"{self.base}/xai"
        return web.json_response({"issuer": b, "device_authorization_endpoint": f"{b}/device",
                                  "token_endpoint": f"{b}/token", "authorization_endpoint": f"{b}/authorize"})

    async def _xai_device(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append({"path": request.path, "form": dict(form), "headers": dict(request.headers)})
        if form.get("client_id") != CLIENT_IDS["xai"]:
            return self._fail("xai device: wrong client_id")
        if form.get("scope") != XAI_SCOPE:
            return self._fail(f"xai device: scope must be {XAI_SCOPE!r}")
        return self._device_answer("xai")

    def _xai_poll(self, form: dict[str, str]) -> web.Response:
        dev = next((d for d in self.devices.values() if d.device_code == form.get("device_code")), None)
        if dev is None or dev.provider != "xai":
            return web.json_response({"error": "invalid_grant"}, status=400)
        err = self._poll_timing(dev)
        if err:  # RFC 8628: every pending state is a 400 with its error code
            return web.json_response({"error": err}, status=400)
        del self.devices[dev.user_code]
        return web.json_response(self.mint("xai"))

    async def _codex_usercode(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"path": request.path, "json": body})
        if body.get("client_id") != CLIENT_IDS["codex"]:
            return self._fail("codex usercode: wrong client_id")
        dev = self._new_device("codex")
        return web.json_response({"device_auth_id": dev.device_code, "user_code": dev.user_code,
                                  "interval": str(int(dev.interval)) if dev.interval >= 1 else dev.interval})

    async def _codex_device_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        dev = self.devices.get(body.get("user_code", ""))
        if dev is None or dev.device_code != body.get("device_auth_id"):
            return web.json_response({"error": {"code": "invalid_request"}}, status=400)
        err = self._poll_timing(dev)
        if err == "slow_down":
            return web.json_response({"error": {"code": "slow_down"}}, status=429)
        if err == "authorization_pending":
            return web.Response(status=403)
        if err:
            return web.json_response({"error": {"code": err}}, status=400)
        del self.devices[dev.user_code]
        verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        code = f"code-{secrets.token_hex(8)}"
        self.codes[code] = {"provider": "codex", "challenge": challenge, "client_id": CLIENT_IDS["codex"],
                            "redirect_uri": self.redirect_uris.get("codex-device", "")}
        return web.json_response({"authorization_code": code, "code_verifier": verifier, "code_challenge": challenge})

    def _verify(self, provider: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            dev = self.devices.get(request.query.get("user_code", ""))
            if dev is None or dev.provider != provider:
                return web.Response(status=404, text="unknown code")
            if request.query.get("deny"):
                dev.denied = True
            else:
                dev.approved = True
            return web.Response(text="ok")

        return handle

    def approve(self, user_code: str, deny: bool = False) -> None:
        dev = self.devices[user_code]
        dev.denied, dev.approved = deny, not deny

    # ------------------------------------------------------------------ service accounts (JWT bearer)
    async def _vertex_token(self, request: web.Request) -> web.Response:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        form = dict(await request.post())
        self.requests.append({"path": request.path, "form": dict(form)})
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._fail("vertex token: wrong grant_type")
        parts = str(form.get("assertion", "")).split(".")
        if len(parts) != 3:
            return self._fail("vertex token: assertion is not a JWT")

        def unb64(x: str) -> bytes:
            return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))

        header, claims = orjson.loads(unb64(parts[0])), orjson.loads(unb64(parts[1]))
        key = self.sa_keys.get(claims.get("iss"))
        if header.get("alg") != "RS256" or key is None:
            return web.json_response({"error": "invalid_grant", "error_description": "unknown issuer"}, status=400)
        try:
            key.verify(unb64(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return web.json_response({"error": "invalid_grant", "error_description": "bad signature"}, status=400)
        if claims.get("aud") != f"{self.base}/vertex/token":
            return self._fail(f"vertex token: aud {claims.get('aud')!r} is not this token endpoint")
        if claims.get("scope") != "https://www.googleapis.com/auth/cloud-platform":
            return self._fail("vertex token: scope must be cloud-platform")
        if not 0 < claims["exp"] - claims["iat"] <= 3600 or abs(claims["iat"] - time.time()) > 300:
            return self._fail("vertex token: iat/exp out of range")
        self.minted += 1
        self._n += 1
        access = f"ya29.vertex-{self._n}-{secrets.token_hex(8)}"
        self.access_tokens[access] = "vertex"
        return web.json_response({"access_token": access, "expires_in": self.expires_in, "token_type": "Bearer"})

    # ------------------------------------------------------------------ profile
    def _profile(self, provider: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if self.access_tokens.get(token) != provider:
                return web.json_response({"error": "invalid_token"}, status=401)
            if provider == "claude":
                return web.json_response({"account": {"uuid": "acc-uuid-1", "email": EMAILS["claude"]}})
            return web.json_response({"email": EMAILS[provider], "verified_email": True})

        return handle


def _browse(url: str) -> int:
    """A browser: GET the URL and follow the redirects (to the CLI's loopback callback)."""
    import aiohttp

    async def go() -> int:
        async with aiohttp.ClientSession() as s, s.get(url, allow_redirects=True) as resp:
            await resp.read()
            return resp.status

    status = asyncio.run(go())
    print(f"fake browser: {url.split('?')[0]} -> {status}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "browse":
        raise SystemExit(_browse(sys.argv[2]))
    raise SystemExit("usage: python -m tests.e2e.fake_oauth browse URL")
