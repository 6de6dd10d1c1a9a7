"""Codex by a ChatGPT account's OAuth token (kind ``codex-oauth``).

``POST {base}/responses`` (base ``https://chatgpt.com/backend-api/codex``) and
``/responses/compact``, with ``Authorization: Bearer <access token>`` and ``ChatGPT-Account-ID``
(the file's ``account_id``, else the id_token's ``https://api.openai.com/auth`` ->
``chatgpt_account_id`` claim). What the service requires of the body: ``stream: true`` and
``store: false`` on every turn, ``instructions`` present, no ``max_output_tokens`` (nor the fields
it does not know: ``prompt_cache_retention``, ``safety_identifier``, ``stream_options``,
``generate``), tool names of at most 64 characters (longer ones are shortened and restored,
``tool_names.py``). A client that asked for a whole answer gets the stream assembled into one
response object (``stream_assembly.AssembledResponse``).

The Codex client's own headers (``session_id``, ``thread-id``, ``x-codex-*``, ``originator``,
``version``, its ``User-Agent``) pass through unchanged; for any other client none of them is
invented (no Codex originator or User-Agent is forged).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, ClassVar

import aiohttp
import orjson

from ..config import ProviderEntry
from .base import HttpExecutor, Outbound, Upstream, UpstreamError, UpstreamIO, UpstreamRequest, config_headers
from .codex import client_headers
from .stream_assembly import AssembledResponse, EventHook, RenamedBody, RenamedStream, retry_after_of_error
from .tool_names import NameMap, shorten_tools

__all__ = ["CodexAccountExecutor", "account_id_of", "id_token_account_id"]

log = logging.getLogger("crossroute")

_PATHS = {"generate": "/responses", "compact": "/responses/compact"}
_UNSUPPORTED = ("max_output_tokens", "prompt_cache_retention", "safety_identifier", "stream_options", "generate")
AUTH_CLAIM = "https://api.openai.com/auth"


@lru_cache(maxsize=256)
def id_token_account_id(id_token: str) -> str | None:
    """The ChatGPT account id in an id_token's claims (the signature is not checked: the token is ours)."""
    parts = id_token.split(".")
    if len(parts) < 2:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, orjson.JSONDecodeError):
        return None
    auth = claims.get(AUTH_CLAIM) if isinstance(claims, dict) else None
    value = auth.get("chatgpt_account_id") if isinstance(auth, dict) else None
    return value if isinstance(value, str) and value else None


def account_id_of(entry: ProviderEntry) -> str | None:
    """The account id an entry's requests carry: the file's ``account_id``, else the id_token's claim."""
    acct = entry.derived.get("account")
    if acct is None:
        return None
    raw = getattr(acct, "raw", None) or {}
    value = raw.get("account_id") or raw.get("account-id")
    if isinstance(value, str) and value:
        return value
    id_token = getattr(acct, "id_token", None) or raw.get("id_token")
    return id_token_account_id(id_token) if isinstance(id_token, str) and id_token else None


class CodexAccountExecutor(HttpExecutor):
    kind = "codex-oauth"
    supports = frozenset({"generate", "compact"})
    default_base_url = "https://chatgpt.com/backend-api/codex"
    # the models Codex offers a ChatGPT sign-in (developers.openai.com/codex/models, December 2026)
    models: ClassVar[tuple[str, ...]] = (
        "gpt-5.5", "gpt-5.4", "gpt-5.4-mini", "gpt-5.3-codex", "gpt-5.3-codex-spark", "gpt-5.2",
    )

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "responses"

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        key = ("url", out.operation)
        url = entry.derived.get(key)
        if url is None:
            base = (entry.base_url or self.default_base_url).rstrip("/")
            url = entry.derived[key] = base + _PATHS[out.operation]
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if out.operation == "generate" else "application/json",
        }
        client_headers(headers, out.client_headers)
        headers["Authorization"] = "Bearer " + self.token_source(entry).token()
        account = account_id_of(entry)  # the client's own (its login's) is never passed on
        if account:
            headers["chatgpt-account-id"] = account
        if entry.headers:
            headers.update(config_headers(entry, out.client_headers))
        return UpstreamRequest(url, headers, out.body)

    def rewrite(self, out: Outbound) -> tuple[bytes, NameMap]:
        """The body as the service requires it, and the tool names shortened in it. A body that
        already is what the service requires (a Codex client's usually is) is sent as it came:
        parsed once to check it, not dumped again."""
        try:
            body = orjson.loads(out.body)
        except orjson.JSONDecodeError:
            raise UpstreamError(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise UpstreamError(400, "the request body is not a JSON object")
        changed = False
        for name in _UNSUPPORTED:
            if name in body:
                del body[name]
                changed = True
        if out.operation == "generate":
            if body.get("stream") is not True or body.get("store") is not False:
                body["stream"] = True
                body["store"] = False
                changed = True
        elif "stream" in body:
            del body["stream"]
            changed = True
        if not isinstance(body.get("instructions"), str):
            body["instructions"] = ""
            changed = True
        names = shorten_tools(body)
        if changed or names or _repeats(out.body):
            return orjson.dumps(body), names
        return out.body, names

    def prepare(self, out: Outbound) -> tuple[Outbound, NameMap]:
        """What goes to the service for ``out`` (always a stream for ``generate``), and the tool names
        shortened in it. A transport other than HTTP (the WebSocket wrapper) sends the same."""
        body, names = self.rewrite(out)
        generate = out.operation == "generate"
        return Outbound(out.operation, out.wire, out.model, body, generate, out.client_headers), names

    def wrap(self, entry: ProviderEntry, out: Outbound, up: Upstream, names: NameMap, watch: EventHook | None = None
             ) -> Upstream:
        """The service's answer as the client asked for it: assembled for a whole-answer client,
        long tool names restored, usage events handed to ``watch``."""
        generate = out.operation == "generate"
        if generate and not out.stream:
            return AssembledResponse(up, names, entry.name, watch)
        if generate and (names or watch is not None):
            return RenamedStream(up, names, watch=watch)
        if names:
            return RenamedBody(up, names)
        return up

    @staticmethod
    def watcher(entry: ProviderEntry, io: UpstreamIO) -> EventHook | None:
        """What hands a stream's ``codex.rate_limits`` events and usage-limit failures to the quota book."""
        note_event = getattr(io.quota, "note_event", None)
        note_error = getattr(io.quota, "note_error", None)
        if note_event is None and note_error is None:
            return None

        def watch(event: Mapping[str, Any]) -> None:
            kind = event.get("type")
            if kind == "codex.rate_limits":
                if note_event is not None:
                    note_event(entry, event)
            elif note_error is not None:
                note_error(entry, 429, orjson.dumps(event))

        return watch

    async def send(self, entry: ProviderEntry, out: Outbound, io: UpstreamIO) -> Upstream:
        sent, names = self.prepare(out)
        try:
            up = await super().send(entry, sent, io)
        except UpstreamError as exc:
            body = exc.body
            if exc.status == 429 and body and (note_error := getattr(io.quota, "note_error", None)):
                try:  # the usage limit's reset is in the body; a quota failure never hides the answer's
                    note_error(entry, 429, body)
                except Exception:
                    log.exception("the quota book failed on a usage-limit answer")
            raise
        return self.wrap(entry, out, up, names, self.watcher(entry, io))

    async def _failure(self, entry: ProviderEntry, resp: aiohttp.ClientResponse) -> UpstreamError:
        exc = await super()._failure(entry, resp)
        if exc.status == 429 and exc.retry_after is None and exc.body:
            exc.retry_after = _reset_of(exc.body)
        return exc


def _repeats(raw: bytes) -> bool:
    """Whether ``raw`` may hold ``stream`` or ``store`` twice (a JSON object may repeat a key; the
    parsed body keeps the last, a service might read the first): then the body is dumped from what
    was checked. The names in a string are escaped (``\\"store\\"``), so only keys and values count."""
    return raw.count(b'"stream"') > 1 or raw.count(b'"store"') > 1


def _reset_of(body: bytes) -> float | None:
    """A usage-limit error's announced reset (``{"error": {"resets_in_seconds" | "resets_at"}}``)."""
    try:
        obj: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    err = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(err, dict):
        return None
    return retry_after_of_error(err)

