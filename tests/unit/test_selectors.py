"""Selectors: round-robin cursors per provider+model, fill-first order, smooth weighted RR, tiers."""

from __future__ import annotations

import pytest

from crossroute.routing.router import AllCoolingDown, Router, RoutingSettings
from crossroute.routing.selectors import (
    FillFirstSelector,
    RoundRobinSelector,
    WeightedRoundRobinSelector,
    build_selector,
)
from crossroute.state.memory import MemoryState

from .routing_fakes import Cand, Clock


def make_router(strategy: str) -> tuple[Router, Clock]:
    clock = Clock()
    return Router(RoutingSettings(strategy=strategy), MemoryState(clock=clock), clock=clock), clock


async def pick_ids(
    router: Router, cands: list[Cand], model: str, n: int, exclude: tuple[str, ...] = ()
) -> list[str]:
    return [(await router.pick(cands, model, None, exclude)).credential_id for _ in range(n)]


async def picks(router: Router, cands: list[Cand], model: str, n: int, exclude: tuple[str, ...] = ()) -> str:
    """Single-letter credential ids, concatenated."""
    return "".join(await pick_ids(router, cands, model, n, exclude))


async def test_round_robin_cycles_in_stable_order() -> None:
    router, _ = make_router("round-robin")
    cands = [Cand("c"), Cand("a"), Cand("b")]  # given unsorted: order is by credential id
    assert await picks(router, cands, "m", 7) == "abcabca"


async def test_round_robin_cursor_per_provider_and_model() -> None:
    router, _ = make_router("round-robin")
    claude = [Cand("a"), Cand("b"), Cand("c")]
    gemini = [Cand("x", provider="gemini"), Cand("y", provider="gemini")]
    assert await picks(router, claude, "m1", 2) == "ab"
    # another model has its own cursor
    assert await picks(router, claude, "m2", 1) == "a"
    # another provider has its own cursor
    assert await picks(router, gemini, "m1", 3) == "xyx"
    # the first cursor carried on where it was
    assert await picks(router, claude, "m1", 2) == "ca"


async def test_round_robin_skips_unavailable_without_losing_spread() -> None:
    router, _ = make_router("round-robin")
    cands = [Cand("a"), Cand("b", disabled=True), Cand("c")]
    assert set(await picks(router, cands, "m", 4)) == {"a", "c"}
    assert await picks(router, cands, "m", 4, exclude=("a",)) == "cccc"


async def test_fill_first_is_stable_and_moves_on_when_first_unavailable() -> None:
    router, _ = make_router("fill-first")
    cands = [Cand("b"), Cand("c"), Cand("a")]
    assert await picks(router, cands, "m", 3) == "aaa"
    await router.report_failure(Cand("a"), "m", None, 503, None)
    assert await picks(router, cands, "m", 3) == "bbb"
    assert await picks(router, cands, "m", 1, exclude=("b",)) == "c"


async def test_smooth_weighted_sequence_5_1_1() -> None:
    router, _ = make_router("weighted-round-robin")
    cands = [Cand("a", weight=5), Cand("b", weight=1), Cand("c", weight=1)]
    assert await picks(router, cands, "m", 14) == "aabacaa" * 2


async def test_weighted_selector_directly() -> None:
    sel = WeightedRoundRobinSelector()
    cands = [Cand("a", weight=2), Cand("b", weight=1)]
    got = "".join([(await sel.select(cands, "k")).credential_id for _ in range(6)])
    assert got == "abaaba"


async def test_weighted_credits_reset_when_weights_change() -> None:
    sel = WeightedRoundRobinSelector()
    first = [Cand("a", weight=5), Cand("b", weight=1), Cand("c", weight=1)]
    assert "".join([(await sel.select(first, "k")).credential_id for _ in range(3)]) == "aab"
    changed = [Cand("a", weight=1), Cand("b", weight=1), Cand("c", weight=1)]
    # fresh credits: equal weights rotate from the start of the stable order
    assert "".join([(await sel.select(changed, "k")).credential_id for _ in range(3)]) == "abc"


@pytest.mark.parametrize("bad_weight", [0, -3, 1_000_001])
async def test_weighted_excludes_out_of_range_weights(bad_weight: int) -> None:
    router, _ = make_router("weighted-round-robin")
    cands = [Cand("a", weight=bad_weight), Cand("b", weight=1)]
    assert await picks(router, cands, "m", 3) == "bbb"
    with pytest.raises(LookupError):
        await router.pick([Cand("a", weight=bad_weight)], "m", None)


async def test_weight_limits_do_not_apply_to_round_robin() -> None:
    router, _ = make_router("round-robin")
    assert await picks(router, [Cand("a", weight=0)], "m", 1) == "a"


async def test_weighted_max_weight_accepted() -> None:
    router, _ = make_router("weighted-round-robin")
    cands = [Cand("a", weight=1_000_000), Cand("b", weight=1)]
    got = await picks(router, cands, "m", 50)
    assert got == "a" * 50


@pytest.mark.parametrize("strategy", ["round-robin", "fill-first", "weighted-round-robin"])
async def test_priority_tiers(strategy: str) -> None:
    router, clock = make_router(strategy)
    cands = [Cand("low", priority=0), Cand("hi1", priority=10), Cand("hi2", priority=10), Cand("mid", priority=5)]
    assert set(await pick_ids(router, cands, "m", 6)) <= {"hi1", "hi2"}
    # the whole top tier cooling down: the next tier serves
    await router.report_failure(Cand("hi1", priority=10), "m", None, 500, None)
    await router.report_failure(Cand("hi2", priority=10), "m", None, 500, None)
    assert await pick_ids(router, cands, "m", 3) == ["mid"] * 3
    # excluded (already tried) works the same
    assert await pick_ids(router, cands, "m", 1, exclude=("mid",)) == ["low"]
    # cooldown over: back to the top tier
    clock.t += 61
    assert set(await pick_ids(router, cands, "m", 4)) <= {"hi1", "hi2"}


async def test_top_tier_cooling_and_rest_excluded_is_all_cooling_down() -> None:
    router, _ = make_router("round-robin")
    cands = [Cand("a", priority=1), Cand("b")]
    await router.report_failure(cands[0], "m", None, 429, 7.0)
    with pytest.raises(AllCoolingDown) as err:
        await router.pick(cands, "m", None, exclude=("b",))
    assert err.value.retry_after == pytest.approx(7.0)


def test_build_selector() -> None:
    state = MemoryState()
    assert isinstance(build_selector("round-robin", state), RoundRobinSelector)
    assert isinstance(build_selector("fill-first", state), FillFirstSelector)
    assert isinstance(build_selector("weighted-round-robin", state), WeightedRoundRobinSelector)
    with pytest.raises(ValueError):
        build_selector("random", state)
