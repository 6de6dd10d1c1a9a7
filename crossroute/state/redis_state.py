"""Redis-backed state, shared by several gateway processes, that keeps serving when Redis is down.

Layout (every key starts with the prefix, ``crossroute:`` by default):

- ``b:<session>::<model>``: the bound credential id, expiring after the affinity TTL (``PX``),
  refreshed on every use with ``GETEX``;
- ``bc:<credential>``: a set of the binding keys made for a credential, for invalidation;
- ``cd:<credential>|<model>``: ``"<until> <level>"`` (cooldown end, 429 level), expiring when the
  entry stops mattering;
- ``cm:<credential>``: a set of the models with a cooldown entry of a credential, and ``cc``: a set
  of the credentials with one; written in the same script as the entry, each living as long as
  the longest entry it names, so that every cooldown of a credential (or of everyone) can be
  cleared without a ``SCAN`` whichever process set it (``clear_cooldowns_for``);
- ``rr:<providers>::<model>``: round-robin cursors (``INCR``);
- ``qh``: a hash of the latest quota reading per credential (``"<expires_at> <JSON>"``, written
  by ``routing/quota_share.py`` about once a second at most, expired fields dropped by readers,
  the hash itself expiring ``QUOTA_KEEP`` after its last write), and ``qv``: a counter bumped by
  every write, so a reader with nothing new pays one ``GET``.

Every write also goes to a local ``MemoryState`` mirror, and reads that hit Redis refresh it. When a
Redis call fails (short socket timeouts, no client-side retries), the state switches to the
mirror, logs one warning, and a background task pings Redis until it answers; then the writes made
during the outage are pushed back (without overwriting newer values) and Redis is used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from crossroute.background import Background
from crossroute.state.base import Cooldown, State
from crossroute.state.memory import MemoryState

__all__ = ["RedisState"]

log = logging.getLogger("crossroute.state")

_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
QUOTA_KEEP = 6 * 3600.0  # the quota hash goes this long after its last write

# compare-and-delete: drop KEYS[1] only while it still holds ARGV[1]
_CAD = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

# store a cooldown entry and name it in its credential's model set and in the credential set:
# KEYS: entry, model set, credential set; ARGV: value, px, model, credential, "1" for NX
_SET_CD = """
local px = tonumber(ARGV[2])
local ok
if ARGV[5] == '1' then
  ok = redis.call('set', KEYS[1], ARGV[1], 'PX', px, 'NX')
else
  ok = redis.call('set', KEYS[1], ARGV[1], 'PX', px)
end
if not ok then return 0 end
redis.call('sadd', KEYS[2], ARGV[3])
if redis.call('pttl', KEYS[2]) < px then redis.call('pexpire', KEYS[2], px) end
redis.call('sadd', KEYS[3], ARGV[4])
if redis.call('pttl', KEYS[3]) < px then redis.call('pexpire', KEYS[3], px) end
return 1
"""

# drop every cooldown entry of one credential (ARGV[2]), or of every credential ('') named in the
# credential set KEYS[1]; ARGV[1]: the key prefix. Returns how many entries went.
_CLEAR_CD = """
local function clear(cid)
  local set = ARGV[1] .. 'cm:' .. cid
  local n = 0
  for _, m in ipairs(redis.call('smembers', set)) do
    n = n + redis.call('del', ARGV[1] .. 'cd:' .. cid .. '|' .. m)
  end
  redis.call('del', set)
  redis.call('srem', KEYS[1], cid)
  return n
end
if ARGV[2] ~= '' then return clear(ARGV[2]) end
local n = 0
for _, cid in ipairs(redis.call('smembers', KEYS[1])) do n = n + clear(cid) end
redis.call('del', KEYS[1])
return n
"""


def display_url(url: str) -> str:
    """The URL for log lines, with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<redis url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisState(State):
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "crossroute:",
        socket_timeout: float = 0.25,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        mirror: MemoryState | None = None,
    ) -> None:
        self._url = display_url(url)  # only used in log lines
        self._prefix = prefix
        self._clock = clock
        self._retry_interval = retry_interval
        self.mirror = mirror if mirror is not None else MemoryState(clock=clock)
        self._redis = Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            decode_responses=True,
        )
        self._cad = self._redis.register_script(_CAD)
        self._set_cd = self._redis.register_script(_SET_CD)
        self._clear_cd = self._redis.register_script(_CLEAR_CD)
        self._up = True
        self._run_id: str | None = None  # the server's run_id: a change means it restarted empty
        self._reconnector = Background("crossroute-redis-reconnect")
        # keys written while Redis was unreachable, pushed back on reconnect
        self._dirty_bindings: set[str] = set()
        self._dirty_cooldowns: set[tuple[str, str]] = set()
        # credentials whose cooldowns were cleared while Redis was unreachable ("" = everyone's)
        self._pending_clears: set[str] = set()
        self._quota_version: str | None = None  # ``qv`` when get_quota last read the hash
        self._closed = False

    # ------------------------------------------------------------ health
    @property
    def available(self) -> bool:
        """True while Redis is in use, False while serving from the local mirror."""
        return self._up

    def _down(self, exc: BaseException) -> None:
        if self._up:
            self._up = False
            log.warning(
                "redis at %s unreachable (%s: %s); serving from local state and reconnecting",
                self._url, type(exc).__name__, exc,
            )
        if not self._closed:
            self._reconnector.start(self._reconnect_loop)

    async def _reconnect_loop(self) -> None:
        while not self._up and not self._closed:
            await asyncio.sleep(self._retry_interval)
            try:
                # drop connections broken by the outage before trying a fresh one
                await self._redis.connection_pool.disconnect()
                await self._redis.ping()
                run_id = await self._server_run_id()
                # a restarted server lost everything: give it all this process knows
                await self._resync(everything=run_id != self._run_id)
                self._run_id = run_id
            except _ERRORS:
                continue
            self._up = True
            log.warning("redis at %s reachable again; shared state restored", self._url)

    async def _server_run_id(self) -> str | None:
        info = await self._redis.info("server")
        rid = info.get("run_id")
        return str(rid) if rid is not None else None

    async def _resync(self, everything: bool) -> None:
        """Push the writes made during the outage (or, after a server restart, every live entry
        of the mirror), never overwriting newer values. Sent in chunks of pipelined commands."""
        m = self.mirror
        now = self._clock()
        if everything:
            bindings = [(k, cid, exp) for k, cid, exp in m.iter_bindings()]
            cooldowns = [(c, mo, cd, keep) for c, mo, cd, keep in m.iter_cooldowns()]
        else:
            bindings = []
            for key in self._dirty_bindings:
                e = m.peek_binding(key)
                if e is not None:
                    bindings.append((key, e[0], e[1]))
            cooldowns = []
            for cid, model in self._dirty_cooldowns:
                got = m.get_cooldowns_now((cid,), model).get(cid)
                if got is not None:
                    cooldowns.append((cid, model, got, max(got.until, now + 1.0)))
        if self._pending_clears:
            clears = [""] if "" in self._pending_clears else sorted(self._pending_clears)
            for cid in clears:
                await self._clear_cd(keys=[self._cc()], args=[self._prefix, cid])
            self._pending_clears.clear()
        pipe = self._redis.pipeline(transaction=False)
        n = 0
        for key, cid, expires in bindings:
            pipe.set(self._bk(key), cid, px=_ms(expires - now), nx=True)
            pipe.sadd(self._ck(cid), key)
            pipe.pexpire(self._ck(cid), _ms(expires - now))  # ascending expiry: the last one wins
            n += 1
            if n % 1000 == 0:
                await pipe.execute()
        for cid, model, cd, keep in cooldowns:
            await self._set_cd(keys=self._cd_keys(cid, model),
                               args=[f"{cd.until!r} {cd.level}", _ms(keep - now), model, cid, "1"], client=pipe)
        await pipe.execute()
        self._dirty_bindings.clear()
        self._dirty_cooldowns.clear()

    # ------------------------------------------------------------ keys
    def _bk(self, key: str) -> str:
        return self._prefix + "b:" + key

    def _ck(self, credential_id: str) -> str:
        return self._prefix + "bc:" + credential_id

    def _dk(self, credential_id: str, model: str) -> str:
        return f"{self._prefix}cd:{credential_id}|{model}"

    def _cc(self) -> str:
        return self._prefix + "cc"

    def _cd_keys(self, credential_id: str, model: str) -> list[str]:
        """The keys ``_SET_CD`` writes: the entry, its credential's model set, the credential set."""
        return [self._dk(credential_id, model), f"{self._prefix}cm:{credential_id}", self._cc()]

    # ------------------------------------------------------------ bindings
    async def get_binding(self, key: str, ttl: float) -> str | None:
        m = self.mirror
        if self._up:
            try:
                v = await self._redis.getex(self._bk(key), px=_ms(ttl))
            except _ERRORS as e:
                self._down(e)
            else:
                if v is not None:
                    m.set_binding_now(key, v, ttl)
                return v
        return m.get_binding_now(key, ttl)

    async def _write_binding(self, key: str, credential_id: str, ttl: float, nx: bool = False) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(self._bk(key), credential_id, px=_ms(ttl), nx=nx)
            ck = self._ck(credential_id)
            pipe.sadd(ck, key)
            pipe.pexpire(ck, _ms(ttl))
            await pipe.execute()
        except _ERRORS as e:
            self._dirty_bindings.add(key)
            self._down(e)

    async def set_binding(self, key: str, credential_id: str, ttl: float) -> None:
        self.mirror.set_binding_now(key, credential_id, ttl)
        if self._up:
            await self._write_binding(key, credential_id, ttl)
        else:
            self._dirty_bindings.add(key)

    async def delete_binding_if(self, key: str, credential_id: str) -> bool:
        done = self.mirror.delete_binding_if_now(key, credential_id)
        self._dirty_bindings.discard(key)
        if self._up:
            try:
                return bool(await self._cad(keys=[self._bk(key)], args=[credential_id])) or done
            except _ERRORS as e:
                self._down(e)
        return done

    async def delete_binding(self, key: str) -> bool:
        # the credential's key set may keep the name: delete_bindings_for compares before deleting
        done = self.mirror.delete_binding_now(key)
        self._dirty_bindings.discard(key)
        if self._up:
            try:
                return bool(await self._redis.delete(self._bk(key))) or done
            except _ERRORS as e:
                self._down(e)
        return done

    async def delete_bindings_for(self, credential_id: str) -> int:
        n = self.mirror.delete_bindings_for_now(credential_id)
        if self._up:
            try:
                ck = self._ck(credential_id)
                keys = await self._redis.smembers(ck)
                removed = 0
                if keys:
                    pipe = self._redis.pipeline(transaction=False)
                    for k in keys:
                        await self._cad(keys=[self._bk(k)], args=[credential_id], client=pipe)
                    removed = sum(int(x) for x in await pipe.execute())
                await self._redis.delete(ck)
                return max(n, removed)
            except _ERRORS as e:
                self._down(e)
        return n

    # ------------------------------------------------------------ cooldowns
    async def get_cooldowns(self, credential_ids: Sequence[str], model: str) -> dict[str, Cooldown]:
        m = self.mirror
        if not credential_ids:
            return {}
        if self._up:
            try:
                values = await self._redis.mget([self._dk(c, model) for c in credential_ids])
            except _ERRORS as e:
                self._down(e)
            else:
                out: dict[str, Cooldown] = {}
                now = self._clock()
                for cid, raw in zip(credential_ids, values, strict=True):
                    if raw is None:
                        if m.has_cooldown(cid, model):
                            m.clear_cooldown_now(cid, model)
                        continue
                    until_s, _, level_s = raw.partition(" ")
                    try:
                        cd = Cooldown(float(until_s), int(level_s or 0))
                    except ValueError:
                        continue  # not ours; ignore rather than fail the request
                    out[cid] = cd
                    # mirror it so the 429 ladder and the fallback know about it
                    m.set_cooldown_now(cid, model, cd.until, cd.level, max(cd.until, now + 1.0))
                return out
        return m.get_cooldowns_now(credential_ids, model)

    async def set_cooldown(
        self, credential_id: str, model: str, until: float, level: int, keep_until: float
    ) -> None:
        self.mirror.set_cooldown_now(credential_id, model, until, level, keep_until)
        if self._up:
            keep = max(until, keep_until) - self._clock()
            if keep <= 0:
                return
            try:
                await self._set_cd(keys=self._cd_keys(credential_id, model),
                                   args=[f"{until!r} {level}", _ms(keep), model, credential_id, "0"])
                return
            except _ERRORS as e:
                self._down(e)
        self._dirty_cooldowns.add((credential_id, model))

    async def clear_cooldown(self, credential_id: str, model: str) -> None:
        # the mirror sees every entry this process read or wrote; nothing there, nothing to clear
        if not self.mirror.clear_cooldown_now(credential_id, model):
            return
        self._dirty_cooldowns.discard((credential_id, model))
        if self._up:
            try:
                await self._redis.delete(self._dk(credential_id, model))
            except _ERRORS as e:
                self._down(e)

    async def clear_cooldowns_for(self, credential_id: str | None) -> int:
        """Every cooldown of ``credential_id`` (everyone's when None), whichever process set it:
        the entries named in its model set go in one script. While Redis is unreachable the
        mirror is cleared and the clearing is done on reconnect."""
        n = self.mirror.clear_cooldowns_for_now(credential_id)
        cid = credential_id or ""
        self._dirty_cooldowns = {k for k in self._dirty_cooldowns if cid and k[0] != cid}
        if self._up:
            try:
                return max(n, int(await self._clear_cd(keys=[self._cc()], args=[self._prefix, cid])))
            except _ERRORS as e:
                self._down(e)
        self._pending_clears.add(cid)
        return n

    # ------------------------------------------------------------ quota readings
    @property
    def shares_quota(self) -> bool:
        return True

    async def put_quota(self, records: Mapping[str, tuple[str, float]]) -> None:
        if not records or not self._up:
            return
        qh = self._prefix + "qh"
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(qh, mapping={cid: f"{expires!r} {text}" for cid, (text, expires) in records.items()})
            pipe.pexpire(qh, _ms(QUOTA_KEEP))
            pipe.incr(self._prefix + "qv")
            await pipe.execute()
        except _ERRORS as e:
            self._down(e)

    async def get_quota(self) -> dict[str, str] | None:
        if not self._up:
            return None
        qh = self._prefix + "qh"
        try:
            version = await self._redis.get(self._prefix + "qv")
            if version is None or version == self._quota_version:
                return None
            raw = await self._redis.hgetall(qh)
            now = self._clock()
            out: dict[str, str] = {}
            dead: list[str] = []
            for cid, value in raw.items():
                exp_s, _, text = value.partition(" ")
                try:
                    expires = float(exp_s)
                except ValueError:
                    expires = 0.0
                if expires <= now:
                    dead.append(cid)
                else:
                    out[cid] = text
            if dead:
                await self._redis.hdel(qh, *dead)
            self._quota_version = version
            return out
        except _ERRORS as e:
            self._down(e)
            return None

    # ------------------------------------------------------------ cursors
    async def incr(self, key: str) -> int:
        if self._up:
            try:
                return int(await self._redis.incr(self._prefix + key))
            except _ERRORS as e:
                self._down(e)
        return self.mirror.incr_now(key)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._closed = False
        await self.mirror.start()
        try:
            self._run_id = await self._server_run_id()
        except _ERRORS as e:
            self._down(e)

    async def stop(self) -> None:
        self._closed = True
        await self._reconnector.stop()
        await self.mirror.stop()
        with contextlib.suppress(*_ERRORS):
            await self._redis.aclose()
