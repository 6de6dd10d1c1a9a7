"""Google Antigravity by a subscription account (kind ``antigravity``): Gemini and Claude models
behind Google's Cloud Code API.

- Hosts, in order: ``https://daily-cloudcode-pa.googleapis.com``, then
  ``https://cloudcode-pa.googleapis.com``. A connection failure, a 5xx or a 429 from one host is
  retried on the next within the same attempt. An account's ``base_url`` is the only host.
- ``POST {host}/v1internal:generateContent``, ``:streamGenerateContent?alt=sse``, ``:countTokens``
  with ``Authorization: Bearer`` (the account's Google access token).
- The Gemini request goes in an envelope: ``{"project", "model", "request": {...},
  "requestType": "agent", "requestId"}`` (``request.sessionId`` stable per conversation,
  ``safetySettings`` left out, a conversation of a Gemini model that opens with a model turn gets an
  empty user turn first); a count is ``{"request": {...}}``. Answers and each stream event
  come back as ``{"response": {...}}`` and are unwrapped (``envelope.Unwrapped``).
- The project: the account's ``project_id``; without one it is discovered on the account's first
  use (``v1internal:loadCodeAssist``, then ``v1internal:onboardUser`` polled until done), kept in
  memory, and written into the account's file as ``project_id`` (CLIProxyAPI's field) through the
  account's token source (``remember``: the credential store's atomic writer, the file read again
  under the account's lock first), so a restart does not discover it again. The write is done
  beside the request, never delaying or failing it; a token source that cannot write (a config
  key) keeps the project in memory only.
- Tool schemas are cleaned for the backend (``formats.schema.clean_antigravity_schema``) and sent
  as ``parameters``; Claude models (and the Gemini Pro models that validate calls) get VALIDATED
  function calling and the placeholders it needs. Response schemas get the response cleaner.

crossroute does not disguise itself: its own ``User-Agent``, no client name in the envelope, and
the discovery metadata says the IDE is unspecified.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import uuid
from typing import Any, ClassVar

import aiohttp
import orjson

from .. import __version__, redaction
from ..config import ProviderEntry
from ..formats.schema import clean_antigravity_response_schema, clean_antigravity_schema
from .base import (
    CREDENTIAL,
    MAX_ERROR_BODY,
    BadAnswer,
    HttpExecutor,
    Outbound,
    Upstream,
    UpstreamError,
    UpstreamIO,
    UpstreamRequest,
    config_headers,
    retry_after_of,
)
from .envelope import Unwrapped
from .google_retry import with_google_retry

__all__ = ["DAILY_HOST", "PROD_HOST", "AntigravityExecutor", "envelope_body"]

log = logging.getLogger("crossroute.providers")

DAILY_HOST = "https://daily-cloudcode-pa.googleapis.com"
PROD_HOST = "https://cloudcode-pa.googleapis.com"
_PATHS = {"generate": "/v1internal:generateContent", "count_tokens": "/v1internal:countTokens"}
_STREAM_PATH = "/v1internal:streamGenerateContent?alt=sse"
ONBOARD_POLLS = 5
ONBOARD_WAIT = 2.0
DISCOVERY_TIMEOUT = 30.0  # one discovery call
DISCOVERY_DEADLINE = 90.0  # the whole discovery, onboarding polls included
# (host, envelope body) of the try in progress, for build() (which HttpExecutor.send calls)
_current: contextvars.ContextVar[tuple[str, bytes] | None] = contextvars.ContextVar("antigravity_try", default=None)


# ------------------------------------------------------------------ the envelope
def _validated(model: str) -> bool:
    """Models whose function calls are validated against the schema (placeholders needed)."""
    low = model.lower()
    return "claude" in low or "gemini-3-pro" in low or "gemini-3.1-pro" in low


def _session_id(request: dict[str, Any]) -> str:
    """Stable per conversation: from the first user text, else random."""
    for content in request.get("contents") or ():
        if isinstance(content, dict) and content.get("role") == "user":
            for part in content.get("parts") or ():
                if isinstance(part, dict) and isinstance(part.get("text"), str) and part["text"]:
                    digest = hashlib.sha256(part["text"].encode()).digest()
                    return "-" + str(int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF)
    return "-" + str(uuid.uuid4().int & 0x7FFF_FFFF_FFFF_FFFF)


def _clean_tools(request: dict[str, Any], model: str) -> bool:
    """Clean the tool schemas in place; False when there are no tools (nothing changed)."""
    tools = request.get("tools")
    if not isinstance(tools, list) or not tools:
        return False
    placeholders = _validated(model)
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        for key in ("functionDeclarations", "function_declarations"):
            decls = tool.get(key)
            if not isinstance(decls, list):
                continue
            for decl in decls:
                if not isinstance(decl, dict):
                    continue
                schema = None
                for name in ("parametersJsonSchema", "parameters_json_schema", "parameters"):
                    if name in decl:
                        value = decl.pop(name)
                        if schema is None and isinstance(value, dict):
                            schema = value
                if schema is not None:
                    decl["parameters"] = clean_antigravity_schema(schema, placeholders=placeholders)
                for name in ("response", "responseJsonSchema", "response_json_schema"):
                    if isinstance(decl.get(name), dict):
                        decl[name] = clean_antigravity_response_schema(decl[name])
    if "claude" in model.lower() and tools:
        config = request.setdefault("toolConfig", {})
        if isinstance(config, dict):
            fcc = config.setdefault("functionCallingConfig", {})
            if isinstance(fcc, dict) and fcc.get("mode") in (None, "AUTO"):
                fcc["mode"] = "VALIDATED"
    return True  # (the schemas are rebuilt: taken as changed)


def _clean_generation(request: dict[str, Any]) -> bool:
    """Clean the response schemas in place; False when there are none (nothing changed)."""
    changed = False
    for container in ("generationConfig", "generation_config"):
        gen = request.get(container)
        if not isinstance(gen, dict):
            continue
        for key in ("responseSchema", "responseJsonSchema", "response_schema", "response_json_schema"):
            if isinstance(gen.get(key), dict):
                gen[key] = clean_antigravity_response_schema(gen[key])
                changed = True
    return changed


def _leading_user_turn(request: dict[str, Any], model: str) -> bool:
    """Gemini models behind Cloud Code want the conversation to open with a user turn; True when
    one was put first."""
    contents = request.get("contents")
    if "claude" not in model.lower() and isinstance(contents, list) and contents and \
            isinstance(contents[0], dict) and contents[0].get("role") == "model":
        request["contents"] = [{"role": "user", "parts": [{"text": ""}]}, *contents]
        return True
    return False


def _dropped(request: dict[str, Any]) -> bool:
    """``model`` and ``safetySettings`` taken out (Cloud Code refuses them in ``request``)."""
    changed = False
    for key in ("model", "safetySettings"):
        if key in request:
            del request[key]
            changed = True
    return changed


def _with_session(raw: bytes, session_id: str) -> bytes:
    """The JSON object ``raw`` (checked) with ``sessionId`` added as its first member, spliced in."""
    body = raw.strip()
    member = b'"sessionId":' + orjson.dumps(session_id)
    inside = body[1:-1].strip()
    return b"{" + member + (b"," + inside if inside else b"") + b"}"


def envelope_body(out: Outbound, project: str) -> bytes:
    """The Cloud Code request for ``out`` (a Gemini body) on ``project``.

    The body is parsed once; when nothing in it has to change but the ``sessionId`` it gets, its
    bytes go into the envelope as they came (spliced in, not dumped again), else the changed
    request is dumped once."""
    try:
        obj = orjson.loads(out.body)
    except orjson.JSONDecodeError:
        raise UpstreamError(400, "the request for Antigravity is not valid JSON", scope="request") from None
    if not isinstance(obj, dict):
        raise UpstreamError(400, "the request for Antigravity is not a JSON object", scope="request")
    if out.operation == "count_tokens":
        inner = obj.get("generateContentRequest")
        request: dict[str, Any] = dict(inner) if isinstance(inner, dict) else obj
        changed = _dropped(request) | _leading_user_turn(request, out.model)
        if not changed and request is obj:
            return b'{"request":' + out.body.strip() + b"}"
        return orjson.dumps({"request": request})
    request = obj
    changed = _dropped(request)
    if "system_instruction" in request and "systemInstruction" not in request:
        request["systemInstruction"] = request.pop("system_instruction")
        changed = True
    changed |= _leading_user_turn(request, out.model)
    changed |= _clean_tools(request, out.model)
    changed |= _clean_generation(request)
    changed |= "sessionId" in request and not request["sessionId"]  # (replaced: spliced it would be there twice)
    if changed:
        if not request.get("sessionId"):
            request["sessionId"] = _session_id(request)
        inner_bytes = orjson.dumps(request)
    elif request.get("sessionId"):
        inner_bytes = out.body.strip()
    else:
        inner_bytes = _with_session(out.body, _session_id(request))
    image = "image" in out.model.lower()
    rest: dict[str, Any] = {"requestType": "image_gen" if image else "agent", "requestId": f"agent-{uuid.uuid4()}"}
    if project:
        rest["project"] = project
    return b'{"model":' + orjson.dumps(out.model) + b',"request":' + inner_bytes + b"," + orjson.dumps(rest)[1:]


# ------------------------------------------------------------------ project discovery
def _project_of(obj: Any) -> str:
    if not isinstance(obj, dict):
        return ""
    for key in ("cloudaicompanionProject", "projectId", "project"):
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"].strip():
            return str(value["id"]).strip()
    return ""


def _default_tier(load: dict[str, Any]) -> str:
    tiers = load.get("allowedTiers")
    if isinstance(tiers, list):
        for tier in tiers:
            if isinstance(tier, dict) and tier.get("isDefault") is True and isinstance(tier.get("id"), str):
                return str(tier["id"])
    current = load.get("currentTier")
    if isinstance(current, dict) and isinstance(current.get("id"), str) and current["id"]:
        return str(current["id"])
    return "free-tier"


class AntigravityExecutor(HttpExecutor):
    kind = "antigravity"
    supports = frozenset({"generate", "count_tokens"})
    default_base_url = DAILY_HOST
    hosts: tuple[str, ...] = (DAILY_HOST, PROD_HOST)
    discovery_host = PROD_HOST  # loadCodeAssist (onboardUser goes to the first of ``hosts``)
    # what the discovery calls say about the client: nothing it is not
    discovery_metadata: ClassVar[dict[str, str]] = {"ideType": "IDE_UNSPECIFIED", "platform": "PLATFORM_UNSPECIFIED"}
    # the models an Antigravity account serves (CLIProxyAPI's catalogue, August 2026)
    models: ClassVar[tuple[str, ...]] = (
        "claude-opus-4-6-thinking", "claude-sonnet-4-6", "gemini-3-flash", "gemini-3.1-pro-low",
        "gemini-3.1-flash-lite", "gemini-3.5-flash-low", "gemini-3.6-flash-high", "gemini-3.7-flash-high",
        "gpt-oss-120b-medium",
    )

    def __init__(self, hosts: tuple[str, ...] | None = None, discovery_host: str | None = None,
                 onboard_wait: float = ONBOARD_WAIT) -> None:
        if hosts:
            self.hosts = tuple(h.rstrip("/") for h in hosts)
        if discovery_host:
            self.discovery_host = discovery_host.rstrip("/")
        self.onboard_wait = onboard_wait
        self._projects: dict[str, str] = {}  # account (credential id) -> discovered project
        self._discovering: dict[str, asyncio.Future[str]] = {}
        self._writes: set[asyncio.Task[None]] = set()  # projects being written to account files

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "gemini"

    # ------------------------------------------------------------------ hosts
    def _explicit_base(self, entry: ProviderEntry) -> str | None:
        acct = entry.derived.get("account")
        if acct is not None:
            return acct.base_url.rstrip("/") if acct.base_url else None
        if entry.base_url and entry.base_url.rstrip("/") != self.default_base_url:
            return entry.base_url.rstrip("/")
        return None

    def hosts_for(self, entry: ProviderEntry) -> tuple[str, ...]:
        explicit = self._explicit_base(entry)
        return (explicit,) if explicit else self.hosts

    # ------------------------------------------------------------------ requests
    def _headers(self, entry: ProviderEntry, out: Outbound) -> dict[str, str]:
        headers = {"Content-Type": "application/json",
                   "Accept": "text/event-stream" if out.stream else "application/json",
                   "User-Agent": f"crossroute/{__version__}",
                   "Authorization": "Bearer " + self.token_source(entry).token()}
        if entry.headers:
            headers.update(config_headers(entry, out.client_headers))
        return headers

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        current = _current.get()
        if current is not None:  # inside send(): the host being tried and the body made once
            host, body = current
        else:
            host, body = self.hosts_for(entry)[0], envelope_body(out, self.project_known(entry))
        path = _STREAM_PATH if out.stream and out.operation == "generate" else _PATHS[out.operation]
        return UpstreamRequest(host + path, self._headers(entry, out), body)

    async def send(self, entry: ProviderEntry, out: Outbound, io: UpstreamIO) -> Upstream:
        project = await self.project(entry, io) if out.operation == "generate" else ""
        body = envelope_body(out, project)  # once, for every host and a resend after a 401
        hosts = self.hosts_for(entry)
        for i, host in enumerate(hosts):
            token = _current.set((host, body))
            try:
                up = await super().send(entry, out, io)
            except UpstreamError as exc:
                with_google_retry(exc)  # a 429's wait is in its body
                if i == len(hosts) - 1 or not (exc.status in (0, 429) or exc.status >= 500):
                    raise
                log.info("antigravity: %s answered %s, trying %s", host, exc.status or "nothing", hosts[i + 1])
                continue
            finally:
                _current.reset(token)
            return Unwrapped(up)
        raise AssertionError("unreachable")  # the loop returns or raises

    # ------------------------------------------------------------------ the project
    def _account_key(self, entry: ProviderEntry) -> str:
        acct = entry.derived.get("account")
        return acct.name if acct is not None else entry.id

    def project_known(self, entry: ProviderEntry) -> str:
        acct = entry.derived.get("account")
        if acct is not None:
            value = acct.raw.get("project_id") or acct.raw.get("project-id")
            if isinstance(value, str) and value.strip():
                return value.strip()
        return self._projects.get(self._account_key(entry), "")

    async def project(self, entry: ProviderEntry, io: UpstreamIO) -> str:
        """The account's project: its file's ``project_id``, else discovered once (single flight)."""
        known = self.project_known(entry)
        if known:
            return known
        key = self._account_key(entry)
        pending = self._discovering.get(key)
        if pending is None:
            pending = self._discovering[key] = asyncio.ensure_future(self._discover(entry, io))

            def done(f: asyncio.Future[str]) -> None:
                self._discovering.pop(key, None)
                if f.cancelled() or f.exception() is not None:  # (retrieved: no warning if nobody waits)
                    return
                self._projects[key] = f.result()
                log.info("antigravity: account %s uses project %s", key, redaction.scrub(f.result()))

            pending.add_done_callback(done)
        return await asyncio.shield(pending)

    async def _post(self, entry: ProviderEntry, io: UpstreamIO, url: str, body: dict[str, Any]) -> dict[str, Any]:
        proxy_url = entry.proxy_url or io.settings.proxy_url
        session = io.client_for(proxy_url) if proxy_url else io.http
        proxy = io.proxy_arg(proxy_url) if proxy_url else None
        src = self.token_source(entry)
        timeout = aiohttp.ClientTimeout(total=DISCOVERY_TIMEOUT)
        what = url.rsplit(":", 1)[-1]
        for resend in (False, True):
            headers = {"Content-Type": "application/json", "Accept": "application/json",
                       "User-Agent": f"crossroute/{__version__}", "Authorization": "Bearer " + src.token()}
            try:
                async with session.post(url, data=orjson.dumps(body), headers=headers, proxy=proxy,
                                        timeout=timeout) as resp:
                    status, retry = resp.status, retry_after_of(resp.headers)
                    raw = b""
                    while len(raw) <= MAX_ERROR_BODY and (chunk := await resp.content.readany()):
                        raw += chunk
                    if len(raw) > MAX_ERROR_BODY:
                        raise BadAnswer(f"upstream {entry.name}: {what} sent more than {MAX_ERROR_BODY} bytes")
            except TimeoutError:
                raise UpstreamError(504, f"upstream {entry.name}: {what} did not answer in time") from None
            except aiohttp.ClientError as exc:
                detail = redaction.scrub(f"{type(exc).__name__}: {exc}")
                raise UpstreamError(0, f"upstream {entry.name}: {what} is unreachable ({detail})") from None
            if status == 401 and not resend and await src.refresh():
                continue
            if status >= 400:
                text = redaction.scrub(raw[:300].decode("utf-8", "replace"))
                raise UpstreamError(status, f"upstream {entry.name}: {what} answered {status}: {text}",
                                    body=redaction.scrub_bytes(raw), retry_after=retry,
                                    scope=CREDENTIAL if status in (400, 403, 404) else None)
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise BadAnswer(f"upstream {entry.name}: {what} sent something that is not JSON") from None
            if not isinstance(obj, dict):
                raise BadAnswer(f"upstream {entry.name}: {what} sent something that is not a JSON object")
            return obj
        raise AssertionError("unreachable")

    async def _discover(self, entry: ProviderEntry, io: UpstreamIO) -> str:
        try:
            async with asyncio.timeout(DISCOVERY_DEADLINE):
                project = await self._discover_steps(entry, io)
        except TimeoutError:
            raise UpstreamError(504, f"upstream {entry.name}: finding the Antigravity project took over "
                                     f"{DISCOVERY_DEADLINE:.0f} s") from None
        self._keep(entry, project)
        return project

    def _keep(self, entry: ProviderEntry, project: str) -> None:
        """Write a discovered project into the account's file, beside the request."""
        remember = getattr(self.token_source(entry), "remember", None)  # (an account's token source has it)
        if remember is None or entry.derived.get("account") is None:
            return
        task = asyncio.ensure_future(self._write_project(entry, remember, project))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    @staticmethod
    async def _write_project(entry: ProviderEntry, remember: Any, project: str) -> None:
        try:
            kept = await remember(project_id=project)
        except Exception as exc:  # the project stays in memory; the next start discovers it again
            log.warning("antigravity: could not write the project of %s to its file (%s)", entry.name,
                        redaction.scrub(f"{type(exc).__name__}: {exc}"))
            return
        if kept:
            log.info("antigravity: project of %s written to its file", entry.name)

    async def _discover_steps(self, entry: ProviderEntry, io: UpstreamIO) -> str:
        base = self._explicit_base(entry)
        load = await self._post(entry, io, f"{base or self.discovery_host}/v1internal:loadCodeAssist",
                                {"metadata": dict(self.discovery_metadata)})
        project = _project_of(load)
        if project:
            return project
        onboard = f"{base or self.hosts[0]}/v1internal:onboardUser"
        body = {"tier_id": _default_tier(load), "metadata": dict(self.discovery_metadata)}
        for poll in range(ONBOARD_POLLS):
            answer = await self._post(entry, io, onboard, body)
            if answer.get("done") is True:
                project = _project_of(answer.get("response"))
                if project:
                    return project
                break
            if poll + 1 < ONBOARD_POLLS:
                await asyncio.sleep(self.onboard_wait)
        raise UpstreamError(502, f"upstream {entry.name}: no Antigravity project found for this account "
                                 "(set project_id in its file)", scope=CREDENTIAL)
