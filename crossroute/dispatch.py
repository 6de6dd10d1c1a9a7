"""The Call pipeline: resolve the model, pick a credential, translate once, send, fail over.

Failover happens only before the first byte reaches the client. After it, a failure becomes the
client format's terminal error event and the stream ends cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any

import aiohttp
import orjson

from .formats import count, errors, translate
from .formats.neutral import BadRequest, Reasoning, Usage
from .formats.thinking import split_suffix
from .gateway import Gateway
from .providers import PROVIDERS, UpstreamRequest
from .registry import Candidate
from .replies import JSON_HEADERS, SSE_HEADERS, Reply, StreamReply, error_reply
from .routing.router import AllCoolingDown, provider_group
from .routing.session_ids import SessionIds, extract_session_ids

log = logging.getLogger("crossroute")

# A failure with one of these statuses moves the request to the next credential (before the
# first byte). 401/402/404 are credential-scoped too: another key may well serve the request.
RETRYABLE = frozenset({401, 402, 403, 404, 408, 429, 500, 502, 503, 504, 520, 521, 522, 524, 529})
MAX_ERROR_BODY = 64 * 1024
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "set-cookie", "content-length", "content-encoding", "content-type",
    "cache-control", "x-accel-buffering", "server",
})


class Call:
    """One client request as the pipeline sees it."""

    __slots__ = (
        "_usage", "body", "client_format", "client_key", "credential_id", "headers", "model", "operation",
        "options", "session", "started", "status", "stream", "upstream_model",
    )

    def __init__(
        self,
        client_format: str,
        model: str,
        body: dict[str, Any],
        headers: Mapping[str, str],
        *,
        stream: bool = False,
        operation: str = "generate",
        client_key: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.client_format = client_format
        self.operation = operation
        self.model = model
        self.stream = stream
        self.body = body
        self.headers = headers
        self.client_key = client_key
        self.options = options or {}
        self.session: SessionIds | None = None
        self._usage: Usage | translate.PendingUsage | None = None
        self.credential_id: str | None = None
        self.upstream_model: str | None = None
        self.status = 0
        self.started = time.monotonic()

    @property
    def usage(self) -> Usage | None:
        u = self._usage
        if isinstance(u, translate.PendingUsage):
            u = self._usage = u.resolve()
        return u

    @usage.setter
    def usage(self, value: Usage | translate.PendingUsage | None) -> None:
        self._usage = value


class _Failure:
    __slots__ = ("body", "message", "retry_after", "status")

    def __init__(self, status: int, message: str, body: bytes | None = None, retry_after: float | None = None):
        self.status = status  # 0 = no HTTP answer (connection error); 504 for timeouts
        self.message = message
        self.body = body
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status in RETRYABLE


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def execute(gw: Gateway, call: Call) -> Reply | StreamReply:
    fmt = call.client_format
    base_model, reasoning = split_suffix(call.model)
    candidates = gw.registry.resolve(base_model)
    if not candidates and reasoning is not None:
        base_model, reasoning = call.model, None
        candidates = gw.registry.resolve(base_model)
    if not candidates:
        return error_reply(fmt, 404 if fmt == "gemini" else 400,
                           f"model '{call.model}' is not served by any configured upstream", param="model")
    if gw.settings.routing.session_affinity and call.session is None:
        call.session = extract_session_ids(call.headers, call.body, fmt)

    prepared = translate.Prepared(call.client_format, call.body, reasoning, call.options)
    router = gw.router
    in_process = router.in_process
    # the provider scope of session bindings and cursors
    scope = provider_group(candidates)
    rounds = 1 + max(0, gw.settings.request_retry)
    last: _Failure | None = None
    for round_no in range(rounds):
        tried: set[str] = set()
        while True:
            try:
                if in_process:
                    cand = router.pick_now(candidates, base_model, call.session, tried, scope)
                else:
                    cand = await router.pick(candidates, base_model, call.session, tried, scope)
            except AllCoolingDown as exc:
                if last is None or not tried:
                    wait = exc.retry_after
                    if round_no + 1 < rounds and 0 < wait <= gw.settings.max_retry_interval:
                        await asyncio.sleep(wait)
                        continue
                    return _cooling_reply(gw, call, candidates, exc.retry_after)
                break
            except LookupError:
                break
            tried.add(cand.credential_id)
            try:
                outcome = await _attempt(gw, call, cand, prepared, base_model, scope)
            except BadRequest as exc:
                return error_reply(fmt, exc.status, exc.message, param=exc.param)
            if not isinstance(outcome, _Failure):
                return outcome
            last = outcome
            gw.last_failures[cand.credential_id] = (outcome.status, outcome.message)
            await router.report_failure(cand, base_model, call.session, outcome.status or None,
                                        outcome.retry_after, scope)
            log.warning("upstream %s failed for model %s: %s %s", cand.provider, cand.upstream_model,
                        outcome.status or "connection error", outcome.message[:200])
            if not outcome.retryable:
                return _failure_reply(call, cand, outcome)
        if round_no + 1 >= rounds:
            break
        # another round (request-retry) only when a credential recovers within max-retry-interval
        wait = await gw.router.wait_time(candidates, base_model)
        if wait is None or wait > gw.settings.max_retry_interval:
            break
        if wait > 0:
            await asyncio.sleep(wait)
    if last is None:
        return error_reply(fmt, 503, f"no credential is available for model '{call.model}'")
    reply = _failure_reply(call, None, last)
    wait = await gw.router.wait_time(candidates, base_model)
    if wait:  # every candidate is cooling down now: say when to come back
        reply.headers = [*reply.headers, ("retry-after", str(max(1, int(wait + 0.999))))]
    return reply


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


def _failure_reply(call: Call, cand: Candidate | None, f: _Failure) -> Reply:
    call.status = f.status or 502
    fmt = call.client_format
    if f.status and f.body is not None and cand is not None:
        wire = PROVIDERS[cand.entry.kind].wire_format(cand.entry, fmt)
        if wire == fmt and f.body[:1] in (b"{", b"["):
            # Same format: the upstream's own error body and status go through unchanged.
            return Reply(f.status, f.body, JSON_HEADERS)
        message, _ = errors.upstream_error_message(f.body)
        return error_reply(fmt, f.status, message)
    if f.status == 504:
        return error_reply(fmt, 504, f.message)
    return error_reply(fmt, f.status or 502, f.message)


def _build(gw: Gateway, call: Call, cand: Candidate, prepared: translate.Prepared) -> tuple[str, UpstreamRequest]:
    entry = cand.entry
    provider = PROVIDERS[entry.kind]
    wire = provider.wire_format(entry, call.client_format)
    body = prepared.body_for(wire, cand.upstream_model, call.stream)
    if call.operation == "compact":
        compact = getattr(provider, "compact", None)
        if compact is None or wire != "responses":
            raise BadRequest(f"upstream {entry.name} does not support Responses compaction", param="model")
        req = compact(entry, body, call.headers)
    else:
        req = provider.generate(entry, cand.upstream_model, body, call.stream, call.headers, wire)
    if idem := call.headers.get("idempotency-key"):
        req.headers = {**req.headers, "Idempotency-Key": idem}  # a copy: providers may share theirs
    req.proxy = _proxy(entry.proxy_url or gw.settings.proxy_url)
    return wire, req


def _proxy(url: str | None) -> str | None:
    if not url or url.startswith(("direct", "none")):
        return None
    return url


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
) -> Reply | StreamReply | _Failure:
    wire, req = _build(gw, call, cand, prepared)
    call.credential_id = cand.credential_id
    call.upstream_model = cand.upstream_model
    try:
        resp = await gw.http.post(req.url, data=req.body, headers=req.headers, proxy=req.proxy,
                                  timeout=gw.timeout)
    except TimeoutError:
        return _Failure(504, f"upstream {cand.entry.name} did not answer in time")
    except aiohttp.ClientError as exc:
        return _Failure(0, f"upstream {cand.entry.name} is unreachable ({type(exc).__name__}: {exc})")

    if resp.status >= 400:
        try:
            body = await resp.content.read(MAX_ERROR_BODY)
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        finally:
            resp.release()
        message, _ = errors.upstream_error_message(body)
        return _Failure(resp.status, f"upstream {cand.entry.name} answered {resp.status}: {message}", body,
                        _retry_after(resp.headers))

    extra_headers = _passthrough_headers(resp.headers) if gw.settings.passthrough_headers else []
    if not call.stream:
        try:
            body = await resp.read()
        except TimeoutError:
            return _Failure(504, f"upstream {cand.entry.name} timed out while sending its answer")
        except aiohttp.ClientError as exc:
            return _Failure(0, f"upstream {cand.entry.name} broke off its answer ({exc})")
        finally:
            resp.release()
        try:
            out, usage = prepared.response(wire, body, call.model, call.operation)
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return _Failure(502, f"upstream {cand.entry.name} sent an answer that could not be read: {exc}")
        call.usage = usage
        call.status = 200
        if (pending := _succeeded(gw, call, cand, base_model, scope)) is not None:
            await pending
        if gw.recording:
            gw.record(call)
        return Reply(200, out, [*JSON_HEADERS, *extra_headers] if extra_headers else JSON_HEADERS)

    # Streaming: wait for the first upstream bytes before committing headers, so a failure here
    # can still move to the next credential.
    try:
        first = await resp.content.readany()
    except TimeoutError:
        resp.close()
        return _Failure(504, f"upstream {cand.entry.name} sent no data in time")
    except aiohttp.ClientError as exc:
        resp.close()
        return _Failure(0, f"upstream {cand.entry.name} broke off the stream ({exc})")
    if not first:
        resp.release()
        return _Failure(502, f"upstream {cand.entry.name} closed the stream without data")
    pipe = prepared.pipe(wire, call.model)
    call.status = 200
    if (pending := _succeeded(gw, call, cand, base_model, scope)) is not None:
        await pending
    content_type = "application/json" if call.options.get("json_array") else None
    headers = SSE_HEADERS if content_type is None else [("content-type", content_type)]
    return StreamReply(200, _relay(gw, call, cand, resp, pipe, first), [*headers, *extra_headers])


async def _relay(gw: Gateway, call: Call, cand: Candidate, resp: aiohttp.ClientResponse, pipe: Any,
                 first: bytes) -> AsyncIterator[bytes]:
    clean = False
    try:
        out = pipe.feed(first)
        if out:
            yield out
        read = resp.content.readany
        while not pipe.done:
            try:
                chunk = await read()
            except TimeoutError:
                yield pipe.error(504, f"upstream {cand.entry.name} stopped sending (idle timeout)")
                break
            except aiohttp.ClientError as exc:
                yield pipe.error(502, f"upstream {cand.entry.name} broke off the stream ({type(exc).__name__})")
                break
            if not chunk:
                tail = pipe.finish()
                if tail:
                    yield tail
                break
            out = pipe.feed(chunk)
            if out:
                yield out
        clean = True
    finally:
        call.usage = pipe.usage
        if clean and resp.content.at_eof():
            resp.release()
        else:
            resp.close()  # client went away or upstream misbehaved: do not reuse the connection
        if gw.recording:
            gw.record(call)


async def count_tokens(gw: Gateway, call: Call) -> Reply:
    """Anthropic / Gemini token counting: the upstream's own count endpoint when it has one,
    otherwise a local estimate, labelled ``x-crossroute-token-count: estimate``."""
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
    entry = cand.entry
    provider = PROVIDERS[entry.kind]
    wire = provider.wire_format(entry, fmt)
    try:
        if wire in ("claude", "gemini"):
            body = count.count_body(wire, prepared.body_dict(wire, cand.upstream_model, False), cand.upstream_model)
            req = provider.count_tokens(entry, cand.upstream_model, orjson.dumps(body), call.headers)
            if req is not None:
                reply = await _count_upstream(gw, call, cand, req, wire)
                if reply is not None:
                    return reply
        total = count.estimate(prepared.neutral())
    except BadRequest as exc:
        return error_reply(fmt, exc.status, exc.message, param=exc.param)
    return Reply(200, orjson.dumps(count.answer_for(fmt, total)),
                 [*JSON_HEADERS, ("x-crossroute-token-count", "estimate")])


async def _count_upstream(gw: Gateway, call: Call, cand: Candidate, req: UpstreamRequest, wire: str
                          ) -> Reply | None:
    """The upstream's count; None when it could not answer (the caller estimates instead)."""
    try:
        async with gw.http.post(req.url, data=req.body, headers=req.headers, proxy=_proxy(
                cand.entry.proxy_url or gw.settings.proxy_url), timeout=gw.timeout) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("count_tokens on %s failed (%s); answering with an estimate", cand.entry.name, exc)
        return None
    if status >= 500 or status == 429:
        return None
    if status >= 400:
        if wire == call.client_format:
            return Reply(status, raw, JSON_HEADERS)
        message, _ = errors.upstream_error_message(raw)
        return error_reply(call.client_format, status, message)
    if wire == call.client_format:
        return Reply(200, raw, JSON_HEADERS)
    try:
        total = count.total_from(wire, orjson.loads(raw))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
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
