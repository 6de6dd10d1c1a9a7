"""The routing trace: why a pick went where it went, recorded in a call's ``Trace``.

Only traced calls come here (``Router.pick`` / ``pick_now`` take this path when given a trace), so
nothing of it costs an untraced request. The choice itself is still made by the ordinary path.

When traces are kept every call is traced, so the request path only *records*: one tuple per pick
(``record``) of references and pick-time copies of what can change afterwards, all cheap: the
candidate list and the selector the router was given (both never change once built: a reload
builds new ones), the tried set (copied), the cooldowns that were running with their end times,
quota figures, the session's bindings, the outcome. ``render`` turns a record into the readable
steps when someone reads the trace (the management API, the request log, the panel, the
``X-Crossroute-Trace`` header), so a trace read later still shows the state at pick time.

The steps ``render`` makes:

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
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from crossroute.routing.affinity import binding_key
from crossroute.routing.cooldown import ANY_MODEL
from crossroute.state.base import Cooldown

if TYPE_CHECKING:
    from crossroute.routing.router import Router
    from crossroute.routing.selectors import Selector
    from crossroute.routing.session_ids import SessionIds

__all__ = ["active_cooldowns", "extra", "fmt_time", "memory_cooling", "nothing", "quota_figures", "record", "render",
           "render_steps", "session_keys", "state_cooldowns"]

# Cooling: (credential id, until, scope) of each cooldown that blocked a candidate at pick time,
# scope None for the whole credential, else the upstream model it was cooling for.
Cooling = tuple[tuple[str, float, "str | None"], ...]
# Quota: (credential id, headroom rounded or None when not known, the windows' state when the
# account was nearly exhausted else None) per candidate that could be chosen.
Quota = tuple[tuple[str, "float | None", "tuple[Any, ...] | None"], ...]
# A record's rarely needed part, None when all of it is empty: (the tried credential ids, Cooling
# or None, Quota or None, the credential the session was bound to, the one its first turn was).
Extra = tuple[tuple[str, ...], "Cooling | None", "Quota | None", "str | None", "str | None"]


def fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _upstream_model(c: Any, model: str) -> str:
    return getattr(c, "upstream_model", "") or model


# ------------------------------------------------------------------ on the request path: record

def _active(c: Any, model: str, per_model: Cooldown | None, whole: Cooldown | None, now: float,
            out: list[tuple[str, float, str | None]]) -> None:
    cd: Cooldown | None = None
    scope: str | None = None
    if per_model is not None and per_model.until > now:
        cd, scope = per_model, _upstream_model(c, model)
    if whole is not None and whole.until > now and (cd is None or whole.until > cd.until):
        cd, scope = whole, None
    if cd is not None:
        out.append((c.credential_id, cd.until, scope))


def memory_cooling(router: Router, candidates: Sequence[Any], model: str) -> Cooling | None:
    """The cooldowns blocking ``candidates`` now, from the in-process table (None: none)."""
    table = router.memory_cooldowns()
    if not table:
        return None
    now = router.clock()
    out: list[tuple[str, float, str | None]] = []
    for c in candidates:
        cid = c.credential_id
        e = table.get((cid, _upstream_model(c, model)))
        w = table.get((cid, ANY_MODEL))
        if e is not None or w is not None:
            _active(c, model, e[0] if e is not None else None, w[0] if w is not None else None, now, out)
    return tuple(out) or None


def active_cooldowns(router: Router, candidates: Sequence[Any], model: str,
                     cooldowns: dict[str, tuple[Cooldown | None, Cooldown | None]]) -> Cooling | None:
    """``cooldowns`` (per credential id: its model's and its own) reduced to those blocking now."""
    if not cooldowns:
        return None
    now = router.clock()
    out: list[tuple[str, float, str | None]] = []
    for c in candidates:
        pair = cooldowns.get(c.credential_id)
        if pair is not None:
            _active(c, model, pair[0], pair[1], now, out)
    return tuple(out) or None


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


def quota_figures(router: Router, candidates: Sequence[Any], exclude: Collection[str]) -> Quota | None:
    """Quota-aware routing's figures of the candidates that could be chosen, as they are now."""
    book = router.quota
    if book is None:
        return None
    now = router.clock()
    out = []
    for c in candidates:
        cid = c.credential_id
        if c.disabled or (exclude and cid in exclude):
            continue
        h = book.headroom(cid, now)
        windows = None
        if h is not None and book.nearly_exhausted(cid, now):
            acct = book.account(cid)
            windows = tuple([w.to_json() for w in acct.windows.values()]) if acct is not None else ()
        out.append((cid, None if h is None else round(h, 6), windows))
    return tuple(out)


def session_keys(provider: str, model: str, session: SessionIds | None) -> tuple[str | None, str | None]:
    if session is None:
        return None, None
    fb = binding_key(provider, session.fallback, model) if session.fallback is not None else None
    return binding_key(provider, session.primary, model), fb


def nothing(exc: BaseException) -> tuple[str, Any]:
    """The outcome of a pick that found nothing usable (no reference to the exception is kept)."""
    retry = getattr(exc, "retry_after", None)
    if retry is not None:
        return ("cooling", float(retry))
    return ("unavailable", str(exc))


def extra(exclude: Collection[str], cooling: Cooling | None, quota: Quota | None, bound: str | None,
          inherited: str | None) -> Extra | None:
    """A record's ``more`` (the tried set copied)."""
    if not exclude and cooling is None and quota is None and bound is None and inherited is None:
        return None
    return (tuple(exclude) if exclude else (), cooling, quota, bound, inherited)


def record(t: float, candidates: Sequence[Any], model: str, selector: Selector, outcome: str | tuple[str, Any],
           more: Extra | None) -> tuple[Any, ...]:
    """One pick as a trace keeps it: ``outcome`` is the chosen credential id or what ``nothing``
    made; ``more`` what ``extra`` made. ``Router._pick_now_traced`` builds the same tuple inline
    (it runs for every call while traces are kept); this is where its layout is written down."""
    return (t, candidates, model, selector, outcome, more)


# ------------------------------------------------------------------ when read: render

_NOTHING_MORE: Extra = ((), None, None, None, None)

def _step(out: list[dict[str, Any]], step: str, t: float, **fields: Any) -> None:
    fields["step"] = step
    fields["t"] = t
    out.append(fields)


def render_steps(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """The steps of a trace's raw entries (``call.Trace``): a dict is a step as it is, a tuple a
    recorded pick."""
    out: list[dict[str, Any]] = []
    for e in entries:
        if isinstance(e, dict):
            out.append(e)
        else:
            render(e, out)
    return out


def render(rec: tuple[Any, ...], out: list[dict[str, Any]]) -> None:
    """Append the steps of one recorded pick to ``out`` (see the module docstring)."""
    t, candidates, model, selector, outcome, more = rec
    exclude, cooling, quota, bound, inherited = more if more is not None else _NOTHING_MORE
    blocked = {cid: (until, scope) for cid, until, scope in cooling} if cooling else None
    tier = _explain(out, t, candidates, model, exclude, blocked, quota, selector)
    if isinstance(outcome, str):
        _chose(out, t, outcome, len(tier), bound, inherited, selector.name)
    elif outcome[0] == "cooling":
        _step(out, "none", t, reason="cooling", retry_after=round(outcome[1], 3))
    else:
        _step(out, "none", t, reason="unavailable", message=outcome[1])


def _explain(
    out: list[dict[str, Any]], t: float, candidates: Sequence[Any], model: str, exclude: Collection[str],
    cooling: dict[str, tuple[float, str | None]] | None, quota: Quota | None, selector: Selector,
) -> list[str]:
    """``candidates`` and one ``skip`` per candidate that was not in the best usable tier; returns
    that tier's credential ids."""
    ids = [c.credential_id for c in candidates]
    first = candidates[0].priority
    if any(c.priority != first for c in candidates):
        _step(out, "candidates", t, model=model, strategy=selector.name, credentials=ids,
              priorities={c.credential_id: c.priority for c in candidates})
    else:
        _step(out, "candidates", t, model=model, strategy=selector.name, credentials=ids)
    usable: list[tuple[str, int]] = []
    for c in candidates:
        cid = c.credential_id
        if c.disabled:
            _step(out, "skip", t, credential=cid, reason="disabled")
            continue
        if exclude and cid in exclude:
            _step(out, "skip", t, credential=cid, reason="already tried")
            continue
        if selector.filters and not selector.accepts(c):
            _step(out, "skip", t, credential=cid, reason="excluded by strategy", weight=c.weight)
            continue
        if cooling and (cd := cooling.get(cid)) is not None:
            until, scope = cd
            _step(out, "skip", t, credential=cid, reason="cooling", until=round(until, 3), until_utc=fmt_time(until),
                  scope="credential" if scope is None else f"model {scope}")
            continue
        usable.append((cid, c.priority))
    if not usable:
        return []
    top = max(prio for _, prio in usable)
    tier = []
    for cid, prio in usable:
        if prio != top:
            _step(out, "skip", t, credential=cid, reason="lower priority", priority=prio, best=top)
        else:
            tier.append(cid)
    if quota is not None and tier:
        figures = {cid: (h, windows) for cid, h, windows in quota}
        headroom: dict[str, float | None] = {}
        for cid in tier:
            h, windows = figures.get(cid, (None, None))
            headroom[cid] = h
            if windows is not None:
                _step(out, "skip", t, credential=cid, reason="quota low", windows=list(windows),
                      note="kept only if nothing better is left")
        _step(out, "quota", t, headroom=headroom)
    return tier


def _chose(
    out: list[dict[str, Any]], t: float, cid: str, tier_size: int, bound: str | None, inherited: str | None,
    strategy: str,
) -> None:
    if bound is not None and bound == cid:
        _step(out, "chose", t, credential=cid, by="session")
    elif inherited is not None and inherited == cid:
        _step(out, "chose", t, credential=cid, by="session", inherited=True)
    elif tier_size == 1:
        _step(out, "chose", t, credential=cid, by="only")
    else:
        fields: dict[str, Any] = {}
        if bound is not None:
            fields["rebound_from"] = bound  # the session's account was not usable (or nearly exhausted)
        _step(out, "chose", t, credential=cid, by="selector", strategy=strategy, **fields)
