"""Google Vertex AI (kind ``vertex``): Gemini models by a service account or by an API key.

- Service account (a ``vertex-<project>.json`` account): ``POST
  https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/
  google/models/{model}:{generateContent|streamGenerateContent?alt=sse|countTokens}`` with
  ``Authorization: Bearer`` (an access token minted from the key, refreshed before it expires).
  ``location`` is the account's field (default ``us-central1``); ``global`` uses the global host
  ``https://aiplatform.googleapis.com``. A ``base_url`` in the account replaces the host.
- API key (``vertex-api-key`` entries, or an account with ``api_key``; Vertex's express mode):
  ``POST {base-url}/v1/publishers/google/models/{model}:{action}`` with ``x-goog-api-key``
  (``base-url`` defaults to ``https://aiplatform.googleapis.com``).

Bodies are the Gemini wire format; a count request is reduced to what Vertex's ``countTokens``
takes (``contents``, ``systemInstruction``, ``tools``).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from .. import redaction
from ..config import ProviderEntry
from .base import HttpExecutor, Outbound, Upstream, UpstreamError, UpstreamIO, UpstreamRequest, config_headers
from .google_retry import with_google_retry

__all__ = ["DEFAULT_LOCATION", "GLOBAL_HOST", "VertexExecutor", "host_for"]

log = logging.getLogger("crossroute.providers")

GLOBAL_HOST = "https://aiplatform.googleapis.com"
DEFAULT_LOCATION = "us-central1"
_COUNT_FIELDS = ("contents", "systemInstruction", "tools")


def host_for(location: str) -> str:
    """The regional host of a location, the global host for ``global``."""
    loc = location.strip() or DEFAULT_LOCATION
    if loc == "global":
        return GLOBAL_HOST
    return f"https://{loc}-aiplatform.googleapis.com"


def _action(out: Outbound) -> str:
    if out.operation == "count_tokens":
        return "countTokens"
    return "streamGenerateContent?alt=sse" if out.stream else "generateContent"


def count_request(body: bytes) -> bytes:
    """A Gemini API count body (``{"contents"}`` or ``{"generateContentRequest": {...}}``) as Vertex takes it."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(obj, dict):
        return body
    inner = obj.get("generateContentRequest")
    src: dict[str, Any] = inner if isinstance(inner, dict) else obj
    return orjson.dumps({k: src[k] for k in _COUNT_FIELDS if k in src})


class VertexExecutor(HttpExecutor):
    kind = "vertex"
    supports = frozenset({"generate", "count_tokens"})
    default_base_url = GLOBAL_HOST
    models: ClassVar[tuple[str, ...]] = (
        "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-3-pro", "gemini-3-flash",
        "gemini-3.1-pro", "gemini-3.1-flash-lite",
    )

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "gemini"

    def _prefix(self, entry: ProviderEntry) -> tuple[str, bool]:
        """The URL up to ``/models/`` and whether the credential is an API key; derived once."""
        cached = entry.derived.get("vertex")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        acct = entry.derived.get("account")
        if acct is None or acct.api_key:  # config vertex-api-key, or an express-mode account
            base = (acct.base_url if acct is not None and acct.base_url else entry.base_url) or GLOBAL_HOST
            base = base.rstrip("/").removesuffix("/v1")
            cached = (f"{base}/v1/publishers/google/models/", True)
        else:
            raw = acct.raw
            project = raw.get("project_id") or raw.get("project")
            if not project and isinstance(raw.get("service_account"), dict):
                project = raw["service_account"].get("project_id")
            if not isinstance(project, str) or not project.strip():
                raise UpstreamError(400, f"Vertex account {acct.name} has no project_id", scope="credential")
            loc = raw.get("location")
            location = loc.strip() if isinstance(loc, str) and loc.strip() else DEFAULT_LOCATION
            base = (acct.base_url or host_for(location)).rstrip("/").removesuffix("/v1")
            cached = (f"{base}/v1/projects/{quote(project.strip(), safe='')}/locations/{quote(location, safe='')}"
                      "/publishers/google/models/", False)
        entry.derived["vertex"] = cached
        return cached

    def build(self, entry: ProviderEntry, out: Outbound) -> UpstreamRequest:
        prefix, by_key = self._prefix(entry)
        url = f"{prefix}{quote(out.model, safe='')}:{_action(out)}"
        token = self.token_source(entry).token()
        headers = {"Content-Type": "application/json"}
        if by_key:
            headers["x-goog-api-key"] = token
        else:
            headers["Authorization"] = "Bearer " + token
        if entry.headers:
            headers.update(config_headers(entry, out.client_headers))
        body = count_request(out.body) if out.operation == "count_tokens" else out.body
        return UpstreamRequest(url, headers, body)

    async def send(self, entry: ProviderEntry, out: Outbound, io: UpstreamIO) -> Upstream:
        src: Any = self.token_source(entry)
        fresh = getattr(src, "fresh_token", None)
        if fresh is not None:  # a service account mints its first token here, not after a 401
            try:
                await fresh()
            except Exception as exc:  # the request then goes without a token and fails as a 401
                log.warning("vertex: no token for %s (%s)", entry.name, redaction.scrub(f"{type(exc).__name__}: {exc}"))
        try:
            return await super().send(entry, out, io)
        except UpstreamError as exc:
            with_google_retry(exc)  # a 429's wait is in its body
            raise
