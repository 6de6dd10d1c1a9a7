"""Who may use the management API: the secret key, the loopback rule and the ban on guessing.

- Enabled only when ``remote-management.secret-key`` or the ``MANAGEMENT_PASSWORD`` environment
  variable is set; otherwise every management route answers 404, as if it did not exist.
- The key in the file is kept hashed: bcrypt (``$2a$``/``$2b$``, what CLIProxyAPI writes, checked
  through the C library's crypt) or ``pbkdf2-sha256$<rounds>$<salt>$<hash>`` (written here when
  the C library has no bcrypt). A plain key found in the file is hashed and written back
  (``hash_key_at_start``, called when ``crossroute serve`` starts; the API does it again at its
  first request for a plain key a reload brought in). A key that matched once is remembered by
  its SHA-256 so that the slow hash is not computed on every request.
- The key comes from ``Authorization: Bearer <key>`` (or the bare header value) or ``X-Management-Key``.
- Clients that are not on loopback are refused (403) unless ``allow-remote: true``. Where the edge
  does not tell the client's address, a gateway bound to a loopback address only has loopback
  clients; bound anywhere else the client counts as remote.
- Five failed attempts from one address ban it for 30 minutes (403 naming the time left). With
  ``serve --workers N`` the count and the ban are shared through files in a private directory
  (``SharedBans``: one append-only file of failures and one ban file per address, named by a hash of
  it), so the five are counted across the workers.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings, is_loopback

__all__ = ["BAN_SECONDS", "MAX_FAILURES", "Guard", "SharedBans", "Verdict", "client_address", "hash_key",
           "hash_key_at_start", "hash_key_in_file", "is_hashed", "presented_key", "verify_key"]

log = logging.getLogger("crossroute.management")

MAX_FAILURES = 5
BAN_SECONDS = 30 * 60.0
_PBKDF2 = "pbkdf2-sha256"
_PBKDF2_ROUNDS = 200_000
_MAX_TRACKED = 10_000  # addresses with failures remembered at most (oldest dropped first)

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt as _crypt  # the C library's crypt(3): bcrypt on glibc/libxcrypt
    _BCRYPT = _crypt.crypt("x", "$2b$04$" + "a" * 22) is not None
except Exception:
    _crypt = None  # type: ignore[assignment]
    _BCRYPT = False


def is_hashed(value: str) -> bool:
    return value.startswith(("$2a$", "$2b$", "$2y$", f"{_PBKDF2}$"))


def hash_key(key: str) -> str:
    """A new hash of ``key`` (bcrypt when available, so CLIProxyAPI reads the file too)."""
    if _BCRYPT and _crypt is not None:
        salt = _crypt.mksalt(_crypt.METHOD_BLOWFISH, rounds=1 << 10)
        hashed = _crypt.crypt(key, salt)
        if hashed:
            return hashed
    salt_b = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", key.encode(), salt_b, _PBKDF2_ROUNDS)
    return f"{_PBKDF2}${_PBKDF2_ROUNDS}${_b64(salt_b)}${_b64(digest)}"


def hash_key_in_file(path: str | os.PathLike[str]) -> str | None:
    """Replace a plain ``remote-management.secret-key`` in the file by its hash, comments and
    layout kept (ruamel round trip, validated, atomic write): the hash written, or None when
    there was nothing to do (no key, hashed already, from ``${ENV}``) or the file cannot be written."""
    from .config_edit import hash_plain_key

    return hash_plain_key(os.fspath(path), hash_key, is_hashed)


def hash_key_at_start(path: str | os.PathLike[str], settings: Settings) -> bool:
    """At ``crossroute serve`` start (before the server, the workers and the config watcher):
    a plain key in the file is hashed and written back. ``settings`` (the file's, as loaded) then
    hold the hash and the digest of the file as written, so the config watcher sees no change and
    ``--host``/``--port`` overrides already applied to them stay. True when the file was rewritten;
    False when the key is hashed already, absent, from ``${ENV}``, or the file cannot be written."""
    key = settings.remote_management.secret_key.strip()
    if not key or is_hashed(key):
        return False
    hashed = hash_key_in_file(path)
    if hashed is None:
        log.info("remote-management.secret-key in %s is used as written (it comes from an environment "
                 "variable, or the file cannot be written): it is not replaced by its hash", path)
        return False
    settings.remote_management.secret_key = hashed
    try:  # the digest as config.load and the reload compute it (of the text, read as UTF-8)
        settings.digest = hashlib.sha256(Path(path).read_text(encoding="utf-8").encode()).hexdigest()
    except OSError:
        pass
    log.info("remote-management.secret-key in %s replaced by its hash", path)
    return True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def verify_key(key: str, stored: str) -> bool:
    """Does ``key`` match ``stored`` (a hash, or a plain key not yet written back)?"""
    if not key or not stored:
        return False
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        if not _BCRYPT or _crypt is None:
            return False
        hashed = _crypt.crypt(key, stored.replace("$2y$", "$2b$", 1))
        return bool(hashed) and hmac.compare_digest(hashed.encode(), stored.replace("$2y$", "$2b$", 1).encode())
    if stored.startswith(f"{_PBKDF2}$"):
        try:
            _, rounds, salt, digest = stored.split("$")
            want = base64.b64decode(digest)
            got = hashlib.pbkdf2_hmac("sha256", key.encode(), base64.b64decode(salt), int(rounds))
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(got, want)
    return hmac.compare_digest(key.encode(), stored.encode())


def presented_key(headers: dict[str, str] | object) -> str | None:
    """The management key a request carries: ``Authorization: Bearer <key>`` (or the bare
    value) or ``X-Management-Key``."""
    get = headers.get  # type: ignore[attr-defined]
    auth = get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return auth.strip()
    key = get("x-management-key")
    return key.strip() if key else None


def client_address(req: object, bound_host: str) -> tuple[str | None, bool]:
    """(the client's address if the edge tells it, whether it counts as loopback)."""
    raw = getattr(req, "client", None)
    if isinstance(raw, str) and raw:
        host = raw
        if host.startswith("["):
            host = host[1:].partition("]")[0]
        elif host.count(":") == 1:
            host = host.rpartition(":")[0]
        return host, is_loopback(host)
    return None, is_loopback(bound_host)


@dataclass(slots=True)
class Verdict:
    """What the guard decided: ``status`` 0 means allowed; else the HTTP status and message."""

    status: int = 0
    message: str = ""


class SharedBans:
    """Failures and bans of every process sharing ``directory``: ``<h>.fail`` grows by one byte per
    failure (appends are atomic between processes; its size is the count), ``<h>.ban`` exists while
    the address is banned (its mtime + BAN_SECONDS is the end). ``h`` is a hash of the address."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _path(self, address: str, suffix: str) -> Path:
        return self.dir / (hashlib.sha256(address.encode()).hexdigest()[:32] + suffix)

    def banned_for(self, address: str) -> float:
        ban = self._path(address, ".ban")
        try:
            left = ban.stat().st_mtime + BAN_SECONDS - time.time()
        except OSError:
            return 0.0
        if left <= 0:
            self.succeed(address)
            return 0.0
        return left

    def fail(self, address: str) -> int:
        fail = self._path(address, ".fail")
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                if time.time() - fail.stat().st_mtime > BAN_SECONDS:  # old failures are forgotten
                    fail.unlink()
            fd = os.open(fail, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, b"x")
                count = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if count >= MAX_FAILURES:
                self._path(address, ".ban").write_bytes(b"")
                os.utime(self._path(address, ".ban"))
        except OSError:
            return 0
        return count

    def succeed(self, address: str) -> None:
        for suffix in (".fail", ".ban"):
            with contextlib.suppress(OSError):
                self._path(address, suffix).unlink()


class Guard:
    """Failures and bans per client address, and the keys that matched (by digest). ``shared``:
    the SharedBans of the processes serving the same config, when there are several."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # address -> (count, banned until)
        self._good: tuple[str, bytes] | None = None  # (stored hash, sha256 of the key that matched it)
        self.shared: SharedBans | None = None

    def now(self) -> float:
        return self._clock()  # type: ignore[operator,no-any-return]

    def banned_for(self, address: str) -> float:
        """Seconds of ban left for ``address`` (0: not banned)."""
        shared = self.shared.banned_for(address) if self.shared is not None else 0.0
        return max(shared, self._banned_here(address))

    def _banned_here(self, address: str) -> float:
        with self._lock:
            entry = self._failures.get(address)
            if entry is None:
                return 0.0
            count, until = entry
            left = until - self.now()
            if until and left <= 0:
                del self._failures[address]
                return 0.0
            return max(0.0, left) if count >= MAX_FAILURES else 0.0

    def fail(self, address: str) -> int:
        """Count one failure; returns the count (the fifth bans the address)."""
        shared = self.shared.fail(address) if self.shared is not None else 0
        if shared:
            return shared  # counted (and banned at five) where every worker sees it
        with self._lock:  # no shared directory, or it cannot be written: this process counts
            count, until = self._failures.pop(address, (0, 0.0))
            count += 1
            if count >= MAX_FAILURES:
                until = self.now() + BAN_SECONDS
            self._failures[address] = (count, until)
            while len(self._failures) > _MAX_TRACKED:
                self._failures.pop(next(iter(self._failures)))
            return count

    def succeed(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)
        if self.shared is not None:
            self.shared.succeed(address)

    def known_good(self, key: str | None, stored: str) -> bool:
        """Is ``key`` the one that matched ``stored`` before (no hash computed)?"""
        good = self._good
        return bool(key) and good is not None and good[0] == stored and hmac.compare_digest(
            good[1], hashlib.sha256(key.encode()).digest())  # type: ignore[union-attr]

    def check_key(self, key: str, stored: str, env_password: str | None) -> bool:
        if env_password and hmac.compare_digest(key.encode(), env_password.encode()):
            return True
        if not stored:
            return False
        digest = hashlib.sha256(key.encode()).digest()
        good = self._good
        if good is not None and good[0] == stored and hmac.compare_digest(good[1], digest):
            return True
        if verify_key(key, stored):
            self._good = (stored, digest)
            return True
        return False

    def decide(self, key: str | None, address: str | None, loopback: bool, *, stored: str, allow_remote: bool,
               env_password: str | None = None) -> Verdict:
        """Enabled? Remote allowed? Banned? Key right? In CLIProxyAPI's order and words."""
        if not stored and not env_password:
            return Verdict(404, "not found")
        if not loopback and not allow_remote:
            return Verdict(403, "remote management disabled")
        who = address or "unknown"
        left = self.banned_for(who)
        if left > 0:
            minutes = max(1, int(left // 60 + (1 if left % 60 else 0)))
            return Verdict(403, f"IP banned due to too many failed attempts. Try again in {minutes} minutes")
        if not key:
            return Verdict(401, "missing management key")
        if not self.check_key(key, stored, env_password):
            count = self.fail(who)
            if count >= MAX_FAILURES:
                return Verdict(403, "IP banned due to too many failed attempts. Try again in 30 minutes")
            return Verdict(401, "invalid management key")
        self.succeed(who)
        return Verdict()


def env_password() -> str | None:
    value = os.environ.get("MANAGEMENT_PASSWORD", "")
    return value or None
