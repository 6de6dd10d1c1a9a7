"""``GET /backend-api/wham/usage`` and ``GET /api/codex/usage``: Codex CLI's usage request, answered
from the pooled quota of the gateway's Codex (ChatGPT) accounts.

The answer has the shape Codex CLI reads (its backend client's ``RateLimitStatusPayload``):
``{"plan_type", "rate_limit": {"allowed", "limit_reached", "primary_window": {"used_percent",
"limit_window_seconds", "reset_after_seconds", "reset_at"}, "secondary_window": {...}}}``, all
window fields integers. Pooled over the accounts that reported (``QuotaBook.pooled``): the mean
percent used, the soonest reset; ``limit_reached`` only when every account is exhausted (the
gateway fails over until then), and with it ``"rate_limit_reached_type": {"type":
"rate_limit_reached"}`` (Codex's ``rateLimitReachedType``). ``rate_limit`` is null before any Codex
answer was seen.

Codex 0.171 decodes this strictly: ``plan_type`` must be a string (a plan it does not know shows as
"unknown"), ``allowed`` and ``limit_reached`` must be there, and each window's four fields must be
present as integers (a float ``reset_at`` or ``used_percent`` fails the whole read). Its
``account/rateLimits/read`` is run against this route in tests/e2e/test_codex_cli_usage.py.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from ..replies import Reply, json_reply

if TYPE_CHECKING:
    from ..api.request import Request
    from ..gateway import Gateway

__all__ = ["CODEX_KINDS", "routes", "usage_payload"]

CODEX_KINDS = frozenset({"codex-oauth", "codex"})
DEFAULT_PLAN = "plus"  # Codex CLI requires a plan name; used when no account said its plan
_WINDOWS = (("primary", "primary_window", 5 * 3600), ("secondary", "secondary_window", 7 * 86400))


def _codex_ids(gw: Gateway) -> list[str]:
    entries: list[Any] = list(getattr(gw.settings, "providers", ()))
    entries.extend(getattr(gw.registry, "accounts", ()))
    return [e.id for e in entries if e.kind in CODEX_KINDS and not e.disabled]


def usage_payload(book: Any, credential_ids: list[str], now: float | None = None) -> dict[str, Any]:
    if now is None:
        now = time.time()
    pooled = book.pooled(credential_ids, now)
    windows = pooled["windows"]
    rate_limit: dict[str, Any] | None = None
    shown = [(key, windows[name], default) for name, key, default in _WINDOWS if name in windows]
    if shown:
        rate_limit = {"allowed": True, "limit_reached": False}
        for key, w, default in shown:
            seconds = int(w["seconds"] or default)
            reset_at = w["reset_at"] if w["reset_at"] is not None else now + seconds
            rate_limit[key] = {
                "used_percent": min(100, max(0, round(w["used"] * 100))),
                "limit_window_seconds": seconds,
                "reset_after_seconds": max(0, math.ceil(reset_at - now)),
                "reset_at": int(reset_at),
            }
            if w["exhausted"]:
                rate_limit["allowed"] = False
                rate_limit["limit_reached"] = True
    out: dict[str, Any] = {"plan_type": pooled["plan"] or DEFAULT_PLAN, "rate_limit": rate_limit}
    if rate_limit is not None and rate_limit["limit_reached"]:
        out["rate_limit_reached_type"] = {"type": "rate_limit_reached"}  # what Codex shows as the limit hit
    return out


async def usage(gw: Gateway, req: Request) -> Reply:
    return json_reply(usage_payload(gw.quota, _codex_ids(gw)))


def routes() -> list[tuple[str, str, Any, str, bool, bool]]:
    return [
        ("GET", "/backend-api/wham/usage", usage, "openai", True, False),
        ("GET", "/api/codex/usage", usage, "openai", True, False),
    ]
