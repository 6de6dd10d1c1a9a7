"""The neutral representation every wire format translates to and from.

Four formats (OpenAI chat, OpenAI Responses, Anthropic Messages, Gemini) each get one module in
this package with the same six entry points::

    request_to_neutral(body: dict) -> Request            # client body -> neutral (raises BadRequest)
    request_from_neutral(req: Request, model: str) -> dict  # neutral -> upstream body
    response_to_neutral(body: dict) -> Response          # upstream JSON -> neutral
    response_from_neutral(resp: Response, model: str) -> dict  # neutral -> client JSON
    StreamDecoder                                        # upstream SSE events -> neutral events
    StreamEncoder                                        # neutral events -> client stream bytes

So four formats need four translators, not twelve pairs. What a format cannot express in the
neutral form is kept in ``extra`` so that nothing the client sent is silently dropped; a content
type the target cannot carry raises ``Unsupported`` (a 400 naming the type), never a silent drop.

Plain classes with ``__slots__`` (not pydantic) because stream events pass through here per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# "system": a system instruction at its place in the conversation (Anthropic's mid-conversation
# system messages); only text parts. The leading system prompt stays in ``Request.system``.
Role = Literal["user", "assistant", "system"]
# Neutral finish reasons. Each format maps its own onto these and back.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "stop_sequence", "error"]


class BadRequest(Exception):
    """The client's body is wrong for its API. ``param`` names the field (dotted path)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


class Unsupported(BadRequest):
    """A content type or feature the chosen upstream format cannot carry."""


# ---------------------------------------------------------------- content parts


@dataclass(slots=True)
class Text:
    text: str
    # Anthropic cache_control and similar per-part hints, kept for same-family round trips.
    cache_control: dict[str, Any] | None = None
    kind: Literal["text"] = "text"


@dataclass(slots=True)
class Image:
    """An image either by URL (``url``) or inline (``data`` base64 + ``mime_type``)."""

    url: str | None = None
    data: str | None = None
    mime_type: str | None = None
    detail: str | None = None
    kind: Literal["image"] = "image"


@dataclass(slots=True)
class File:
    """A document (PDF...) by URL, inline base64, or provider file id."""

    url: str | None = None
    data: str | None = None
    mime_type: str | None = None
    file_id: str | None = None
    filename: str | None = None
    kind: Literal["file"] = "file"


@dataclass(slots=True)
class Audio:
    data: str
    format: str  # "wav", "mp3", ...
    kind: Literal["audio"] = "audio"


@dataclass(slots=True)
class ToolCall:
    """A call the assistant made. ``arguments`` is the JSON text of the arguments object."""

    id: str
    name: str
    arguments: str = "{}"
    # Gemini thoughtSignature attached to a functionCall part.
    signature: str | None = None
    kind: Literal["tool_call"] = "tool_call"


@dataclass(slots=True)
class ToolResult:
    """The result of a tool call, sent back by the client. ``content`` is text or parts."""

    call_id: str
    content: str | list[Text | Image] = ""
    is_error: bool = False
    name: str | None = None  # Gemini needs the function name on functionResponse
    kind: Literal["tool_result"] = "tool_result"


@dataclass(slots=True)
class Thinking:
    """Reasoning text. ``signature`` is Claude's signature or Gemini's thoughtSignature;
    ``redacted`` holds Claude redacted_thinking data or OpenAI encrypted reasoning content.
    ``source`` names the format family that produced the signature ("claude", "gemini",
    "openai") so it is only replayed to the same family."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    source: str | None = None
    kind: Literal["thinking"] = "thinking"


Part = Text | Image | File | Audio | ToolCall | ToolResult | Thinking


@dataclass(slots=True)
class Message:
    role: Role
    content: list[Part]
    # Gemini thoughtSignature on a text part, Responses item ids... (format-specific leftovers)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON schema object
    strict: bool | None = None
    # Anthropic-style prompt-cache breakpoint on the definition (chat clients send it too)
    cache_control: dict[str, Any] | None = None
    # Non-function tools (web search, code interpreter...) are kept raw under their format.
    raw: dict[str, Any] | None = None
    raw_format: str | None = None


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None  # when mode == "tool"


@dataclass(slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None
    description: str | None = None  # what the schema is for (json_schema.description)


@dataclass(slots=True)
class Reasoning:
    """Requested reasoning. ``effort`` is one of none/minimal/low/medium/high/xhigh/max/auto;
    ``budget`` is a token budget (-1 = dynamic/auto, 0 = off). Either may be set; translators
    convert with ``thinking.py`` helpers when the target wants the other."""

    effort: str | None = None
    budget: int | None = None
    include_thoughts: bool | None = None
    summary: str | None = None  # Responses reasoning.summary


@dataclass(slots=True)
class Request:
    model: str
    messages: list[Message] = field(default_factory=list)
    system: list[Text] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    reasoning: Reasoning | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    # Client asked for usage in the stream (OpenAI stream_options.include_usage).
    include_usage: bool = False
    # Fields of the client body the neutral form does not model: {"<format>": {...}}.
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- responses


@dataclass(slots=True)
class Usage:
    """Token counts. ``input_tokens`` is the whole prompt *including* cached and cache-creation
    tokens (OpenAI's convention); ``output_tokens`` includes reasoning tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # cache read
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class Response:
    id: str
    model: str
    content: list[Part] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    created: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- stream events
#
# A decoder turns upstream events into this sequence (an encoder may rely on it):
#   Start, then for each content block: BlockStart, BlockDelta*, BlockStop (blocks may interleave
#   only for parallel tool calls, distinguished by ``index``), then Finish (with the final usage),
#   or Error at any point. UsageUpdate may appear anywhere (the latest counts win).


@dataclass(slots=True)
class Start:
    id: str
    model: str
    created: int | None = None
    usage: Usage | None = None  # Anthropic reports input usage at message_start
    type: Literal["start"] = "start"


@dataclass(slots=True)
class BlockStart:
    index: int
    block: Literal["text", "thinking", "tool_call"]
    tool_call_id: str | None = None
    tool_name: str | None = None
    type: Literal["block_start"] = "block_start"


@dataclass(slots=True)
class BlockDelta:
    """``text`` for text blocks, ``thinking`` / ``signature`` / ``redacted`` for thinking blocks,
    ``arguments`` (a JSON fragment) for tool-call blocks."""

    index: int
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    redacted: str | None = None
    arguments: str | None = None
    type: Literal["block_delta"] = "block_delta"


@dataclass(slots=True)
class BlockStop:
    index: int
    type: Literal["block_stop"] = "block_stop"


@dataclass(slots=True)
class UsageUpdate:
    usage: Usage
    type: Literal["usage"] = "usage"


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    usage: Usage | None = None
    stop_sequence: str | None = None
    type: Literal["finish"] = "finish"


@dataclass(slots=True)
class Error:
    """A failure inside a stream. ``status`` is HTTP-like (502 when unknown)."""

    status: int
    message: str
    error_type: str | None = None
    code: str | None = None
    type: Literal["error"] = "error"


Event = Start | BlockStart | BlockDelta | BlockStop | UsageUpdate | Finish | Error
