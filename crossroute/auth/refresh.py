"""Refreshing OAuth tokens: on demand (401), ahead of expiry in the background, once at a time.

``Refresher(store)`` owns one ``AccountToken`` per account and:

- ``refresh(name)``: one refresh per account at a time; concurrent callers await the same one
  (shielded, so a cancelled request does not cancel it). The new tokens are written to the
  account's file before anyone is told to use them. ``invalid_grant`` marks the account "needs
  login" in the store (one log line, out of rotation, file kept). Other failures back off 5 min
  before the background loop tries again (a 401 still may); a 429 from the token endpoint blocks
  every refresh of that account until its ``Retry-After`` (clamped to 5 s - 5 min).
- ``run()``: every ``check_every`` seconds, refreshes the accounts whose expiry is within
  their provider's lead (Claude 4 h, Codex 5 days, others 5 min), or, with no known expiry, whose
  last refresh is older than the lead. A token whose whole life is shorter than the lead is refreshed
  at half its life (else a 1 h token with a 4 h lead would be refreshed on every check).
- processes on one host sharing the auth dir (``serve --workers N``) take a ``flock`` per account
  and re-read the file first: a worker that finds new tokens on disk uses them, it does not refresh
  again (which, with rotating refresh tokens, would log the account out);
- with ``redis_url``: replicas refresh an account once, not once each (``shared.SharedRefresh``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import aiohttp

from .. import redaction
from ..background import cancel_and_wait
from .accounts import Account
from .files import ensure_private_dir
from .flows.service_account import ServiceAccountToken
from .grants import Grant, GrantError, InvalidGrant, jwt_claims, refresh_grant
from .oauth_params import OAuthParams, params_for, trusted_xai_endpoint
from .store import AuthStore
from .tokens import AccountToken

__all__ = ["FAILURE_BACKOFF", "Refresher"]

log = logging.getLogger("crossroute.auth")

FAILURE_BACKOFF = 300.0
RECENT = 2.0
MIN_LEAD = 60.0
HOST_LOCK_WAIT = 40.0  # a 401 this soon after a refresh is answered with the token just minted


class Refresher:
    def __init__(self, store: AuthStore, *, redis_url: str | None = None, env: dict[str, str] | None = None,
                 check_every: float = 5.0, clock: Callable[[], float] = time.time, workers: int = 4,
                 redis_prefix: str = "crossroute:") -> None:
        self.store = store
        self._env = env
        self.check_every = check_every
        self._clock = clock
        self._sources: dict[str, AccountToken] = {}
        self._inflight: dict[str, asyncio.Future[bool]] = {}
        self._not_before: dict[str, float] = {}
        self._refreshed_at: dict[str, float] = {}
        self._blocked: dict[str, float] = {}  # name -> no refresh at all before (a 429 from the endpoint)
        self._session: aiohttp.ClientSession | None = None
        self._sem = asyncio.Semaphore(workers)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._shared: Any = None
        if redis_url:
            from .shared import SharedRefresh

            self._shared = SharedRefresh(redis_url, prefix=redis_prefix)

    # ------------------------------------------------------------------ sources
    def source(self, name: str) -> AccountToken | ServiceAccountToken:
        """The token source of one account (the same object for the account's whole life)."""
        src = self._sources.get(name)
        if src is None:
            acct = self.store.get(name)
            if acct is not None and acct.provider == "vertex" and not acct.api_key:
                env = os.environ if self._env is None else self._env
                src = ServiceAccountToken(name, self.store, self._http, env.get("CROSSROUTE_VERTEX_TOKEN_URL"))
            else:
                src = AccountToken(name, self)
            self._sources[name] = src
        return src

    def sources(self) -> list[AccountToken | ServiceAccountToken]:
        return list(self._sources.values())

    def forget(self, name: str) -> None:
        """Drop a removed account's source (call from the store's ``on_change``)."""
        self._sources.pop(name, None)
        self._not_before.pop(name, None)
        self._refreshed_at.pop(name, None)
        self._blocked.pop(name, None)

    def params(self, acct: Account) -> OAuthParams:
        params = params_for(acct.provider, self._env)
        if acct.provider == "xai" and not params.token_url:
            # xAI's token endpoint comes from its discovery document; the login keeps it in the file
            endpoint = acct.raw.get("token_endpoint")
            if isinstance(endpoint, str) and trusted_xai_endpoint(endpoint, params.discovery_url):
                params = replace(params, token_url=endpoint)
        return params

    def due(self, acct: Account, now: float | None = None) -> bool:
        if not acct.usable or not acct.refresh_token:
            return False
        params = self.params(acct)
        if not params.token_url:
            return False
        now = self._clock() if now is None else now
        if acct.expires_at is not None:
            lead = params.refresh_lead
            life = acct.expires_at - acct.last_refresh if acct.last_refresh is not None else None
            if life is not None and 0 < life <= lead:
                # a token that lives shorter than the lead is refreshed at half its life, not on every check
                lead = max(MIN_LEAD, life / 2)
            return acct.expires_at - lead <= now
        return acct.last_refresh is None or now - acct.last_refresh >= params.refresh_lead

    # ------------------------------------------------------------------ one refresh
    async def refresh(self, name: str, *, stale: str | None = None, reason: str = "requested") -> bool:
        """A new token for ``name``; True when the caller may retry with ``token()``."""
        acct = self.store.get(name)
        if acct is None or not acct.usable or not acct.refresh_token or not self.params(acct).token_url:
            return False  # nothing to refresh with: the caller's failure stands
        if self._clock() < self._blocked.get(name, 0.0):
            return False  # the token endpoint asked us to wait (429 Retry-After)
        current = acct.access_token or acct.api_key
        if stale is not None and current and current != stale:
            return True  # already replaced since the caller read it
        fut = self._inflight.get(name)
        if fut is None:
            if stale is None and self._clock() - self._refreshed_at.get(name, -1e18) < RECENT:
                return True
            fut = asyncio.ensure_future(self._run_one(name, reason))
            self._inflight[name] = fut
            fut.add_done_callback(lambda _f: self._inflight.pop(name, None))
        return await asyncio.shield(fut)

    async def _run_one(self, name: str, reason: str) -> bool:
        async with self._sem:
            acct = self.store.get(name)
            if acct is None or not acct.usable:
                return False
            try:
                async with self._host_lock(name):
                    disk = self.store.reread(name)
                    if disk is not None and disk.access_token and disk.access_token != acct.access_token:
                        ok = True  # another process on this host (a worker, a new login) already did it
                    elif self._shared is not None:
                        ok = await self._shared.refresh(self, disk or acct)
                    else:
                        ok = await self.refresh_now(disk or acct)
            except InvalidGrant as exc:
                self.store.mark_needs_login(name, str(exc))
                return False
            except GrantError as exc:
                wait = exc.retry_after or FAILURE_BACKOFF
                self._not_before[name] = self._clock() + wait
                if exc.status == 429:
                    self._blocked[name] = self._clock() + (exc.retry_after or 60.0)
                log.warning("refresh of %s failed (%s); next background try in %.0f s", name,
                            redaction.scrub(str(exc)), wait)
                return False
            except Exception:
                self._not_before[name] = self._clock() + FAILURE_BACKOFF
                log.exception("refresh of %s failed", name)
                return False
            if ok:
                self._refreshed_at[name] = self._clock()
                self._not_before.pop(name, None)
                log.info("account %s: token refreshed (%s)", name, reason)
            return ok

    @contextlib.asynccontextmanager
    async def _host_lock(self, name: str) -> AsyncIterator[None]:
        """An exclusive ``flock`` on ``.<name>.lock`` in the auth dir: processes on this host
        (``serve --workers N``, a CLI) sharing the directory refresh an account one at a time."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no host-wide lock
            yield
            return
        ensure_private_dir(self.store.dir)
        fd = os.open(self.store.dir / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + HOST_LOCK_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        msg = f"another process has been refreshing {name} for {HOST_LOCK_WAIT:.0f} s"
                        raise GrantError(msg) from None
                    await asyncio.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock

    async def refresh_now(self, acct: Account) -> bool:
        """Ask the provider for new tokens and write them to the file (raises ``GrantError``)."""
        grant = await refresh_grant(self._http(), self.params(acct), acct, now=self._clock())
        self.apply(acct, grant)
        return True

    def apply(self, acct: Account, grant: Grant) -> Account:
        """Write a grant to the account's file (atomically, before any use of it)."""
        extra: dict[str, Any] = {}
        if acct.provider == "codex" and grant.id_token:
            auth = jwt_claims(grant.id_token).get("https://api.openai.com/auth")
            if isinstance(auth, dict) and isinstance(auth.get("chatgpt_account_id"), str):
                extra["account_id"] = auth["chatgpt_account_id"]
        if acct.provider in ("kimi", "antigravity"):
            for key in ("token_type", "scope"):
                if isinstance(grant.body.get(key), str):
                    extra[key] = grant.body[key]
        obj = acct.with_tokens(access_token=grant.access_token, refresh_token=grant.refresh_token,
                               expires_at=grant.expires_at, id_token=grant.id_token, now=self._clock(), extra=extra)
        return self.store.write(acct.name, obj)

    async def remember(self, name: str, **fields: Any) -> bool:
        """Write ``fields`` into account ``name``'s file (what an executor learnt about the account,
        e.g. Antigravity's project), under the account's host lock and read again first, so tokens
        another process just wrote are kept. The file is read and written in a thread. False when
        the account (or its file) is gone."""
        async with self._host_lock(name):
            acct = await asyncio.to_thread(self._reread_existing, name)
            if acct is None:
                return False
            if all(acct.raw.get(k) == v for k, v in fields.items()):
                return True
            await asyncio.to_thread(self.store.write, name, acct.with_fields(**fields))
            return True

    def _reread_existing(self, name: str) -> Account | None:
        acct = self.store.reread(name)
        return acct if acct is not None and acct.path.is_file() else None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # no cookie jar: a token endpoint's cookies must not travel with the next account's refresh
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    # ------------------------------------------------------------------ background
    async def check_once(self) -> list[str]:
        """Start a refresh of every due account; the names started (awaited before returning)."""
        now = self._clock()
        names = [a.name for a in self.store.accounts()
                 if self.due(a, now) and self._not_before.get(a.name, 0.0) <= now and a.name not in self._inflight]
        minting = [src for src in self._sources.values() if isinstance(src, ServiceAccountToken) and src.due(now)]
        if names or minting:
            await asyncio.gather(*(self.refresh(n, reason="ahead of expiry") for n in names),
                                 *(src.refresh() for src in minting))
        return names + [src.name for src in minting]

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.check_once()
            except Exception:
                log.exception("background token refresh failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.check_every)

    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for fut in list(self._inflight.values()):
            fut.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._shared is not None:
            await self._shared.close()
