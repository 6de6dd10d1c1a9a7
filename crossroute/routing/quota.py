"""Per-credential quota state, read from every upstream answer's rate-limit and usage signals.

``QuotaBook.note(entry, status, headers)`` is called by the HTTP executor for every answer (2xx
and errors alike) and returns at once: it keeps a reference to the answer's headers and counts
the request; the headers are parsed (``providers/quota_signals.py``) only when something reads
the state (a quota-aware pick, the snapshot, ``/backend-api/wham/usage``) or at once for an error,
whose reset decides the cooldown. So an answer costs one dict lookup and two attribute writes.

What the book offers:

- ``reset_hint(credential_id)``: after a 429, when the exhausted window refills and whether the
  window is account-wide (the router then cools the whole credential exactly until then).
- ``headroom(credential_id)``: how many requests per second the credential can sustain until its
  tightest window resets (``left / cost per request / seconds to reset``; see ``_score``), the
  figure quota-aware routing ranks by, and ``nearly_exhausted``.
- a snapshot of the accounts (``auth:<file>`` credentials) written to ``<auth-dir>/
  .crossroute-quota.json`` at most every ``write_every`` seconds, off the request path (a timer
  on the loop, the write itself in a thread), read back by ``read_snapshot`` and rendered by
  ``describe`` for ``crossroute auth list``. Each writer merges into the file (newest reading per
  account), so the workers of ``--workers N`` each add the accounts they served.
- ``snapshot()``: per credential, the fraction left of each window (``/metrics``); ``pooled``:
  several credentials' windows together (Codex's usage answer).

Quota records are shared between the processes that share a State (``quota_share.py``: replicas
on one Redis, the workers of one ``serve --workers N``): about once a second each process publishes
the readings it took from its own answers and takes in the newer readings of the others, off the
request path. Alone, a process knows what its own answers said.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from ..providers.quota_signals import Signals, Window, parse, parse_codex_event, parse_error_body

__all__ = ["LOW_LEFT", "SNAPSHOT_NAME", "Account", "QuotaBook", "describe", "read_snapshot"]

log = logging.getLogger("crossroute.quota")

SNAPSHOT_NAME = ".crossroute-quota.json"
ACCOUNT_PREFIX = "auth:"
LOW_LEFT = 0.05  # a window with less than this fraction left is "nearly exhausted"
HORIZON = 5 * 3600.0  # quota-aware routing looks this far ahead (the shortest subscription window)
DEFAULT_COST = 0.01  # fraction of a window one request is assumed to use before it was measured
_EWMA = 0.3
_MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024


class Account:
    """What is known about one credential's quota. ``raw``: the headers of the latest answer, not
    parsed yet; ``n``: answers counted; ``costs``: per window, the measured fraction one request
    uses (moving average)."""

    __slots__ = ("costs", "credits", "id", "kind", "n", "name", "persist", "plan", "prev", "provider", "raw",
                 "shared", "updated", "windows")

    def __init__(self, cred_id: str, name: str, provider: str, kind: str) -> None:
        self.id = cred_id
        self.name = name
        self.provider = provider
        self.kind = kind
        self.persist = cred_id.startswith(ACCOUNT_PREFIX)
        self.raw: Mapping[str, str] | None = None
        self.n = 0
        self.windows: dict[str, Window] = {}
        self.plan: str | None = None
        self.credits: dict[str, Any] | None = None
        self.updated = 0.0
        self.costs: dict[str, float] = {}
        self.prev: dict[str, tuple[float, int]] = {}  # window -> (used, n) at the last reading
        self.shared = 0.0  # ``updated`` of the reading last published to (or taken from) other processes

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "provider": self.provider, "updated": round(self.updated, 3),
                               "windows": [w.to_json() for w in self.windows.values()]}
        if self.plan:
            out["plan"] = self.plan
        if self.credits:
            out["credits"] = self.credits
        return out


class QuotaBook:
    def __init__(self, clock: Callable[[], float] = time.time, write_every: float = 5.0) -> None:
        self._clock = clock
        self.write_every = write_every
        self._key = f"quota:{id(self)}"  # where an entry keeps its Account (entry.derived)
        self.accounts: dict[str, Account] = {}
        self._router: Any = None
        self.auth_dir: Path | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._writing = False
        self._written: bytes = b""

    def now(self) -> float:
        return self._clock()

    # ------------------------------------------------------------ lifecycle
    def attach(self, router: Any, settings: Any, auth_dir: Any = None) -> None:
        """Called by the gateway at start and on every reload, before requests use it."""
        self._router = router
        if router is not None:
            router.quota = self
        if auth_dir is None and settings is not None:
            auth_dir = getattr(settings, "auth_dir", None)
        self.auth_dir = Path(auth_dir).expanduser() if auth_dir else None

    # ------------------------------------------------------------ the hot path
    def note(self, entry: Any, status: int, headers: Mapping[str, str]) -> None:
        """Take in what one upstream answer says about its credential's quota."""
        acct = entry.derived.get(self._key)
        if acct is None:
            acct = self._account_of(entry)
        acct.n += 1
        if status >= 400:
            if acct.raw is not None:
                self._read(acct)  # the previous answer's headers, not read yet
            acct.raw = headers
            self._read(acct)
            return
        acct.raw = headers
        if acct.persist and self._timer is None:
            self._schedule()

    def note_event(self, entry: Any, event: Mapping[str, Any]) -> None:
        """A ``codex.rate_limits`` event seen on a stream or WebSocket of ``entry``."""
        sig = parse_codex_event(event, self._clock())
        if sig is not None:
            acct = entry.derived.get(self._key) or self._account_of(entry)
            self._settle(acct, sig, self._clock())

    def note_error(self, entry: Any, status: int, body: bytes) -> None:
        """An error answer's body (after ``note`` took its headers): Codex tells its reset there."""
        if status != 429 or not body:
            return
        now = self._clock()
        sig = parse_error_body(body, now)
        if sig is not None:
            acct = entry.derived.get(self._key) or self._account_of(entry)
            self._settle(acct, sig, now)

    def _settle(self, acct: Account, sig: Signals, now: float) -> None:
        """Apply a reading from an event or an error body: after any headers not read yet (older
        than it), and written to the snapshot file like a reading from headers."""
        if acct.raw is not None:
            self._read(acct)
        self._apply(acct, sig, now)
        if acct.persist and self._timer is None:
            self._schedule()

    def _account_of(self, entry: Any) -> Account:
        cid = entry.id
        acct = self.accounts.get(cid)
        if acct is None:
            acct = self.accounts[cid] = Account(cid, entry.name, entry.provider, entry.kind)
        entry.derived[self._key] = acct
        return acct

    # ------------------------------------------------------------ reading headers
    def _read(self, acct: Account) -> None:
        raw = acct.raw
        if raw is None:
            return
        acct.raw = None
        now = self._clock()
        try:
            sig = parse(raw, now)
        except Exception:  # an upstream's odd header must never fail a request
            log.debug("unreadable rate-limit headers from %s", acct.id, exc_info=True)
            return
        if sig is not None:
            self._apply(acct, sig, now)

    def _apply(self, acct: Account, sig: Signals, now: float) -> None:
        for w in sig.windows:
            prev = acct.prev.get(w.name)
            if prev is None or w.used < prev[0]:
                acct.prev[w.name] = (w.used, acct.n)  # first reading, or the window refilled
            elif w.used > prev[0]:
                # the figures are rounded (1 % steps): the cost is measured between changes
                used0, n0 = prev
                if acct.n > n0:
                    sample = (w.used - used0) / (acct.n - n0)
                    old = acct.costs.get(w.name)
                    acct.costs[w.name] = sample if old is None else old + _EWMA * (sample - old)
                acct.prev[w.name] = (w.used, acct.n)
            acct.windows[w.name] = w
        if sig.plan:
            acct.plan = sig.plan
        if sig.credits is not None:
            acct.credits = sig.credits
        acct.updated = now

    def read_pending(self) -> None:
        """Read every answer's headers not read yet (before the readings are shared)."""
        for acct in list(self.accounts.values()):
            if acct.raw is not None:
                self._read(acct)

    def account(self, credential_id: str) -> Account | None:
        """The record of a credential, its latest answer read."""
        acct = self.accounts.get(credential_id)
        if acct is not None and acct.raw is not None:
            self._read(acct)
        return acct

    # ------------------------------------------------------------ what routing asks
    def reset_hint(self, credential_id: str, now: float | None = None) -> tuple[float, bool] | None:
        """``(until, account_wide)`` for a credential that was just refused: the reset of its
        exhausted windows (the latest, as all must refill), or None when no window says so."""
        acct = self.account(credential_id)
        if acct is None or not acct.windows:
            return None
        if now is None:
            now = self._clock()
        until: float | None = None
        whole = False
        for w in acct.windows.values():
            if w.reset_at is not None and w.reset_at > now and w.exhausted(now):
                if until is None or w.reset_at > until:
                    until = w.reset_at
                whole = whole or w.account_wide
        return None if until is None else (until, whole)

    def latest_reset(self, credential_id: str, now: float | None = None) -> float | None:
        """When every account-wide window of the credential has refilled (a bound no cooldown
        for a 429 may pass); None when the credential announces none."""
        acct = self.accounts.get(credential_id)
        if acct is None:
            return None
        if now is None:
            now = self._clock()
        ends = [w.reset_at for w in acct.windows.values() if w.account_wide and w.reset_at is not None]
        return max(ends) if ends and max(ends) > now else None

    def _score(self, acct: Account, now: float) -> float | None:
        """Requests per second the credential can sustain until its tightest window resets:
        for each window ``left / cost / seconds to reset`` (cost: the measured fraction of the
        window one request uses), the smallest of them; a reset further away than ``HORIZON``
        counts as ``HORIZON`` (a weekly window with plenty left must not hide a 5-hour window
        that is nearly spent). 0 when a window is exhausted; None when nothing is known (or
        every window has refilled since it was read)."""
        best: float | None = None
        for w in acct.windows.values():
            if w.reset_at is not None and w.reset_at <= now:
                continue  # refilled since it was read
            if w.exhausted(now):
                return 0.0
            cost = acct.costs.get(w.name)
            if cost is None or cost <= 0:
                cost = 1.0 / w.limit if (w.limit and w.name == "requests") else DEFAULT_COST
            t = (w.reset_at - now) if w.reset_at is not None else (w.seconds or 3600.0)
            rate = (w.left / cost) / min(max(t, 1.0), HORIZON)
            if best is None or rate < best:
                best = rate
        return best

    def heard_from(self, credential_id: str) -> bool:
        """Whether the credential answered without quota signals (True), or never answered or
        every window it announced has refilled since (False: quota-aware routing tries it first;
        with windows that start at first use, as Claude's and Codex's do, starting a refilled one
        early also brings its next reset forward)."""
        acct = self.accounts.get(credential_id)
        return acct is not None and acct.n > 0 and not acct.windows

    def headroom(self, credential_id: str, now: float | None = None) -> float | None:
        acct = self.account(credential_id)
        if acct is None:
            return None
        return self._score(acct, self._clock() if now is None else now)

    def nearly_exhausted(self, credential_id: str, now: float | None = None) -> bool:
        """A window with less than ``LOW_LEFT`` left that does not refill within a minute."""
        acct = self.account(credential_id)
        if acct is None:
            return False
        if now is None:
            now = self._clock()
        for w in acct.windows.values():
            if w.reset_at is not None and w.reset_at <= now + 60.0:
                continue
            if w.exhausted(now) or w.left < LOW_LEFT:
                return True
        return False

    def forget_exhausted(self, credential_id: str | None = None, now: float | None = None) -> int:
        """Drop the windows that say a credential (every one when None) is spent, as after an
        operator's quota reset: until its next answer it is no longer refused by its readings
        (``reset_hint``, ``headroom`` 0, ``nearly_exhausted``). The changed reading counts as new,
        so processes sharing the book's readings take it in too. Returns how many windows went."""
        if now is None:
            now = self._clock()
        if credential_id is None:
            accounts = list(self.accounts.values())
        else:
            one = self.accounts.get(credential_id)
            accounts = [one] if one is not None else []
        n = 0
        for acct in accounts:
            if acct.raw is not None:
                self._read(acct)
            spent = [name for name, w in acct.windows.items()
                     if w.exhausted(now) or (w.left < LOW_LEFT and (w.reset_at is None or w.reset_at > now))]
            for name in spent:
                del acct.windows[name]
                acct.prev.pop(name, None)
            if spent:
                acct.updated = max(now, acct.updated + 1e-6)
                n += len(spent)
        return n

    # ------------------------------------------------------------ pooled view (Codex usage)
    def pooled(self, credential_ids: Iterable[str], now: float | None = None) -> dict[str, Any]:
        """The windows of several credentials pooled, by window name: ``used`` the mean fraction
        used, ``reset_at`` the soonest reset (when capacity next comes back), ``seconds`` the
        window length, ``exhausted`` whether every credential is; and ``plan``."""
        if now is None:
            now = self._clock()
        by_name: dict[str, list[Window]] = {}
        plans: list[str] = []
        for cid in credential_ids:
            acct = self.account(cid)
            if acct is None:
                continue
            if acct.plan:
                plans.append(acct.plan)
            for w in acct.windows.values():
                by_name.setdefault(w.name, []).append(w)
        windows: dict[str, dict[str, Any]] = {}
        for name, ws in by_name.items():
            used = [0.0 if (w.reset_at is not None and w.reset_at <= now) else w.used for w in ws]
            resets = [w.reset_at for w in ws if w.reset_at is not None and w.reset_at > now]
            windows[name] = {
                "used": sum(used) / len(used),
                "reset_at": min(resets) if resets else None,
                "seconds": max((w.seconds or 0.0) for w in ws) or None,
                "exhausted": all(w.exhausted(now) for w in ws),
                "count": len(ws),
            }
        plan = max(set(plans), key=plans.count) if plans else None
        return {"plan": plan, "windows": windows}

    # ------------------------------------------------------------ the snapshot file
    def snapshot(self) -> dict[str, dict[str, float]]:
        """Per credential id (API keys and accounts), the fraction left of each window (0..1;
        1 for a window whose reset has passed): what ``/metrics`` shows as quota remaining."""
        now = self._clock()
        out: dict[str, dict[str, float]] = {}
        for cid in list(self.accounts):
            acct = self.account(cid)
            if acct is None or not acct.windows:
                continue
            out[cid] = {name: (1.0 if (w.reset_at is not None and w.reset_at <= now) else round(w.left, 4))
                        for name, w in acct.windows.items()}
        return out

    def accounts_snapshot(self) -> dict[str, dict[str, Any]]:
        """Accounts by file name, as ``read_snapshot`` returns them."""
        out: dict[str, dict[str, Any]] = {}
        for acct in list(self.accounts.values()):
            if not acct.persist:
                continue
            if acct.raw is not None:
                self._read(acct)
            if acct.windows or acct.plan:
                out[acct.id[len(ACCOUNT_PREFIX):]] = acct.to_json()
        return out

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(self.write_every, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self.auth_dir is None or self._writing:
            return
        mine = self.accounts_snapshot()
        key = orjson.dumps(mine, option=orjson.OPT_SORT_KEYS)
        if key == self._written:
            return
        path = self.auth_dir / SNAPSHOT_NAME
        self._writing = True

        def done(fut: asyncio.Future[None]) -> None:
            self._writing = False
            exc = fut.exception()
            if exc is not None:
                log.warning("could not write the quota snapshot %s: %s", path, exc)
            else:
                self._written = key

        try:
            fut = asyncio.get_running_loop().run_in_executor(None, _write, path, mine, self._clock())
        except RuntimeError:
            self._writing = False
            return
        fut.add_done_callback(done)

    def flush_now(self) -> None:
        """Write the snapshot at once (tests, shutdown)."""
        if self.auth_dir is None:
            return
        mine = self.accounts_snapshot()
        _write(self.auth_dir / SNAPSHOT_NAME, mine, self._clock())
        self._written = orjson.dumps(mine, option=orjson.OPT_SORT_KEYS)


def _write(path: Path, mine: dict[str, dict[str, Any]], now: float) -> None:
    """Merge this process's accounts into the file: the workers of ``--workers N`` (and replicas
    sharing the directory) each know the accounts they served; per account the newest reading
    wins, and accounts whose file is gone are dropped."""
    from ..auth.files import write_atomic  # auth/ is heavier; imported only when writing

    directory = path.parent
    if not directory.is_dir():
        return  # no auth directory (API keys only): nothing to show in ``auth list``
    merged = dict(mine)
    for name, info in read_snapshot(directory).items():
        if not (directory / name).is_file():
            continue
        ours = merged.get(name)
        theirs = info.get("updated")
        if ours is None or (isinstance(theirs, int | float) and theirs > ours.get("updated", 0)):
            merged[name] = info
    write_atomic(path, orjson.dumps({"version": 1, "written": round(now, 3), "accounts": merged},
                                    option=orjson.OPT_SORT_KEYS))


# ------------------------------------------------------------------ for ``crossroute auth list``
def read_snapshot(auth_dir: Path) -> dict[str, dict[str, Any]]:
    """The quota last seen per account, keyed by account file name (``entry.name``); {} when
    there is no snapshot or it cannot be read."""
    path = Path(auth_dir).expanduser() / SNAPSHOT_NAME
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_SNAPSHOT_BYTES + 1)
    except OSError:
        return {}
    if len(raw) > _MAX_SNAPSHOT_BYTES:
        return {}
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    accounts = obj.get("accounts") if isinstance(obj, dict) else None
    if not isinstance(accounts, dict):
        return {}
    return {k: v for k, v in accounts.items() if isinstance(k, str) and isinstance(v, dict)}


_LABELS = {"primary": "5h", "secondary": "7d"}


def _label(w: Window) -> str:
    if w.name in _LABELS and w.seconds:
        hours = w.seconds / 3600.0
        return f"{hours:g}h" if hours < 48 else f"{hours / 24:g}d"
    return w.name


def _when(ts: float, now: float) -> str:
    t = time.localtime(ts)
    if ts - now < 86400:
        return time.strftime("%H:%M", t)
    return time.strftime("%b %d %H:%M", t).replace(" 0", " ")


def describe(info: Mapping[str, Any], now: float | None = None) -> str:
    """One line for an account's quota, e.g. ``5h 62% left, resets 14:05; 7d 80% left``; "" when
    nothing is known. A window whose reset has passed shows as full."""
    if now is None:
        now = time.time()
    raw = info.get("windows")
    if not isinstance(raw, list):
        return ""
    parts: list[str] = []
    for d in raw:
        if not isinstance(d, Mapping):
            continue
        w = Window.from_json(d)
        if w.reset_at is not None and w.reset_at <= now:
            parts.append(f"{_label(w)} 100% left")
            continue
        text = f"{_label(w)} {round(w.left * 100)}% left"
        if w.limit is not None and w.remaining is not None:
            text = f"{w.name} {w.remaining:g}/{w.limit:g} left"
        if w.exhausted(now):
            text = f"{_label(w)} exhausted"
        if w.reset_at is not None and (w.exhausted(now) or w.left < 0.5 or w.reset_at - now < 86400):
            text += f", resets {_when(w.reset_at, now)}"
        parts.append(text)
    plan = info.get("plan")
    line = "; ".join(parts)
    if isinstance(plan, str) and plan and line:
        line = f"{line} ({plan})"
    return line
