"""In-process state: O(1) per operation, expired entries swept by a periodic task, session
bindings capped (least recently used first out)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crossroute.background import Background
from crossroute.state.base import Cooldown, State

if TYPE_CHECKING:
    from crossroute.state.peers import Peers

__all__ = ["MemoryState"]

_CURSOR_CAP = 4096
_QUOTA_CAP = 4096  # quota readings kept from the other workers (one per credential)
DEFAULT_MAX_BINDINGS = 100_000


class MemoryState(State):
    """Bindings live in an OrderedDict ordered by last use (a read refreshes too), so the sweep
    only pops the front, and past ``max_bindings`` a new binding pushes out the front one: the
    least recently used. Memory stays bounded however many conversations arrive within a TTL.

    All methods are synchronous inside (never suspend), so each is atomic under asyncio. The
    ``*_now`` methods are the same operations for callers that are not coroutines (RedisState's
    mirror, tests).

    ``peers`` (set by the workers of ``--workers N``, see ``peers.py``): every change is also
    sent to the other workers, and theirs are applied here by ``apply_peer``; so are the quota
    readings of ``routing/quota_share.py`` (kept here, one per credential, for ``get_quota``).
    """

    def __init__(
        self, clock: Callable[[], float] = time.time, sweep_interval: float = 30.0,
        max_bindings: int = DEFAULT_MAX_BINDINGS,
    ) -> None:
        if max_bindings < 1:
            raise ValueError("max_bindings must be at least 1")
        self._clock = clock
        self._sweep_interval = sweep_interval
        self.max_bindings = max_bindings
        self.evicted = 0  # bindings pushed out by the cap (not by their TTL)
        # key -> [credential_id, expires_at, expires_at last told to the peers]
        self._bindings: OrderedDict[str, list] = OrderedDict()
        self._by_credential: dict[str, set[str]] = {}
        # (credential_id, model) -> (Cooldown, keep_until); read-only outside this class (its
        # truthiness is the hot path's "any cooldown at all?")
        self.cooldowns: dict[tuple[str, str], tuple[Cooldown, float]] = {}
        self._cursors: dict[str, int] = {}
        self._sweeper = Background("crossroute-state-sweep")
        self.peers: Peers | None = None
        # quota readings from the other workers: credential id -> (JSON text, expires_at)
        self._quota: dict[str, tuple[str, float]] = {}
        self._quota_seen = True  # whether get_quota already returned every reading held

    # ------------------------------------------------------------ bindings
    def get_binding_now(self, key: str, ttl: float) -> str | None:
        e = self._bindings.get(key)
        if e is None:
            return None
        now = self._clock()
        if e[1] <= now:
            self._drop(key, e[0])
            return None
        e[1] = expires = now + ttl
        self._bindings.move_to_end(key)
        if self.peers is not None and expires - e[2] > ttl * 0.1:  # refreshes told now and then
            e[2] = expires
            self.peers.send(["b", key, e[0], expires])
        return e[0]

    def peek_binding(self, key: str) -> tuple[str, float] | None:
        """(credential id, expires_at) without refreshing, or None."""
        e = self._bindings.get(key)
        if e is None or e[1] <= self._clock():
            return None
        return e[0], e[1]

    def set_binding_now(self, key: str, credential_id: str, ttl: float) -> None:
        expires = self._clock() + ttl
        e = self._bindings.get(key)
        if e is not None:
            if e[0] != credential_id:
                self._unindex(key, e[0])
                e[0] = credential_id
                self._index(key, credential_id)
            e[1] = e[2] = expires
            self._bindings.move_to_end(key)
        else:
            self._insert(key, credential_id, expires)
        if self.peers is not None:
            self.peers.send(["b", key, credential_id, expires])

    def _insert(self, key: str, credential_id: str, expires: float) -> None:
        b = self._bindings
        if len(b) >= self.max_bindings:
            old_key, old = b.popitem(last=False)  # the least recently used
            self._unindex(old_key, old[0])
            self.evicted += 1
        b[key] = [credential_id, expires, expires]
        self._index(key, credential_id)

    def delete_binding_if_now(self, key: str, credential_id: str) -> bool:
        e = self._bindings.get(key)
        if e is None or e[0] != credential_id:
            return False
        self._drop(key, credential_id)
        if self.peers is not None:
            self.peers.send(["d", key, credential_id])
        return True

    def delete_binding_now(self, key: str) -> bool:
        e = self._bindings.get(key)
        if e is None:
            return False
        self._drop(key, e[0])
        if self.peers is not None:
            self.peers.send(["d", key, None])
        return True

    def delete_bindings_for_now(self, credential_id: str) -> int:
        keys = self._by_credential.pop(credential_id, None)
        if not keys:
            return 0
        for k in keys:
            self._bindings.pop(k, None)
        return len(keys)

    def binding_count(self) -> int:
        return len(self._bindings)

    def iter_bindings(self) -> list[tuple[str, str, float]]:
        """Live bindings as (key, credential id, expires_at)."""
        now = self._clock()
        return [(k, e[0], e[1]) for k, e in self._bindings.items() if e[1] > now]

    def _index(self, key: str, credential_id: str) -> None:
        s = self._by_credential.get(credential_id)
        if s is None:
            self._by_credential[credential_id] = {key}
        else:
            s.add(key)

    def _unindex(self, key: str, credential_id: str) -> None:
        s = self._by_credential.get(credential_id)
        if s is not None:
            s.discard(key)
            if not s:
                del self._by_credential[credential_id]

    def _drop(self, key: str, credential_id: str) -> None:
        del self._bindings[key]
        self._unindex(key, credential_id)

    # ------------------------------------------------------------ cooldowns
    def get_cooldowns_now(self, credential_ids: Sequence[str], model: str) -> dict[str, Cooldown]:
        if not self.cooldowns:
            return {}
        out: dict[str, Cooldown] = {}
        now = self._clock()
        for cid in credential_ids:
            e = self.cooldowns.get((cid, model))
            if e is not None:
                if e[1] <= now:
                    del self.cooldowns[(cid, model)]
                else:
                    out[cid] = e[0]
        return out

    def set_cooldown_now(
        self, credential_id: str, model: str, until: float, level: int, keep_until: float
    ) -> None:
        self.cooldowns[(credential_id, model)] = (Cooldown(until, level), max(until, keep_until))
        if self.peers is not None:
            self.peers.send(["c", credential_id, model, until, level, keep_until])

    def clear_cooldown_now(self, credential_id: str, model: str) -> bool:
        if self.cooldowns.pop((credential_id, model), None) is None:
            return False
        if self.peers is not None:
            self.peers.send(["x", credential_id, model])
        return True

    def clear_cooldowns_for_now(self, credential_id: str | None, tell: bool = True) -> int:
        """Every cooldown of ``credential_id`` (of everyone when None) goes; the peers are told
        unless ``tell`` is False."""
        table = self.cooldowns
        if credential_id is None:
            n = len(table)
            table.clear()
        else:
            dead = [k for k in table if k[0] == credential_id]
            for k in dead:
                del table[k]
            n = len(dead)
        if tell and self.peers is not None:
            self.peers.send(["X", credential_id])
        return n

    def has_cooldown(self, credential_id: str, model: str) -> bool:
        return (credential_id, model) in self.cooldowns

    def iter_cooldowns(self) -> list[tuple[str, str, Cooldown, float]]:
        now = self._clock()
        return [(c, m, cd, keep) for (c, m), (cd, keep) in self.cooldowns.items() if keep > now]

    # ------------------------------------------------------------ changes from peer workers
    def apply_peer(self, op: list[Any]) -> None:
        """One change sent by another worker; applied without telling anyone. Two bindings of
        one key resolve alike in every worker: the one that expires later wins."""
        kind = op[0]
        if kind == "b":
            _, key, cid, expires = op
            e = self._bindings.get(key)
            if e is None:
                if expires > self._clock():
                    self._insert(key, cid, expires)
            elif expires > e[1]:
                if e[0] != cid:
                    self._unindex(key, e[0])
                    e[0] = cid
                    self._index(key, cid)
                e[1] = e[2] = expires
                self._bindings.move_to_end(key)
        elif kind == "d":
            _, key, cid = op
            e = self._bindings.get(key)
            if e is not None and (cid is None or e[0] == cid):
                self._drop(key, e[0])
        elif kind == "c":
            _, cid, model, until, level, keep = op
            prev = self.cooldowns.get((cid, model))
            if prev is None or until >= prev[0].until:
                self.cooldowns[(cid, model)] = (Cooldown(until, level), max(until, keep))
        elif kind == "x":
            self.cooldowns.pop((op[1], op[2]), None)
        elif kind == "X":
            self.clear_cooldowns_for_now(op[1], tell=False)
        elif kind == "q":
            _, cid, text, expires = op
            if isinstance(cid, str) and isinstance(text, str) and expires > self._clock():
                self._keep_quota(cid, text, float(expires))

    # ------------------------------------------------------------ quota readings
    @property
    def shares_quota(self) -> bool:
        return self.peers is not None

    def _keep_quota(self, cid: str, text: str, expires: float) -> None:
        q = self._quota
        if cid not in q and len(q) >= _QUOTA_CAP:
            now = self._clock()
            for k in [k for k, (_, exp) in q.items() if exp <= now] or [next(iter(q))]:
                del q[k]
        q[cid] = (text, expires)
        self._quota_seen = False

    async def put_quota(self, records: Mapping[str, tuple[str, float]]) -> None:
        """Sent to the other workers (this worker's own readings are its book's already)."""
        if self.peers is None:
            return
        for cid, (text, expires) in records.items():
            self.peers.send(["q", cid, text, expires])

    async def get_quota(self) -> dict[str, str] | None:
        if self._quota_seen:
            return None
        self._quota_seen = True
        now = self._clock()
        q = self._quota
        for k in [k for k, (_, exp) in q.items() if exp <= now]:
            del q[k]
        return {k: text for k, (text, _) in q.items()}

    # ------------------------------------------------------------ cursors
    def incr_now(self, key: str) -> int:
        v = self._cursors.get(key, 0) + 1
        if v == 1 and len(self._cursors) >= _CURSOR_CAP:
            self._cursors.clear()
        self._cursors[key] = v
        return v

    # ------------------------------------------------------------ State interface
    async def get_binding(self, key: str, ttl: float) -> str | None:
        return self.get_binding_now(key, ttl)

    async def set_binding(self, key: str, credential_id: str, ttl: float) -> None:
        self.set_binding_now(key, credential_id, ttl)

    async def delete_binding_if(self, key: str, credential_id: str) -> bool:
        return self.delete_binding_if_now(key, credential_id)

    async def delete_binding(self, key: str) -> bool:
        return self.delete_binding_now(key)

    async def delete_bindings_for(self, credential_id: str) -> int:
        return self.delete_bindings_for_now(credential_id)

    async def get_cooldowns(self, credential_ids: Sequence[str], model: str) -> dict[str, Cooldown]:
        return self.get_cooldowns_now(credential_ids, model)

    async def set_cooldown(
        self, credential_id: str, model: str, until: float, level: int, keep_until: float
    ) -> None:
        self.set_cooldown_now(credential_id, model, until, level, keep_until)

    async def clear_cooldown(self, credential_id: str, model: str) -> None:
        self.clear_cooldown_now(credential_id, model)

    async def clear_cooldowns_for(self, credential_id: str | None) -> int:
        return self.clear_cooldowns_for_now(credential_id)

    async def incr(self, key: str) -> int:
        return self.incr_now(key)

    # ------------------------------------------------------------ cleanup
    def sweep(self) -> int:
        """Remove expired bindings and cooldown entries; returns how many were removed."""
        now = self._clock()
        removed = 0
        b = self._bindings
        # ordered by last refresh: with one TTL the expired ones are all at the front
        while b:
            key, e = next(iter(b.items()))
            if e[1] > now:
                break
            self._drop(key, e[0])
            removed += 1
        if self.cooldowns:
            dead = [k for k, (_, keep) in self.cooldowns.items() if keep <= now]
            for k in dead:
                del self.cooldowns[k]
            removed += len(dead)
        return removed

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep()

    @property
    def running(self) -> bool:
        return self._sweeper.running

    async def start(self) -> None:
        self._sweeper.start(self._sweep_loop)

    async def stop(self) -> None:
        await self._sweeper.stop()
