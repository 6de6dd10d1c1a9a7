"""Session affinity: keep a conversation on one credential so the upstream prompt cache hits.

``SessionAffinitySelector`` wraps the configured selector. The first request of a session is placed
by the wrapped selector (so new sessions spread like any other request) and the choice is bound to
the session. Later requests reuse the bound credential while it is available, even when it sits
below the best priority tier. When it is not (cooling down, disabled, removed, already tried),
the wrapped selector picks again and the session is rebound.

Bindings are keyed ``<provider>::<session id>::<model>`` and stored in the State with a TTL that
each use refreshes. ``<provider>`` is the provider of the request's candidates (their sorted,
comma-joined set when several providers serve the model), the same scope as the round-robin cursor.
A fallback id (the first-turn hash, or ``conv:`` beside ``pck:``) is looked up when the primary
misses, and a hit binds the primary too, so the first turn's credential is inherited by the rest of
the conversation. A binding is honoured only while its credential is among the request's candidates.

With the in-process state every step is synchronous (``select_now``): no coroutine per request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from crossroute.routing.selectors import CandidateLike, Selector, cursor_key
from crossroute.routing.session_ids import SessionIds
from crossroute.state.base import State
from crossroute.state.memory import MemoryState

__all__ = ["SessionAffinitySelector", "binding_key"]

C = TypeVar("C", bound=CandidateLike)


def binding_key(provider: str, session_id: str, model: str) -> str:
    return f"{provider}::{session_id}::{model}"


def _find(available: Sequence[C], credential_id: str) -> C | None:
    for c in available:
        if c.credential_id == credential_id:
            return c
    return None


class SessionAffinitySelector(Selector):
    def __init__(
        self, inner: Selector, state: State, ttl: float, keep: Callable[[str], bool] | None = None
    ) -> None:
        """``keep(credential_id)``: whether a session bound there may stay (quota-aware routing
        moves sessions off a nearly exhausted account); None: always."""
        self.inner = inner
        self.keep = keep
        self._state = state
        self._mem = state if isinstance(state, MemoryState) else None
        self.ttl = ttl
        self.name = f"session-affinity({inner.name})"
        self.filters = inner.filters

    def accepts(self, cand: Any) -> bool:
        return self.inner.accepts(cand)

    async def select(self, tier: Sequence[C], cursor_key: str) -> C:
        return await self.inner.select(tier, cursor_key)

    def select_now(self, tier: Sequence[C], cursor_key: str) -> C:
        return self.inner.select_now(tier, cursor_key)

    def select_for_session_now(
        self, available: Sequence[C], tier: Sequence[C], provider: str, model: str, session: SessionIds
    ) -> C:
        """The in-process version of ``select_for_session`` (only with MemoryState)."""
        mem = self._mem
        assert mem is not None
        ttl = self.ttl
        pkey = binding_key(provider, session.primary, model)
        keep = self.keep
        bound = mem.get_binding_now(pkey, ttl)
        if bound is not None:
            c = _find(available, bound)
            if c is not None and (keep is None or keep(bound)):
                return c
        if session.fallback is not None:
            inherited = mem.get_binding_now(binding_key(provider, session.fallback, model), ttl)
            if inherited is not None:
                c = _find(available, inherited)
                if c is not None and (keep is None or keep(inherited)):
                    mem.set_binding_now(pkey, inherited, ttl)
                    return c
        c = tier[0] if len(tier) == 1 else self.inner.select_now(tier, cursor_key(provider, model))
        mem.set_binding_now(pkey, c.credential_id, ttl)
        return c

    async def select_for_session(
        self, available: Sequence[C], tier: Sequence[C], provider: str, model: str, session: SessionIds
    ) -> C:
        """``available``: every usable candidate (all tiers); ``tier``: the best priority tier."""
        state = self._state
        ttl = self.ttl
        pkey = binding_key(provider, session.primary, model)
        keep = self.keep
        bound = await state.get_binding(pkey, ttl)
        if bound is not None:
            c = _find(available, bound)
            if c is not None and (keep is None or keep(bound)):
                return c
        if session.fallback is not None:
            inherited = await state.get_binding(binding_key(provider, session.fallback, model), ttl)
            if inherited is not None:
                c = _find(available, inherited)
                if c is not None and (keep is None or keep(inherited)):
                    await state.set_binding(pkey, inherited, ttl)
                    return c
        c = tier[0] if len(tier) == 1 else await self.inner.select(tier, cursor_key(provider, model))
        await state.set_binding(pkey, c.credential_id, ttl)
        return c

    async def touch(self, credential_id: str, provider: str, model: str, session: SessionIds) -> None:
        """After a success: (re)bind the primary id to the credential that served it."""
        await self._state.set_binding(binding_key(provider, session.primary, model), credential_id, self.ttl)

    async def unbind(self, credential_id: str, provider: str, model: str, session: SessionIds) -> None:
        """After a failure: drop the session's bindings that still point at the credential."""
        state = self._state
        await state.delete_binding_if(binding_key(provider, session.primary, model), credential_id)
        if session.fallback is not None:
            await state.delete_binding_if(binding_key(provider, session.fallback, model), credential_id)

    async def forget(self, provider: str, model: str, session: SessionIds) -> int:
        """Drop the session's bindings (primary and fallback ids) whatever they point at."""
        state = self._state
        n = int(await state.delete_binding(binding_key(provider, session.primary, model)))
        if session.fallback is not None:
            n += int(await state.delete_binding(binding_key(provider, session.fallback, model)))
        return n

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()
