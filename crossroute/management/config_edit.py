"""Reading and replacing config.yaml from the management API, comments kept.

- What is shown has every configured secret masked (``redaction.mask``: a short prefix and the last
  four characters). A replacement that still holds such a mask gets the original secret back, so
  the file can be edited through the API without ever seeing a key; a mask that stands for more
  than one secret is refused with the line it is on.
- A replacement is validated with ``config.parse`` first (with the process environment, as a
  reload would) and never written when invalid: the problems come back with their line numbers.
- Structured edits (``api-keys``, the provider lists, ``remote-management.secret-key``) go
  through ruamel.yaml's round-trip mode, which keeps comments, key order and quoting.
- Writes are atomic (a temporary file in the same directory, fsync, rename; the file's mode kept).
  The running gateway's config watcher (reload.py) applies the new file.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from .. import redaction
from ..config import ConfigError, Settings, check_exposure, parse, secret_values

__all__ = [
    "MAX_CONFIG_BYTES",
    "EditError",
    "edit_tree",
    "masked",
    "read",
    "replace",
    "restore",
    "secrets_of",
    "write_atomic",
]

MAX_CONFIG_BYTES = 4 * 1024 * 1024
_lock = threading.RLock()  # one read-modify-write at a time


class EditError(Exception):
    """A replacement that is not written: ``status``, a message, and the problems by line."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []

    def body(self) -> dict[str, Any]:
        error = "invalid_yaml" if self.status == 400 and self.problems and all(
            p.get("field") == "" for p in self.problems) else "invalid_config"
        return {"error": error if self.status == 400 else "write_failed", "message": self.message,
                "problems": self.problems}


def read(path: str | os.PathLike[str]) -> str:
    return Path(path).read_text(encoding="utf-8")


def secrets_of(text: str, path: str = "config.yaml") -> list[str]:
    """Every secret the text configures (also when it does not validate)."""
    try:
        return secret_values(parse(text, path))
    except ConfigError as exc:
        return sorted(set(exc.secrets), key=lambda v: (-len(v), v))


def masked(text: str, path: str = "config.yaml") -> str:
    """``text`` with every configured secret replaced by its mask (longest first)."""
    for value in secrets_of(text, path):
        if len(value) >= 4:
            text = text.replace(value, redaction.mask(value))
    return text


def restore(new_text: str, current_text: str, path: str = "config.yaml") -> str:
    """``new_text`` with each mask of a secret of ``current_text`` replaced by that secret."""
    by_mask: dict[str, set[str]] = {}
    for value in secrets_of(current_text, path):
        if len(value) >= 4:
            by_mask.setdefault(redaction.mask(value), set()).add(value)
    for mask_text, values in sorted(by_mask.items(), key=lambda kv: -len(kv[0])):
        if mask_text not in new_text:
            continue
        if len(values) > 1:
            line = new_text[: new_text.index(mask_text)].count("\n") + 1
            raise EditError(400, f"{path}:{line}: the masked value {mask_text!r} stands for more than one configured "
                            "secret; write the full value", [{"line": line, "field": "", "message":
                                                              "ambiguous masked secret"}])
        new_text = new_text.replace(mask_text, next(iter(values)))
    return new_text


def _problems(exc: ConfigError) -> list[dict[str, Any]]:
    return [{"line": line, "field": fld, "message": msg} for line, fld, msg in exc.problems]


def validate(text: str, path: str) -> Settings:
    """The settings of ``text``; EditError(400) listing every problem, secrets masked."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise EditError(413, f"the config must not exceed {MAX_CONFIG_BYTES} bytes")
    try:
        settings = parse(text, path)
    except ConfigError as exc:
        raise EditError(400, exc.render(), _problems(exc)) from None
    exposed = check_exposure(settings)  # the reload would refuse it: refuse it here, before writing
    if exposed:
        raise EditError(400, exposed, [{"line": None, "field": "api-keys", "message": exposed}])
    return settings


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    p = Path(path)
    try:
        mode = p.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def replace(path: str, new_text: str) -> tuple[Settings, bool]:
    """Validate ``new_text`` (masks restored from the file) and write it: (settings, changed)."""
    with _lock:
        current = read(path)
        text = restore(new_text, current, path)
        settings = validate(text, path)
        if text == current:
            return settings, False
        try:
            write_atomic(path, text)
        except OSError as exc:
            raise EditError(500, f"cannot write {path}: {exc.strerror or exc}") from None
        return settings, True


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    return y


def load_tree(text: str) -> Any:
    try:
        tree = _yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise EditError(400, f"YAML syntax error{f' at line {line}' if line else ''}: "
                        f"{getattr(exc, 'problem', None) or exc}", [{"line": line, "field": "", "message": str(exc)}]
                        ) from None
    if tree is None:
        from ruamel.yaml.comments import CommentedMap

        tree = CommentedMap()
    if not isinstance(tree, dict):
        raise EditError(400, "the top level of the config must be a mapping")
    return tree


def dump_tree(tree: Any) -> str:
    buf = io.StringIO()
    _yaml().dump(tree, buf)
    return buf.getvalue()


def edit_tree(path: str, change: Callable[[Any], None]) -> tuple[Settings, bool]:
    """Apply ``change`` to the file's round-trip tree (comments kept), validate, write."""
    with _lock:
        current = read(path)
        tree = load_tree(current)
        change(tree)
        text = dump_tree(tree)
        settings = validate(text, path)
        if text == current:
            return settings, False
        try:
            write_atomic(path, text)
        except OSError as exc:
            raise EditError(500, f"cannot write {path}: {exc.strerror or exc}") from None
        return settings, True


def hash_plain_key(path: str, hasher: Callable[[str], str], is_hashed: Callable[[str], bool]) -> str | None:
    """Replace a plain ``remote-management.secret-key`` in the file with its hash; the hash
    written, or None when there was nothing to do (no key, hashed already, or taken from ${ENV})."""
    with _lock:
        try:
            tree = load_tree(read(path))
        except (OSError, EditError):
            return None
        rm = tree.get("remote-management")
        if not isinstance(rm, dict):
            return None
        key = rm.get("secret-key")
        if not isinstance(key, str) or not key.strip() or is_hashed(key.strip()) or "${" in key:
            return None
        hashed = hasher(key.strip())
        rm["secret-key"] = hashed
        text = dump_tree(tree)
        try:
            validate(text, path)
            write_atomic(path, text)
        except (EditError, OSError):
            return None
        return hashed
