"""Accounts and credentials as the management API shows them: never a secret, always a status.

Account files (auth-dir) are listed, uploaded, enabled, disabled and deleted through the
gateway's ``AuthStore`` (``gw.auth_store`` when the gateway has one; else one kept here for the
auth-dir, rescanned on every listing). What a listing reads from the disk (the store
when it is not the gateway's, each file's size and time, the quota snapshot) is read in a thread
(``read_disk``). A listing joins what the router knows (cooldowns per
model, bound sessions) and what the quota book knows (``gw.quota``), by credential id
(``auth:<file name>`` for accounts, ``ProviderEntry.id`` for config keys).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import redaction
from ..auth.accounts import Account, AccountError, parse_account
from ..auth.files import is_account_file
from ..auth.store import AuthStore

if TYPE_CHECKING:
    from ..config import ProviderEntry
    from ..gateway import Gateway

__all__ = ["MAX_ACCOUNT_BYTES", "Disk", "credential_rows", "file_entry", "file_rows", "loaded", "mask", "read_disk",
           "router_view", "store_for", "upload"]

MAX_ACCOUNT_BYTES = 1024 * 1024
_stores: dict[str, AuthStore] = {}


def mask(value: str | None) -> str | None:
    """A secret for display, in the style of every other crossroute output (``redaction.mask``)."""
    return redaction.mask(value) if value else None


def store_for(gw: Gateway) -> tuple[AuthStore, bool]:
    """(the store, whether it is the gateway's own: then its watcher keeps it current)."""
    own = getattr(gw, "auth_store", None)
    if isinstance(own, AuthStore):
        return own, True
    service = getattr(gw, "accounts", None)  # auth/serving.py's AccountService, from start() on
    if isinstance(getattr(service, "store", None), AuthStore):
        return service.store, True
    directory = os.path.expanduser(gw.settings.auth_dir)
    store = _stores.get(directory)
    if store is None:
        store = _stores[directory] = AuthStore(directory)
    return store, False


def current_accounts(gw: Gateway) -> list[Account]:
    store, own = store_for(gw)
    if not own:
        store.load()
    return sorted(store.accounts(), key=lambda a: a.name.lower())


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def router_view(gw: Gateway) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """(credential id -> cooldowns still running [{model, until, level}], credential id -> bound sessions)."""
    state: Any = gw.router.state
    mem = getattr(state, "mirror", state)
    cooling: dict[str, list[dict[str, Any]]] = {}
    bound: dict[str, int] = {}
    now = time.time()
    iter_cd = getattr(mem, "iter_cooldowns", None)
    if callable(iter_cd):
        for cid, model, cd, _keep in iter_cd():
            if cd.until > now:
                cooling.setdefault(cid, []).append({"model": model, "until": _iso(cd.until),
                                                    "seconds_left": round(cd.until - now, 1), "level": cd.level})
    iter_b = getattr(mem, "iter_bindings", None)
    if callable(iter_b):
        for _key, cid, _expires in iter_b():
            bound[cid] = bound.get(cid, 0) + 1
    return cooling, bound


def quota_of(gw: Gateway, credential_id: str, snapshot: dict[str, dict[str, Any]] | None = None) -> Any:
    """What the quota book knows of one credential: ``{"windows": [{name, used, reset_at, ...}],
    "plan", "summary"}``; for an account it has not heard of since start, the last snapshot the
    book wrote to auth-dir. None when nothing is known."""
    from ..routing.quota import describe

    book: Any = getattr(gw, "quota", None)
    info: dict[str, Any] | None = None
    account = getattr(book, "account", None)
    if callable(account):
        try:
            acct = account(credential_id)
            info = acct.to_json() if acct is not None else None
        except Exception:
            info = None
    if (not info or not info.get("windows")) and snapshot and credential_id.startswith("auth:"):
        info = snapshot.get(credential_id[5:]) or info
    if not info:
        return None
    out = {k: info[k] for k in ("windows", "plan", "updated") if k in info}
    try:
        out["summary"] = describe(info)
    except Exception:
        out["summary"] = ""
    return out


def quota_snapshot(gw: Gateway) -> dict[str, dict[str, Any]]:
    from ..routing.quota import read_snapshot

    store, _ = store_for(gw)
    try:
        return read_snapshot(store.dir)
    except Exception:
        return {}


def file_entry(gw: Gateway, acct: Account, cooling: dict[str, list[dict[str, Any]]], bound: dict[str, int],
               snapshot: dict[str, dict[str, Any]] | None = None,
               stat: tuple[int, str | None] | None = None) -> dict[str, Any]:
    """One account as CLIProxyAPI's ``/auth-files`` lists it, plus crossroute's routing view
    (``stat``: the file's size and modification time, from ``read_disk``)."""
    size, modtime = stat or (0, None)
    cid = f"auth:{acct.name}"
    status = acct.status
    message = {"disabled": "disabled by the operator", "needs login": "the refresh token was refused; log in again"
               }.get(status, "")
    return {
        "id": acct.name, "name": acct.name, "type": acct.provider, "provider": acct.provider,
        "email": acct.email, "label": acct.label, "credential_id": cid, "auth_index": cid,
        "status": "active" if status == "active" else ("disabled" if status == "disabled" else "error"),
        "status_message": message, "needs_login": acct.needs_login, "disabled": acct.disabled,
        "unavailable": status != "active", "source": "file", "runtime_only": False, "size": size,
        "modtime": modtime, "expired": _iso(acct.expires_at), "last_refresh": _iso(acct.last_refresh),
        "priority": acct.priority, "weight": acct.weight, "prefix": acct.prefix, "websockets": acct.websockets,
        "secrets": {k: mask(v) for k, v in (("access_token", acct.access_token), ("refresh_token", acct.refresh_token),
                                            ("id_token", acct.id_token), ("api_key", acct.api_key)) if v},
        "cooldowns": cooling.get(cid, []), "bound_sessions": bound.get(cid, 0), "quota": quota_of(gw, cid, snapshot),
    }


def _entry_row(gw: Gateway, e: ProviderEntry, cooling: dict[str, list[dict[str, Any]]], bound: dict[str, int]
               ) -> dict[str, Any]:
    return {"credential_id": e.id, "auth_index": e.id, "source": "config", "provider": e.provider, "kind": e.kind,
            "name": e.name, "label": f"{e.provider} {mask(e.api_key) or ''}".strip(), "base_url": e.base_url,
            "status": "disabled" if e.disabled else "active", "disabled": e.disabled,
            "priority": e.priority, "weight": e.weight, "prefix": e.prefix,
            "api_key": mask(e.api_key), "cooldowns": cooling.get(e.id, []), "bound_sessions": bound.get(e.id, 0),
            "quota": quota_of(gw, e.id)}


@dataclass(slots=True)
class Disk:
    """What a listing reads from auth-dir: the accounts, each file's (size, mtime), the quota snapshot."""

    accounts: list[Account]
    stats: dict[str, tuple[int, str | None]]
    snapshot: dict[str, dict[str, Any]]


def read_disk(gw: Gateway) -> Disk:
    """Everything a listing needs from the disk (blocking: run it in a thread)."""
    accts = current_accounts(gw)
    stats: dict[str, tuple[int, str | None]] = {}
    for a in accts:
        try:
            st = a.path.stat()
            stats[a.name] = (st.st_size, _iso(st.st_mtime))
        except OSError:
            stats[a.name] = (0, None)
    return Disk(accts, stats, quota_snapshot(gw))


async def file_rows(gw: Gateway, view: tuple[dict[str, list[dict[str, Any]]], dict[str, int]] | None = None
                    ) -> list[dict[str, Any]]:
    """The ``/auth-files`` rows: files read in a thread, the routing view (``router_view``) from memory."""
    disk = await asyncio.to_thread(read_disk, gw)
    cooling, bound = view or router_view(gw)
    return [file_entry(gw, a, cooling, bound, disk.snapshot, disk.stats.get(a.name)) for a in disk.accounts]


async def credential_rows(gw: Gateway) -> list[dict[str, Any]]:
    """Every credential: account files, then config keys (an account served as an entry once)."""
    cooling, bound = router_view(gw)
    rows = await file_rows(gw, (cooling, bound))
    seen = {r["credential_id"] for r in rows}
    for e in gw.settings.providers:
        if e.id not in seen:
            seen.add(e.id)
            rows.append(_entry_row(gw, e, cooling, bound))
    return rows


async def loaded(gw: Gateway) -> AuthStore:
    """The store, with the auth-dir read (in a thread) when it is not the gateway's own."""
    store, own = store_for(gw)
    if not own:
        await asyncio.to_thread(store.load)
    return store


class UploadError(ValueError):
    def __init__(self, message: str, field: str = "file") -> None:
        super().__init__(message)
        self.field = field


def upload(gw: Gateway, name: str, data: bytes) -> Account:
    """Validate one account file (``parse_account``) and write it through the store."""
    import orjson

    name = name.strip()
    if not name or Path(name).name != name or not is_account_file(name):
        raise UploadError(f"{name!r} is not an account file name (a plain name ending in .json, no path)", "name")
    if len(data) > MAX_ACCOUNT_BYTES:
        raise UploadError(f"{name}: larger than {MAX_ACCOUNT_BYTES} bytes")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UploadError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise UploadError(f"{name}: must be a JSON object")
    store, _ = store_for(gw)
    try:
        parse_account(store.dir / name, obj)
    except AccountError as exc:
        raise UploadError(f"{name}: {redaction.scrub(str(exc))}") from None
    return store.write(name, obj)
