"""Cooldown durations per status, the 429 ladder, Retry-After and AllCoolingDown."""

from __future__ import annotations

import pytest

from crossroute.routing.cooldown import plan_cooldown
from crossroute.routing.router import AllCoolingDown, Router, RoutingSettings
from crossroute.state.memory import MemoryState

from .routing_fakes import Cand, Clock


def make(**settings: object) -> tuple[Router, MemoryState, Clock]:
    clock = Clock()
    state = MemoryState(clock=clock)
    return Router(RoutingSettings(**settings), state, clock=clock), state, clock  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "seconds"),
    [
        (401, 1800.0),
        (402, 1800.0),
        (403, 1800.0),
        (404, 60.0),
        (408, 60.0),
        (500, 60.0),
        (502, 60.0),
        (503, 60.0),
        (504, 60.0),
        (529, 60.0),
        (409, 60.0),
    ],
)
def test_plan_per_status(status: int | None, seconds: float) -> None:
    plan = plan_cooldown(status, None, 0, 60.0)
    assert plan is not None and plan.seconds == seconds and plan.level == 0


@pytest.mark.parametrize(("status", "whole"), [(401, True), (402, True), (403, False), (404, False),
                                               (429, False), (503, False), (None, True)])
def test_plan_scope_per_status(status: int | None, whole: bool) -> None:
    plan = plan_cooldown(status, None, 0, 60.0)
    assert plan is not None and plan.credential is whole


def test_unreachable_backs_off_from_one_second_up_to_the_transient_cooldown() -> None:
    got, level = [], 0
    for _ in range(9):
        plan = plan_cooldown(None, None, level, 60.0)
        assert plan is not None and plan.credential
        got.append(plan.seconds)
        level = plan.level
    assert got == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_scope_given_by_the_executor_wins() -> None:
    assert plan_cooldown(404, None, 0, 60.0, "request") is None  # an unknown previous_response_id
    plan = plan_cooldown(503, None, 0, 60.0, "credential")
    assert plan is not None and plan.credential and plan.seconds == 60.0


@pytest.mark.parametrize("status", [400, 413, 422])
def test_request_errors_have_no_cooldown(status: int) -> None:
    assert plan_cooldown(status, None, 0, 60.0) is None


def test_429_ladder_and_retry_after() -> None:
    got = []
    level = 0
    for _ in range(14):
        plan = plan_cooldown(429, None, level, 60.0)
        assert plan is not None
        got.append(plan.seconds)
        level = plan.level
    assert got == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1800, 1800, 1800]
    plan = plan_cooldown(429, 17.5, 3, 60.0)
    assert plan == (17.5, 4, False)
    assert plan_cooldown(429, 0, 0, 60.0) == (1.0, 1, False)  # a zero Retry-After is not a value
    assert plan_cooldown(429, None, 10_000, 60.0).seconds == 1800.0  # type: ignore[union-attr]


def test_transient_setting() -> None:
    assert plan_cooldown(503, None, 0, 5.0) == (5.0, 0, False)
    assert plan_cooldown(503, None, 0, -1).seconds == 0  # type: ignore[union-attr]


async def test_cooldown_is_per_credential_and_model() -> None:
    router, _, clock = make(strategy="fill-first")
    a, b = Cand("a"), Cand("b")
    await router.report_failure(a, "m1", None, 503, None)
    assert (await router.pick([a, b], "m1", None)).credential_id == "b"
    assert (await router.pick([a, b], "m2", None)).credential_id == "a"
    clock.t += 59
    assert (await router.pick([a, b], "m1", None)).credential_id == "b"
    clock.t += 2
    assert (await router.pick([a, b], "m1", None)).credential_id == "a"


@pytest.mark.parametrize(("status", "seconds"), [(401, 1800), (403, 1800), (404, 60), (None, 1)])
async def test_router_durations(status: int | None, seconds: float) -> None:
    router, _, clock = make()
    a = Cand("a")
    await router.report_failure(a, "m", None, status, None)
    with pytest.raises(AllCoolingDown) as err:
        await router.pick([a], "m", None)
    assert err.value.retry_after == pytest.approx(seconds)
    clock.t += seconds - 0.5
    with pytest.raises(AllCoolingDown):
        await router.pick([a], "m", None)
    clock.t += 1
    assert (await router.pick([a], "m", None)) is a


async def test_router_429_ladder_climbs_and_success_resets_it() -> None:
    router, _, clock = make()
    a = Cand("a")
    waits = []
    for _ in range(5):
        await router.report_failure(a, "m", None, 429, None)
        with pytest.raises(AllCoolingDown) as err:
            await router.pick([a], "m", None)
        waits.append(err.value.retry_after)
        clock.t += err.value.retry_after + 0.01  # it recovers, is tried again, and 429s again
    assert waits == pytest.approx([1, 2, 4, 8, 16])
    await router.report_success(a, "m", None)
    await router.report_failure(a, "m", None, 429, None)
    with pytest.raises(AllCoolingDown) as err:
        await router.pick([a], "m", None)
    assert err.value.retry_after == pytest.approx(1)


async def test_router_retry_after_wins() -> None:
    router, _, _ = make()
    a = Cand("a")
    await router.report_failure(a, "m", None, 429, 42.0)
    with pytest.raises(AllCoolingDown) as err:
        await router.pick([a], "m", None)
    assert err.value.retry_after == pytest.approx(42.0)


async def test_all_cooling_down_reports_the_earliest_recovery() -> None:
    router, _, _ = make()
    cands = [Cand("a"), Cand("b"), Cand("c")]
    await router.report_failure(cands[0], "m", None, 401, None)  # 1800
    await router.report_failure(cands[1], "m", None, 429, 30.0)  # 30
    await router.report_failure(cands[2], "m", None, 500, None)  # 60
    with pytest.raises(AllCoolingDown) as err:
        await router.pick(cands, "m", None)
    assert err.value.retry_after == pytest.approx(30.0)
    assert isinstance(err.value, Exception) and "cooling down" in str(err.value)


async def test_a_shorter_cooldown_does_not_cut_a_longer_one() -> None:
    router, _, _ = make()
    a = Cand("a")
    await router.report_failure(a, "m", None, 403, None)
    await router.report_failure(a, "m", None, 500, None)  # a concurrent request's late failure
    with pytest.raises(AllCoolingDown) as err:
        await router.pick([a], "m", None)
    assert err.value.retry_after == pytest.approx(1800)


async def test_request_errors_do_not_cool_down() -> None:
    router, _, _ = make()
    a = Cand("a")
    for status in (400, 413, 422):
        await router.report_failure(a, "m", None, status, None)
    assert (await router.pick([a], "m", None)) is a


async def test_disable_cooling_and_transient_off() -> None:
    router, _, _ = make(disable_cooling=True)
    a = Cand("a")
    await router.report_failure(a, "m", None, 429, None)
    await router.report_failure(a, "m", None, 401, None)
    assert (await router.pick([a], "m", None)) is a
    router2, _, _ = make(transient_cooldown=-1)
    await router2.report_failure(a, "m", None, 503, None)
    await router2.report_failure(a, "m", None, None, None)
    assert (await router2.pick([a], "m", None)) is a
    await router2.report_failure(a, "m", None, 403, None)
    with pytest.raises(AllCoolingDown):
        await router2.pick([a], "m", None)


async def test_disable_cooling_hot_reload_ignores_existing_cooldowns() -> None:
    router, _, _ = make()
    a = Cand("a")
    await router.report_failure(a, "m", None, 401, None)
    with pytest.raises(AllCoolingDown):
        await router.pick([a], "m", None)
    await router.apply_settings(RoutingSettings(disable_cooling=True))
    assert (await router.pick([a], "m", None)) is a


async def test_nothing_available_without_cooldowns_is_lookup_error() -> None:
    router, _, _ = make()
    with pytest.raises(LookupError):
        await router.pick([], "m", None)
    with pytest.raises(LookupError) as err:
        await router.pick([Cand("a", disabled=True), Cand("b")], "m", None, exclude=("b",))
    assert not isinstance(err.value, AllCoolingDown)


async def test_model_cooldowns_are_keyed_by_the_upstream_model_not_the_alias() -> None:
    router, _, _ = make(strategy="fill-first")
    # one credential serves "llama3.2" under two client names; another serves "qwen" as "local"
    a_local, a_llama = Cand("a", upstream_model="llama3.2"), Cand("a", upstream_model="llama3.2")
    a_other = Cand("a", upstream_model="qwen3")
    await router.report_failure(a_local, "local", None, 503, None)
    with pytest.raises(AllCoolingDown):
        await router.pick([a_llama], "llama3.2", None)  # the same upstream model, another name
    assert (await router.pick([a_other], "local", None)) is a_other  # another upstream model


async def test_a_request_dependent_404_locks_nothing_out() -> None:
    router, _, _ = make()
    a = Cand("a", upstream_model="gpt-x")
    await router.report_failure(a, "m", None, 404, None, kind="request")
    assert (await router.pick([a], "m", None)) is a
    await router.report_failure(a, "m", None, 404, None)  # the upstream does not know the model
    with pytest.raises(AllCoolingDown) as err:
        await router.pick([a], "m", None)
    assert err.value.retry_after == pytest.approx(60)


async def test_credential_cooldowns_cover_every_model_and_a_success_clears_them() -> None:
    router, _, clock = make()
    a1, a2 = Cand("a", upstream_model="m1"), Cand("a", upstream_model="m2")
    await router.report_failure(a1, "m1", None, None, None)  # connection refused
    with pytest.raises(AllCoolingDown) as err:
        await router.pick([a2], "m2", None)
    assert err.value.retry_after == pytest.approx(1)
    clock.t += 1.01
    await router.report_failure(a2, "m2", None, None, None)  # still down: 2 s
    with pytest.raises(AllCoolingDown) as err:
        await router.pick([a1], "m1", None)
    assert err.value.retry_after == pytest.approx(2)
    clock.t += 2.01
    await router.report_success(a1, "m1", None)  # back: the ladder starts again at 1 s
    await router.report_failure(a1, "m1", None, None, None)
    with pytest.raises(AllCoolingDown) as err:
        await router.pick([a1], "m1", None)
    assert err.value.retry_after == pytest.approx(1)
