"""What providers say about a credential's quota, read from an answer's headers (and Codex's
``codex.rate_limits`` events) into provider-neutral windows.

Header families read (names as the providers send them; values as they format them):

- Anthropic subscription (Claude Code OAuth), account-wide:
  ``anthropic-ratelimit-unified-{5h,7d,...}-utilization`` (a fraction, 0..1), ``-reset`` (epoch
  seconds), ``-status`` (``allowed``, ``allowed_warning``, ``rejected``); overall
  ``anthropic-ratelimit-unified-status`` / ``-reset`` / ``-representative-claim``.
- Anthropic API keys, per model class: ``anthropic-ratelimit-{requests,tokens,input-tokens,
  output-tokens}-{limit,remaining,reset}`` (reset in RFC 3339).
- OpenAI and OpenAI-compatible: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (reset as a
  duration such as ``6m0s``, ``1.5s`` or ``20ms``), per model.
- Codex (ChatGPT account), account-wide: ``x-codex-{primary,secondary}-used-percent`` (0..100),
  ``-window-minutes``, ``-reset-at`` (epoch seconds) or ``-reset-after-seconds``;
  ``x-codex-plan-type``; ``x-codex-credits-{has-credits,unlimited,balance}``.

Codex's refusal body (``{"error": {"type": "usage_limit_reached", "plan_type", "resets_at" |
"resets_in_seconds"}}``, on 429s and in ``response.failed`` events) is read by ``parse_error_body``.

``parse(headers, now)`` returns None when the headers carry none of these (most cheaply decided by
the caller, see ``SENTINELS``), else a ``Signals``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from .durations import parse_duration

__all__ = ["SENTINELS", "Signals", "Window", "parse", "parse_codex_event", "parse_duration", "parse_error_body"]

# One of these is present whenever a family above is: a quick "anything at all?" test.
SENTINELS = (
    "anthropic-ratelimit-unified-status",
    "anthropic-ratelimit-unified-5h-utilization",
    "anthropic-ratelimit-unified-5h-status",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-tokens-remaining",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-codex-primary-used-percent",
    "x-codex-secondary-used-percent",
)

_UNIFIED = "anthropic-ratelimit-unified-"
_UNIFIED_SUFFIXES = ("-utilization", "-reset", "-status")
_UNIFIED_SENTINELS = tuple(_UNIFIED + x for x in ("status", "5h-status", "7d-status", "5h-utilization",
                                                   "7d-utilization", "reset"))
_CLAIMS = {"five_hour": "5h", "seven_day": "7d", "seven_day_opus": "7d_opus", "seven_day_sonnet": "7d_sonnet"}
_NOT_WINDOWS = frozenset({"fallback", "overage"})  # pay-as-you-go states, not windows that refuse
_WINDOW_SECONDS = {"5h": 5 * 3600.0, "7d": 7 * 86400.0}
_ANTHROPIC_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")
_OPENAI_KINDS = ("requests", "tokens")


class Window:
    """One quota window of a credential.

    ``used``: the fraction used (0..1); ``reset_at``: epoch seconds when it refills (None: not
    said); ``limit`` / ``remaining``: absolute counts where the provider gives them (requests,
    tokens); ``seconds``: the window's length where known; ``rejected``: the provider says this
    window refuses requests now; ``account_wide``: it covers every model of the credential.
    """

    __slots__ = ("account_wide", "limit", "name", "rejected", "remaining", "reset_at", "seconds", "used")

    def __init__(
        self, name: str, used: float, reset_at: float | None = None, *, limit: float | None = None,
        remaining: float | None = None, seconds: float | None = None, rejected: bool = False,
        account_wide: bool = False,
    ) -> None:
        self.name = name
        self.used = min(max(used, 0.0), 1.0)
        self.reset_at = reset_at
        self.limit = limit
        self.remaining = remaining
        self.seconds = seconds
        self.rejected = rejected
        self.account_wide = account_wide

    @property
    def left(self) -> float:
        """The fraction left (0..1)."""
        return 1.0 - self.used

    def exhausted(self, now: float) -> bool:
        """Refusing requests until its reset (which is still ahead)."""
        if self.reset_at is not None and self.reset_at <= now:
            return False
        return self.rejected or self.used >= 0.999 or (self.remaining is not None and self.remaining <= 0)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "used": round(self.used, 4)}
        for k in ("reset_at", "limit", "remaining", "seconds"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        if self.rejected:
            out["rejected"] = True
        if self.account_wide:
            out["account_wide"] = True
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Window:
        return cls(
            str(d.get("name", "?")), _num(d.get("used")) or 0.0, _num(d.get("reset_at")),
            limit=_num(d.get("limit")), remaining=_num(d.get("remaining")), seconds=_num(d.get("seconds")),
            rejected=bool(d.get("rejected")), account_wide=bool(d.get("account_wide")),
        )

    def __repr__(self) -> str:
        return f"Window({self.name!r}, used={self.used:.3f}, reset_at={self.reset_at}, rejected={self.rejected})"


class Signals:
    """Everything one answer said: its windows, and the plan and credits where given."""

    __slots__ = ("credits", "plan", "windows")

    def __init__(self, windows: list[Window], plan: str | None = None, credits: dict[str, Any] | None = None) -> None:
        self.windows = windows
        self.plan = plan
        self.credits = credits


# ------------------------------------------------------------------ value parsers
_INF = float("inf")


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if (f == f and -_INF < f < _INF) else None


def _rfc3339(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return _num(text)


# ------------------------------------------------------------------ families
def _unified(headers: Mapping[str, str], names: Iterable[str], now: float) -> list[Window]:
    """Every ``anthropic-ratelimit-unified-<window>-*`` window (a 429 may carry only its
    ``-status: rejected`` and ``-reset``); the overall status marks the representative claim."""
    found: list[str] = []
    for key in names:
        k = key.lower()
        if not k.startswith(_UNIFIED):
            continue
        for suffix in _UNIFIED_SUFFIXES:
            if k.endswith(suffix):
                w = k[len(_UNIFIED):-len(suffix)]
                if w and w not in _NOT_WINDOWS and w not in found:
                    found.append(w)
                break
    windows: dict[str, Window] = {}
    for w in found:
        prefix = _UNIFIED + w
        status = (headers.get(prefix + "-status") or "").strip().lower()
        used = _num(headers.get(prefix + "-utilization"))
        if used is None:
            if status != "rejected":
                continue
            used = 1.0
        elif 1.0 < used <= 100.0:  # a percent rather than a fraction
            used /= 100.0
        windows[w] = Window(
            w, used, _num(headers.get(prefix + "-reset")), seconds=_WINDOW_SECONDS.get(w),
            rejected=status == "rejected", account_wide=True,
        )
    overall = (headers.get(_UNIFIED + "status") or "").strip().lower()
    if overall == "rejected":
        claim = (headers.get(_UNIFIED + "representative-claim") or "").strip().lower()
        reset = _num(headers.get(_UNIFIED + "reset"))
        win = windows.get(_CLAIMS.get(claim, claim)) if claim else None
        if win is not None:
            win.rejected = True
            if win.reset_at is None:
                win.reset_at = reset
        elif not any(x.rejected for x in windows.values()):
            windows["unified"] = Window("unified", 1.0, reset, rejected=True, account_wide=True)
    return list(windows.values())


def _counted(
    headers: Mapping[str, str], kinds: Iterable[str], names: tuple[str, str, str], now: float, anthropic: bool
) -> list[Window]:
    out: list[Window] = []
    lim_n, rem_n, reset_n = names
    for kind in kinds:
        remaining = _num(headers.get(rem_n.format(kind)))
        if remaining is None:
            continue
        limit = _num(headers.get(lim_n.format(kind)))
        raw_reset = headers.get(reset_n.format(kind)) or ""
        if anthropic:
            reset_at = _rfc3339(raw_reset)
        else:
            d = parse_duration(raw_reset)
            reset_at = now + d if d is not None else None
        used = 1.0 - remaining / limit if limit else (0.0 if remaining > 0 else 1.0)
        out.append(Window(kind, used, reset_at, limit=limit, remaining=remaining))
    return out


def _codex_window(headers: Mapping[str, str], which: str, now: float) -> Window | None:
    prefix = f"x-codex-{which}-"
    pct = _num(headers.get(prefix + "used-percent"))
    if pct is None:
        return None
    minutes = _num(headers.get(prefix + "window-minutes"))
    reset_at = _num(headers.get(prefix + "reset-at"))
    if reset_at is None:
        after = _num(headers.get(prefix + "reset-after-seconds"))
        if after is not None:
            reset_at = now + after
    return Window(which, pct / 100.0, reset_at, seconds=minutes * 60.0 if minutes else None, account_wide=True)


def _bool(v: str | None) -> bool | None:
    if v is None:
        return None
    s = v.strip().lower()
    return True if s in ("true", "1") else False if s in ("false", "0") else None


def parse(headers: Mapping[str, str], now: float) -> Signals | None:
    """The windows ``headers`` announce (any family above), or None when there are none."""
    windows: list[Window] = []
    plan: str | None = None
    credits: dict[str, Any] | None = None
    if "x-codex-primary-used-percent" in headers or "x-codex-secondary-used-percent" in headers:
        for which in ("primary", "secondary"):
            w = _codex_window(headers, which, now)
            if w is not None:
                windows.append(w)
        plan = (headers.get("x-codex-plan-type") or "").strip() or None
        has = _bool(headers.get("x-codex-credits-has-credits"))
        if has is not None:
            credits = {"has_credits": has, "unlimited": bool(_bool(headers.get("x-codex-credits-unlimited"))),
                       "balance": (headers.get("x-codex-credits-balance") or "").strip() or None}
    for sentinel in _UNIFIED_SENTINELS:
        if sentinel in headers:
            windows.extend(_unified(headers, list(headers.keys()), now))
            break
    if "anthropic-ratelimit-requests-remaining" in headers or "anthropic-ratelimit-tokens-remaining" in headers:
        fam = ("anthropic-ratelimit-{}-limit", "anthropic-ratelimit-{}-remaining", "anthropic-ratelimit-{}-reset")
        windows.extend(_counted(headers, _ANTHROPIC_KINDS, fam, now, True))
    if "x-ratelimit-remaining-requests" in headers or "x-ratelimit-remaining-tokens" in headers:
        fam = ("x-ratelimit-limit-{}", "x-ratelimit-remaining-{}", "x-ratelimit-reset-{}")
        windows.extend(_counted(headers, _OPENAI_KINDS, fam, now, False))
    if not windows and plan is None:
        return None
    return Signals(windows, plan, credits)


def parse_codex_event(event: Mapping[str, Any], now: float) -> Signals | None:
    """A ``codex.rate_limits`` event (Codex's WebSocket and stream transports):
    ``{"type": "codex.rate_limits", "plan_type": ..., "rate_limits": {"primary": {"used_percent",
    "window_minutes", "reset_at"}, "secondary": {...}}, "credits": {...}}``."""
    if event.get("type") != "codex.rate_limits":
        return None
    limits = event.get("rate_limits")
    windows: list[Window] = []
    if isinstance(limits, Mapping):
        for which in ("primary", "secondary"):
            d = limits.get(which)
            if not isinstance(d, Mapping):
                continue
            pct = _num(d.get("used_percent"))
            if pct is None:
                continue
            minutes = _num(d.get("window_minutes"))
            reset_at = _num(d.get("reset_at"))
            if reset_at is None:
                after = _num(d.get("reset_after_seconds"))
                reset_at = now + after if after is not None else None
            windows.append(Window(which, pct / 100.0, reset_at, seconds=minutes * 60.0 if minutes else None,
                                  account_wide=True))
    plan = event.get("plan_type")
    credits = event.get("credits")
    if not windows and not isinstance(plan, str):
        return None
    return Signals(windows, plan if isinstance(plan, str) else None,
                   dict(credits) if isinstance(credits, Mapping) else None)


def parse_error_body(body: bytes | Mapping[str, Any], now: float) -> Signals | None:
    """Codex's ``usage_limit_reached`` error (a 429 body, or the ``response`` of a
    ``response.failed`` event): an exhausted account-wide window until ``resets_at``."""
    obj: Any = body
    if isinstance(body, bytes | bytearray):
        if body.find(b"usage_limit_reached") < 0:
            return None
        import orjson

        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(obj, Mapping):
        return None
    err = obj.get("error")
    if not isinstance(err, Mapping) and isinstance(obj.get("response"), Mapping):
        err = obj["response"].get("error")
    if not isinstance(err, Mapping) or "usage_limit_reached" not in (err.get("type"), err.get("code")):
        return None
    reset = _num(err.get("resets_at"))
    if reset is None:
        after = _num(err.get("resets_in_seconds"))
        reset = now + after if after is not None else None
    plan = err.get("plan_type")
    return Signals([Window("usage_limit", 1.0, reset, rejected=True, account_wide=True)],
                   plan if isinstance(plan, str) else None)
