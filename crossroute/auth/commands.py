"""``crossroute login ...``, ``crossroute import vertex KEY.json`` and ``crossroute auth list|disable|enable|remove``.

``add_subcommands(sub)`` adds them to the main parser's subparsers (``crossroute.cli`` does); the
same commands also run as ``python -m crossroute.auth.commands login claude``.
Nothing printed here shows a token: ``auth list`` masks them, and every error is scrubbed.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import redaction
from ..redaction import mask
from .accounts import ACTIVE, Account, parse_time
from .store import DEFAULT_AUTH_DIR, AuthStore, resolve_auth_dir

__all__ = ["add_subcommands", "auth_dir_for", "cmd_auth", "cmd_import", "cmd_login", "main", "quota_snapshot",
           "render_list"]

LOGIN_PROVIDERS = ("claude", "codex", "antigravity", "kimi", "xai")
DEFAULT_TIMEOUT = 600.0


def _out(msg: str) -> None:
    print(redaction.scrub(msg), flush=True)


def _err(msg: str) -> None:
    print(redaction.scrub(msg), file=sys.stderr, flush=True)


def auth_dir_for(args: argparse.Namespace) -> Path:
    """``--auth-dir``, else the config file's ``auth-dir`` (when one is found), else the default.
    A ``--config`` that is missing or invalid stops the command (exit 2): an account written to
    another directory than the gateway's would silently not be served."""
    if getattr(args, "auth_dir", None):
        return resolve_auth_dir(args.auth_dir)
    from ..config import ConfigError, find_config, load

    explicit = getattr(args, "config", None)
    path = find_config(explicit)
    if explicit and (path is None or not path.is_file()):
        _err(f"crossroute: config file {explicit} does not exist (give --auth-dir, or a config with auth-dir)")
        raise SystemExit(2)
    if path is not None and path.is_file():
        try:
            return resolve_auth_dir(load(path).auth_dir)
        except ConfigError as exc:
            if explicit:
                _err(f"crossroute: invalid config:\n{exc.render()}")
                raise SystemExit(2) from None
            _err(f"crossroute: {path} is not a valid config ({exc.problems[0][2] if exc.problems else exc}); "
                 f"using the default auth dir {DEFAULT_AUTH_DIR}")
    return resolve_auth_dir(DEFAULT_AUTH_DIR)


def _stdin_lines() -> queue.Queue[str | None]:
    """Lines of stdin from a daemon thread (a blocked read never keeps the process alive)."""
    q: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in sys.stdin:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, name="stdin", daemon=True).start()
    return q


def _logging() -> None:
    from ..logs import setup_logging

    setup_logging()  # skipped files and refresh problems on stderr, secrets masked


def cmd_login(args: argparse.Namespace) -> int:
    # here, not at the top: the main parser imports this module for every command (aiohttp is heavy)
    from .flows import LoginDenied, LoginError, LoginTimeout
    from .grants import GrantError
    from .logins import DEVICE_PROVIDERS, PKCE_PROVIDERS, device_login, pkce_login

    _logging()
    provider: str = args.provider
    store = AuthStore(auth_dir_for(args))
    store.load()
    device = args.device or provider in ("kimi", "xai")
    if device and provider not in DEVICE_PROVIDERS:
        _err(f"crossroute: {provider} has no device-code login; run `crossroute login {provider}`")
        return 2
    if not device and provider not in PKCE_PROVIDERS:
        _err(f"crossroute: unknown provider {provider!r}")
        return 2
    retry = f"crossroute login {provider}" + (" --device" if args.device and provider == "codex" else "")

    async def run() -> Account:
        if device:
            return await device_login(provider, store, say=_out, wait_s=args.timeout)
        lines = _stdin_lines() if args.no_browser else None

        async def read_paste() -> str | None:
            assert lines is not None
            while True:
                try:
                    return lines.get_nowait()
                except queue.Empty:
                    await asyncio.sleep(0.05)

        return await pkce_login(provider, store, say=_out, wait_s=args.timeout, no_browser=args.no_browser,
                                read_paste=read_paste if lines is not None else None)

    try:
        acct = asyncio.run(run())
    except LoginDenied as exc:
        _err(f"crossroute: login denied: {exc}. Nothing was saved; run `{retry}` to try again.")
        return 1
    except LoginTimeout as exc:
        hint = " (with --no-browser to paste the redirect URL)" if not device and not args.no_browser else ""
        _err(f"crossroute: login timed out: {exc}. Run `{retry}`{hint} to try again.")
        return 1
    except (LoginError, GrantError) as exc:
        _err(f"crossroute: login failed: {exc}. Run `{retry}` to try again.")
        return 1
    except KeyboardInterrupt:
        _err("crossroute: login cancelled")
        return 130
    who = f" as {acct.email}" if acct.email else ""
    _out(f"Logged in to {provider}{who}; saved {acct.path}")
    return 0


def _expiry(acct: Account, now: float) -> str:
    if acct.expires_at is None:
        return "-"
    left = acct.expires_at - now
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(acct.expires_at))
    if left <= 0:
        return f"{stamp} (expired)"
    if left < 3600:
        return f"{stamp} (in {int(left // 60)} min)"
    if left < 86400 * 2:
        return f"{stamp} (in {left / 3600:.1f} h)"
    return f"{stamp} (in {left / 86400:.1f} d)"


def quota_snapshot(auth_dir: Path) -> tuple[dict[str, dict[str, Any]], Callable[[dict[str, Any]], str] | None]:
    """What the running gateway last wrote about each account's quota (``routing/quota.py``:
    ``read_snapshot`` and ``describe``), or nothing when this build or the directory has none."""
    quota = _quota_module()
    if quota is None:
        return {}, None
    read, describe = getattr(quota, "read_snapshot", None), getattr(quota, "describe", None)
    if read is None:
        return {}, None
    try:
        snap = read(auth_dir) or {}
    except Exception as exc:  # a torn or foreign file must not break the listing
        _err(f"crossroute: quota snapshot in {auth_dir} not readable ({type(exc).__name__}); quota not shown")
        return {}, None
    return (snap if isinstance(snap, dict) else {}), describe


def _cooling_until(info: dict[str, Any], now: float) -> float | None:
    """When the account's cooldown ends: the snapshot's ``cooling-until``, else the latest reset
    of a window the provider said is exhausted (the router cools the account until then)."""
    for key in ("cooling-until", "cooling_until"):
        value = info.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > now:
            return float(value)
        if isinstance(value, str):
            ts = parse_time(value)
            if ts is not None and ts > now:
                return ts
    window = getattr(_quota_module(), "Window", None)
    windows = info.get("windows")
    if window is None or not isinstance(windows, list):
        return None
    until: float | None = None
    for raw in windows:
        try:
            w = window.from_json(raw)
            if w.exhausted(now) and w.reset_at is not None and w.reset_at > now:
                until = max(until or 0.0, float(w.reset_at))
        except Exception:
            continue
    return until


def _quota_module() -> Any:
    try:
        from ..routing import quota
    except ImportError:
        return None
    return quota


def _status(a: Account, info: dict[str, Any] | None, now: float) -> str:
    if a.status != ACTIVE or not info:
        return a.status
    until = _cooling_until(info, now)
    if until is None:
        return ACTIVE
    return f"cooling until {time.strftime('%H:%M:%S UTC', time.gmtime(until))}"


def render_list(accounts: list[Account], now: float | None = None,
                quota: dict[str, dict[str, Any]] | None = None,
                describe: Callable[[dict[str, Any]], str] | None = None) -> str:
    """The ``auth list`` table: status (active / cooling until / needs login / disabled), expiry,
    quota left where the running gateway recorded it, the token masked."""
    now = time.time() if now is None else now
    quota = quota or {}
    rows = [("NAME", "PROVIDER", "EMAIL", "STATUS", "EXPIRES", "QUOTA", "TOKEN")]
    for a in sorted(accounts, key=lambda a: (a.provider, a.name)):
        secret = a.access_token or a.api_key or a.refresh_token or ""
        info = quota.get(a.name)
        left = "-"
        if info and describe is not None:
            try:
                left = redaction.scrub(str(describe(info))) or "-"
            except Exception:
                left = "?"
        shown = mask(secret) if secret else ("service account" if a.provider == "vertex" else "-")
        rows.append((a.name, a.provider, a.email or "-", _status(a, info, now), _expiry(a, now), left, shown))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def cmd_auth(args: argparse.Namespace) -> int:
    _logging()
    store = AuthStore(auth_dir_for(args))
    store.load()
    if args.auth_command == "list":
        accounts = store.accounts()
        if not accounts:
            _out(f"no accounts in {store.dir} (add one with `crossroute login claude|codex|antigravity|kimi|xai`)")
            return 0
        snap, describe = quota_snapshot(store.dir)
        _out(render_list(accounts, quota=snap, describe=describe))
        return 0
    try:
        acct = store.find(args.name)
    except KeyError as exc:
        _err(f"crossroute: {exc.args[0]}")
        return 1
    if args.auth_command == "remove":
        store.remove(acct.name)
        _out(f"removed {acct.name}")
        return 0
    disabled = args.auth_command == "disable"
    store.set_disabled(acct.name, disabled)
    _out(f"{acct.name}: {'disabled' if disabled else 'enabled'}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .flows.service_account import import_vertex

    _logging()
    store = AuthStore(auth_dir_for(args))
    store.load()
    try:
        acct = import_vertex(store, Path(args.key_file).expanduser(), prefix=args.prefix, location=args.location)
    except ValueError as exc:
        _err(f"crossroute: {args.key_file} {exc}")
        return 1
    _out(f"imported the service account {acct.email} (project {acct.raw.get('project_id')}); saved {acct.path}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--auth-dir", help=f"account files directory (default: the config's auth-dir, else "
                                      f"{DEFAULT_AUTH_DIR})")
    p.add_argument("--config", help="config file to read auth-dir from")


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    login = sub.add_parser("login", help="sign in to a subscription account and save it in the auth dir")
    login.add_argument("provider", choices=LOGIN_PROVIDERS)
    login.add_argument("--device", action="store_true", help="device-code login (codex; kimi and xai always use it)")
    login.add_argument("--no-browser", action="store_true",
                       help="do not open a browser: print the URL and read the pasted redirect URL")
    login.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help="seconds to wait for the sign-in (default 600)")
    _common(login)
    login.set_defaults(func=cmd_login)

    imp = sub.add_parser("import", help="import a credential file into the auth dir")
    imp_sub = imp.add_subparsers(dest="import_kind", required=True)
    vertex = imp_sub.add_parser("vertex", help="a Google service-account key for Vertex AI")
    vertex.add_argument("key_file", help="the service-account JSON key")
    vertex.add_argument("--prefix", help="model prefix for this account (e.g. team-a/gemini-...)")
    vertex.add_argument("--location", help="default region (e.g. us-central1; default: global endpoints)")
    _common(vertex)
    imp.set_defaults(func=cmd_import)

    auth = sub.add_parser("auth", help="list, disable, enable or remove accounts")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    lst = auth_sub.add_parser("list", help="accounts with status and expiry (secrets masked)")
    _common(lst)
    for verb in ("disable", "enable", "remove"):
        p = auth_sub.add_parser(verb, help=f"{verb} an account (file name, name without .json, or email)")
        p.add_argument("name")
        _common(p)
    auth.set_defaults(func=cmd_auth)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crossroute")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
