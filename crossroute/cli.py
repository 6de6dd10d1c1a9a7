"""Command line: ``crossroute serve``, ``crossroute check``, ``crossroute --version``, and the account
commands of ``auth/commands.py``: ``crossroute login claude|codex|antigravity|kimi``, ``crossroute import
vertex KEY.json``, ``crossroute auth list|disable|enable|remove`` (their ``--config`` names the config
whose ``auth-dir`` they use; ``--auth-dir`` wins)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from . import __version__
from .config import ConfigError, Settings, check_exposure, find_config, load

log = logging.getLogger("crossroute")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load_for(args: argparse.Namespace) -> tuple[Path, Settings] | None:
    path = find_config(args.config)
    if path is None:
        _say("crossroute: no config file found: looked for ./config.yaml and ~/.crossroute/config.yaml "
             "(pass --config PATH; config.example.yaml is a commented starting point)")
        return None
    if not path.is_file():
        _say(f"crossroute: config file {path} does not exist")
        return None
    try:
        settings = load(path)
    except ConfigError as exc:
        _say(f"crossroute: invalid config:\n{exc.render()}")
        return None
    return path, settings


def cmd_check(args: argparse.Namespace) -> int:
    from . import redaction
    from .config import secret_values
    from .logs import scrub_line

    loaded = _load_for(args)  # a ConfigError already masks the file's secrets
    if loaded is None:
        return 1
    path, settings = loaded
    redaction.set_secrets(secret_values(settings))  # nothing printed below shows a configured secret
    for w in settings.warnings:
        _say(scrub_line(f"warning: {w}"))
    problem = check_exposure(settings)
    if problem:
        _say(scrub_line(problem))
        return 1
    creds = len(settings.providers)
    mocks = sum(1 for p in settings.providers if p.kind == "mock")
    accounts = _accounts_line(settings)
    note = ""
    if creds and mocks == creds and not accounts:
        note = "; mock only: canned answers until a real upstream is added"
    elif mocks:
        note = f"; {mocks} mock"
    _say(scrub_line(f"{path}: OK ({creds} upstream credential{'s' if creds != 1 else ''}{note})"))
    if accounts:
        _say(scrub_line(accounts))
    return 0


def _accounts_line(settings: Settings) -> str:
    """``auth-dir <dir>: N accounts (M usable)`` when the auth dir holds accounts ("" otherwise);
    a file it skips is named in a warning line of its own."""
    from .auth.store import AuthStore

    store = AuthStore(settings.auth_dir)
    if not store.dir.is_dir():
        return ""
    try:
        store.load()
    except OSError as exc:
        return f"auth-dir {store.dir}: not readable ({exc.strerror or exc})"
    accounts = store.accounts()
    if not accounts:
        return ""
    usable = sum(1 for a in accounts if a.usable)
    return f"auth-dir {store.dir}: {len(accounts)} account{'s' if len(accounts) != 1 else ''} ({usable} usable)"


def cmd_serve(args: argparse.Namespace) -> int:
    from .logs import setup_logging

    loaded = _load_for(args)
    if loaded is None:
        return 1
    path, settings = loaded
    if args.host:
        settings.host = args.host
    if args.port:
        settings.port = args.port
    setup_logging(settings.debug)
    _say(f"crossroute {__version__}: using config {path.resolve()}")
    for w in settings.warnings:
        log.warning("%s", w)
    from .management.auth import hash_key_at_start

    hash_key_at_start(path, settings)  # a plain remote-management.secret-key is stored hashed from now on
    problem = check_exposure(settings)
    if problem:
        _say(problem)
        return 1
    from .serve import serve_one, serve_workers

    if args.workers > 1:
        return serve_workers(path, settings, args.workers)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(serve_one(path, settings))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crossroute", description="A gateway for LLM APIs.")
    p.add_argument("--version", action="version", version=f"crossroute {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the gateway")
    serve.add_argument("--config", help="config file (default ./config.yaml, then ~/.crossroute/config.yaml)")
    serve.add_argument("--host", help="override the config's host")
    serve.add_argument("--port", type=int, help="override the config's port")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (default 1; see the README on what they share)")
    serve.set_defaults(func=cmd_serve)
    check = sub.add_parser("check", help="validate a config file")
    check.add_argument("--config", help="config file (default ./config.yaml, then ~/.crossroute/config.yaml)")
    check.set_defaults(func=cmd_check)
    from .auth.commands import add_subcommands

    add_subcommands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
