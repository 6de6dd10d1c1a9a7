"""The management API (``/v0/management/...``) and the control panel (``/management.html``).

Mounted by the edge (app.py ``_OPTIONAL_APIS``) with the client-key check off: these routes have
their own key (crossroute/management/auth.py: 404 when no key is configured, the loopback rule,
401 for a missing or wrong key, a 30-minute ban after five failures). The handlers are in
crossroute/management/config_routes.py (config.yaml, key lists, scalars), data_routes.py
(accounts, logins), view_routes.py (usage, traces, logs) and tool_routes.py (reset-quota,
api-call). The panel is static files from crossroute/panel/ (read once, in a thread, then served
from memory) with a strict Content-Security-Policy; it holds no data and asks the API with the
key. The ban files, the config file, account files, logs and login mailboxes are read and written
in threads, not on the event loop; the one exception is a change to an account file (upload,
status, fields, delete), written through the gateway's AuthStore on the loop because its
listeners must run there.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..management import auth, config_edit
from ..management.config_routes import ROUTES as CONFIG_ROUTES
from ..management.data_routes import ROUTES as DATA_ROUTES
from ..management.http import BadInput, error
from ..management.tool_routes import ROUTES as TOOL_ROUTES
from ..management.view_routes import PREFIXED
from ..management.view_routes import ROUTES as VIEW_ROUTES
from ..replies import Reply

if TYPE_CHECKING:
    from ..gateway import Gateway
    from .request import Request

__all__ = ["PANEL_CSP", "PREFIX", "guard", "routes"]

log = logging.getLogger("crossroute.management")

PREFIX = "/v0/management/"
PANEL_DIR = Path(__file__).resolve().parent.parent / "panel"
PANEL_FILES = {"panel.js": "text/javascript; charset=utf-8", "panel.css": "text/css; charset=utf-8"}
PANEL_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
             "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_PANEL_HEADERS = [("content-security-policy", PANEL_CSP), ("x-content-type-options", "nosniff"),
                  ("x-frame-options", "DENY"), ("referrer-policy", "no-referrer"), ("cache-control", "no-store")]

TABLE = {**CONFIG_ROUTES, **DATA_ROUTES, **VIEW_ROUTES, **TOOL_ROUTES}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
guard = auth.Guard()
_hashed: set[tuple[str, str]] = set()  # (config path, plain key) already written back


async def _allowed(gw: Gateway, req: Request, need_key: bool) -> Reply | None:
    """None when the request may go on; else the refusal (404 / 403 / 401)."""
    rm = gw.settings.remote_management
    password = auth.env_password()
    address, loopback = auth.client_address(req, gw.settings.host)
    key = auth.presented_key(req.headers) if need_key else None
    if not need_key:
        if not rm.secret_key and not password:
            return error(404, "not found")
        if not loopback and not rm.allow_remote:
            return error(403, "remote management disabled")
        return None
    stored = rm.secret_key.strip()
    guard.shared = _shared_bans(gw)
    if guard.known_good(key, stored) and (loopback or rm.allow_remote) and (
            await asyncio.to_thread(guard.banned_for, address or "unknown")) <= 0:
        return None  # the common case: the key that matched before, no hash to compute (the ban file: a thread)
    # a key not seen yet costs a bcrypt/PBKDF2 computation: off the event loop
    verdict = await asyncio.to_thread(guard.decide, key, address, loopback, stored=stored,
                                      allow_remote=rm.allow_remote, env_password=password)
    if verdict.status:
        if verdict.status != 404:
            log.info("management request refused (%d %s) from %s", verdict.status, verdict.message,
                     address or "an unknown address")
        return error(verdict.status, verdict.message)
    return None


def _shared_bans(gw: Gateway) -> auth.SharedBans | None:
    """Failures and bans shared by the workers of ``serve --workers N`` (files in the private auth-dir)."""
    from ..management.accounts import store_for

    directory = store_for(gw)[0].dir / ".crossroute-management"
    shared = guard.shared
    if shared is not None and shared.dir == directory:
        return shared
    return auth.SharedBans(directory)


async def _hash_back(gw: Gateway) -> None:
    """A plain ``secret-key`` in the file: replace it with its hash (once per key and file). ``serve``
    does this at start (``auth.hash_key_at_start``); this catches a plain key a reload brought in."""
    rm = gw.settings.remote_management
    key, path = rm.secret_key.strip(), gw.settings.path
    if not key or not path or auth.is_hashed(key) or (path, key) in _hashed:
        return
    _hashed.add((path, key))
    written = await asyncio.to_thread(auth.hash_key_in_file, path)
    if written:
        log.info("remote-management.secret-key in %s replaced by its hash", path)


async def management(gw: Gateway, req: Request) -> Reply:
    refused = await _allowed(gw, req, need_key=True)
    if refused is not None:
        return refused
    await _hash_back(gw)
    sub = req.path[len(PREFIX):].strip("/")
    handler = TABLE.get((req.method, sub))
    try:
        if handler is not None:
            return await handler(gw, req)
        for method, prefix, prefixed in PREFIXED:
            if method == req.method and sub.startswith(prefix) and len(sub) > len(prefix):
                return await prefixed(gw, req, sub[len(prefix):])
    except BadInput as exc:
        return error(exc.status, exc.message, exc.field)
    except config_edit.EditError as exc:
        from ..management.http import reply

        return reply(exc.body(), exc.status)
    if any(p == sub for _, p in TABLE):
        return error(405, f"method {req.method} is not allowed on {req.path}")
    return error(404, f"no management route {req.method} {req.path}")


_panel_cache: dict[str, bytes] = {}  # the panel's files, read once (in a thread) and kept


async def _panel_reply(name: str, content_type: str) -> Reply:
    data = _panel_cache.get(name)
    if data is None:
        try:
            data = await asyncio.to_thread((PANEL_DIR / name).read_bytes)
        except OSError:
            return error(404, "the control panel files are missing from this installation")
        _panel_cache[name] = data
    return Reply(200, data, [("content-type", content_type), *_PANEL_HEADERS])


async def panel_page(gw: Gateway, req: Request) -> Reply:
    refused = await _allowed(gw, req, need_key=False)
    if refused is not None:
        return refused
    if gw.settings.remote_management.disable_control_panel:
        return error(404, "not found")
    return await _panel_reply("management.html", "text/html; charset=utf-8")


async def panel_asset(gw: Gateway, req: Request) -> Reply:
    refused = await _allowed(gw, req, need_key=False)
    if refused is not None:
        return refused
    name = req.path_params.get("rest", "")
    content_type = PANEL_FILES.get(name)
    if content_type is None or gw.settings.remote_management.disable_control_panel:
        return error(404, "not found")
    return await _panel_reply(name, content_type)


def routes() -> list[tuple[str, str, Any, str, bool, bool]]:
    out: list[tuple[str, str, Any, str, bool, bool]] = [
        ("GET", "/management.html", panel_page, "openai", False, False),
        ("GET", "/management-assets/", panel_asset, "openai", False, True),
    ]
    out += [(m, PREFIX, management, "openai", False, True) for m in METHODS]
    return out
