"""The Call pipeline: resolve the model, pick a credential, translate once, send, fail over.

The I/O belongs to the credential's executor (``providers/``); this module only resolves, selects,
fails over and translates. Failover happens until the first byte is written to the client: a
stream that fails before its first client-visible output (an error event, a cut, invalid JSON, a
web page, EOF) moves to the next credential like a 5xx. After it, a failure becomes the client
format's terminal error event and the stream ends cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from time import monotonic as _monotonic

import orjson

from . import redaction
from .call import Attempt, Call, RawUsage, Trace
from .formats import answers, count, errors, translate
from .formats.neutral import BadRequest, Reasoning
from .formats.pipes import Pipe, UpstreamEventError
from .formats.thinking import split_suffix
from .gateway import Gateway
from .providers import BadAnswer, Outbound, Upstream, UpstreamError
from .providers.base import REQUEST
from .registry import Candidate
from .replies import JSON_HEADERS, SSE_HEADERS, Reply, StreamReply, error_reply
from .routing.router import AllCoolingDown, provider_group
from .routing.session_ids import extract_session_ids

log = logging.getLogger("crossroute")

# A failure with one of these statuses moves the request to the next credential (before the
# first byte to the client), unless its scope says the request itself is wrong.
RETRYABLE = frozenset({401, 402, 403, 404, 408, 429, 500, 502, 503, 504, 520, 521, 522, 524, 529})
MAX_HEAD = 64 * 1024  # upstream bytes kept before the first output, to explain a failure
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "set-cookie", "content-length", "content-encoding", "content-type",
    "cache-control", "x-accel-buffering", "server",
})


def _retryable(exc: UpstreamError) -> bool:
    return exc.scope != REQUEST and (exc.status == 0 or exc.status in RETRYABLE)


def _ended(call: Call, reply: Reply) -> Reply:
    reply.call = call
    if not call.status:
        call.status = reply.status
    return reply


async def execute(gw: Gateway, call: Call) -> Reply | StreamReply:
    """The client's reply for ``call`` (its ``call`` attribute set, for the access log)."""
    fmt = call.client_format
    base_model, reasoning = split_suffix(call.model)
    candidates = gw.registry.resolve(base_model)
    if not candidates and reasoning is not None:
        base_model, reasoning = call.model, None
        candidates = gw.registry.resolve(base_model)
    if not candidates:
        return _ended(call, error_reply(fmt, 404 if fmt == "gemini" else 400,
                                        f"model '{call.model}' is not served by any configured upstream",
                                        param="model"))
    if gw.settings.routing.session_affinity and call.session is None:
        call.session = extract_session_ids(call.headers, call.body, fmt)

    if call.trace is None and (gw.observers.tracing or call.headers.get("x-crossroute-trace") == "1"):
        call.trace = Trace()
    trace = call.trace
    if gw.observers.spool is not None and call.log is None:
        call.log = gw.observers.spool(call)
    prepared = translate.Prepared(call.client_format, call.body, reasoning, call.options)
    router = gw.router
    in_process = router.in_process
    # the provider scope of session bindings and cursors: with in-process state and no session,
    # only a failure needs it (pick_now works it out itself when it has a choice to make)
    scope = provider_group(candidates) if not in_process or call.session is not None else None
    rounds = 1 + max(0, gw.settings.request_retry)
    last: UpstreamError | None = None
    last_cand: Candidate | None = None
    for round_no in range(rounds):
        tried: set[str] = set()
        while True:
            try:
                if in_process:
                    cand = router.pick_now(candidates, base_model, call.session, tried, scope, trace)
                else:
                    cand = await router.pick(candidates, base_model, call.session, tried, scope, trace)
            except AllCoolingDown as exc:
                if last is None or not tried:
                    wait = exc.retry_after
                    if round_no + 1 < rounds and 0 < wait <= gw.settings.max_retry_interval:
                        await asyncio.sleep(wait + _TIMER_SLACK)
                        continue
                    return _ended(call, _cooling_reply(gw, call, candidates, exc.retry_after))
                break
            except LookupError:
                break
            tried.add(cand.credential_id)
            try:
                return await _attempt(gw, call, cand, prepared, base_model, scope)
            except BadRequest as exc:
                return _ended(call, error_reply(fmt, exc.status, exc.message, param=exc.param))
            except UpstreamError as exc:
                failure = exc
            last, last_cand = failure, cand
            gw.last_failures[cand.credential_id] = (failure.status, failure.message)
            if scope is None:
                scope = provider_group(candidates)
            await router.report_failure(cand, base_model, call.session, failure.status or None,
                                        failure.retry_after, scope, kind=failure.scope)
            log.warning("upstream %s failed for model %s: %s %s", cand.provider, cand.upstream_model,
                        failure.status or "connection error", failure.message[:200])
            if not _retryable(failure):
                return _ended(call, _failure_reply(call, cand, failure))
        if round_no + 1 >= rounds:
            break
        # another round (request-retry) only when a credential recovers within max-retry-interval
        wait = await gw.router.wait_time(candidates, base_model)
        if wait is None or wait > gw.settings.max_retry_interval:
            break
        if wait > 0:
            await asyncio.sleep(wait + _TIMER_SLACK)
    if last is None:
        return _ended(call, error_reply(fmt, 503, f"no credential is available for model '{call.model}'"))
    reply = _failure_reply(call, last_cand, last)
    wait = await gw.router.wait_time(candidates, base_model)
    if wait:  # every candidate is cooling down now: say when to come back
        reply.headers = [*reply.headers, ("retry-after", str(max(1, int(wait + 0.999))))]
    return _ended(call, reply)


# uvloop's timers have millisecond resolution and may fire up to a millisecond before the
# monotonic instant a cooldown ends; waking a little after it avoids finding it still cooling
_TIMER_SLACK = 0.005


def _cooling_reply(gw: Gateway, call: Call, candidates: list[Candidate], retry_after: float) -> Reply:
    """Every candidate is cooling down. Quota cooldowns answer 429; when the cooldowns come from
    outages (connection errors, 5xx), the client learns what is wrong: the last upstream error."""
    headers = [("retry-after", str(max(1, int(retry_after + 0.999))))]
    seen = [gw.last_failures.get(c.credential_id) for c in candidates]
    if seen and all(f is not None and f[0] != 429 for f in seen):
        status, message = seen[-1]  # type: ignore[misc]
        status = status if status >= 500 else 502
        return error_reply(call.client_format, status,
                           f"{message} (cooling down; retry in {headers[0][1]} s)", headers=headers)
    return error_reply(call.client_format, 429,
                       f"all credentials for model '{call.model}' are cooling down; retry later", headers=headers)


def _failure_reply(call: Call, cand: Candidate | None, f: UpstreamError) -> Reply:
    """The client's answer for the last failure (bodies and messages already have secrets masked)."""
    call.status = f.status or 502
    fmt = call.client_format
    if f.status and f.body is not None and cand is not None:
        wire = cand.executor.wire_format(cand.entry, fmt)
        if wire == fmt and f.body[:1] in (b"{", b"["):
            # Same format: the upstream's own error body and status go through unchanged.
            return Reply(f.status, f.body, JSON_HEADERS)
        message, _ = errors.upstream_error_message(f.body)
        return error_reply(fmt, f.status, message)
    return error_reply(fmt, f.status or 502, f.message)


def _succeeded(gw: Gateway, call: Call, cand: Candidate, base_model: str, scope: str | None
               ) -> Awaitable[None] | None:
    """Tell the router; with in-process state that is done at once (None), else await the result."""
    if gw.last_failures:
        gw.last_failures.pop(cand.credential_id, None)
    router = gw.router
    if router.in_process:
        router.report_success_now(cand, base_model)
        return None
    return router.report_success(cand, base_model, call.session, scope)


async def _attempt(
    gw: Gateway, call: Call, cand: Candidate, prepared: translate.Prepared, base_model: str, scope: str | None
) -> Reply | StreamReply:
    """One try of one credential: the client's reply, or raises UpstreamError (fail over)."""
    entry = cand.entry
    executor = cand.executor
    fmt = call.client_format
    wire = executor.wire_format(entry, fmt)
    op = call.operation
    if op not in executor.supports or (op == "compact" and wire != "responses"):
        raise BadRequest(f"upstream {entry.name} does not support Responses compaction"
                         if op == "compact" else f"upstream {entry.name} does not support {op}", param="model")
    model = cand.upstream_model
    stream = call.stream
    body = prepared.body_for(wire, model, stream)
    call.credential_id = cid = cand.credential_id
    call.upstream_model = model
    attempt = Attempt(cid, model, wire, _monotonic())
    call.attempts.append(attempt)
    if call.log is not None:
        call.log.attempt_body(attempt, body)
    try:
        up = await executor.send(entry, Outbound(op, wire, model, body, stream, call.headers), gw)
        attempt.first_byte = _monotonic()
        if stream:
            return await _stream(gw, call, cand, up, prepared, wire, attempt, base_model, scope)
        # a whole answer, read here rather than in a helper coroutine (every request's path)
        name = entry.name
        try:
            raw = await up.body(gw.settings.max_upstream_body)
        except (TimeoutError, BadAnswer, *up.io_errors) as exc:
            raise _read_failure(up, name, exc, False) from None
        except asyncio.CancelledError:  # the client went away: the connection is not reused
            up.close(False)
            raise
        up.close(True)
        if call.log is not None:
            call.log.upstream(attempt, raw)
        if wire == fmt:  # same format: the checked body passes unchanged
            what, used = answers.passthrough(wire, raw, op)
            if what is not None:
                raise BadAnswer(redaction.scrub(f"upstream {name} sent an answer that could not be read: {what}"))
            out, usage = raw, RawUsage(wire, used)
        else:
            what, obj = answers.problem(wire, raw, op)
            if what is not None:
                raise BadAnswer(redaction.scrub(f"upstream {name} sent an answer that could not be read: {what}"))
            try:
                out, usage = prepared.response(wire, raw, call.model, op, obj)  # parsed once, by the check
            except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise BadAnswer(f"upstream {name} sent an answer that could not be read: {exc}") from None
    except UpstreamError as exc:
        if call.log is not None and exc.body:
            call.log.upstream(attempt, exc.body)
        attempt.end = _monotonic()
        attempt.status = exc.status
        attempt.error = exc.message
        if gw.observers.attempts:
            gw.observers.attempt_ended(call, attempt)
        raise
    attempt.end = attempt.first_token = _monotonic()  # a whole answer: its first output is all of it
    attempt.status = call.status = 200
    call._usage = usage  # (the property's setter, without its call)
    observers = gw.observers
    if observers.attempts:
        observers.attempt_ended(call, attempt)
    if (pending := _succeeded(gw, call, cand, base_model, scope)) is not None:
        await pending
    if gw.recording:
        gw.record(call)
    extra = _passthrough_headers(up.headers) if gw.settings.passthrough_headers else None
    reply = Reply(200, out, [*JSON_HEADERS, *extra] if extra else JSON_HEADERS)
    reply.call = call
    return reply


def _read_failure(up: Upstream, name: str, exc: BaseException, stream: bool) -> UpstreamError:
    """What to raise (fail over) for ``exc`` while reading a whole answer or a stream's first
    output; ``up`` is closed, not to be reused."""
    up.close(False)
    if isinstance(exc, UpstreamEventError):
        return UpstreamError(exc.status or 502, redaction.scrub(f"upstream {name} failed: {exc.message}"))
    if isinstance(exc, BadAnswer):  # (a stream's own checks name the upstream already)
        return exc if stream else BadAnswer(f"upstream {name} sent {exc.message}")
    if isinstance(exc, TimeoutError):
        what = "sent no data in time" if stream else "timed out while sending its answer"
        return UpstreamError(504, f"upstream {name} {what}", scope="model")
    what = "the stream" if stream else "its answer"
    return UpstreamError(502, f"upstream {name} broke off {what} ({type(exc).__name__})", scope="model")


async def _stream(gw: Gateway, call: Call, cand: Candidate, up: Upstream, prepared: translate.Prepared, wire: str,
                  attempt: Attempt, base_model: str, scope: str | None) -> StreamReply:
    """Read and feed the pipe until it has client output; only then is the reply committed."""
    name = cand.entry.name
    pipe = prepared.pipe(wire, call.model)
    read = up.read_chunk
    head = b""  # the first upstream bytes, to explain a failure before any output
    seen = 0
    limit = gw.settings.max_upstream_body
    eof = False
    try:
        while True:
            chunk = await read()
            if call.log is not None:
                call.log.upstream(attempt, chunk)
            if not chunk:
                eof = True
                # with no event at all, whatever finish() would render (an early-EOF error) is
                # not an answer; else it raises UpstreamEventError or flushes a last event
                out = pipe.finish() if head.find(b"data:") >= 0 else b""
                if out:
                    break
                message, _ = errors.upstream_error_message(head) if head else ("", None)
                detail = f": {redaction.scrub(message)}" if message and head[:1] in (b"{", b"[") else ""
                raise BadAnswer(f"upstream {name} ended the stream before any output{detail}")
            if not head:
                head = chunk if len(chunk) <= MAX_HEAD else chunk[:MAX_HEAD]
            elif len(head) < MAX_HEAD:
                head += chunk[: MAX_HEAD - len(head)]
            seen += len(chunk)
            out = pipe.feed(chunk)
            if out:
                break
            if seen > limit:
                raise BadAnswer(f"upstream {name} sent more than {limit} bytes without an answer")
    except (UpstreamEventError, TimeoutError, BadAnswer, *up.io_errors) as exc:
        raise _read_failure(up, name, exc, True) from None
    except asyncio.CancelledError:
        up.close(False)
        raise
    call.status = 200
    attempt.status = 200  # the attempt's end (and its observers) come when the stream ends, in _relay
    if (pending := _succeeded(gw, call, cand, base_model, scope)) is not None:
        await pending
    headers = [("content-type", "application/json")] if call.options.get("json_array") else SSE_HEADERS
    if gw.settings.passthrough_headers and (extra := _passthrough_headers(up.headers)):
        headers = [*headers, *extra]
    reply = StreamReply(200, _relay(gw, call, cand, up, pipe, out, attempt, eof), headers)
    reply.terminal = pipe.error
    reply.call = call
    return reply


async def _relay(gw: Gateway, call: Call, cand: Candidate, up: Upstream, pipe: Pipe, first: bytes,
                 attempt: Attempt, eof: bool) -> AsyncIterator[bytes]:
    clean = False
    name = cand.entry.name
    try:
        yield first
        attempt.first_token = time.monotonic()  # resumed once the edge wrote it: the client has output
        if eof and not pipe.done:  # the upstream ended with the first output; finish() was called
            yield pipe.error(502, f"upstream {name} ended the stream early")
        read = up.read_chunk
        io_errors = up.io_errors
        while not pipe.done:
            try:
                chunk = await read()
                if call.log is not None:
                    call.log.upstream(attempt, chunk)
            except TimeoutError:
                yield pipe.error(504, f"upstream {name} stopped sending (idle timeout)")
                break
            except io_errors as exc:
                yield pipe.error(502, f"upstream {name} broke off the stream ({type(exc).__name__})")
                break
            try:
                out = pipe.feed(chunk) if chunk else pipe.finish()
            except UpstreamEventError as exc:
                yield pipe.error(exc.status or 502, redaction.scrub(f"upstream {name} failed: {exc.message}"))
                break
            if out:
                yield out
            if not chunk:
                break
        clean = True
    finally:
        attempt.end = time.monotonic()
        call.usage = pipe.usage
        up.close(clean and up.at_eof())  # client gone or upstream misbehaved: do not reuse
        if not clean and attempt.error is None:
            attempt.error = "the stream ended early (client gone or upstream failed)"
        if gw.observers.attempts:
            gw.observers.attempt_ended(call, attempt)
        if gw.recording:
            gw.record(call)


async def count_tokens(gw: Gateway, call: Call) -> Reply:
    """Anthropic / Gemini token counting: the upstream's own count endpoint when it has one,
    otherwise a local estimate, labelled ``x-crossroute-token-count: estimate``."""
    return _ended(call, await _count_tokens(gw, call))


async def _count_tokens(gw: Gateway, call: Call) -> Reply:
    fmt = call.client_format
    base_model, _ = split_suffix(call.model)
    candidates = gw.registry.resolve(base_model) or gw.registry.resolve(call.model)
    if not candidates:
        return error_reply(fmt, 404 if fmt == "gemini" else 400,
                           f"model '{call.model}' is not served by any configured upstream", param="model")
    prepared = translate.Prepared(fmt, call.body, None, call.options)
    try:
        cand = await gw.router.pick(candidates, base_model, None)
    except (AllCoolingDown, LookupError):
        cand = candidates[0]
    executor = cand.executor
    wire = executor.wire_format(cand.entry, fmt)
    try:
        if wire in ("claude", "gemini") and "count_tokens" in executor.supports:
            body = count.count_body(wire, prepared.body_dict(wire, cand.upstream_model, False), cand.upstream_model)
            out = Outbound("count_tokens", wire, cand.upstream_model, orjson.dumps(body), False, call.headers)
            reply = await _count_upstream(gw, call, cand, out)
            if reply is not None:
                return reply
        total = count.estimate(prepared.neutral())
    except BadRequest as exc:
        return error_reply(fmt, exc.status, exc.message, param=exc.param)
    return Reply(200, orjson.dumps(count.answer_for(fmt, total)),
                 [*JSON_HEADERS, ("x-crossroute-token-count", "estimate")])


async def _count_upstream(gw: Gateway, call: Call, cand: Candidate, out: Outbound) -> Reply | None:
    """The upstream's count; None when it could not answer (the caller estimates instead)."""
    wire = out.wire
    try:
        up = await cand.executor.send(cand.entry, out, gw)
        try:
            raw = await up.body(gw.settings.max_upstream_body)
        except (TimeoutError, *up.io_errors) as exc:
            up.close(False)
            raise UpstreamError(502, f"upstream {cand.entry.name} broke off its count ({type(exc).__name__})") from None
        except BadAnswer:
            up.close(False)
            raise
        up.close(True)
    except UpstreamError as exc:
        if exc.status >= 500 or exc.status in (0, 429) or exc.body is None:
            log.warning("count_tokens on %s failed (%s); answering with an estimate", cand.entry.name, exc.message)
            return None
        if wire == call.client_format and exc.body[:1] == b"{":
            return Reply(exc.status, exc.body, JSON_HEADERS)
        message, _ = errors.upstream_error_message(exc.body)
        return error_reply(call.client_format, exc.status, message)
    try:
        obj = orjson.loads(raw)
        total = count.total_from(wire, obj)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
    if wire == call.client_format:
        return Reply(200, raw, JSON_HEADERS)
    return Reply(200, orjson.dumps(count.answer_for(call.client_format, total)), JSON_HEADERS)


def _passthrough_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    named = {h.strip().lower() for h in headers.get("Connection", "").split(",") if h.strip()}
    out = []
    for name, value in headers.items():
        low = name.lower()
        if low in HOP_BY_HOP or low in named or low.startswith("access-control-"):
            continue
        if low.startswith(("x-litellm-", "helicone-", "x-portkey-", "cf-aig-", "x-kong-", "x-bt-")):
            continue
        out.append((low, value))
    return out


__all__ = ["Call", "Reasoning", "execute"]
