"""Crash-safe files for credentials: a private directory, atomic JSON writes, tolerant reads.

A write goes to a temporary file in the same directory (created 0600 by ``mkstemp``), is flushed
and fsynced, renamed over the target (atomic on POSIX), and then the directory itself is fsynced so
the rename survives a power cut. A process killed at any instant leaves either the old file or the
new one, plus at most a stray ``.<name>.*.tmp`` that readers ignore and ``clean_temps`` removes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

__all__ = ["MAX_FILE_BYTES", "TEMP_SUFFIX", "clean_temps", "ensure_private_dir", "is_account_file",
           "read_json", "write_atomic", "write_json_atomic"]

log = logging.getLogger("crossroute.auth")

MAX_FILE_BYTES = 1024 * 1024  # a credential file is a few KB; anything larger is not one
TEMP_SUFFIX = ".tmp"


_WARNED: set[str] = set()  # directories already warned about (the check runs on every write)


def _shared(path: Path, st: os.stat_result) -> str:
    """Why ``path`` must not be tightened ("" when it may): not ours, the root, a home directory,
    or a sticky shared directory such as /tmp (an auth-dir pointed at one by mistake)."""
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return "it belongs to another user"
    resolved = path.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        return "it is the root or a home directory"
    if st.st_mode & stat.S_ISVTX:
        return "it is a shared (sticky) directory"
    return ""


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) 0700; tighten an existing directory others can read (never one
    that is not ours, the root, a home directory or a sticky shared one: those get a warning)."""
    path = path.expanduser()
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        return path
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        why = _shared(path, st)
        if why:
            if str(path) not in _WARNED:
                _WARNED.add(str(path))
                log.warning("auth directory %s is readable by others (mode %o) and is left so because %s; "
                            "use a directory of its own for auth-dir", path, mode, why)
            return path
        try:
            os.chmod(path, mode & 0o700 | 0o700)
            log.warning("auth directory %s was readable by others (mode %o); set to 0700", path, mode)
        except OSError as exc:
            if str(path) not in _WARNED:
                _WARNED.add(str(path))
                log.warning("auth directory %s is readable by others (mode %o) and could not be changed: %s",
                            path, mode, exc)
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (mode 0600, directory 0700)."""
    directory = ensure_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    write_atomic(path, orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n")


def read_json(path: Path) -> tuple[dict[str, Any] | None, bytes, str | None]:
    """``(object, raw bytes, problem)``: the parsed file, or ``None`` and what is wrong with it."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, b"", f"cannot be read ({exc.strerror or exc})"
    if len(raw) > MAX_FILE_BYTES:
        return None, raw, f"is larger than {MAX_FILE_BYTES} bytes"
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, raw, f"is not valid JSON ({exc})"
    if not isinstance(obj, dict):
        return None, raw, "is not a JSON object"
    return obj, raw, None


def is_account_file(name: str) -> bool:
    """An auth-dir entry that holds an account (CLIProxyAPI's rule: a visible ``*.json``)."""
    return name.endswith(".json") and not name.startswith(".")


def clean_temps(directory: Path, older_than: float = 3600.0) -> int:
    """Remove temporary files that a killed writer left behind; the number removed."""
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime >= older_than:
                    os.unlink(entry.path)
                    removed += 1
    return removed
