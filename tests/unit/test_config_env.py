"""``${NAME}`` in config.yaml: values from the environment, errors at the variable's own line."""

from __future__ import annotations

import pytest

from crossroute.config import ConfigError, parse

ENV = {"OPENAI_KEY": "sk-proj-abcdef123456", "TOKEN": "tok-9876543210", "PORT": "9100", "HOST": "127.0.0.2"}


def problems(text: str, env: dict[str, str]) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as exc:
        parse(text, "c.yaml", env)
    return exc.value.problems


def test_whole_values_and_values_inside_longer_strings() -> None:
    text = """\
host: ${HOST}
port: ${PORT}
openai-compatibility:
  - name: up
    base-url: http://127.0.0.1:9/v1
    api-key-entries:
      - api-key: ${OPENAI_KEY}
    headers:
      X-Upstream-Auth: "Bearer ${TOKEN}"
      X-Team: "team-${PORT}-x"
    models: [m]
"""
    s = parse(text, "c.yaml", ENV)
    assert s.host == "127.0.0.2"
    assert s.port == 9100  # a number from the environment is a number where one is expected
    [p] = s.providers
    assert p.api_key == "sk-proj-abcdef123456"
    assert p.headers == {"X-Upstream-Auth": "Bearer tok-9876543210", "X-Team": "team-9100-x"}


def test_escape_default_and_no_reference() -> None:
    text = """\
openai-compatibility:
  - name: up
    base-url: http://127.0.0.1:9/v1
    api-key-entries:
      - api-key: "$${NOT_A_VAR}"
      - api-key: "${UNSET_ONE:-fallback-key}"
      - api-key: "price: $5 and $HOME stay"
    headers:
      X-Copy: "$X-Client-Header"
    models: [m]
"""
    s = parse(text, "c.yaml", {})
    assert [p.api_key for p in s.providers] == ["${NOT_A_VAR}", "fallback-key", "price: $5 and $HOME stay"]
    assert s.providers[0].headers == {"X-Copy": "$X-Client-Header"}  # a client-header copy, not a variable


def test_unset_variable_names_file_line_and_variable() -> None:
    text = """\
port: 8400
claude-api-key:
  - api-key: ${ANTHROPIC_KEY}
gemini-api-key:
  - api-key: "prefix-${GEMINI_KEY}"
"""
    got = problems(text, {})
    assert [(line, msg) for line, _, msg in got] == [
        (3, "environment variable ANTHROPIC_KEY is not set (referenced as ${ANTHROPIC_KEY})"),
        (5, "environment variable GEMINI_KEY is not set (referenced as ${GEMINI_KEY})"),
    ]
    with pytest.raises(ConfigError) as exc:
        parse(text, "c.yaml", {})
    assert exc.value.render().splitlines()[0] == (
        "c.yaml:3: environment variable ANTHROPIC_KEY is not set (referenced as ${ANTHROPIC_KEY})")


def test_line_numbers_inside_block_scalars() -> None:
    text = """\
port: 8400
openai-compatibility:
  - name: up
    base-url: http://127.0.0.1:9/v1
    headers:
      X-Note: |
        first line
        second ${MISSING_HERE}
    models: [m]
"""
    [(line, _, msg)] = problems(text, {})
    assert line == 8 and "MISSING_HERE" in msg


def test_malformed_references() -> None:
    got = problems('host: "a ${UNCLOSED"\nport: ${1BAD}\n', {})
    assert [line for line, _, _ in got] == [1, 2]
    assert "unterminated" in got[0][2] and "invalid environment variable name" in got[1][2]


def test_keys_are_not_expanded() -> None:
    s = parse("${WEIRD}: 1\n", "c.yaml", {})
    assert any("${WEIRD}" in w and "unknown key" in w for w in s.warnings)


def test_a_wrong_type_from_the_environment_says_where_it_came_from() -> None:
    [(line, fld, msg)] = problems("port: ${PORT}\n", {"PORT": "eighty"})
    assert (line, fld) == (1, "port") and "(from ${PORT})" in msg and "got string 'eighty'" in msg


def test_a_secret_from_the_environment_is_masked_in_problem_messages() -> None:
    # the key ends up quoted in a problem (a wrong type elsewhere): never printed in full
    text = """\
port: ${OPENAI_KEY}
codex-api-key:
  - api-key: ${OPENAI_KEY}
"""
    with pytest.raises(ConfigError) as exc:
        parse(text, "c.yaml", ENV)
    rendered = exc.value.render()
    assert "c.yaml:1: port:" in rendered
    assert ENV["OPENAI_KEY"] not in rendered and "sk-...3456" in rendered


def test_values_from_secret_looking_variables_are_secrets_wherever_they_are_used() -> None:
    from crossroute.config import secret_values

    text = """\
openai-compatibility:
  - name: up
    base-url: http://127.0.0.1:9/v1
    headers:
      X-Custom: "${MY_SERVICE_TOKEN}"
      X-Team: "${TEAM_NAME}"
    models: [m]
"""
    got = secret_values(parse(text, "c.yaml", {"MY_SERVICE_TOKEN": "opaque-value-42", "TEAM_NAME": "platform-ml"}))
    assert "opaque-value-42" in got and "platform-ml" not in got
