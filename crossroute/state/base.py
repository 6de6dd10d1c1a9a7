"""The small state interface routing needs: session bindings, cooldowns and round-robin cursors.

Two implementations: ``MemoryState`` (default, one process) and ``RedisState`` (shared by several
gateway processes, with a local fallback when Redis is unreachable). Times are wall-clock seconds
(``time.time()``) so that processes sharing Redis agree on them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import NamedTuple


class Cooldown(NamedTuple):
    """A credential+model cooldown. ``until``: when it ends; ``level``: consecutive 429s so far.

    An entry outlives ``until`` (it is kept while its 429 level matters) so callers compare
    ``until`` with the current time to decide whether the credential is blocked.
    """

    until: float
    level: int


class State(ABC):
    """Async so that the Redis implementation fits; the memory one never suspends."""

    # ---- session bindings: key -> credential id, TTL refreshed on use
    @abstractmethod
    async def get_binding(self, key: str, ttl: float) -> str | None:
        """The bound credential id, refreshing the entry's TTL to ``ttl``; None when absent."""

    @abstractmethod
    async def set_binding(self, key: str, credential_id: str, ttl: float) -> None: ...

    @abstractmethod
    async def delete_binding_if(self, key: str, credential_id: str) -> bool:
        """Compare-and-delete: drop the binding only while it still points at ``credential_id``."""

    @abstractmethod
    async def delete_binding(self, key: str) -> bool:
        """Drop the binding ``key`` whatever it points at; whether there was one."""

    @abstractmethod
    async def delete_bindings_for(self, credential_id: str) -> int:
        """Drop every binding to ``credential_id``; returns how many were dropped."""

    # ---- cooldowns per credential and model
    @abstractmethod
    async def get_cooldowns(self, credential_ids: Sequence[str], model: str) -> dict[str, Cooldown]:
        """Entries present for ``model`` among ``credential_ids`` (possibly already ended)."""

    @abstractmethod
    async def set_cooldown(
        self, credential_id: str, model: str, until: float, level: int, keep_until: float
    ) -> None:
        """Store a cooldown; the entry itself is kept until ``keep_until`` (>= ``until``)."""

    @abstractmethod
    async def clear_cooldown(self, credential_id: str, model: str) -> None: ...

    @abstractmethod
    async def clear_cooldowns_for(self, credential_id: str | None) -> int:
        """Drop every cooldown (and 429 ladder) of ``credential_id``, every model; of every
        credential when None. Returns how many entries went."""

    # ---- quota readings shared between processes (``routing/quota_share.py``); optional
    @property
    def shares_quota(self) -> bool:
        """Whether ``put_quota`` reaches other processes (Redis, or the workers of one serve)."""
        return False

    async def put_quota(self, records: Mapping[str, tuple[str, float]]) -> None:
        """Publish the latest quota reading per credential id: (JSON text, expires_at)."""
        return None

    async def get_quota(self) -> dict[str, str] | None:
        """The readings published (by any process, this one too) and not expired, per credential
        id; None when nothing changed since the previous call of this process."""
        return None

    # ---- round-robin cursors
    @abstractmethod
    async def incr(self, key: str) -> int:
        """Increment and return the cursor ``key`` (first call returns 1)."""

    # ---- lifecycle of background work (cleanup, reconnects)
    async def start(self) -> None:  # noqa: B027 - optional hook
        pass

    async def stop(self) -> None:  # noqa: B027 - optional hook
        pass
