"""The credential store: every account file in ``auth-dir``, loaded, rewritten and watched.

``AuthStore(dir)`` reads each visible ``*.json`` file (CLIProxyAPI's layout: one account per file).
A file that is not valid JSON, or lacks the fields its type needs, is skipped with one log line
naming the file and the problem (once per distinct content, not on every rescan). Writes are
atomic (``files.write_atomic``). ``watch()`` follows the directory with watchfiles and calls every
``on_change(added, changed, removed)`` listener (on the event loop) with the accounts that changed;
a file the store itself just wrote is not reported back as a change.

Tokens of every loaded account are added to ``redaction``'s known secrets, so they are masked in
logs and errors; ``secrets()`` lists them for a caller that replaces the known set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from .. import redaction
from ..config import DEFAULT_AUTH_DIR
from .accounts import Account, AccountError, parse_account
from .files import clean_temps, ensure_private_dir, is_account_file, read_json, write_atomic

__all__ = ["DEFAULT_AUTH_DIR", "AuthStore", "ChangeListener", "resolve_auth_dir"]

log = logging.getLogger("crossroute.auth")

ChangeListener = Callable[[list[Account], list[Account], list[Account]], None]


def resolve_auth_dir(value: str | os.PathLike[str] | None) -> Path:
    return Path(os.path.expanduser(os.fspath(value or DEFAULT_AUTH_DIR)))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class AuthStore:
    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.dir = resolve_auth_dir(directory)
        self._accounts: dict[str, Account] = {}
        self._digests: dict[str, str] = {}  # file name -> sha256 of what was loaded or written
        self._reported: dict[str, str] = {}  # file name -> digest of the bad content already logged
        self._listeners: list[ChangeListener] = []
        # the event loop the listeners live on (the one that registered them); a write made in
        # another thread (management API, CLI) has its listeners called there, not in that thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.RLock()  # writes come from the event loop and from CLI threads

    # ------------------------------------------------------------------ reading
    def load(self) -> tuple[list[Account], list[Account], list[Account]]:
        """(Re)scan the directory: ``(added, changed, removed)`` since the last scan."""
        with self._lock:
            if not self.dir.exists():
                found: dict[str, tuple[Account | None, str]] = {}
            else:
                clean_temps(self.dir)
                found = {}
                for name in sorted(os.listdir(self.dir)):
                    if is_account_file(name) and (self.dir / name).is_file():
                        found[name] = self._read(self.dir / name)
            added: list[Account] = []
            changed: list[Account] = []
            removed: list[Account] = []
            for name, (acct, digest) in found.items():
                old = self._accounts.get(name)
                if acct is None:
                    if old is not None:
                        removed.append(self._accounts.pop(name))
                        self._digests.pop(name, None)
                    continue
                if old is None:
                    added.append(acct)
                elif self._digests.get(name) != digest:
                    changed.append(acct)
                else:
                    continue
                self._accounts[name] = acct
                self._digests[name] = digest
            for name in [n for n in self._accounts if n not in found]:
                removed.append(self._accounts.pop(name))
                self._digests.pop(name, None)
                self._reported.pop(name, None)
            for name in [n for n in self._reported if n not in found]:
                self._reported.pop(name, None)
            redaction.add_secrets(s for a in [*added, *changed] for s in a.secrets())
            return added, changed, removed

    def _read(self, path: Path) -> tuple[Account | None, str]:
        obj, raw, problem = read_json(path)
        digest = _digest(raw)
        acct: Account | None = None
        if obj is not None:
            try:
                acct = parse_account(path, obj)
            except AccountError as exc:
                problem = str(exc)
        if acct is None:
            if self._reported.get(path.name) != digest:
                self._reported[path.name] = digest
                log.warning("auth file %s skipped: %s", path, redaction.scrub(problem or "unreadable"))
            return None, digest
        self._reported.pop(path.name, None)
        return acct, digest

    def reread(self, name: str) -> Account | None:
        """Read one file again now (another process may have rewritten it) and take it in."""
        path = self.dir / name
        with self._lock:
            if not path.is_file():
                return self._accounts.get(name)
            acct, digest = self._read(path)
            if acct is None:
                return self._accounts.get(name)  # unreadable right now: keep what we have
            old = self._accounts.get(name)
            if self._digests.get(name) != digest:
                self._accounts[name] = acct
                self._digests[name] = digest
                redaction.add_secrets(acct.secrets())
            else:
                acct = old or acct
        if old is not None and acct is not old and _routing(old) != _routing(acct):
            self._emit([], [acct], [])
        return acct

    def accounts(self) -> list[Account]:
        with self._lock:
            return list(self._accounts.values())

    def get(self, name: str) -> Account | None:
        with self._lock:
            return self._accounts.get(name)

    def find(self, name: str) -> Account:
        """An account by file name, name without ``.json``, or (unique) email; ``KeyError`` else."""
        with self._lock:
            if name in self._accounts:
                return self._accounts[name]
            if f"{name}.json" in self._accounts:
                return self._accounts[f"{name}.json"]
            by_email = [a for a in self._accounts.values() if a.email and a.email.lower() == name.lower()]
            if len(by_email) == 1:
                return by_email[0]
            if by_email:
                raise KeyError(f"{name!r} matches {len(by_email)} accounts: "
                               f"{', '.join(a.name for a in by_email)}; give the file name")
            raise KeyError(f"no account {name!r} in {self.dir}")

    def secrets(self) -> list[str]:
        with self._lock:
            return [s for a in self._accounts.values() for s in a.secrets()]

    # ------------------------------------------------------------------ writing
    def write(self, name: str, obj: dict[str, Any]) -> Account:
        """Write one account file atomically and take it in at once (it must parse)."""
        path = self.dir / name
        if path.name != name or not is_account_file(name):
            raise ValueError(f"not an account file name: {name!r}")
        acct = parse_account(path, obj)  # never write a file the store would then skip
        data = orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n"
        with self._lock:
            ensure_private_dir(self.dir)
            write_atomic(path, data)
            old = self._accounts.get(name)
            self._accounts[name] = acct
            self._digests[name] = _digest(data)
        redaction.add_secrets(acct.secrets())
        if old is None:
            self._emit([acct], [], [])
        elif _routing(old) != _routing(acct):
            self._emit([], [acct], [])
        return acct

    def update(self, name: str, **values: Any) -> Account:
        acct = self.find(name)
        return self.write(acct.name, acct.with_fields(**values))

    def set_disabled(self, name: str, disabled: bool) -> Account:
        return self.update(name, disabled=True if disabled else None)

    def mark_needs_login(self, name: str, reason: str) -> Account | None:
        """The refresh token was rejected: keep the file, flag it, log once, out of rotation."""
        acct = self.get(name)
        if acct is None or acct.needs_login:
            return acct
        again = "import vertex KEY.json" if acct.provider == "vertex" else f"login {acct.provider}"
        log.warning("account %s needs login: %s; run `crossroute %s` to sign in again",
                    name, redaction.scrub(reason), again)
        try:
            return self.write(name, acct.with_fields(needs_login=True))
        except OSError as exc:
            log.warning("could not record the needs-login status in %s: %s", acct.path, exc)
            acct.needs_login = True
            self._emit([], [acct], [])
            return acct

    def remove(self, name: str) -> Account:
        acct = self.find(name)
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(acct.path)
            self._accounts.pop(acct.name, None)
            self._digests.pop(acct.name, None)
        self._emit([], [], [acct])
        return acct

    # ------------------------------------------------------------------ watching
    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            pass

    def _emit(self, added: list[Account], changed: list[Account], removed: list[Account]) -> None:
        if not (added or changed or removed):
            return
        loop = self._loop
        if loop is not None and not loop.is_closed() and _running_loop() is not loop:
            # a write from a worker thread: the listeners run on their loop, queued before the
            # thread's result reaches whoever awaits it (both go through the loop in that order)
            try:
                loop.call_soon_threadsafe(self._emit_now, added, changed, removed)
                return
            except RuntimeError:  # the loop closed meanwhile: tell them here
                pass
        self._emit_now(added, changed, removed)

    def _emit_now(self, added: list[Account], changed: list[Account], removed: list[Account]) -> None:
        for listener in list(self._listeners):
            try:
                listener(added, changed, removed)
            except Exception:
                log.exception("auth store listener failed")

    def rescan(self) -> tuple[list[Account], list[Account], list[Account]]:
        """``load()`` and tell the listeners (in the caller's thread)."""
        return self._announce(*self.load())

    def _announce(self, added: list[Account], changed: list[Account], removed: list[Account]
                  ) -> tuple[list[Account], list[Account], list[Account]]:
        for a in added:
            log.info("account %s added (%s)", a.name, a.provider)
        for a in changed:
            log.info("account %s changed", a.name)
        for a in removed:
            log.info("account %s removed", a.name)
        self._emit(added, changed, removed)
        return added, changed, removed

    async def watch(self, stop: asyncio.Event | None = None, *, debounce_ms: int = 200) -> None:
        """Follow the directory until ``stop`` is set; each batch of file events is one rescan."""
        import watchfiles

        ensure_private_dir(self.dir)
        # the scan reads files in a thread; listeners are called here, on the event loop
        self._announce(*await asyncio.to_thread(self.load))
        async for _changes in watchfiles.awatch(self.dir, stop_event=stop, debounce=debounce_ms,
                                                step=50, watch_filter=_account_filter, recursive=False):
            self._announce(*await asyncio.to_thread(self.load))


def _account_filter(_change: object, path: str) -> bool:
    return is_account_file(os.path.basename(path))


def _routing(a: Account) -> tuple[object, ...]:
    """What a registry builds from an account, apart from its tokens."""
    return (a.disabled, a.needs_login, a.priority, a.weight, a.prefix, a.proxy_url, a.base_url,
            tuple(sorted(a.headers.items())), tuple(a.excluded_models), tuple(sorted(a.model_aliases.items())),
            a.websockets, a.email)


def names(accounts: Iterable[Account]) -> list[str]:
    return [a.name for a in accounts]
