"""OAuth logins started from the management API and polled until they end.

A login runs crossroute/auth/logins.py's own flow (``pkce_login`` or ``device_login``) in a
task of the gateway's loop; this module only captures what the flow would print (the URL, the
device code) and turns its end into a status:

- ``start`` returns once the flow has its URL: ``{"status": "ok", "url", "state"}`` (device flows
  add ``"flow": "device"`` and ``"user_code"``), as CLIProxyAPI's ``/<provider>-auth-url`` routes;
- ``status(state)`` is ``{"status": "wait"}`` until it ends, then ``"ok"`` (with the account's
  file name) or ``"error"`` (with the reason, secrets scrubbed);
- ``deliver(state, text)`` hands over the redirect URL (or ``code#state``) the user copied from the
  browser when the provider's loopback callback cannot reach this machine;
- ``cancel(state)`` ends one.

At most ``MAX_SESSIONS`` run at once; each ends after ``LOGIN_WAIT`` s; finished ones are kept
``KEEP_FINISHED`` s for polling, then forgotten.

With ``serve --workers N`` the poll, the pasted URL and the cancel may reach another worker than
the one running the flow. Each session therefore has a mailbox in ``<auth-dir>/.crossroute-logins/``
(named by a hash of the state, never the state itself): the running worker writes its status there;
another worker answers polls from it and leaves ``.paste`` / ``.cancel`` files that the running
worker picks up within ``MAILBOX_POLL`` s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from .. import redaction
from ..auth.files import write_atomic
from ..auth.logins import DEVICE_PROVIDERS, PKCE_PROVIDERS, device_login, pkce_login
from ..auth.store import AuthStore

__all__ = ["LOGIN_WAIT", "MAX_SESSIONS", "PROVIDER_ROUTES", "LoginSession", "Logins"]

LOGIN_WAIT = 600.0
KEEP_FINISHED = 600.0
MAX_SESSIONS = 8
URL_WAIT = 15.0
MAILBOX_POLL = 0.5
MAILBOX_DIR = ".crossroute-logins"
_URL = re.compile(r"https?://\S+")
_CODE = re.compile(r"enter the code\s+(\S+)")

# CLIProxyAPI's starter route -> (provider, device flow)
PROVIDER_ROUTES = {
    "anthropic-auth-url": ("claude", False),
    "codex-auth-url": ("codex", False),
    "codex-device-auth-url": ("codex", True),
    "antigravity-auth-url": ("antigravity", False),
    "kimi-auth-url": ("kimi", True),
}


class LoginRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Mailbox:
    """One session's files in the shared auth-dir: status (``.json``), ``.paste`` and ``.cancel``."""

    def __init__(self, directory: Path, state: str) -> None:
        self.dir = directory / MAILBOX_DIR
        self.base = hashlib.sha256(state.encode()).hexdigest()[:32]

    def path(self, suffix: str) -> Path:
        return self.dir / f"{self.base}{suffix}"

    def write_status(self, view: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            write_atomic(self.path(".json"), orjson.dumps({**view, "updated": time.time()}))

    def read_status(self) -> dict[str, Any] | None:
        try:
            data = self.path(".json").read_bytes()
            obj = orjson.loads(data[:65536])
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(obj, dict) or time.time() - float(obj.get("updated") or 0) > LOGIN_WAIT + KEEP_FINISHED:
            return None
        return obj

    def leave(self, suffix: str, text: str) -> bool:
        try:
            write_atomic(self.path(suffix), text.encode())
        except OSError:
            return False
        return True

    def take(self, suffix: str) -> str | None:
        p = self.path(suffix)
        try:
            text = p.read_text(encoding="utf-8", errors="replace")[:8192]
            p.unlink()
        except OSError:
            return None
        return text

    def remove(self) -> None:
        for suffix in (".json", ".paste", ".cancel"):
            with contextlib.suppress(OSError):
                self.path(suffix).unlink()


def _sweep_dir(directory: Path) -> None:
    """Remove mailboxes nobody updated for longer than a login plus its keeping time."""
    box = directory / MAILBOX_DIR
    try:
        names = os.listdir(box)
    except OSError:
        return
    limit = time.time() - (LOGIN_WAIT + KEEP_FINISHED)
    for name in names:
        with contextlib.suppress(OSError):
            if (box / name).stat().st_mtime < limit:
                (box / name).unlink()


@dataclass(slots=True)
class LoginSession:
    state: str
    provider: str
    device: bool
    started: float = field(default_factory=time.monotonic)
    url: str | None = None
    user_code: str | None = None
    status: str = "wait"
    error: str | None = None
    account: str | None = None
    ended: float | None = None
    task: asyncio.Task[None] | None = None
    pasted: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=4))
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    box: Mailbox | None = None
    watcher: asyncio.Task[None] | None = None

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "provider": self.provider, "state": self.state}
        if self.error:
            out["error"] = self.error
        if self.account:
            out["account"] = self.account
        if self.url:
            out["url"] = self.url
        if self.user_code:
            out["user_code"] = self.user_code
        return out


class Logins:
    """The logins of one process (one per gateway, as a component). The ``async`` methods are the
    ones handlers use: the mailbox files are read and written in threads, never on the event loop;
    ``get``/``deliver``/``cancel`` do the same work blocking (for callers without a loop)."""

    def __init__(self) -> None:
        self.sessions: dict[str, LoginSession] = {}

    def _expire(self) -> list[Mailbox]:
        """Forget the finished sessions kept long enough; their mailboxes (to remove) come back."""
        now = time.monotonic()
        boxes: list[Mailbox] = []
        for key, s in list(self.sessions.items()):
            if s.ended is not None and now - s.ended > KEEP_FINISHED:
                del self.sessions[key]
                if s.box is not None:
                    boxes.append(s.box)
        return boxes

    def _sweep(self, directory: Path | None = None) -> None:
        _clean(self._expire(), directory)

    async def start(self, provider: str, device: bool, store: AuthStore, *, wait_s: float = LOGIN_WAIT
                    ) -> LoginSession:
        await asyncio.to_thread(_clean, self._expire(), store.dir)
        if provider not in (DEVICE_PROVIDERS if device else PKCE_PROVIDERS):
            raise LoginRefused(400, f"provider {provider!r} has no {'device' if device else 'browser'} login here")
        if sum(1 for s in self.sessions.values() if s.ended is None) >= MAX_SESSIONS:
            raise LoginRefused(429, f"{MAX_SESSIONS} logins are already waiting; finish or cancel one first")
        session = LoginSession(state=secrets.token_urlsafe(18), provider=provider, device=device)

        def say(text: str) -> None:
            if session.url is None:
                m = _URL.search(text)
                if m:
                    session.url = m.group(0)
                    if not device:  # the flow's own state names the session, as CLIProxyAPI's does
                        q = parse_qs(urlsplit(session.url).query)
                        if q.get("state"):
                            session.state = q["state"][0]
            m = _CODE.search(text)
            if m:
                session.user_code = m.group(1)
            if session.url is not None and (not device or session.user_code is not None):
                session.ready.set()

        async def read_paste() -> str | None:
            return await session.pasted.get()

        async def run() -> None:
            try:
                if device:
                    acct = await device_login(provider, store, say=say, wait_s=wait_s)
                else:
                    acct = await pkce_login(provider, store, say=say, wait_s=wait_s, no_browser=True,
                                            read_paste=read_paste)
                session.account = acct.name
                session.status = "ok"
            except asyncio.CancelledError:
                session.status, session.error = "error", "cancelled"
                raise
            except Exception as exc:
                session.status = "error"
                session.error = redaction.scrub(str(exc) or type(exc).__name__)
            finally:
                session.ended = time.monotonic()
                session.ready.set()
                if session.box is not None:
                    await asyncio.to_thread(session.box.write_status, session.view())

        session.task = asyncio.get_running_loop().create_task(run(), name=f"crossroute-login-{provider}")
        try:
            await asyncio.wait_for(session.ready.wait(), URL_WAIT)
        except TimeoutError:
            session.task.cancel()
            raise LoginRefused(504, f"the {provider} login did not produce a URL within {URL_WAIT:g} s") from None
        if session.url is None:
            raise LoginRefused(502, session.error or f"the {provider} login failed to start")
        self.sessions[session.state] = session
        session.box = Mailbox(store.dir, session.state)
        await asyncio.to_thread(session.box.write_status, session.view())
        session.watcher = asyncio.get_running_loop().create_task(self._watch(session), name="crossroute-login-mailbox")
        return session

    async def _watch(self, session: LoginSession) -> None:
        """Pick up what other workers left in this session's mailbox, until the login ends."""
        box = session.box
        assert box is not None
        while session.ended is None:
            await asyncio.sleep(MAILBOX_POLL)
            cancel, pasted = await asyncio.to_thread(_take_left, box)
            if cancel is not None and session.task is not None:
                session.task.cancel()
            if pasted is not None:
                with contextlib.suppress(asyncio.QueueFull):
                    session.pasted.put_nowait(pasted)

    # ------------------------------------------------------------ poll, paste, cancel
    async def poll(self, state: str, directory: Path | None = None) -> dict[str, Any] | None:
        """The session's view: this worker's own, else what its mailbox says (read in a thread)."""
        expired = self._expire()
        if expired:
            await asyncio.to_thread(_clean, expired, None)
        s = self.sessions.get(state)
        if s is not None:
            return s.view()
        return await asyncio.to_thread(_mailbox_view, state, directory)

    async def paste(self, state: str, text: str, directory: Path | None = None) -> bool:
        """Hand the pasted redirect URL to the login waiting for it (here, or in its mailbox)."""
        s = self.sessions.get(state)
        if s is not None:
            return _deliver_own(s, text)
        return await asyncio.to_thread(_paste_to_mailbox, state, text, directory)

    async def abort(self, state: str, directory: Path | None = None) -> bool:
        """End a login (here, or through its mailbox)."""
        s = self.sessions.get(state)
        if s is not None:
            _cancel_own(s)
            return True
        return await asyncio.to_thread(_cancel_by_mailbox, state, directory)

    def get(self, state: str, directory: Path | None = None) -> dict[str, Any] | None:
        self._sweep()
        s = self.sessions.get(state)
        return s.view() if s is not None else _mailbox_view(state, directory)

    def deliver(self, state: str, text: str, directory: Path | None = None) -> bool:
        s = self.sessions.get(state)
        return _deliver_own(s, text) if s is not None else _paste_to_mailbox(state, text, directory)

    def cancel(self, state: str, directory: Path | None = None) -> bool:
        s = self.sessions.get(state)
        if s is not None:
            _cancel_own(s)
            return True
        return _cancel_by_mailbox(state, directory)

    async def stop(self) -> None:
        for s in self.sessions.values():
            for task in (s.task, s.watcher):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    def reconfigure(self, gw: object, removed: set[str]) -> None:
        return None


# ------------------------------------------------------------------ the parts (the blocking ones read files)
def _clean(boxes: list[Mailbox], directory: Path | None) -> None:
    for box in boxes:
        box.remove()
    if directory is not None:
        _sweep_dir(directory)


def _take_left(box: Mailbox) -> tuple[str | None, str | None]:
    return box.take(".cancel"), box.take(".paste")


def _deliver_own(s: LoginSession, text: str) -> bool:
    if s.ended is not None or s.device:
        return False
    with contextlib.suppress(asyncio.QueueFull):
        s.pasted.put_nowait(text)
    return True


def _cancel_own(s: LoginSession) -> None:
    if s.task is not None and not s.task.done():
        s.task.cancel()


def _mailbox_view(state: str, directory: Path | None) -> dict[str, Any] | None:
    """What another worker's session says in its mailbox (blocking)."""
    if directory is None:
        return None
    view = Mailbox(directory, state).read_status()
    if view is None or view.get("state") != state:
        return None
    return {k: view[k] for k in ("status", "provider", "state", "error", "account", "url", "user_code")
            if view.get(k) is not None}


def _paste_to_mailbox(state: str, text: str, directory: Path | None) -> bool:
    view = _mailbox_view(state, directory)
    if view is None or view["status"] != "wait" or view.get("user_code") or directory is None:
        return False
    return Mailbox(directory, state).leave(".paste", text)


def _cancel_by_mailbox(state: str, directory: Path | None) -> bool:
    view = _mailbox_view(state, directory)
    if view is None or directory is None:
        return False
    return view["status"] != "wait" or Mailbox(directory, state).leave(".cancel", "1")
