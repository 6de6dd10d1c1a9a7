"""Management handlers for accounts (auth files) and OAuth logins.

Paths and answers are CLIProxyAPI's where it has the route (``/auth-files``, ``/auth-files/status``,
``/auth-files/fields``, ``/<provider>-auth-url``, ``/get-auth-status``, ``/oauth-callback``,
``/oauth-session``); crossroute's own are ``/credentials`` and ``/oauth-login``. Usage, traces and
logs are in view_routes.py.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import errno
import functools
import os
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import redaction
from ..auth.accounts import AccountError
from ..auth.files import is_account_file
from ..replies import Reply
from . import accounts
from .http import HEADERS, BadInput, error, json_object, ok, reply
from .logins import PROVIDER_ROUTES, LoginRefused, Logins

if TYPE_CHECKING:
    from ..api.request import Request
    from ..gateway import Gateway

__all__ = ["ROUTES"]

Handler = Callable[["Gateway", "Request"], Awaitable["Reply"]]
MAX_UPLOAD_FILES = 50
_SAFE_NAME = re.compile(r"^[^\x00-\x1f\"]{1,255}$")  # a file name that can stand in a header as it is


# ------------------------------------------------------------------ accounts
async def list_auth_files(gw: Gateway, req: Request) -> Reply:
    return reply({"files": await accounts.file_rows(gw)})


async def list_credentials(gw: Gateway, req: Request) -> Reply:
    return reply({"credentials": await accounts.credential_rows(gw)})


def _multipart(req: Request) -> list[tuple[str, bytes]]:
    ctype = req.headers.get("content-type", "")
    head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + req.body)
    if not msg.is_multipart():
        raise BadInput("multipart body has no parts", "file")
    out: list[tuple[str, bytes]] = []
    for part in msg.iter_parts():  # type: ignore[attr-defined]
        if part.get_param("name", header="content-disposition") not in ("file", "files", "files[]"):
            continue
        name = part.get_filename()
        if not name:
            raise BadInput("an uploaded file has no file name", "file")
        payload = part.get_payload(decode=True) or b""
        out.append((name, payload))
    return out


async def upload_auth_file(gw: Gateway, req: Request) -> Reply:
    ctype = req.headers.get("content-type", "")
    if ctype.lower().startswith("multipart/form-data"):
        files = _multipart(req)
        if not files:
            raise BadInput("no 'file' part in the multipart body", "file")
    else:
        name = req.query("name")
        if not name:
            raise BadInput("give the file as multipart 'file', or a JSON body with ?name=<file>.json", "name")
        files = [(name, req.body)]
    if len(files) > MAX_UPLOAD_FILES:
        raise BadInput(f"at most {MAX_UPLOAD_FILES} files per upload", "file")
    # validate every file before writing any
    for name, data in files:
        _check_upload(gw, name, data)
    written = []
    for name, data in files:
        try:
            written.append((await asyncio.to_thread(accounts.upload, gw, name, data)).name)
        except accounts.UploadError as exc:
            raise BadInput(str(exc), exc.field) from None
        except OSError as exc:
            return error(500, f"cannot write {name}: {exc.strerror or exc}")
    return ok(uploaded=len(written), files=written)


def _check_upload(gw: Gateway, name: str, data: bytes) -> None:
    import orjson

    from ..auth.accounts import AccountError, parse_account
    from ..auth.files import is_account_file

    if not name or "/" in name or "\\" in name or not is_account_file(name):
        raise BadInput(f"{name!r} is not an account file name (a plain name ending in .json, no path)", "name")
    if len(data) > accounts.MAX_ACCOUNT_BYTES:
        raise BadInput(f"{name}: larger than {accounts.MAX_ACCOUNT_BYTES} bytes", "file")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{name}: not valid JSON ({exc})", "file") from None
    if not isinstance(obj, dict):
        raise BadInput(f"{name}: must be a JSON object", "file")
    store, _ = accounts.store_for(gw)
    try:
        parse_account(store.dir / name, obj)
    except AccountError as exc:
        raise BadInput(f"{name}: {redaction.scrub(str(exc))}", "file") from None


async def delete_auth_file(gw: Gateway, req: Request) -> Reply:
    store = await accounts.loaded(gw)
    if (req.query("all") or "").lower() in ("1", "true"):
        names = [a.name for a in store.accounts()]
    else:
        name = req.query("name")
        if not name:
            raise BadInput("give ?name=<file>.json (or ?all=true)", "name")
        if store.get(name) is None and store.get(f"{name}.json") is None:
            raise BadInput(f"no account file {name!r}", "name", 404)
        names = [name]
    for n in names:
        await asyncio.to_thread(store.remove, n)
    return ok(deleted=len(names))


async def patch_auth_status(gw: Gateway, req: Request) -> Reply:
    body = json_object(req)
    name, disabled = body.get("name"), body.get("disabled")
    if not isinstance(name, str) or not name.strip():
        raise BadInput("'name' must be the account's file name", "name")
    if not isinstance(disabled, bool):
        raise BadInput("'disabled' must be true or false", "disabled")
    store = await accounts.loaded(gw)
    try:
        acct = await asyncio.to_thread(store.set_disabled, name.strip(), disabled)
    except KeyError:
        raise BadInput(f"no account file {name.strip()!r}", "name", 404) from None
    return ok(name=acct.name, disabled=acct.disabled)


def _read_account_file(path: Path) -> bytes | None:
    """The file's bytes as they are on disk (no symlink followed, at most MAX_ACCOUNT_BYTES); None
    when it is not there. Blocking: run in a thread."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadInput(f"cannot read {path.name}: {exc.strerror or exc}", "name",
                       404 if exc.errno == errno.ELOOP else 500) from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(accounts.MAX_ACCOUNT_BYTES + 1)
    if len(data) > accounts.MAX_ACCOUNT_BYTES:
        raise BadInput(f"{path.name} is larger than {accounts.MAX_ACCOUNT_BYTES} bytes", "name", 413)
    return data


async def download_auth_file(gw: Gateway, req: Request) -> Reply:
    """CLIProxyAPI's ``GET /auth-files/download?name=``: the account file as it is on disk, tokens
    included (the operator's own credential, behind the management key; the one management answer
    that holds secrets). Management requests are never written to the request or error logs, and
    the access log has the path only."""
    name = (req.query("name") or "").strip()
    if not name or "/" in name or "\\" in name or name.startswith(".") or not _SAFE_NAME.match(name):
        raise BadInput("invalid name", "name")
    if not is_account_file(name):
        raise BadInput("name must end with .json", "name")
    store, _ = accounts.store_for(gw)
    data = await asyncio.to_thread(_read_account_file, store.dir / name)
    if data is None:
        return error(404, "file not found", "name")
    disposition = (f'attachment; filename="{name}"' if name.isascii()
                   else f"attachment; filename*=UTF-8''{urllib.parse.quote(name)}")
    return Reply(200, data, [("content-type", "application/json"), ("content-disposition", disposition),
                             *HEADERS[1:]])


# fields PATCH /auth-files/fields may set, with the JSON types each takes (None removes the field)
_FIELDS: dict[str, tuple[type, ...]] = {"priority": (int,), "weight": (int,), "prefix": (str,), "proxy_url": (str,),
                                        "base_url": (str,), "headers": (dict,), "excluded_models": (list,),
                                        "websockets": (bool,), "email": (str,)}


async def patch_auth_fields(gw: Gateway, req: Request) -> Reply:
    """CLIProxyAPI's ``PATCH /auth-files/fields``: merge routing fields into one account file
    (tokens and the type are not settable here)."""
    body = json_object(req)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadInput("'name' must be the account's file name", "name")
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key == "name":
            continue
        field = key.replace("-", "_")
        types = _FIELDS.get(field)
        if types is None:
            raise BadInput(f"field {key!r} cannot be set here (settable: {', '.join(sorted(_FIELDS))})", key)
        if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise BadInput(f"{key!r} must be {'a ' + types[0].__name__}", key)
        if field == "headers" and value is not None and not all(isinstance(v, str) for v in value.values()):
            raise BadInput("'headers' must map names to strings", key)
        if field == "excluded_models" and value is not None and not all(isinstance(v, str) for v in value):
            raise BadInput("'excluded_models' must be a list of strings", key)
        if field == "weight" and value is not None and value < 1:
            raise BadInput("'weight' must be 1 or more", key)
        values[field] = value
    if not values:
        raise BadInput("give at least one field to change", "name")
    store = await accounts.loaded(gw)
    try:
        acct = await asyncio.to_thread(functools.partial(store.update, name.strip(), **values))
    except KeyError:
        raise BadInput(f"no account file {name.strip()!r}", "name", 404) from None
    except AccountError as exc:
        raise BadInput(f"{name.strip()}: {redaction.scrub(str(exc))}", "name") from None
    return ok(name=acct.name)


# ------------------------------------------------------------------ logins
def _logins(gw: Gateway) -> Logins:
    return gw.component("management-logins", lambda _gw: Logins())


def _starter(provider: str, device: bool) -> Handler:
    async def start(gw: Gateway, req: Request) -> Reply:
        store, _ = accounts.store_for(gw)
        try:
            session = await _logins(gw).start(provider, device, store)
        except LoginRefused as exc:
            return error(exc.status, exc.message)
        out: dict[str, Any] = {"status": "ok", "url": session.url, "state": session.state, "provider": provider}
        if device:
            out["flow"] = "device"
            out["user_code"] = session.user_code
        return reply(out)

    return start


async def login_start(gw: Gateway, req: Request) -> Reply:
    """``POST /oauth-login {"provider", "device"}``: the panel's one starter for every provider."""
    body = json_object(req)
    provider, device = body.get("provider"), body.get("device", False)
    if not isinstance(provider, str) or not provider:
        raise BadInput("'provider' must be claude, codex, antigravity or kimi", "provider")
    if not isinstance(device, bool):
        raise BadInput("'device' must be true or false", "device")
    return await _starter(provider, device or provider == "kimi")(gw, req)


async def auth_status(gw: Gateway, req: Request) -> Reply:
    state = req.query("state")
    if not state:
        raise BadInput("give ?state=", "state")
    view = await _logins(gw).poll(state, accounts.store_for(gw)[0].dir)
    if view is None:
        return reply({"status": "error", "error": "unknown or expired login state"}, 404)
    return reply({k: v for k, v in view.items() if k in ("status", "error", "account", "provider")})


async def oauth_callback(gw: Gateway, req: Request) -> Reply:
    body = json_object(req)
    state = body.get("state")
    if not isinstance(state, str) or not state:
        raise BadInput("'state' is required", "state")
    text = body.get("redirect_url")
    if text is None and isinstance(body.get("code"), str):
        text = f"{body['code']}#{state}"
    if isinstance(body.get("error"), str) and body["error"]:
        text = f"?error={body['error']}&state={state}"
    if not isinstance(text, str) or not text.strip():
        raise BadInput("give 'redirect_url' (the address the browser was sent to) or 'code'", "redirect_url")
    if len(text) > 8192:
        raise BadInput("'redirect_url' is too long", "redirect_url")
    if not await _logins(gw).paste(state, text, accounts.store_for(gw)[0].dir):
        return error(404, "no login waits for this state", "state")
    return ok()


async def cancel_login(gw: Gateway, req: Request) -> Reply:
    state = req.query("state")
    if not state:
        raise BadInput("give ?state=", "state")
    if not await _logins(gw).abort(state, accounts.store_for(gw)[0].dir):
        return error(404, "no login with this state", "state")
    return ok()


def _table() -> dict[tuple[str, str], Handler]:
    table: dict[tuple[str, str], Handler] = {
        ("GET", "auth-files"): list_auth_files,
        ("GET", "auth-files/download"): download_auth_file,
        ("POST", "auth-files"): upload_auth_file,
        ("DELETE", "auth-files"): delete_auth_file,
        ("PATCH", "auth-files/status"): patch_auth_status,
        ("PATCH", "auth-files/fields"): patch_auth_fields,
        ("GET", "credentials"): list_credentials,
        ("POST", "oauth-login"): login_start,
        ("GET", "get-auth-status"): auth_status,
        ("POST", "oauth-callback"): oauth_callback,
        ("DELETE", "oauth-session"): cancel_login,
    }
    for route, (provider, device) in PROVIDER_ROUTES.items():
        table[("GET", route)] = _starter(provider, device)
    return table


ROUTES = _table()
