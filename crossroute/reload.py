"""Hot reload of config.yaml: validate first, apply only a real change, never drop traffic."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ConfigError, check_exposure, parse

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("crossroute")


async def reload_once(path: Path, app: App, explain: bool = False) -> bool:
    """Re-read ``path``; apply it when valid and different. Returns True when applied.
    ``explain``: also log when nothing changed (a reload asked for with SIGHUP)."""
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except OSError as exc:
        log.error("config reload: cannot read %s: %s; keeping the running config", path, exc)
        return False
    gw = app.gateway
    if hashlib.sha256(text.encode()).hexdigest() == gw.settings.digest:
        if explain:
            log.info("config reload: %s is unchanged", path)
        return False
    try:
        settings = parse(text, str(path))
    except ConfigError as exc:
        log.error("config reload rejected, keeping the running config:\n%s", exc.render())
        return False
    # Listening address cannot change without a restart; keep the running one.
    if (settings.host, settings.port) != (gw.settings.host, gw.settings.port):
        log.warning("config reload: host/port changes need a restart; keeping %s:%s", gw.settings.host,
                    gw.settings.port)
        settings.host, settings.port = gw.settings.host, gw.settings.port
    # The state backend (memory or Redis) is built once at start-up.
    if settings.redis_url != gw.settings.redis_url:
        log.warning("config reload: state.redis-url changes need a restart; keeping the running %s state",
                    "Redis" if gw.settings.redis_url else "in-process")
        settings.redis_url = gw.settings.redis_url
    problem = check_exposure(settings)
    if problem:
        log.error("config reload rejected: %s", problem)
        return False
    for w in settings.warnings:
        log.warning("%s", w)
    await gw.apply(settings)
    app.configure()
    log.info("config reloaded from %s (%d upstream credentials)", path, len(settings.providers))
    return True


async def watch_config(path: Path, app: App) -> None:
    from watchfiles import awatch

    path = await asyncio.to_thread(path.resolve)
    seen: list[bool] = []  # the watcher has reported a change
    # the watcher is in place only some time after it is started: a file written before then
    # (right after "listening") would go unnoticed until its next change, so look once or twice
    catch_up = asyncio.create_task(_catch_up(path, app, seen))
    try:
        async for _ in awatch(path.parent, debounce=150, recursive=False,
                              watch_filter=lambda _change, name: Path(name).name == path.name):
            seen.append(True)
            await reload_once(path, app)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("config watcher stopped")
    finally:
        catch_up.cancel()


CATCH_UP = (0.5, 2.0)  # seconds after the watcher starts


async def _catch_up(path: Path, app: App, seen: list[bool]) -> None:
    for delay in CATCH_UP:
        await asyncio.sleep(delay)
        if seen:
            return  # the watcher works: it reports every change from now on
        await reload_once(path, app)
