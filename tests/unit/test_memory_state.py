"""MemoryState's cap on session bindings: least recently used out first, indexes kept exact."""

from __future__ import annotations

import pytest

from crossroute.config import Settings
from crossroute.gateway import make_state
from crossroute.state.memory import DEFAULT_MAX_BINDINGS, MemoryState


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def state(cap: int) -> tuple[MemoryState, Clock]:
    clock = Clock()
    return MemoryState(clock=clock, max_bindings=cap), clock


def test_the_cap_holds_however_many_bindings_arrive() -> None:
    s, _ = state(100)
    for i in range(1000):
        s.set_binding_now(f"k{i}", f"c{i % 3}", 3600)
        assert s.binding_count() <= 100
    assert s.binding_count() == 100
    assert s.evicted == 900
    assert [k for k, _, _ in s.iter_bindings()] == [f"k{i}" for i in range(900, 1000)]
    # the per-credential index forgot the evicted keys too
    assert sum(len(keys) for keys in s._by_credential.values()) == 100
    assert s.delete_bindings_for_now("c0") == len([i for i in range(900, 1000) if i % 3 == 0])


def test_the_least_recently_used_binding_goes_first() -> None:
    s, clock = state(3)
    for k in ("a", "b", "c"):
        s.set_binding_now(k, "cred", 60)
        clock.t += 1
    assert s.get_binding_now("a", 60) == "cred"  # a read makes "a" the most recent
    s.set_binding_now("d", "cred", 60)  # pushes out "b", the least recently used
    assert s.get_binding_now("b", 60) is None
    assert {k for k, _, _ in s.iter_bindings()} == {"a", "c", "d"}
    s.set_binding_now("c", "other", 60)  # a rewrite is a use as well
    s.set_binding_now("e", "cred", 60)  # pushes out "a"
    assert {k for k, _, _ in s.iter_bindings()} == {"c", "d", "e"}
    assert s.get_binding_now("c", 60) == "other"


def test_peek_does_not_count_as_a_use() -> None:
    s, _ = state(2)
    s.set_binding_now("a", "x", 60)
    s.set_binding_now("b", "x", 60)
    assert s.peek_binding("a") is not None
    s.set_binding_now("c", "x", 60)
    assert s.peek_binding("a") is None and s.peek_binding("b") is not None


def test_expiry_and_the_sweep_still_work_under_the_cap() -> None:
    s, clock = state(10)
    for i in range(10):
        s.set_binding_now(f"k{i}", "x", 10)
    clock.t += 5
    s.get_binding_now("k0", 10)  # refreshed: lives 10 s from now
    clock.t += 6
    assert s.sweep() == 9
    assert [k for k, _, _ in s.iter_bindings()] == ["k0"]
    assert s.evicted == 0  # the TTL removed those, not the cap


def test_cap_of_one_and_invalid_caps() -> None:
    s, _ = state(1)
    s.set_binding_now("a", "x", 60)
    s.set_binding_now("b", "y", 60)
    assert s.get_binding_now("a", 60) is None and s.get_binding_now("b", 60) == "y"
    assert s.delete_bindings_for_now("x") == 0
    with pytest.raises(ValueError):
        MemoryState(max_bindings=0)


def test_the_gateway_passes_max_session_bindings() -> None:
    assert MemoryState().max_bindings == DEFAULT_MAX_BINDINGS == 100_000
    settings = Settings()
    settings.max_session_bindings = 1234
    made = make_state(settings)
    assert isinstance(made, MemoryState) and made.max_bindings == 1234


# ------------------------------------------------------------------ sharing between workers


class Wire:
    """Stands in for Peers: records what a state sends."""

    def __init__(self) -> None:
        self.ops: list[list] = []

    def send(self, op: list) -> None:
        self.ops.append(op)


def linked(cap: int = 100) -> tuple[MemoryState, Wire, Clock]:
    s, clock = state(cap)
    wire = Wire()
    s.peers = wire  # type: ignore[assignment]
    return s, wire, clock


def test_changes_are_sent_and_applied_elsewhere_without_echo() -> None:
    a, wire_a, clock = linked()
    b, wire_b, _ = linked()
    b._clock = clock
    a.set_binding_now("s1", "c1", 60)
    a.set_cooldown_now("c2", "m", clock.t + 30, 1, clock.t + 90)
    for op in wire_a.ops:
        b.apply_peer(op)
    assert b.get_binding_now("s1", 60) == "c1"
    assert "c2" in b.get_cooldowns_now(["c1", "c2"], "m")
    assert wire_b.ops == []  # applied, not sent on (the read above was no refresh worth telling)
    a.clear_cooldown_now("c2", "m")
    a.delete_binding_if_now("s1", "c1")
    for op in wire_a.ops[2:]:
        b.apply_peer(op)
    assert b.get_binding_now("s1", 60) is None and not b.cooldowns


def test_clearing_a_credentials_cooldowns_reaches_the_other_workers() -> None:
    a, wire_a, clock = linked()
    b, _, _ = linked()
    b._clock = clock
    for model in ("m1", "m2", "*"):
        a.set_cooldown_now("c1", model, clock.t + 30, 1, clock.t + 90)
    a.set_cooldown_now("c2", "m1", clock.t + 30, 1, clock.t + 90)
    for op in wire_a.ops:
        b.apply_peer(op)
    wire_a.ops.clear()
    assert a.clear_cooldowns_for_now("c1") == 3
    assert wire_a.ops == [["X", "c1"]]  # one operation, whatever the number of models
    b.apply_peer(wire_a.ops[0])
    assert set(a.cooldowns) == set(b.cooldowns) == {("c2", "m1")}
    assert a.clear_cooldowns_for_now(None) == 1  # everyone's
    b.apply_peer(wire_a.ops[-1])
    assert not a.cooldowns and not b.cooldowns


def test_a_conflict_resolves_alike_in_both_workers() -> None:
    a, wire_a, clock = linked()
    b, wire_b, _ = linked()
    b._clock = clock
    a.set_binding_now("s", "c1", 60)
    clock.t += 0.001
    b.set_binding_now("s", "c2", 60)  # the same new session, at once, elsewhere
    for op in wire_b.ops:
        a.apply_peer(op)
    for op in wire_a.ops:
        b.apply_peer(op)
    assert a.peek_binding("s") == b.peek_binding("s")
    assert a.get_binding_now("s", 60) == b.get_binding_now("s", 60) == "c2"  # expires later: wins
    assert a._by_credential == b._by_credential == {"c2": {"s"}}


def test_refreshes_are_told_now_and_then_and_applied_bindings_obey_the_cap() -> None:
    a, wire, clock = linked()
    a.set_binding_now("s", "c1", 100)
    wire.ops.clear()
    for _ in range(20):
        clock.t += 1
        a.get_binding_now("s", 100)
    assert 1 <= len(wire.ops) <= 2  # not one message per read
    b, _, _ = linked(cap=3)
    b._clock = clock
    for i in range(10):
        b.apply_peer(["b", f"k{i}", "c", clock.t + 60])
    assert b.binding_count() == 3
    b.apply_peer(["b", "old", "c", clock.t - 1])  # already expired: not stored
    assert b.peek_binding("old") is None
    b.apply_peer(["?", 1])  # unknown operations are ignored
