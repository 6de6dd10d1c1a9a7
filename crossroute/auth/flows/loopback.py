"""The loopback callback of an authorization-code login, or the redirect URL pasted by hand.

``wait_for_code`` listens on ``127.0.0.1:<port>`` (the provider's registered callback port) for the
one redirect the browser makes, checks ``state`` (a wrong one is answered 400 and the wait goes
on: it may be a stale tab), reports a denied consent (``error=access_denied``) as ``LoginDenied``,
and returns the code. With ``pasted`` (a coroutine reading what the user pastes) the first of the
two to deliver wins; a pasted URL with a wrong state is reported and another is asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from . import LoginDenied, LoginError, LoginTimeout

__all__ = ["CallbackResult", "parse_redirect", "wait_for_code"]

_PAGE = ("<!doctype html><html><head><meta charset='utf-8'><title>crossroute</title></head>"
         "<body><h1>{title}</h1><p>{text}</p></body></html>")


class CallbackResult:
    __slots__ = ("code", "state")

    def __init__(self, code: str, state: str) -> None:
        self.code = code
        self.state = state


def parse_redirect(text: str, expected_state: str) -> CallbackResult:
    """A pasted redirect URL (or Claude's ``code#state``, or its query string) -> the code.

    Raises ``LoginDenied`` for a refused consent and ``LoginError`` for a wrong state or no code."""
    text = text.strip()
    if not text:
        raise LoginError("nothing was pasted")
    if "://" in text or text.startswith(("/", "?")):
        query = urlsplit(text).query if "://" in text or text.startswith("/") else text[1:]
        q = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    elif "=" in text:
        q = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
    elif "#" in text:
        code, _, state = text.partition("#")
        q = {"code": code, "state": state}
    else:
        q = {"code": text, "state": expected_state}  # a bare code: nothing to compare
    return _check(q, expected_state)


def _check(q: dict[str, str], expected_state: str) -> CallbackResult:
    if q.get("error"):
        detail = q.get("error_description") or q["error"]
        if q["error"] == "access_denied":
            raise LoginDenied(f"consent was denied ({detail})")
        raise LoginError(f"the provider reported an error: {detail}")
    code = q.get("code", "")
    state = q.get("state", "")
    if "#" in code and not state:  # Claude appends the state to the code
        code, _, state = code.partition("#")
    if state != expected_state:
        raise LoginError("the callback's state does not match this login (a stale or forged redirect); rejected")
    if not code:
        raise LoginError("the callback carried no authorization code")
    return CallbackResult(code, state)


async def wait_for_code(*, port: int, path: str, state: str, wait_s: float, host: str = "localhost",
                        pasted: Callable[[], Awaitable[str | None]] | None = None,
                        on_bad_paste: Callable[[str], None] | None = None,
                        ready: Callable[[int], None] | None = None, listen: bool = True) -> CallbackResult:
    """Wait for the redirect (and/or a pasted URL) for ``wait_s`` seconds; ``LoginTimeout`` after it."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[CallbackResult] = loop.create_future()

    async def handle(request: web.Request) -> web.Response:
        if request.path != path:
            return web.Response(status=404, text="not found")
        q = {k: v for k, v in request.query.items()}
        try:
            result = _check(q, state)
        except LoginDenied as exc:
            if not done.done():
                done.set_exception(exc)
            return _page(403, "Login cancelled", str(exc) + ". You can close this tab.")
        except LoginError as exc:
            return _page(400, "Login rejected", str(exc))
        if not done.done():
            done.set_result(result)
        return _page(200, "Login complete", "crossroute received the authorization. You can close this tab.")

    runner: web.AppRunner | None = None
    if listen:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        # "localhost" may resolve to either loopback address in the browser: listen on both
        hosts = ["127.0.0.1", "::1"] if host == "localhost" else [host]
        for i, h in enumerate(hosts):
            try:
                await web.TCPSite(runner, h, port, reuse_address=True).start()
            except OSError as exc:
                if i:  # no IPv6 loopback here: IPv4 is enough
                    continue
                await runner.cleanup()
                runner = None
                if pasted is None:
                    raise LoginError(f"cannot listen on {h}:{port} for the login callback ({exc.strerror}); "
                                     "free the port or use --no-browser and paste the redirect URL") from None
                break
    if ready is not None:
        ready(port)

    async def read_pastes() -> None:
        assert pasted is not None
        while not done.done():
            text = await pasted()
            if text is None:  # end of input: keep waiting for the loopback redirect
                return
            if not text.strip():
                continue
            try:
                result = parse_redirect(text, state)
            except LoginDenied as exc:
                if not done.done():
                    done.set_exception(exc)
                return
            except LoginError as exc:
                if on_bad_paste is not None:
                    on_bad_paste(str(exc))
                continue
            if not done.done():
                done.set_result(result)

    paste_task = asyncio.ensure_future(read_pastes()) if pasted is not None else None
    try:
        return await asyncio.wait_for(asyncio.shield(done), wait_s)
    except TimeoutError:
        raise LoginTimeout(f"no login callback within {_minutes(wait_s)}") from None
    finally:
        if paste_task is not None:
            paste_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await paste_task
        if runner is not None:
            await asyncio.sleep(0.05)  # let the browser get its page
            await runner.cleanup()


def _page(status: int, title: str, text: str) -> web.Response:
    return web.Response(status=status, content_type="text/html",
                        text=_PAGE.format(title=html.escape(title), text=html.escape(text)))


def _minutes(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        n = int(seconds // 60)
        return f"{n} minute{'s' if n != 1 else ''}"
    return f"{seconds:g} seconds"
