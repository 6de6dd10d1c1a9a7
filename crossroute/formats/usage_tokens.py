"""Token counts straight out of the raw JSON of an answer's usage field: what the observers (usage
store, metrics) read of a passed-through answer, as a plain 5-tuple ``Tokens`` (input, output,
cached, cache creation, reasoning; the meanings of ``neutral.Usage``).

A usage field of the usual shape (counts as JSON integers) is decoded by msgspec into a Struct of
only the fields counted, with no dicts and no ``Usage`` object; any other shape (counts as strings
or floats, snake_case Gemini keys) goes through the format's own reader
(``translate.usage_of_field``), so both give the same counts.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from .neutral import Usage

__all__ = ["Tokens", "tokens", "tokens_of_raw"]

Tokens = tuple[int, int, int, int, int]


def tokens(u: Usage | None) -> Tokens | None:
    if u is None:
        return None
    return (u.input_tokens, u.output_tokens, u.cached_tokens, u.cache_creation_tokens, u.reasoning_tokens)


class _ChatPrompt(msgspec.Struct):
    cached_tokens: int | None = None


class _ChatCompletion(msgspec.Struct):
    reasoning_tokens: int | None = None


class _Chat(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _ChatPrompt | None = None
    completion_tokens_details: _ChatCompletion | None = None


class _Claude(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class _ResponsesInput(msgspec.Struct):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_creation_tokens: int | None = None


class _ResponsesOutput(msgspec.Struct):
    reasoning_tokens: int | None = None


class _Responses(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_tokens_details: _ResponsesInput | None = None
    output_tokens_details: _ResponsesOutput | None = None


def _chat(u: _Chat) -> Tokens:
    pd, cd = u.prompt_tokens_details, u.completion_tokens_details
    return (u.prompt_tokens or 0, u.completion_tokens or 0, (pd.cached_tokens or 0) if pd is not None else 0, 0,
            (cd.reasoning_tokens or 0) if cd is not None else 0)


def _claude(u: _Claude) -> Tokens:
    read = u.cache_read_input_tokens or 0
    creation = u.cache_creation_input_tokens or 0
    return ((u.input_tokens or 0) + read + creation, u.output_tokens or 0, read, creation, 0)


def _responses(u: _Responses) -> Tokens:
    itd, otd = u.input_tokens_details, u.output_tokens_details
    cached = write = 0
    if itd is not None:
        cached = itd.cached_tokens or 0
        write = itd.cache_write_tokens or itd.cache_creation_tokens or 0
    return (u.input_tokens or 0, u.output_tokens or 0, cached, write,
            (otd.reasoning_tokens or 0) if otd is not None else 0)


# format -> (decoder of its usage field, the counts of what it decoded)
_FAST: dict[str, tuple[Any, Any]] = {
    "openai": (msgspec.json.Decoder(_Chat).decode, _chat),
    "claude": (msgspec.json.Decoder(_Claude).decode, _claude),
    "responses": (msgspec.json.Decoder(_Responses).decode, _responses),
}


def tokens_of_raw(fmt: str, raw: Any) -> Tokens | None:
    """The counts of a format ``fmt`` usage field's raw JSON (``bytes`` or ``msgspec.Raw``); None
    when it is not a usage object."""
    fast = _FAST.get(fmt)
    if fast is not None:
        try:
            return fast[1](fast[0](raw))  # type: ignore[no-any-return]
        except msgspec.ValidationError:
            pass  # another shape: the format's own reader below
        except msgspec.DecodeError:
            return None
    from .translate import usage_of_field  # the slow path only (translate imports much)

    try:
        return tokens(usage_of_field(fmt, orjson.loads(memoryview(raw))))
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError, KeyError):
        return None
