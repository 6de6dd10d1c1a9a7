"""The routing trace: why a pick went where it went, written into a call's ``Trace``.

Only traced calls come here (``Router.pick`` / ``pick_now`` take this path when given a trace), so
nothing of it costs an untraced request. The choice itself is still made by the ordinary path;
this module only reads the same state before and after and writes the steps:

- ``candidates``: the credentials that serve the model (ids; ``priorities`` when they differ), the
  strategy.
- ``skip``: one per candidate left out, with ``reason``: ``disabled``, ``already tried``,
  ``excluded by strategy`` (a weight outside 1..1,000,000), ``cooling`` (with ``until``, epoch
  seconds, and ``scope``: ``credential`` or ``model <upstream model>``), ``lower priority``,
  ``quota low`` (quota-aware routing, with the windows' state).
- ``quota``: quota-aware routing's headroom per candidate of the tier (requests per second until
  the tightest window resets; ``null`` = not known yet, tried first).
- ``chose``: the credential and ``by``: ``session`` (an existing binding; ``inherited`` when it
  came from the conversation's first turn), ``selector`` (with the strategy's name), ``only``
  (a single candidate left).
- ``none``: nothing was usable (``cooling`` with ``retry_after``, or ``unavailable``).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from crossroute.routing.affinity import binding_key
from crossroute.routing.cooldown import ANY_MODEL
from crossroute.state.base import Cooldown

if TYPE_CHECKING:
    from crossroute.call import Trace
    from crossroute.routing.router import Router
    from crossroute.routing.session_ids import SessionIds

__all__ = ["chose", "explain", "fmt_time", "memory_cooldowns", "nothing", "session_keys", "state_cooldowns"]


def fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _upstream_model(c: Any, model: str) -> str:
    return getattr(c, "upstream_model", "") or model


def explain(
    router: Router, candidates: Sequence[Any], model: str, exclude: Collection[str],
    cooldowns: dict[str, tuple[Cooldown | None, Cooldown | None]], trace: Trace,
) -> list[Any]:
    """Write ``candidates`` and one ``skip`` per candidate that is not in the best usable tier;
    returns that tier. ``cooldowns``: per credential id, (its model cooldown, its credential
    cooldown)."""
    settings = router.settings
    selector = router.selector
    ids = [c.credential_id for c in candidates]
    first = candidates[0].priority
    mixed = False
    plain = not cooldowns and not exclude and not selector.filters
    for c in candidates:
        if c.priority != first:
            mixed = True
        if c.disabled:
            plain = False
    if mixed:
        trace.add("candidates", model=model, strategy=selector.name, credentials=ids,
                  priorities={c.credential_id: c.priority for c in candidates})
    else:
        trace.add("candidates", model=model, strategy=selector.name, credentials=ids)
        if plain and not settings.quota_aware:
            return list(candidates)  # nothing skipped (the common case when every call is traced)
    now = router.clock()
    usable: list[Any] = []
    for c in candidates:
        cid = c.credential_id
        if c.disabled:
            trace.add("skip", credential=cid, reason="disabled")
            continue
        if exclude and cid in exclude:
            trace.add("skip", credential=cid, reason="already tried")
            continue
        if selector.filters and not selector.accepts(c):
            trace.add("skip", credential=cid, reason="excluded by strategy", weight=c.weight)
            continue
        if not settings.disable_cooling:
            per_model, whole = cooldowns.get(cid, (None, None))
            cd, scope = None, ""
            if per_model is not None and per_model.until > now:
                cd, scope = per_model, f"model {_upstream_model(c, model)}"
            if whole is not None and whole.until > now and (cd is None or whole.until > cd.until):
                cd, scope = whole, "credential"
            if cd is not None:
                trace.add("skip", credential=cid, reason="cooling", until=round(cd.until, 3),
                          until_utc=fmt_time(cd.until), scope=scope)
                continue
        usable.append(c)
    if not usable:
        return []
    top = max(c.priority for c in usable)
    tier = []
    for c in usable:
        if c.priority != top:
            trace.add("skip", credential=c.credential_id, reason="lower priority", priority=c.priority, best=top)
        else:
            tier.append(c)
    book = router.quota
    if settings.quota_aware and book is not None and tier:
        headroom: dict[str, float | None] = {}
        for c in tier:
            h = book.headroom(c.credential_id, now)
            headroom[c.credential_id] = None if h is None else round(h, 6)
            if h is not None and book.nearly_exhausted(c.credential_id, now):
                acct = book.account(c.credential_id)
                windows = [w.to_json() for w in acct.windows.values()] if acct is not None else []
                trace.add("skip", credential=c.credential_id, reason="quota low", windows=windows,
                          note="kept only if nothing better is left")
        trace.add("quota", headroom=headroom)
    return tier


def memory_cooldowns(router: Router, candidates: Sequence[Any], model: str) -> dict[str, tuple[Any, Any]]:
    table = router.memory_cooldowns()
    out: dict[str, tuple[Any, Any]] = {}
    if not table:
        return out
    for c in candidates:
        cid = c.credential_id
        e = table.get((cid, _upstream_model(c, model)))
        w = table.get((cid, ANY_MODEL))
        if e is not None or w is not None:
            out[cid] = (e[0] if e is not None else None, w[0] if w is not None else None)
    return out


async def state_cooldowns(router: Router, candidates: Sequence[Any], model: str) -> dict[str, tuple[Any, Any]]:
    state = router.state
    ids = [c.credential_id for c in candidates]
    whole = await state.get_cooldowns(ids, ANY_MODEL)
    out: dict[str, tuple[Any, Any]] = {}
    for c in candidates:
        cid = c.credential_id
        per = (await state.get_cooldowns((cid,), _upstream_model(c, model))).get(cid)
        w = whole.get(cid)
        if per is not None or w is not None:
            out[cid] = (per, w)
    return out


def session_keys(provider: str, model: str, session: SessionIds | None) -> tuple[str | None, str | None]:
    if session is None:
        return None, None
    fb = binding_key(provider, session.fallback, model) if session.fallback is not None else None
    return binding_key(provider, session.primary, model), fb


def chose(
    router: Router, cand: Any, tier_size: int, bound: str | None, inherited: str | None, trace: Trace,
) -> None:
    cid = cand.credential_id
    if bound is not None and bound == cid:
        trace.add("chose", credential=cid, by="session")
    elif inherited is not None and inherited == cid:
        trace.add("chose", credential=cid, by="session", inherited=True)
    elif tier_size == 1:
        trace.add("chose", credential=cid, by="only")
    else:
        fields: dict[str, Any] = {}
        if bound is not None:
            fields["rebound_from"] = bound  # the session's account was not usable (or nearly exhausted)
        trace.add("chose", credential=cid, by="selector", strategy=router.selector.name, **fields)


def nothing(exc: BaseException, trace: Trace) -> None:
    retry = getattr(exc, "retry_after", None)
    if retry is not None:
        trace.add("none", reason="cooling", retry_after=round(float(retry), 3))
    else:
        trace.add("none", reason="unavailable", message=str(exc))
