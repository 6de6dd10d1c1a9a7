"""Session id extraction: every source, its priority, the rejection rules and the hash fallback."""

from __future__ import annotations

import orjson
import pytest

from crossroute.routing.session_ids import SessionIds, clean_id, extract_session_ids, fnv1a64


def ref_fnv1a64_hex(data: bytes) -> str:
    """An independent FNV-1a 64 (offset basis and prime from the FNV spec)."""
    h = 14695981039346656037
    for byte in data:
        h ^= byte
        h = (h * 1099511628211) % (1 << 64)
    return format(h, "016x")


def test_reference_fnv_vectors() -> None:
    # published FNV-1a 64 test vectors
    assert ref_fnv1a64_hex(b"") == "cbf29ce484222325"
    assert ref_fnv1a64_hex(b"a") == "af63dc4c8601ec8c"
    assert ref_fnv1a64_hex(b"foobar") == "85944171f73967e8"
    for data in (b"", b"a", b"foobar", "sys:é\n".encode()):
        assert format(fnv1a64(data), "016x") == ref_fnv1a64_hex(data)


def ids(headers: dict[str, str] | None = None, body: dict | None = None, fmt: str = "openai") -> SessionIds:
    got = extract_session_ids(headers or {}, body if body is not None else {}, fmt)
    assert got is not None
    return got


# ---------------------------------------------------------------- rejection rules


def test_clean_id_rules() -> None:
    assert clean_id("  abc \t") == "abc"
    assert clean_id("") is None
    assert clean_id("   ") is None
    assert clean_id("a" * 256) == "a" * 256
    assert clean_id("a" * 257) is None
    assert clean_id("é" * 128) == "é" * 128  # 256 bytes
    assert clean_id("é" * 129) is None  # 129 characters but 258 bytes
    assert clean_id("ab\x00cd") is None
    assert clean_id("ab\x1bcd") is None
    assert clean_id("ab\x7fcd") is None
    assert clean_id("ab\x85cd") is None  # C1 control
    assert clean_id(123) is None
    assert clean_id(None) is None


@pytest.mark.parametrize("bad", ["", "   ", "x" * 257, "bad\x01value", "new\nline"])
def test_rejected_value_does_not_end_the_search(bad: str) -> None:
    headers = {"x-claude-code-session-id": bad, "session-id": bad, "x-session-id": "hdr-1"}
    assert ids(headers).primary == "header:hdr-1"


def test_values_are_trimmed() -> None:
    assert ids({"x-session-id": "  abc  "}).primary == "header:abc"
    assert ids(body={"session_id": "\t s1 \n"}).primary == "session:s1"


# ---------------------------------------------------------------- each source


def test_claude_code_session_header() -> None:
    assert ids({"x-claude-code-session-id": "cc-1"}) == SessionIds("claude:cc-1")


def test_claude_user_id_legacy_form() -> None:
    uid = "user_" + "ab" * 32 + "_account_11111111-2222-3333-4444-555555555555_session_" + (
        "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    )
    assert ids(body={"metadata": {"user_id": uid}}) == SessionIds(
        "claude:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    )


def test_claude_user_id_json_form_parsed_before_length_bound() -> None:
    uid = orjson.dumps(
        {"device_id": "d" * 200, "account_uuid": "acc-" + "9" * 60, "session_id": "sess-json-1"}
    ).decode()
    assert len(uid) > 256
    assert ids(body={"metadata": {"user_id": uid}}) == SessionIds("claude:sess-json-1")


def test_claude_user_id_json_without_session_is_a_plain_user_id() -> None:
    uid = '{"device_id":"d1"}'
    assert ids(body={"metadata": {"user_id": uid}}) == SessionIds("user:" + uid)


def test_claude_user_id_json_with_bad_session_falls_through() -> None:
    # the session field is rejected (too long); the whole string is too, so the hash decides
    long_uid = orjson.dumps({"session_id": "x" * 300}).decode()
    body = {"metadata": {"user_id": long_uid}, "messages": [{"role": "user", "content": "q"}]}
    assert ids({}, body).primary.startswith("msg:")
    # a rejected session field in a short string: the string is used as it is
    uid = '{"session_id":"  "}'
    assert ids({}, {"metadata": {"user_id": uid}}).primary == "user:" + uid


def test_codex_session_headers() -> None:
    assert ids({"session-id": "c1"}) == SessionIds("codex:c1")
    assert ids({"session_id": "c2"}) == SessionIds("codex:c2")
    assert ids({"session-id": "c1", "session_id": "c2"}).primary == "codex:c1"


def test_other_headers() -> None:
    assert ids({"x-session-id": "h"}).primary == "header:h"
    assert ids({"x-session-affinity": "oc"}).primary == "affinity:oc"
    assert ids({"x-client-request-id": "pi"}).primary == "clientreq:pi"


def test_body_session_id() -> None:
    assert ids(body={"session_id": "s"}).primary == "session:s"
    assert ids(body={"sessionId": "s2"}).primary == "session:s2"
    assert ids(body={"session_id": "", "sessionId": "s3"}).primary == "session:s3"


def test_prompt_cache_key_with_conversation_fallback() -> None:
    assert ids(body={"prompt_cache_key": "k"}) == SessionIds("pck:k")
    assert ids(body={"prompt_cache_key": "k", "conversation": {"id": "conv_1"}}) == SessionIds(
        "pck:k", "conv:conv_1"
    )
    assert ids(body={"prompt_cache_key": "k", "conversation": "conv_2"}) == SessionIds("pck:k", "conv:conv_2")


def test_conversation() -> None:
    assert ids(body={"conversation": {"id": "c"}}) == SessionIds("conv:c")
    assert ids(body={"conversation": "c2"}) == SessionIds("conv:c2")


def test_plain_metadata_user_id() -> None:
    assert ids(body={"metadata": {"user_id": "alice"}}) == SessionIds("user:alice")


def test_conversation_id() -> None:
    assert ids(body={"conversation_id": "cid"}) == SessionIds("conv:cid")


def test_idempotency_key_is_never_a_source() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    got = ids({"idempotency-key": "idem-1"}, body)
    assert got.primary.startswith("msg:")
    assert "idem" not in got.primary


def test_nothing_to_go_on() -> None:
    assert extract_session_ids({}, {}, "openai") is None
    assert extract_session_ids({}, {"messages": []}, "claude") is None


# ---------------------------------------------------------------- priority, source by source

ALL_SOURCES: list[tuple[str, str, str, str]] = [
    # (where, name, value, expected id) in priority order
    ("header", "x-claude-code-session-id", "v1", "claude:v1"),
    ("claude_user", "", "sid-2", "claude:sid-2"),
    ("header", "session-id", "v3", "codex:v3"),
    ("header", "session_id", "v4", "codex:v4"),
    ("header", "x-session-id", "v5", "header:v5"),
    ("header", "x-session-affinity", "v6", "affinity:v6"),
    ("header", "x-client-request-id", "v7", "clientreq:v7"),
    ("body", "session_id", "v8", "session:v8"),
    ("body", "sessionId", "v9", "session:v9"),
    ("body", "prompt_cache_key", "v10", "pck:v10"),
    ("body", "conversation", "v11", "conv:v11"),
    ("plain_user", "", "v12", "user:v12"),
    ("body", "conversation_id", "v13", "conv:v13"),
]


def _request_with(sources: list[tuple[str, str, str, str]]) -> tuple[dict[str, str], dict]:
    headers: dict[str, str] = {}
    body: dict = {"messages": [{"role": "user", "content": "hello"}]}
    for where, name, value, _ in sources:
        if where == "header":
            headers[name] = value
        elif where == "body":
            body[name] = value
        elif where == "claude_user":
            body["metadata"] = {"user_id": orjson.dumps({"session_id": value}).decode()}
        elif where == "plain_user":
            body.setdefault("metadata", {"user_id": value})
    return headers, body


@pytest.mark.parametrize("start", range(len(ALL_SOURCES)))
def test_priority_order(start: int) -> None:
    headers, body = _request_with(ALL_SOURCES[start:])
    assert ids(headers, body).primary == ALL_SOURCES[start][3]


def test_hash_is_last() -> None:
    headers, body = _request_with([])
    assert ids(headers, body).primary.startswith("msg:")


def test_pck_fallback_only_with_pck() -> None:
    # conversation alone is primary; with prompt_cache_key it becomes the fallback
    body = {"prompt_cache_key": "p", "conversation": {"id": "c"}, "conversation_id": "other"}
    assert ids(body=body) == SessionIds("pck:p", "conv:c")


# ---------------------------------------------------------------- hash fallback, four formats


def msg(*parts: tuple[str, str]) -> str:
    data = b""
    for tag, text in parts:
        data += tag.encode() + b":" + text.encode()[:100] + b"\n"
    return "msg:" + ref_fnv1a64_hex(data)


def test_hash_openai_first_turn_and_later_turns() -> None:
    first = {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is 2+2?"},
        ]
    }
    s1 = ids(body=first)
    assert s1 == SessionIds(msg(("sys", "You are terse."), ("usr", "What is 2+2?")))
    later = {
        "messages": [
            *first["messages"],
            {"role": "assistant", "content": [{"type": "text", "text": "4"}]},
            {"role": "user", "content": "and 3+3?"},
        ]
    }
    s2 = ids(body=later)
    assert s2.primary == msg(("sys", "You are terse."), ("usr", "What is 2+2?"), ("ast", "4"))
    assert s2.fallback == s1.primary
    # a growing conversation keeps its id
    grown = {"messages": [*later["messages"], {"role": "assistant", "content": "6"}]}
    assert ids(body=grown) == s2


def test_hash_openai_array_content_joined_with_spaces_and_developer_role() -> None:
    body = {
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Rules."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "here"},
                ],
            },
        ]
    }
    assert ids(body=body).primary == msg(("sys", "Rules."), ("usr", "Look here"))


def test_hash_parts_cut_to_100_bytes() -> None:
    long_user = "u" * 150
    long_sys = "é" * 80  # 160 bytes: the cut falls inside a character
    body = {"messages": [{"role": "system", "content": long_sys}, {"role": "user", "content": long_user}]}
    data = b"sys:" + long_sys.encode()[:100] + b"\n" + b"usr:" + b"u" * 100 + b"\n"
    assert ids(body=body).primary == "msg:" + ref_fnv1a64_hex(data)
    # text after the first 100 bytes does not change the id
    body2 = {
        "messages": [
            {"role": "system", "content": long_sys + "zzz"},
            {"role": "user", "content": long_user + "!"},
        ]
    }
    assert ids(body=body2).primary == ids(body=body).primary


def test_hash_claude_system_string_and_blocks() -> None:
    base = {
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
        ],
    }
    assert ids(body=base, fmt="claude") == SessionIds(msg(("sys", "Be brief."), ("usr", "Hi there")))
    blocks = dict(base, system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}])
    assert ids(body=blocks, fmt="claude") == ids(body=base, fmt="claude")
    turn2 = dict(
        base,
        messages=[
            *base["messages"],
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Hello!"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
        ],
    )
    got = ids(body=turn2, fmt="claude")
    assert got.primary == msg(("sys", "Be brief."), ("usr", "Hi there"), ("ast", "Hello!"))
    assert got.fallback == ids(body=base, fmt="claude").primary


def test_hash_claude_without_system() -> None:
    body = {"messages": [{"role": "user", "content": "plain"}]}
    assert ids(body=body, fmt="claude").primary == msg(("usr", "plain"))


def test_hash_gemini() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "Sys A"}, {"text": "Sys B"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Question?"}]},
            {"role": "model", "parts": [{"text": "thinking...", "thought": True}, {"text": "Answer."}]},
            {"role": "user", "parts": [{"text": "More?"}]},
        ],
    }
    got = ids(body=body, fmt="gemini")
    assert got.primary == msg(("sys", "Sys A Sys B"), ("usr", "Question?"), ("ast", "Answer."))
    assert got.fallback == msg(("sys", "Sys A Sys B"), ("usr", "Question?"))
    # snake_case system_instruction and a content without role (user) read the same
    body2 = {"system_instruction": {"parts": [{"text": "S"}]}, "contents": [{"parts": [{"text": "Q"}]}]}
    assert ids(body=body2, fmt="gemini") == SessionIds(msg(("sys", "S"), ("usr", "Q")))


def test_hash_responses_instructions_and_items() -> None:
    body = {
        "instructions": "You code.",
        "input": [
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "no"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Write fib"}]},
            {"type": "function_call", "call_id": "c1", "name": "run", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "done"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Here it is"}]},
        ],
    }
    got = ids(body=body, fmt="responses")
    assert got.primary == msg(("sys", "You code."), ("usr", "Write fib"), ("ast", "Here it is"))
    assert got.fallback == msg(("sys", "You code."), ("usr", "Write fib"))


def test_hash_responses_inline_messages_and_string_input() -> None:
    inline = {"input": [{"role": "developer", "content": "Dev"}, {"role": "user", "content": "Hey"}]}
    assert ids(body=inline, fmt="responses") == SessionIds(msg(("sys", "Dev"), ("usr", "Hey")))
    assert ids(body={"input": "just text"}, fmt="responses") == SessionIds(msg(("usr", "just text")))
    assert ids(body={"instructions": "I", "input": "x"}, fmt="responses") == SessionIds(
        msg(("sys", "I"), ("usr", "x"))
    )


def test_hash_is_deterministic_across_calls() -> None:
    body = {"messages": [{"role": "user", "content": "same"}]}
    assert ids(body=body) == ids(body=body) == SessionIds(msg(("usr", "same")))
