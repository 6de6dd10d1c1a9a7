"""formats/usage_tokens.py: the observers' fast reading of a usage field gives the counts of each
format's own reader, whatever the field holds."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute.call import Call, RawUsage
from crossroute.formats.translate import usage_of_field
from crossroute.formats.usage_tokens import tokens, tokens_of_raw

FORMATS = ("openai", "claude", "responses", "gemini")

# realistic usage fields (as the providers document them) and odd ones
SAMPLES: list[tuple[str, Any]] = [
    ("openai", {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}),
    ("openai", {"prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 64, "accepted_prediction_tokens": 0}}),
    ("openai", {"prompt_tokens": "9", "completion_tokens": 3.0}),
    ("openai", {"prompt_tokens": None, "prompt_tokens_details": None}),
    ("openai", {"prompt_tokens_details": [1, 2], "completion_tokens": 2}),
    ("claude", {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 20, "service_tier": "standard"}),
    ("claude", {"input_tokens": "10", "output_tokens": True}),
    ("claude", {"input_tokens": 3, "cache_creation": {"ephemeral_5m_input_tokens": 0}}),
    ("responses", {"input_tokens": 50, "output_tokens": 7, "total_tokens": 57,
                   "input_tokens_details": {"cached_tokens": 32},
                   "output_tokens_details": {"reasoning_tokens": 4}}),
    ("responses", {"input_tokens": 5, "input_tokens_details": {"cache_write_tokens": 0, "cache_creation_tokens": 3}}),
    ("responses", {"input_tokens": 5.0, "output_tokens": "2"}),
    ("gemini", {"promptTokenCount": 8, "candidatesTokenCount": 2, "thoughtsTokenCount": 5,
                "cachedContentTokenCount": 4, "toolUsePromptTokenCount": 1}),
    ("gemini", {"prompt_token_count": 8, "candidates_token_count": 2}),
]


def _slow(fmt: str, obj: Any) -> tuple[int, ...] | None:
    try:
        return tokens(usage_of_field(fmt, obj))
    except (ValueError, TypeError, AttributeError, KeyError):
        return None


@pytest.mark.parametrize(("fmt", "obj"), SAMPLES)
def test_fast_counts_are_the_readers_counts(fmt: str, obj: Any) -> None:
    raw = orjson.dumps(obj)
    assert tokens_of_raw(fmt, raw) == _slow(fmt, obj)
    assert tokens_of_raw(fmt, msgspec.Raw(raw)) == _slow(fmt, obj)  # as answers.passthrough hands it over


def test_cached_and_reasoning_land_in_their_columns() -> None:
    assert tokens_of_raw("openai", orjson.dumps(SAMPLES[1][1])) == (1200, 80, 1024, 0, 64)
    assert tokens_of_raw("claude", orjson.dumps(SAMPLES[5][1])) == (130, 5, 100, 20, 0)
    assert tokens_of_raw("responses", orjson.dumps(SAMPLES[8][1])) == (50, 7, 32, 0, 4)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"null", b"{\"prompt_tokens\": ", b"7"])
def test_not_a_usage_object(fmt: str, raw: bytes) -> None:
    assert tokens_of_raw(fmt, raw) in (None, (0, 0, 0, 0, 0))


_counts = st.one_of(st.none(), st.integers(0, 10**9), st.floats(0, 1e6, allow_nan=False), st.text(max_size=4),
                    st.booleans())
_fields = ["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "cache_read_input_tokens",
           "cache_creation_input_tokens", "promptTokenCount", "candidatesTokenCount", "cached_tokens"]
_usage = st.dictionaries(st.sampled_from(_fields), _counts, max_size=6).flatmap(
    lambda d: st.fixed_dictionaries({
        **{k: st.just(v) for k, v in d.items()},
        "prompt_tokens_details": st.one_of(st.none(), st.dictionaries(st.just("cached_tokens"), _counts)),
        "input_tokens_details": st.one_of(st.none(), st.dictionaries(
            st.sampled_from(["cached_tokens", "cache_write_tokens", "cache_creation_tokens"]), _counts)),
        "output_tokens_details": st.one_of(st.none(), st.integers(-5, 5), st.dictionaries(st.just("reasoning_tokens"),
                                                                                     _counts)),
    }))


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(FORMATS), obj=_usage)
def test_fuzz_fast_equals_slow(fmt: str, obj: dict[str, Any]) -> None:
    raw = orjson.dumps(obj)
    assert tokens_of_raw(fmt, raw) == _slow(fmt, obj)


def test_a_call_parses_its_usage_once() -> None:
    call = Call("openai", "m", {}, {})
    raw = RawUsage("openai", msgspec.Raw(orjson.dumps(SAMPLES[1][1])))
    call.usage = raw
    assert call.tokens == (1200, 80, 1024, 0, 64)
    assert call._usage == (1200, 80, 1024, 0, 64)  # kept as its counts
    assert call.tokens is call._usage
    u = call.usage  # still readable as a Usage
    assert u is not None and (u.input_tokens, u.cached_tokens, u.reasoning_tokens) == (1200, 1024, 64)
    call.usage = None
    assert call.tokens is None
