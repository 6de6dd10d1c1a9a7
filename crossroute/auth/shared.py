"""One refresh per account across replicas that share Redis.

Replicas may or may not share the auth directory, and providers rotate refresh tokens (a second
refresh with the old token fails with ``invalid_grant``), so refreshing "once each" is not just
waste: it logs accounts out. The protocol, per account file name:

- ``<prefix>auth:lock:<name>``: ``SET NX PX`` lock held by the replica refreshing (released with a
  compare-and-delete so a slow replica never deletes a newer holder's lock);
- ``<prefix>auth:tokens:<name>``: the newest tokens minted by any replica, with when.

A replica that is due first adopts newer shared tokens if there are any; otherwise it takes the
lock, checks again, refreshes, writes its file, publishes the tokens and releases the lock. One
that cannot take the lock waits (bounded) for the holder to publish, then adopts. When Redis is
unreachable the replica refreshes alone (one warning), as a single instance would.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .accounts import Account
from .grants import Grant

if TYPE_CHECKING:
    from .refresh import Refresher

__all__ = ["SharedRefresh"]

log = logging.getLogger("crossroute.auth")

LOCK_MS = 30_000
WAIT_S = 35.0
_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class SharedRefresh:
    def __init__(self, url: str, *, prefix: str = "crossroute:") -> None:
        self._redis = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._prefix = prefix
        self._warned = False

    def _keys(self, name: str) -> tuple[str, str]:
        return f"{self._prefix}auth:lock:{name}", f"{self._prefix}auth:tokens:{name}"

    async def close(self) -> None:
        await self._redis.aclose()

    async def _shared(self, name: str) -> dict[str, Any] | None:
        raw = await self._redis.get(self._keys(name)[1])
        if not raw:
            return None
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return obj if isinstance(obj, dict) and isinstance(obj.get("access_token"), str) else None

    def _adopt(self, refresher: Refresher, acct: Account, shared: dict[str, Any] | None) -> bool:
        """Take the shared tokens when they are newer than the account's."""
        if shared is None or shared.get("access_token") == acct.access_token:
            return False
        if float(shared.get("minted_at") or 0) <= (acct.last_refresh or 0) - 1:
            return False
        grant = Grant(shared["access_token"], shared.get("refresh_token"), shared.get("id_token"),
                      shared.get("expires_at"), shared.get("body") or {})
        from .. import redaction

        redaction.add_secrets([grant.access_token, grant.refresh_token, grant.id_token])
        refresher.apply(acct, grant)
        log.info("account %s: took the tokens another replica refreshed", acct.name)
        return True

    async def refresh(self, refresher: Refresher, acct: Account) -> bool:
        try:
            return await self._refresh(refresher, acct)
        except _ERRORS as exc:
            if not self._warned:
                self._warned = True
                log.warning("redis unreachable for the shared token refresh (%s); refreshing %s here alone",
                            type(exc).__name__, acct.name)
            current = refresher.store.get(acct.name) or acct
            return await refresher.refresh_now(current)

    async def _refresh(self, refresher: Refresher, acct: Account) -> bool:
        lock_key, tokens_key = self._keys(acct.name)
        if self._adopt(refresher, acct, await self._shared(acct.name)):
            return True
        me = secrets.token_hex(16)
        deadline = time.monotonic() + WAIT_S
        while True:
            if await self._redis.set(lock_key, me, nx=True, px=LOCK_MS):
                try:
                    current = refresher.store.get(acct.name) or acct
                    if self._adopt(refresher, current, await self._shared(acct.name)):
                        return True
                    await refresher.refresh_now(current)
                    fresh = refresher.store.get(acct.name)
                    if fresh is not None:
                        await self._publish(tokens_key, fresh)
                    return True
                finally:
                    await self._redis.eval(_RELEASE, 1, lock_key, me)
            # another replica holds the lock: wait for it to publish
            while await self._redis.exists(lock_key):
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.1)
            current = refresher.store.get(acct.name) or acct
            if self._adopt(refresher, current, await self._shared(acct.name)):
                return True
            if time.monotonic() > deadline:
                return False

    async def _publish(self, key: str, acct: Account) -> None:
        now = time.time()
        ttl_ms = int(max(60.0, ((acct.expires_at or now + 86400) - now) + 3600) * 1000)
        value = orjson.dumps({"access_token": acct.access_token, "refresh_token": acct.refresh_token,
                              "id_token": acct.id_token, "expires_at": acct.expires_at,
                              "minted_at": acct.last_refresh or now})
        await self._redis.set(key, value, px=ttl_ms)
