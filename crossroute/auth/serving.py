"""Accounts in the running gateway: the store, the refresher and the watcher, and the provider
entries the registry serves the accounts through.

``AccountService(auth_dir, redis_url, on_change)`` is owned by the ``Gateway``: ``start()`` loads
``auth-dir`` (a bad file is skipped with one log line naming it), starts the background refresh
and follows the directory; every change to the set of accounts or to what routing reads from them
(added, removed, disabled, "needs login", a new base URL, ...) calls ``on_change()`` so the gateway
rebuilds its registry. A directory that does not exist yet is looked for every second (a first
``crossroute login`` creates it), never created by the gateway.

``entries(settings)`` is one ``ProviderEntry`` per usable account whose kind has an executor in
this build: kind by provider (``ACCOUNT_KINDS``), ``cred_id`` ``auth:<file name>``, the account's
base URL (or the executor's ``default_base_url``), proxy, headers, prefix, priority, weight,
websockets, and ``derived["account"]`` / ``derived["token"]`` (the refresher's ``TokenSource``:
``token()`` reads the store each time, ``refresh()`` after a 401). Its ``models`` are the executor's
``models`` minus the account's ``excluded_models`` and ``oauth-excluded-models.<channel>``, with
``oauth-model-alias.<channel>`` and the account's ``model_aliases`` applied: an alias replaces the
upstream name unless ``fork: true`` (then both are served); an alias whose upstream name is not in
the executor's list adds that model (static lists lag behind the providers). An entry is reused
while the account's routing fields stay the same, so what an executor caches in ``derived`` (a
discovered project, built URLs) survives token refreshes and unrelated changes. An account whose
``base_url`` or ``proxy_url`` is not a usable URL is not served (one log line naming the file and
the field), so a request never meets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from ..config import ModelMap, OAuthAlias, ProviderEntry, Settings
from ..providers import EXECUTORS
from ..registry import excluded as _excluded
from .accounts import Account
from .flows.service_account import ServiceAccountToken
from .refresh import Refresher
from .store import AuthStore, _routing

__all__ = ["ACCOUNT_KINDS", "DIR_POLL", "AccountService", "account_models", "cred_id"]

log = logging.getLogger("crossroute.auth")

# account provider (the file's ``type``) -> executor kind
ACCOUNT_KINDS = {
    "claude": "claude-oauth",
    "codex": "codex-oauth",
    "kimi": "kimi",
    "antigravity": "antigravity",
    "vertex": "vertex",
    "xai": "xai",
}
# fields a refresh rewrites: a change of only these keeps the account's entry (and its caches)
_VOLATILE = frozenset({"access_token", "refresh_token", "id_token", "expired", "expires_in", "timestamp",
                       "last_refresh", "token_type", "scope"})
DIR_POLL = 1.0  # seconds between looks for an auth dir that does not exist (yet)
RETRY_WATCH = 2.0  # seconds before the watcher starts again after it failed
SETTLE_RESCANS = (0.5, 2.0)  # rescans this long after the watcher starts (it takes a moment to be in place)
SAFETY_RESCAN = 60.0  # and then one this often, for events a watcher can lose


def cred_id(name: str) -> str:
    """The credential id of an account (routing, cooldowns, bindings, quota key by it)."""
    return f"auth:{name}"


def account_models(acct: Account, served: Iterable[str], aliases: list[OAuthAlias],
                   excluded: list[str]) -> list[ModelMap]:
    """What one account serves: ``ModelMap(upstream, alias)``; ``alias`` None means the upstream
    name itself is what clients ask for. See the module docstring for the rules."""
    by_name: dict[str, list[tuple[str, bool]]] = {}
    for a in aliases:
        by_name.setdefault(a.name.lower(), []).append((a.alias, a.fork))
    for name, alias in acct.model_aliases.items():  # the file's own aliases win over the channel's
        by_name[name.lower()] = [(alias, False)]
    names: list[str] = []
    seen: set[str] = set()
    for name in [*served, *(a.name for a in aliases), *acct.model_aliases]:
        if name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    listed = {n.lower() for n in served}
    patterns = [*acct.excluded_models, *excluded]
    out: list[ModelMap] = []
    for name in names:
        if _excluded(patterns, name):
            continue
        mapped = by_name.get(name.lower())
        if not mapped:
            if name.lower() in listed:
                out.append(ModelMap(name))
            continue
        keep_name = False
        aliased: list[ModelMap] = []
        for alias, fork in mapped:
            if fork or alias.lower() == name.lower():
                keep_name = True
            if alias.lower() != name.lower() and not _excluded(patterns, alias):
                aliased.append(ModelMap(name, alias))
        if keep_name:
            out.append(ModelMap(name))
        out.extend(aliased)
    return out


_PROXY_SCHEMES = ("http", "https", "socks5", "socks5h", "socks4", "socks4a")


def _url_problem(acct: Account) -> str:
    """Why the file's ``base_url`` or ``proxy_url`` cannot be used ("" when both can)."""
    from urllib.parse import urlsplit

    for field, value, schemes in (("base_url", acct.base_url, ("http", "https")),
                                  ("proxy_url", acct.proxy_url, _PROXY_SCHEMES)):
        if not value or (field == "proxy_url" and value.strip().lower() in ("direct", "none")):
            continue
        try:
            parts = urlsplit(value.strip())
            _ = parts.port
        except ValueError as exc:
            return f"field {field!r} is not a URL ({exc})"
        if parts.scheme.lower() not in schemes or not parts.hostname:
            return f"field {field!r} must be {'/'.join(schemes)}://host[:port][/path]"
    return ""


class AccountService:
    def __init__(self, auth_dir: str | os.PathLike[str], redis_url: str | None,
                 on_change: Callable[[], None], *, env: dict[str, str] | None = None) -> None:
        self.store = AuthStore(auth_dir)
        self.refresher = Refresher(self.store, redis_url=redis_url, env=env)
        self._on_change = on_change
        self._entries: dict[str, tuple[tuple[Any, ...], ProviderEntry]] = {}
        self._unserved: set[str] = set()  # kinds already logged as having no executor
        self._bad: dict[str, str] = {}  # file name -> the URL problem already logged
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.store.on_change(self._changed)

    @property
    def dir(self) -> str:
        return str(self.store.dir)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Load the directory (before the first request) and follow it from now on."""
        if await asyncio.to_thread(self.store.dir.is_dir):
            await asyncio.to_thread(self.store.load)
            accounts = self.store.accounts()
            usable = sum(1 for a in accounts if a.usable)
            log.info("auth dir %s: %d account%s (%d usable)", self.store.dir, len(accounts),
                     "" if len(accounts) == 1 else "s", usable)
        else:
            log.info("auth dir %s does not exist yet; accounts added there later are served without a restart",
                     self.store.dir)
        self.refresher.start()
        self._stop.clear()
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.refresher.stop()

    async def _follow(self) -> None:
        """Watch the directory while it exists; wait for it while it does not."""
        failed = ""  # the last watcher failure logged (a failure that repeats is logged once)
        while not self._stop.is_set():
            if not await asyncio.to_thread(self.store.dir.is_dir):
                if self.store.accounts():  # the directory went away: so did its accounts
                    self.store._announce(*await asyncio.to_thread(self.store.load))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), DIR_POLL)
                continue
            rescans = asyncio.get_running_loop().create_task(self._rescans())
            try:
                await self.store.watch(self._stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                what = f"{type(exc).__name__}: {exc}"
                if what != failed:
                    failed = what
                    log.warning("watching the auth dir %s failed (%s); rescanning it every %.0f s instead",
                                self.store.dir, what, RETRY_WATCH)
            finally:
                rescans.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), RETRY_WATCH)
            if not self._stop.is_set() and await asyncio.to_thread(self.store.dir.is_dir):
                with contextlib.suppress(OSError):  # no watcher: a rescan still sees the changes
                    self.store._announce(*await asyncio.to_thread(self.store.load))

    async def _rescans(self) -> None:
        """Rescans beside the watcher: two soon after it starts (a file written between the first
        scan and the moment the watcher is in place would otherwise wait for the next event), then
        a slow one in case an event is lost (network filesystems, an overflowing event queue)."""
        for delay in itertools.chain(SETTLE_RESCANS, itertools.repeat(SAFETY_RESCAN)):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return
            try:
                self.store._announce(*await asyncio.to_thread(self.store.load))
            except OSError as exc:
                log.debug("rescan of %s failed: %s", self.store.dir, exc)

    def _changed(self, added: list[Account], changed: list[Account], removed: list[Account]) -> None:
        for acct in removed:
            self.refresher.forget(acct.name)
            self._entries.pop(acct.name, None)
        try:
            self._on_change()
        except Exception:
            log.exception("applying an auth dir change failed")

    # ------------------------------------------------------------------ what the registry serves
    def secrets(self) -> list[str]:
        """Every token of every account, and the access tokens minted from service accounts."""
        minted = [src.token() for src in self.refresher.sources() if isinstance(src, ServiceAccountToken)]
        return [*self.store.secrets(), *(t for t in minted if t)]

    def entries(self, settings: Settings) -> list[ProviderEntry]:
        out: list[ProviderEntry] = []
        keep: set[str] = set()
        for acct in sorted(self.store.accounts(), key=lambda a: a.name):
            if not acct.usable:
                continue
            kind = ACCOUNT_KINDS.get(acct.provider)
            executor = EXECUTORS.get(kind) if kind else None
            if kind is None or executor is None:
                if (kind or acct.provider) not in self._unserved:
                    self._unserved.add(kind or acct.provider)
                    log.warning("account %s not served: this build has no executor for %s accounts (kind %r)",
                                acct.name, acct.provider, kind)
                continue
            problem = _url_problem(acct)
            if problem:
                if self._bad.get(acct.name) != problem:
                    self._bad[acct.name] = problem
                    log.warning("account %s not served: %s", acct.name, problem)
                continue
            self._bad.pop(acct.name, None)
            keep.add(acct.name)
            entry = self._entry(acct, kind, executor)
            served = tuple(getattr(executor, "models", ()) or ())
            entry.models = account_models(acct, served, settings.oauth_model_alias.get(acct.provider, []),
                                          settings.oauth_excluded_models.get(acct.provider, []))
            entry.derived["account"] = acct
            out.append(entry)
        for name in [n for n in self._entries if n not in keep]:
            del self._entries[name]
        return out

    def _entry(self, acct: Account, kind: str, executor: Any) -> ProviderEntry:
        # what executors may read from the file besides tokens (project, location, account id, ...)
        rest = orjson.dumps({k: v for k, v in acct.raw.items() if k not in _VOLATILE}, option=orjson.OPT_SORT_KEYS,
                            default=str)
        fingerprint = (kind, id(executor), _routing(acct), rest)
        known = self._entries.get(acct.name)
        if known is not None and known[0] == fingerprint:
            return known[1]
        base = (acct.base_url or getattr(executor, "default_base_url", "") or "").rstrip("/")
        prefix = (acct.prefix or "").strip().strip("/") or None
        entry = ProviderEntry(
            kind=kind, provider=kind, name=acct.name, api_key=acct.api_key or "", base_url=base,
            proxy_url=acct.proxy_url or None, headers=dict(acct.headers), prefix=prefix, priority=acct.priority,
            weight=acct.weight, excluded_models=list(acct.excluded_models), websockets=acct.websockets,
            cred_id=cred_id(acct.name),
        )
        entry.derived["token"] = self.refresher.source(acct.name)
        self._entries[acct.name] = (fingerprint, entry)
        return entry
