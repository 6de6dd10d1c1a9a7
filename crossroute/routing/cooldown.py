"""How long a credential rests after an upstream failure, and for what.

A failure has a scope (given by the executor's ``UpstreamError``, else derived from the status):

- request (nothing rests, the session keeps its credential): 400, 413, 422, and a 404 for
  something the request names (an unknown ``previous_response_id``, a file).
- credential, every model, 30 minutes: 401, 402 (after a refresh, where one is possible).
- this upstream model, 30 minutes: 403.
- this upstream model, 60 s: 404 (the upstream does not serve this model).
- this upstream model: 429 rests for the upstream's ``Retry-After``, else 1 s doubling with each
  consecutive 429 up to 30 minutes; a success resets the ladder.
- this upstream model, the transient cooldown (60 s; ``-1`` turns it off): 408, 5xx, timeouts, a
  200 that is not an answer, any other status.
- credential, every model: unreachable (connection refused, reset, DNS) rests 1 s, doubling with
  each consecutive failure up to the transient cooldown; a success resets it.

Model cooldowns are keyed by credential id and the model name the upstream receives (never the
client's alias); credential cooldowns by credential id and ``ANY_MODEL``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "ANY_MODEL",
    "AUTH_COOLDOWN",
    "CREDENTIAL",
    "LEVEL_KEEP",
    "MODEL",
    "NOT_FOUND_COOLDOWN",
    "RATE_LIMIT_MAX",
    "REQUEST",
    "REQUEST_ERRORS",
    "CooldownPlan",
    "default_scope",
    "plan_cooldown",
]

AUTH_COOLDOWN = 30 * 60.0
NOT_FOUND_COOLDOWN = 60.0
RATE_LIMIT_MAX = 30 * 60.0
# How long a ladder level (429s, unreachable) is remembered after its cooldown ended, so the
# ladder can keep climbing.
LEVEL_KEEP = 30 * 60.0
REQUEST_ERRORS = frozenset({400, 413, 422})

# failure scopes (the same strings as ``providers.base``)
REQUEST = "request"
MODEL = "model"
CREDENTIAL = "credential"
# the model key of a cooldown that covers every model of a credential
ANY_MODEL = "*"


class CooldownPlan(NamedTuple):
    """``seconds``: how long to cool down (0 = not at all); ``level``: the ladder level to store;
    ``credential``: whether it covers every model of the credential."""

    seconds: float
    level: int
    credential: bool = False


def default_scope(status: int | None) -> str:
    """The scope of a failure known only by its status (None: no HTTP answer)."""
    if status is None or status == 0:
        return CREDENTIAL
    if status in REQUEST_ERRORS:
        return REQUEST
    if status in (401, 402):
        return CREDENTIAL
    return MODEL


def _ladder(level: int, cap: float) -> float:
    # level 1 -> 1 s, 2 -> 2 s, 3 -> 4 s ...; the exponent is capped before it can overflow
    return min(float(2 ** min(level - 1, 30)), cap)


def plan_cooldown(
    status: int | None, retry_after: float | None, prev_level: int, transient: float, scope: str | None = None
) -> CooldownPlan | None:
    """The cooldown for a failure, or None when the request itself was wrong (nothing cools, the
    binding is kept). ``prev_level``: the ladder level stored under the key this failure cools."""
    if scope is None:
        scope = default_scope(status)
    if scope == REQUEST:
        return None
    whole = scope == CREDENTIAL
    if status is None or status == 0:  # unreachable: back off from 1 s
        if transient <= 0:
            return CooldownPlan(0.0, prev_level, whole)
        level = prev_level + 1
        return CooldownPlan(_ladder(level, transient), level, whole)
    if status == 429:
        level = prev_level + 1
        if retry_after is not None and retry_after > 0:
            return CooldownPlan(float(retry_after), level, whole)
        return CooldownPlan(_ladder(level, RATE_LIMIT_MAX), level, whole)
    if status in (401, 402, 403):
        return CooldownPlan(AUTH_COOLDOWN, prev_level, whole)
    if status == 404:
        return CooldownPlan(NOT_FOUND_COOLDOWN, prev_level, whole)
    # 408, 5xx, other statuses, timeouts, answers that were not answers
    return CooldownPlan(max(transient, 0.0), prev_level, whole)
