"""The routing facade the dispatcher calls: pick a credential, report how it went.

``Router.pick`` skips disabled candidates, the ones already tried in this request and those cooling
down for this model; keeps only the best priority tier that still has a candidate; and lets the
selector (wrapped by session affinity when that is on) choose. ``report_success`` and
``report_failure`` keep bindings and cooldowns up to date. All state goes through a ``State`` so
that several gateway processes can share it through Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from time import monotonic as _monotonic
from typing import TYPE_CHECKING

from crossroute.routing import explain
from crossroute.routing.affinity import SessionAffinitySelector
from crossroute.routing.cooldown import ANY_MODEL, CREDENTIAL, LEVEL_KEEP, plan_cooldown
from crossroute.routing.quota_share import QuotaSharing
from crossroute.routing.selectors import (
    STRATEGIES,
    C,
    CandidateLike,
    QuotaAwareSelector,
    Selector,
    build_selector,
    cursor_key,
)
from crossroute.routing.session_ids import SessionIds
from crossroute.state.base import Cooldown, State
from crossroute.state.memory import MemoryState

if TYPE_CHECKING:
    from crossroute.call import Trace
    from crossroute.routing.quota import QuotaBook

__all__ = ["AllCoolingDown", "Candidate", "Router", "RoutingSettings"]

log = logging.getLogger("crossroute.routing")


Candidate = CandidateLike  # what the dispatcher hands in; the router only reads its attributes


def _model_key(c: CandidateLike, model: str) -> str:
    """The model a cooldown of ``c`` is keyed by: the name its upstream receives (the client's
    name only for candidates that do not say)."""
    return getattr(c, "upstream_model", "") or model


@dataclass
class RoutingSettings:
    strategy: str = "round-robin"  # | "fill-first" | "weighted-round-robin"
    session_affinity: bool = False
    session_affinity_ttl: float = 3600.0
    disable_cooling: bool = False
    transient_cooldown: float = 60.0  # seconds; -1 disables the transient cooldown
    quota_aware: bool = False  # new sessions go to the account with the most quota headroom

    def selector_fields(self) -> tuple[str, bool, float, bool]:
        return (normalize_strategy(self.strategy), self.session_affinity, float(self.session_affinity_ttl),
                bool(self.quota_aware))


def normalize_strategy(strategy: str) -> str:
    s = (strategy or "round-robin").strip().lower().replace("_", "-")
    if s not in STRATEGIES:
        raise ValueError(f"unknown routing strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    return s


class AllCoolingDown(Exception):
    """Every candidate that could serve the request is cooling down (answer 429 + Retry-After)."""

    def __init__(self, retry_after: float, model: str = "") -> None:
        super().__init__(
            f"all credentials for model {model!r} are cooling down; retry after {retry_after:.1f}s"
        )
        self.retry_after = retry_after
        self.model = model


def provider_group(candidates: Sequence[Candidate]) -> str:
    """The provider part of cursor and binding keys: the provider, or the sorted set of them."""
    first = candidates[0].provider
    if len(candidates) == 1:
        return first
    for c in candidates:
        if c.provider != first:
            return ",".join(sorted({x.provider for x in candidates}))
    return first


class Router:
    def __init__(
        self, settings: RoutingSettings, state: State, clock: Callable[[], float] = time.time
    ) -> None:
        self._state = state
        # In-process state answers synchronously: the hot path calls it without awaiting.
        self._mem = state if isinstance(state, MemoryState) else None
        # whether pick_now / report_success_now may be used instead of pick / report_success
        self.in_process = self._mem is not None
        self._clock = clock
        # the gateway's QuotaBook (set by its ``attach``): resets announced by the upstreams
        self.quota: QuotaBook | None = None
        self._settings = settings
        self._fields = settings.selector_fields()
        self._selector, self._affinity = self._build(settings)
        # the book's readings shared with the processes sharing the state (idle when none do)
        self._sharing = QuotaSharing(state, lambda: self.quota)
        self._started = False

    # ------------------------------------------------------------ construction and lifecycle
    def _build(self, settings: RoutingSettings) -> tuple[Selector, SessionAffinitySelector | None]:
        strategy, affinity, ttl, quota_aware = settings.selector_fields()
        inner = build_selector(strategy, self._state)
        keep = None
        if quota_aware:
            inner = QuotaAwareSelector(inner, lambda: self.quota)
            keep = self._keeps_binding
        if not affinity:
            return inner, None
        wrapped = SessionAffinitySelector(inner, self._state, ttl, keep)
        return wrapped, wrapped

    def _keeps_binding(self, credential_id: str) -> bool:
        """Quota-aware: a session stays on its account unless the account is nearly exhausted."""
        book = self.quota
        return book is None or not book.nearly_exhausted(credential_id)

    @property
    def settings(self) -> RoutingSettings:
        return self._settings

    @property
    def selector(self) -> Selector:
        return self._selector

    @property
    def state(self) -> State:
        return self._state

    def clock(self) -> float:
        return self._clock()

    def memory_cooldowns(self) -> dict[tuple[str, str], tuple[Cooldown, float]] | None:
        return self._mem.cooldowns if self._mem is not None else None

    async def start(self) -> None:
        await self._state.start()
        await self._selector.start()
        self._sharing.start()
        self._started = True

    async def stop(self) -> None:
        self._started = False
        await self._sharing.stop()
        await self._selector.stop()
        await self._state.stop()

    async def apply_settings(self, settings: RoutingSettings) -> None:
        """Hot reload. A change of strategy, affinity or affinity TTL rebuilds the selector (the
        old one is stopped); bindings live in the State and survive the rebuild."""
        fields = settings.selector_fields()  # raises ValueError before anything changes
        if fields != self._fields:
            selector, affinity = self._build(settings)
            if self._started:
                await selector.start()
            old = self._selector
            self._selector, self._affinity, self._fields = selector, affinity, fields
            await old.stop()
            log.info("routing selector rebuilt: %s", selector.name)
        self._settings = settings

    async def invalidate_session(self, session: SessionIds, model: str, provider: str) -> int:
        """Forget where a session is bound for ``model`` within ``provider`` (the scope of
        ``provider_group``): its next request is placed anew. Returns how many bindings went."""
        if self._affinity is None:
            return 0
        return await self._affinity.forget(provider, model, session)

    async def invalidate_credential(self, credential_id: str) -> None:
        """A credential was removed or disabled: its sessions rebind on their next request, and
        its cooldowns (every model, 429 ladders too) go, so that when it comes back (enabled
        again, signed in again, put back in the config) it starts clean. Both in the configured
        State, so every process sharing it sees the change."""
        n = await self._state.delete_bindings_for(credential_id)
        if n:
            log.info("dropped %d session binding(s) of credential %s", n, credential_id)
        n = await self._state.clear_cooldowns_for(credential_id)
        if n:
            log.info("cleared %d cooldown(s) of credential %s", n, credential_id)

    async def reset_cooldowns(self, credential_id: str | None = None) -> int:
        """Clear the cooldowns (every model, 429 ladders too) of one credential, or of every
        credential when None, in the configured State (so every process sharing it sees it), and
        drop the quota book's windows that say it is spent: what the management API's
        ``POST /reset-quota`` does. Bindings stay. Returns how many cooldown entries went."""
        n = await self._state.clear_cooldowns_for(credential_id)
        windows = self.quota.forget_exhausted(credential_id) if self.quota is not None else 0
        log.info("cooldowns reset for %s: %d cooldown(s), %d spent quota window(s) cleared",
                 credential_id or "every credential", n, windows)
        return n

    # ------------------------------------------------------------ cooldowns of candidates
    def _cooling_now(self, mem: MemoryState, candidates: Sequence[C], model: str) -> dict[str, Cooldown]:
        """Per credential id, the cooldown that ends last among its model's and its own."""
        table = mem.cooldowns
        out: dict[str, Cooldown] = {}
        for c in candidates:
            cid = c.credential_id
            e = table.get((cid, _model_key(c, model)))
            w = table.get((cid, ANY_MODEL))
            if e is None and w is None:
                continue
            cd = e[0] if e is not None else None
            if w is not None and (cd is None or w[0].until > cd.until):
                cd = w[0]
            if cd is not None:
                out[cid] = cd
        return out

    async def _cooling(self, candidates: Sequence[C], model: str) -> dict[str, Cooldown]:
        if self._mem is not None:
            return self._cooling_now(self._mem, candidates, model) if self._mem.cooldowns else {}
        state = self._state
        by_model: dict[str, list[str]] = {}
        for c in candidates:
            by_model.setdefault(_model_key(c, model), []).append(c.credential_id)
        by_model.setdefault(ANY_MODEL, []).extend(c.credential_id for c in candidates)
        out: dict[str, Cooldown] = {}
        for m, ids in by_model.items():
            for cid, cd in (await state.get_cooldowns(ids, m)).items():
                prev = out.get(cid)
                if prev is None or cd.until > prev.until:
                    out[cid] = cd
        return out

    # ------------------------------------------------------------ selection
    def _filter(
        self, candidates: Sequence[C], model: str, exclude: Collection[str], cooling: dict | None
    ) -> tuple[list[C], list[C]]:
        """(every usable candidate, the best priority tier among them); raises AllCoolingDown or
        LookupError when none is usable."""
        now = self._clock()
        accepts = self._selector.accepts if self._selector.filters else None
        available: list[C] = []
        top = 0
        mixed = False
        earliest: float | None = None
        for c in candidates:
            if c.disabled or (exclude and c.credential_id in exclude) or (accepts and not accepts(c)):
                continue
            if cooling:
                cd = cooling.get(c.credential_id)
                if cd is not None and cd.until > now:
                    if earliest is None or cd.until < earliest:
                        earliest = cd.until
                    continue
            if not available:
                top = c.priority
            elif c.priority != top:
                mixed = True
                if c.priority > top:
                    top = c.priority
            available.append(c)
        if not available:
            if earliest is not None:
                raise AllCoolingDown(max(earliest - now, 0.0), model)
            raise LookupError(f"no available credential for model {model!r}")
        return available, ([c for c in available if c.priority == top] if mixed else available)

    def pick_now(
        self, candidates: Sequence[C], model: str, session: SessionIds | None, exclude: Collection[str] = (),
        scope: str | None = None, trace: Trace | None = None,
    ) -> C:
        """``pick`` without suspending; only with in-process state (see ``in_process``)."""
        if trace is not None:
            return self._pick_now_traced(candidates, model, session, exclude, scope, trace)
        mem = self._mem
        assert mem is not None
        if not candidates:
            raise LookupError(f"no credential serves model {model!r}")
        cooling = None
        if mem.cooldowns and not self._settings.disable_cooling:
            cooling = self._cooling_now(mem, candidates, model)
        available, tier = self._filter(candidates, model, exclude, cooling)
        affinity = self._affinity
        if (session is None or affinity is None) and len(tier) == 1:
            return tier[0]
        provider = scope or provider_group(candidates)
        if session is not None and affinity is not None:
            return affinity.select_for_session_now(available, tier, provider, model, session)
        return self._selector.select_now(tier, cursor_key(provider, model))

    async def pick(
        self,
        candidates: Sequence[C],
        model: str,
        session: SessionIds | None,
        exclude: Collection[str] = (),
        scope: str | None = None,
        trace: Trace | None = None,
    ) -> C:
        """A candidate for the request. ``scope``: ``provider_group(candidates)`` when the caller
        already has it (it keys cursors and session bindings). ``trace``: where to note why (the
        candidates, each one skipped and why, how the choice was made), when the call is traced."""
        if self._mem is not None:
            return self.pick_now(candidates, model, session, exclude, scope, trace)
        if trace is not None:
            return await self._pick_traced(candidates, model, session, exclude, scope, trace)
        if not candidates:
            raise LookupError(f"no credential serves model {model!r}")
        cooling = None
        if not self._settings.disable_cooling:
            cooling = await self._cooling(candidates, model)
        available, tier = self._filter(candidates, model, exclude, cooling)
        affinity = self._affinity
        if (session is None or affinity is None) and len(tier) == 1:
            return tier[0]
        provider = scope or provider_group(candidates)
        if session is not None and affinity is not None:
            return await affinity.select_for_session(available, tier, provider, model, session)
        return await self._selector.select(tier, cursor_key(provider, model))

    def _pick_now_traced(
        self, candidates: Sequence[C], model: str, session: SessionIds | None, exclude: Collection[str],
        scope: str | None, trace: Trace,
    ) -> C:
        """``pick_now`` noting in ``trace`` one raw record (``explain.record``; rendered when read)."""
        mem = self._mem
        assert mem is not None
        if not candidates:
            trace.add("none", reason="unavailable", message="no credential serves the model")
            return self.pick_now(candidates, model, session, exclude, scope)
        t = _monotonic()
        settings = self._settings
        more = None
        if exclude or mem.cooldowns or settings.quota_aware or (session is not None and self._affinity is not None):
            more = self._trace_more_now(mem, candidates, model, session, exclude, scope)
        selector = self._selector
        try:
            cand = self.pick_now(candidates, model, session, exclude, scope)
        except (AllCoolingDown, LookupError) as exc:
            trace.append(explain.record(t, candidates, model, selector, explain.nothing(exc), more))
            raise
        trace.append((t, candidates, model, selector, cand.credential_id, more))  # explain.record's tuple, inline
        return cand

    def _trace_more_now(
        self, mem: MemoryState, candidates: Sequence[C], model: str, session: SessionIds | None,
        exclude: Collection[str], scope: str | None,
    ) -> explain.Extra | None:
        """A traced pick's ``explain.extra`` from in-process state, read before the pick."""
        settings = self._settings
        cooling = None
        if mem.cooldowns and not settings.disable_cooling:
            cooling = explain.memory_cooling(self, candidates, model)
        quota = explain.quota_figures(self, candidates, exclude) if settings.quota_aware else None
        bound = inherited = None
        if session is not None and self._affinity is not None:
            pkey, fkey = explain.session_keys(scope or provider_group(candidates), model, session)
            b = mem.peek_binding(pkey) if pkey is not None else None
            i = mem.peek_binding(fkey) if fkey is not None else None
            bound, inherited = b[0] if b else None, i[0] if i else None
        return explain.extra(exclude, cooling, quota, bound, inherited)

    async def _pick_traced(
        self, candidates: Sequence[C], model: str, session: SessionIds | None, exclude: Collection[str],
        scope: str | None, trace: Trace,
    ) -> C:
        if not candidates:
            trace.add("none", reason="unavailable", message="no credential serves the model")
            return await self.pick(candidates, model, session, exclude, scope)
        t = _monotonic()
        cooling = None
        if not self._settings.disable_cooling:
            cooling = explain.active_cooldowns(self, candidates, model,
                                               await explain.state_cooldowns(self, candidates, model))
        quota = explain.quota_figures(self, candidates, exclude) if self._settings.quota_aware else None
        bound = inherited = None
        if self._affinity is not None:
            pkey, fkey = explain.session_keys(scope or provider_group(candidates), model, session)
            ttl = self._settings.session_affinity_ttl
            bound = await self._state.get_binding(pkey, ttl) if pkey is not None else None
            inherited = await self._state.get_binding(fkey, ttl) if fkey is not None else None
        more = explain.extra(exclude, cooling, quota, bound, inherited)
        selector = self._selector
        try:
            cand = await self.pick(candidates, model, session, exclude, scope)
        except (AllCoolingDown, LookupError) as exc:
            trace.append(explain.record(t, candidates, model, selector, explain.nothing(exc), more))
            raise
        trace.append(explain.record(t, candidates, model, selector, cand.credential_id, more))
        return cand

    async def wait_time(self, candidates: Sequence[Candidate], model: str) -> float | None:
        """Seconds until some candidate can serve ``model``: 0 when one can now, the earliest
        cooldown end when all usable ones are cooling down, None when none can ever serve."""
        usable = [c for c in candidates if not c.disabled and self._selector.accepts(c)]
        if not usable:
            return None
        if self._settings.disable_cooling:
            return 0.0
        cooling = await self._cooling(usable, model)
        now = self._clock()
        earliest: float | None = None
        for c in usable:
            cd = cooling.get(c.credential_id)
            if cd is None or cd.until <= now:
                return 0.0
            if earliest is None or cd.until < earliest:
                earliest = cd.until
        assert earliest is not None
        return earliest - now

    # ------------------------------------------------------------ outcomes
    def report_success_now(self, cand: Candidate, model: str) -> None:
        """``report_success`` with in-process state: ``pick_now`` already read (and so refreshed)
        or wrote the session's binding, so only a cooldown (or 429 ladder) is cleared."""
        mem = self._mem
        assert mem is not None
        if mem.cooldowns:
            cid = cand.credential_id
            mem.clear_cooldown_now(cid, _model_key(cand, model))
            mem.clear_cooldown_now(cid, ANY_MODEL)

    async def report_success(
        self, cand: Candidate, model: str, session: SessionIds | None, provider: str | None = None
    ) -> None:
        """``provider``: the provider scope of the request's candidates (``provider_group``);
        the candidate's own provider when not given."""
        if self._mem is not None:
            self.report_success_now(cand, model)
            return
        # also resets the ladders (429, unreachable)
        await self._state.clear_cooldown(cand.credential_id, _model_key(cand, model))
        await self._state.clear_cooldown(cand.credential_id, ANY_MODEL)
        affinity = self._affinity
        if session is not None and affinity is not None:
            await affinity.touch(cand.credential_id, provider or cand.provider, model, session)

    async def report_failure(
        self,
        cand: Candidate,
        model: str,
        session: SessionIds | None,
        status: int | None,
        retry_after: float | None,
        provider: str | None = None,
        *,
        kind: str | None = None,
    ) -> None:
        """``status`` None means no HTTP answer (connection refused, reset); ``retry_after`` is the
        upstream's Retry-After in seconds when it sent one; ``provider`` as for ``report_success``;
        ``kind``: the failure's scope (``request``, ``model``, ``credential``), else derived from
        the status. A model cooldown is keyed by the candidate's upstream model."""
        settings = self._settings
        plan = plan_cooldown(status, retry_after, 0, settings.transient_cooldown, kind)
        if plan is None:
            return  # the request was wrong, not the credential: no cooldown, binding kept
        affinity = self._affinity
        if session is not None and affinity is not None:
            await affinity.unbind(cand.credential_id, provider or cand.provider, model, session)
        if settings.disable_cooling:
            return
        cid = cand.credential_id
        now = self._clock()
        announced: float | None = None  # the reset the upstream announced for this refusal
        bound: float | None = None  # no 429 cooldown outlives the credential's account-wide resets
        if status == 429 and self.quota is not None:
            hint = self.quota.reset_hint(cid, now)
            if hint is not None:
                announced, whole = hint
                if whole and not plan.credential:
                    kind = CREDENTIAL
                    plan = plan._replace(credential=True)
            else:
                bound = self.quota.latest_reset(cid, now)
        key = ANY_MODEL if plan.credential else _model_key(cand, model)
        prev = (await self._state.get_cooldowns((cid,), key)).get(cid)
        if prev is not None and prev.level:
            plan = plan_cooldown(status, retry_after, prev.level, settings.transient_cooldown, kind)
            assert plan is not None
        if announced is not None:
            until = announced  # exactly until the announced reset, never a ladder step more
        else:
            if plan.seconds <= 0:
                return
            until = now + plan.seconds
            if prev is not None and prev.until > until:
                until = prev.until  # a longer cooldown already running (concurrent failures) stays
            if bound is not None and until > bound:
                until = bound
        if until <= now:
            return
        keep = until + LEVEL_KEEP if plan.level else until
        await self._state.set_cooldown(cid, key, until, plan.level, keep)
        log.info(
            "credential %s cooling down for %s: %.1fs (status %s)", cid,
            "every model" if key == ANY_MODEL else f"model {key}", until - now, status,
        )
