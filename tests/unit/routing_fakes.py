"""Stand-ins shared by the routing unit tests: a candidate credential and a settable clock."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cand:
    credential_id: str
    provider: str = "claude"
    priority: int = 0
    weight: int = 1
    disabled: bool = False
    upstream_model: str = ""  # "" = the model the test asks for


class Clock:
    """A clock the test moves by hand (``clock.t += seconds``)."""

    def __init__(self) -> None:
        self.t = 2_000_000.0

    def __call__(self) -> float:
        return self.t
