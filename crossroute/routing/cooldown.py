"""How long a credential rests (per model) after an upstream failure.

- 401, 402, 403: 30 minutes (bad or unpaid credential).
- 404: 12 hours (the credential cannot serve this model).
- 429: the upstream's ``Retry-After`` when given, else 1 s doubling with each consecutive 429
  (1, 2, 4, ... s) up to 30 minutes; a success resets the ladder.
- 408, 5xx, any other status and connection errors/timeouts (``status is None``): the transient
  cooldown (60 s by default; ``-1`` turns it off).
- 400, 413, 422: the request itself is wrong; no cooldown, and the session keeps its credential.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "AUTH_COOLDOWN",
    "LEVEL_KEEP",
    "NOT_FOUND_COOLDOWN",
    "RATE_LIMIT_MAX",
    "REQUEST_ERRORS",
    "CooldownPlan",
    "plan_cooldown",
]

AUTH_COOLDOWN = 30 * 60.0
NOT_FOUND_COOLDOWN = 12 * 3600.0
RATE_LIMIT_MAX = 30 * 60.0
# How long the 429 level is remembered after its cooldown ended, so the ladder can keep climbing.
LEVEL_KEEP = 30 * 60.0
REQUEST_ERRORS = frozenset({400, 413, 422})


class CooldownPlan(NamedTuple):
    """``seconds``: how long to cool down (0 = not at all); ``level``: the 429 level to store."""

    seconds: float
    level: int


def plan_cooldown(
    status: int | None, retry_after: float | None, prev_level: int, transient: float
) -> CooldownPlan | None:
    """The cooldown for a failure, or None for a request error (no cooldown, binding kept)."""
    if status in REQUEST_ERRORS:
        return None
    if status == 429:
        level = prev_level + 1
        if retry_after is not None and retry_after > 0:
            return CooldownPlan(float(retry_after), level)
        # level 1 -> 1 s, 2 -> 2 s, 3 -> 4 s ...; the exponent is capped before it can overflow
        return CooldownPlan(min(float(2 ** min(level - 1, 30)), RATE_LIMIT_MAX), level)
    if status in (401, 402, 403):
        return CooldownPlan(AUTH_COOLDOWN, prev_level)
    if status == 404:
        return CooldownPlan(NOT_FOUND_COOLDOWN, prev_level)
    # 408, 5xx, other statuses, connection errors and timeouts
    return CooldownPlan(max(transient, 0.0), prev_level)
