"""Fakes of the native cloud providers (Kimi Code, Antigravity's Cloud Code API, Vertex AI, xAI) on
127.0.0.1, as strict and as rude as the real services.

Every request is checked against what the real service requires (URL, method, auth header, device
headers, the Antigravity envelope and its cleaned schemas, Vertex's project/location path) and
recorded in ``requests`` (``Seen``) with the problems found; a request with problems is answered
400 like the real service would. Answers replay the recorded transcripts in ``tests/fixtures``
(Antigravity's wrapped in ``{"response": ...}``, event by event), streamed in small uneven chunks
(events split anywhere, CRLF endings), with rate-limit headers.

Every answer (streams, whole answers, errors, 400s, discovery and count answers alike) is
compressed like Google's front ends do whenever the request's ``Accept-Encoding`` allows it (gzip
first, then zstd, deflate, br), or always with ``force_encoding`` (``CROSSROUTE_FAKE_COMPRESS``
sets it, as for ``fake_upstream``): a gateway asks upstreams for ``identity``, so a test of its
decoding forces one. ``encodings`` records ``(path, Content-Encoding or None)`` per answer.

Rudeness on demand: the model name picks a scenario (``text``, ``tools``, ``err429`` with
Retry-After, ``err503`` as an HTML page, ``err200`` an error object with status 200); ``fail_next``
queues (status, body, headers) answers for the next requests of a provider (``kimi``,
``antigravity``, ``vertex``, ``xai``, ``discovery``).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from crossroute.auth.accounts import Account, parse_account
from crossroute.config import ProviderEntry
from crossroute.providers.base import StaticKey, Upstream
from tests.loopback import ThreadedApp

from .fake_upstream import FILES, FIXTURES, Encoder, error_body, pick_encoding

TOKEN = "ya29.fake-cloud-access-token"
API_KEY = "fake-cloud-api-key-123456"
PROJECT = "fake-project-123"
DEVICE_ID = "fake-kimi-device-0001"
KIMI_API_KEY = "sk-kimi-fake-console-key"
RATE_HEADERS = {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "99",
                "x-ratelimit-reset-requests": "20s"}
# keywords the Cloud Code backend rejects in a tool schema (crossroute must have cleaned them)
_AG_FORBIDDEN = ("$schema", "$ref", "$defs", "definitions", "additionalProperties", "const", "format", "minLength",
                 "maxLength", "pattern", "minimum", "maximum", "default", "examples", "anyOf", "oneOf", "allOf",
                 "not", "propertyNames", "patternProperties", "exclusiveMinimum", "uniqueItems")
_ERR = re.compile(r"^err(\d{3})$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    provider: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    problems: list[str] = field(default_factory=list)


def _schema_problems(node: Any, where: str, out: list[str], *, in_props: bool = False) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if in_props:  # property names are data, their values are schemas
                _schema_problems(value, f"{where}.{key}", out)
                continue
            if key in _AG_FORBIDDEN or key.startswith("x-"):
                out.append(f"{where} has unsupported schema keyword {key!r}")
            if key == "properties":
                _schema_problems(value, f"{where}.properties", out, in_props=True)
            elif key == "items":
                _schema_problems(value, f"{where}.items", out)
            elif key == "type" and not isinstance(value, str):
                out.append(f"{where}.type must be a string")


class FakeCloud(ThreadedApp):
    def __init__(self, *, project: str | None = PROJECT, onboard_polls: int = 0) -> None:
        super().__init__()
        self.requests: list[Seen] = []
        self.fail_next: dict[str, list[tuple[int, bytes, dict[str, str]]]] = {}
        self.project = project  # what loadCodeAssist reports (None: only onboardUser tells)
        self.onboard_polls = onboard_polls  # onboardUser answers done after this many polls
        self.onboarded = 0
        self.token_ok: Callable[[str], bool] | None = None  # other Bearer tokens to accept (minted ones)
        # compress every answer with this encoding, asked for or not (None: honour Accept-Encoding)
        self.force_encoding: str | None = os.environ.get("CROSSROUTE_FAKE_COMPRESS") or None
        self.encodings: list[tuple[str, str | None]] = []  # (path, Content-Encoding) of every answer

    def make_app(self) -> web.Application:
        @web.middleware
        async def compressed(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._compressed(request, handler)

        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[compressed])
        app.router.add_post("/coding/v1/messages", self._kimi_messages)
        app.router.add_post("/coding/v1/messages/count_tokens", self._kimi_count)
        app.router.add_post("/coding/v1/chat/completions", self._kimi_chat)
        app.router.add_post(r"/v1internal:{action}", self._cloudcode)
        app.router.add_post("/v1/projects/{project}/locations/{location}/publishers/google/models/{tail}",
                            self._vertex)
        app.router.add_post("/v1/publishers/google/models/{tail}", self._vertex_key)
        app.router.add_post("/v1/chat/completions", self._xai)
        app.router.add_post("/v1/responses", self._xai)
        app.router.add_post("/v1/responses/compact", self._xai)
        return app

    def clear(self) -> None:
        self.requests.clear()
        self.fail_next.clear()
        self.encodings.clear()

    # ------------------------------------------------------------------ compression
    def _encoding(self, request: web.Request) -> str | None:
        return self.force_encoding or pick_encoding(request.headers.get("Accept-Encoding"))

    async def _compressed(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every whole answer compressed as ``_encoding`` says (streams compress themselves)."""
        resp = await handler(request)
        if isinstance(resp, web.Response) and not resp.prepared and "Content-Encoding" not in resp.headers:
            enc = self._encoding(request)
            body = resp.body
            if enc is not None and isinstance(body, bytes) and body:
                resp.body = Encoder(enc).whole(body)
                resp.headers["Content-Encoding"] = enc
                resp.headers["Vary"] = "Accept-Encoding"
        self.encodings.append((request.path, resp.headers.get("Content-Encoding")))
        return resp

    def of(self, provider: str) -> list[Seen]:
        return [s for s in self.requests if s.provider == provider]

    # ------------------------------------------------------------------ recording and checks
    async def _seen(self, request: web.Request, provider: str) -> Seen:
        raw = await request.read()
        problems: list[str] = []
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body, problems = None, ["the body is not JSON"]
        if request.headers.get("Content-Type", "").split(";")[0] != "application/json":
            problems.append("Content-Type must be application/json")
        seen = Seen(provider, request.path, request.query_string, dict(request.headers), body, problems)
        self.requests.append(seen)
        return seen

    def _bearer(self, seen: Seen, expected: str = TOKEN) -> None:
        got = seen.headers.get("Authorization", "")
        if got == f"Bearer {expected}":
            return
        if self.token_ok is not None and got.startswith("Bearer ") and self.token_ok(got[7:]):
            return
        seen.problems.append("Authorization must be the account's Bearer token")

    def _fault(self, provider: str) -> web.Response | None:
        queue = self.fail_next.get(provider)
        if queue:
            status, body, headers = queue.pop(0)
            ctype = "text/html" if body.lstrip()[:1] == b"<" else "application/json"
            return web.Response(status=status, body=body, headers={**RATE_HEADERS, **headers}, content_type=ctype)
        return None

    @staticmethod
    def _rejected(seen: Seen, kind: str) -> web.Response:
        message = "; ".join(seen.problems)
        body = orjson.loads(error_body(kind, 400))
        (body["error"] if "error" in body else body)["message"] = message
        return web.json_response(body, status=400)

    # ------------------------------------------------------------------ answers
    async def _answer(self, request: web.Request, kind: str, scenario: str, stream: bool,
                      wrap: bool = False) -> web.StreamResponse:
        m = _ERR.match(scenario)
        if m:
            status = int(m.group(1))
            if status == 503:
                return web.Response(status=503, body=b"<html><body><h1>503 Service Unavailable</h1></body></html>",
                                    content_type="text/html")
            if status == 200:
                return web.json_response(orjson.loads(error_body(kind, 500)), headers=RATE_HEADERS)
            headers = {**RATE_HEADERS, "Retry-After": "7"} if status == 429 else RATE_HEADERS
            return web.Response(status=status, body=error_body(kind, status), headers=headers,
                                content_type="application/json")
        stream_file, json_file = FILES[kind].get(scenario) or FILES[kind]["text"]
        if not stream:  # (compressed by _compressed)
            assert json_file is not None
            body = (FIXTURES / json_file).read_bytes()
            if wrap:
                body = b'{"response":' + body + b',"traceId":"fake-trace-1"}'
            return web.Response(body=body, headers={**RATE_HEADERS, "Content-Type": "application/json"})
        enc = self._encoding(request)
        encoder = Encoder(enc) if enc is not None else None
        zipped = {"Content-Encoding": enc, "Vary": "Accept-Encoding"} if enc is not None else {}
        assert stream_file is not None
        data = (FIXTURES / stream_file).read_bytes()
        if wrap:
            events = []
            for block in re.split(rb"\r?\n\r?\n", data):
                lines = block.splitlines()
                payload = b"\n".join(ln[5:].strip() for ln in lines if ln.startswith(b"data:"))
                if payload:
                    events.append(b'data: {"response":' + payload + b',"traceId":"fake-trace-1"}\r\n\r\n')
            data = b"".join(events)
        resp = web.StreamResponse(headers={**RATE_HEADERS, **zipped, "Content-Type": "text/event-stream"})
        await resp.prepare(request)
        sizes = (5, 17, 1, 40, 3, 64)  # uneven: events (and CRLFs) split anywhere
        i = n = 0
        while i < len(data):
            step = sizes[n % len(sizes)]
            piece = data[i:i + step]
            await resp.write(encoder.write(piece) if encoder is not None else piece)
            i, n = i + step, n + 1
            if n % 7 == 0:
                await asyncio.sleep(0.001)
        if encoder is not None:
            await resp.write(encoder.end())
        await resp.write_eof()
        return resp

    # ------------------------------------------------------------------ Kimi
    def _kimi_checks(self, seen: Seen) -> None:
        if seen.headers.get("Authorization") == f"Bearer {KIMI_API_KEY}":
            return  # a console API key (what Kimi documents for third-party tools): no device needed
        self._bearer(seen)
        if seen.headers.get("X-Msh-Device-Id") != DEVICE_ID:
            seen.problems.append("X-Msh-Device-Id must be the account's device id")
        for name in ("X-Msh-Platform", "X-Msh-Version", "X-Msh-Device-Name", "X-Msh-Device-Model"):
            if not seen.headers.get(name):
                seen.problems.append(f"{name} is required")
        if "kimi" in seen.headers.get("X-Msh-Platform", "").lower():
            seen.problems.append("X-Msh-Platform must name the real client, not Kimi's own")

    async def _kimi_messages(self, request: web.Request) -> web.StreamResponse:
        seen = await self._seen(request, "kimi")
        self._kimi_checks(seen)
        if seen.headers.get("anthropic-version") != "2023-06-01":
            seen.problems.append("anthropic-version 2023-06-01 is required")
        body = seen.body if isinstance(seen.body, dict) else {}
        for key in ("model", "messages", "max_tokens"):
            if key not in body:
                seen.problems.append(f"{key} is required")
        if (fault := self._fault("kimi")) is not None:
            return fault
        if seen.problems:
            return self._rejected(seen, "claude")
        return await self._answer(request, "claude", str(body.get("model")), body.get("stream") is True)

    async def _kimi_count(self, request: web.Request) -> web.Response:
        seen = await self._seen(request, "kimi")
        self._kimi_checks(seen)
        if seen.problems:
            return self._rejected(seen, "claude")
        return web.json_response({"input_tokens": 42})

    async def _kimi_chat(self, request: web.Request) -> web.StreamResponse:
        seen = await self._seen(request, "kimi")
        self._kimi_checks(seen)
        body = seen.body if isinstance(seen.body, dict) else {}
        for key in ("model", "messages"):
            if key not in body:
                seen.problems.append(f"{key} is required")
        for i, msg in enumerate(body.get("messages") or []):
            if not isinstance(msg, dict):
                continue
            if msg.get("role") == "assistant" and msg.get("tool_calls") and not msg.get("reasoning_content"):
                seen.problems.append(f"messages[{i}]: reasoning_content is missing in assistant tool call message")
            if msg.get("role") == "tool" and not msg.get("tool_call_id"):
                seen.problems.append(f"messages[{i}]: tool_call_id is required")
        if (fault := self._fault("kimi")) is not None:
            return fault
        if seen.problems:
            return self._rejected(seen, "openai")
        return await self._answer(request, "openai", str(body.get("model")), body.get("stream") is True)

    # ------------------------------------------------------------------ Antigravity (Cloud Code)
    async def _cloudcode(self, request: web.Request) -> web.StreamResponse:
        action = request.match_info["action"]
        if action in ("loadCodeAssist", "onboardUser"):
            return await self._discovery(request, action)
        seen = await self._seen(request, "antigravity")
        self._bearer(seen)
        env = seen.body if isinstance(seen.body, dict) else {}
        inner = env.get("request")
        if not isinstance(inner, dict):
            seen.problems.append("request (the Gemini request) is required")
            inner = {}
        stream = action == "streamGenerateContent"
        if action == "countTokens":
            if set(env) != {"request"}:
                seen.problems.append(f"a count is {{request}} only, not {sorted(env)}")
        elif action in ("generateContent", "streamGenerateContent"):
            if stream and request.query_string != "alt=sse":
                seen.problems.append("streamGenerateContent needs ?alt=sse")
            if env.get("project") != PROJECT:
                seen.problems.append(f"project must be {PROJECT}, not {env.get('project')!r}")
            if not isinstance(env.get("model"), str) or not env["model"]:
                seen.problems.append("model is required")
            if env.get("requestType") not in ("agent", "image_gen"):
                seen.problems.append("requestType must be agent")
            if not str(env.get("requestId", "")).startswith("agent-"):
                seen.problems.append("requestId must be agent-<uuid>")
            unknown = set(env) - {"project", "model", "request", "requestType", "requestId", "userAgent"}
            if unknown:
                seen.problems.append(f"unknown envelope fields {sorted(unknown)}")
            if "safetySettings" in inner:
                seen.problems.append("safetySettings are not accepted")
            if not isinstance(inner.get("contents"), list) or not inner["contents"]:
                seen.problems.append("request.contents is required")
            elif "claude" not in str(env.get("model")) and inner["contents"][0].get("role") != "user":
                seen.problems.append("the first content must be a user turn")
            for i, tool in enumerate(inner.get("tools") or []):
                for j, decl in enumerate(tool.get("functionDeclarations") or []):
                    if "parametersJsonSchema" in decl:
                        seen.problems.append("parametersJsonSchema is not accepted (use parameters)")
                    _schema_problems(decl.get("parameters"), f"tools[{i}].functionDeclarations[{j}].parameters",
                                     seen.problems)
        else:
            return web.json_response({"error": {"code": 404, "message": f"no method {action}"}}, status=404)
        if (fault := self._fault("antigravity")) is not None:
            return fault
        if seen.problems:
            return self._rejected(seen, "gemini")
        if action == "countTokens":
            return web.json_response({"totalTokens": 42})
        return await self._answer(request, "gemini", str(env.get("model")), stream, wrap=True)

    async def _discovery(self, request: web.Request, action: str) -> web.Response:
        seen = await self._seen(request, "discovery")
        self._bearer(seen)
        body = seen.body if isinstance(seen.body, dict) else {}
        if not isinstance(body.get("metadata"), dict):
            seen.problems.append("metadata is required")
        if (fault := self._fault("discovery")) is not None:
            return fault
        if seen.problems:
            return self._rejected(seen, "gemini")
        if action == "loadCodeAssist":
            answer: dict[str, Any] = {"currentTier": {"id": "free-tier"},
                                      "allowedTiers": [{"id": "standard-tier", "isDefault": True}]}
            if self.project:
                answer["cloudaicompanionProject"] = self.project
            return web.json_response(answer)
        if body.get("tier_id") != "standard-tier":
            return web.json_response({"error": {"code": 400, "message": "unknown tier"}}, status=400)
        self.onboarded += 1
        if self.onboarded <= self.onboard_polls:
            return web.json_response({"name": "operations/onboard-1", "done": False})
        return web.json_response({"name": "operations/onboard-1", "done": True,
                                  "response": {"cloudaicompanionProject": {"id": PROJECT, "name": "Fake"}}})

    # ------------------------------------------------------------------ Vertex
    def _gemini_checks(self, seen: Seen, action: str) -> None:
        body = seen.body if isinstance(seen.body, dict) else {}
        if action == "countTokens":
            extra = set(body) - {"contents", "systemInstruction", "tools", "generationConfig", "instances", "model"}
            if extra:
                seen.problems.append(f"countTokens does not take {sorted(extra)}")
        if not isinstance(body.get("contents"), list):
            seen.problems.append("contents is required")

    async def _vertex_common(self, request: web.Request, seen: Seen) -> web.StreamResponse:
        model, _, action = request.match_info["tail"].partition(":")
        stream = action == "streamGenerateContent"
        if action not in ("generateContent", "streamGenerateContent", "countTokens"):
            seen.problems.append(f"unknown action {action!r}")
        if stream and request.query_string != "alt=sse":
            seen.problems.append("streamGenerateContent needs ?alt=sse")
        self._gemini_checks(seen, action)
        if (fault := self._fault("vertex")) is not None:
            return fault
        if seen.problems:
            return self._rejected(seen, "gemini")
        if action == "countTokens":
            return web.json_response({"totalTokens": 42, "totalBillableCharacters": 99})
        return await self._answer(request, "gemini", model, stream)

    async def _vertex(self, request: web.Request) -> web.StreamResponse:
        seen = await self._seen(request, "vertex")
        self._bearer(seen)
        if "x-goog-api-key" in seen.headers:
            seen.problems.append("a service-account call carries no API key")
        if request.match_info["project"] != PROJECT:
            seen.problems.append(f"project must be {PROJECT}")
        if not request.match_info["location"]:
            seen.problems.append("location is required")
        return await self._vertex_common(request, seen)

    async def _vertex_key(self, request: web.Request) -> web.StreamResponse:
        seen = await self._seen(request, "vertex")
        if seen.headers.get("x-goog-api-key") != API_KEY:
            seen.problems.append("x-goog-api-key must be the configured key")
        if "Authorization" in seen.headers:
            seen.problems.append("an API-key call carries no Authorization")
        return await self._vertex_common(request, seen)

    # ------------------------------------------------------------------ xAI
    async def _xai(self, request: web.Request) -> web.StreamResponse:
        seen = await self._seen(request, "xai")
        self._bearer(seen, API_KEY)
        body = seen.body if isinstance(seen.body, dict) else {}
        responses = request.path.startswith("/v1/responses")
        need = ("model", "input") if responses else ("model", "messages")
        for key in need:
            if key not in body:
                seen.problems.append(f"{key} is required")
        if (fault := self._fault("xai")) is not None:
            return fault
        if seen.problems:
            return self._rejected(seen, "openai")
        if request.path.endswith("/compact"):
            return web.json_response({"id": "resp_compact", "object": "response.compaction",
                                      "output": body.get("input", [])})
        kind = "responses" if responses else "openai"
        return await self._answer(request, kind, str(body.get("model")), body.get("stream") is True)


# ------------------------------------------------------------------ helpers for executor tests
def account(name: str, **raw: Any) -> Account:
    """An account as the store would parse it from file ``name``."""
    return parse_account(Path("/nonexistent") / name, raw)


def entry_for(kind: str, base: str, acct: Account | None = None, *, token: str = TOKEN, api_key: str = "",
              headers: dict[str, str] | None = None) -> ProviderEntry:
    """A ProviderEntry as the registry makes it (account and token source in ``derived``)."""
    e = ProviderEntry(kind=kind, provider=kind, name=f"{kind}-test", api_key=api_key, base_url=base,
                      headers=headers or {}, cred_id=f"auth:{acct.name}" if acct else None)
    if acct is not None:
        e.derived["account"] = acct
        e.derived["token"] = StaticKey(token)
    return e


async def drain(up: Upstream) -> bytes:
    parts = []
    while chunk := await up.read_chunk():
        parts.append(chunk)
    up.close(up.at_eof())
    return b"".join(parts)
