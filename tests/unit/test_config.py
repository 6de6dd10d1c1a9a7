from __future__ import annotations

import pytest

from crossroute.config import ConfigError, check_exposure, parse, parse_duration

GOOD = """\
host: 127.0.0.1
port: 8400
api-keys: [a, b, a, "  "]
openai-compatibility:
  - name: local
    base-url: http://127.0.0.1:11434/v1/
    api-key-entries:
      - api-key: k1
      - api-key: k2
        proxy-url: http://proxy:3128
    models:
      - name: llama3
        alias: fast
      - qwen
routing:
  strategy: fill-first
  session-affinity: true
  session-affinity-ttl: 30m
"""


def test_good_config() -> None:
    s = parse(GOOD)
    assert s.port == 8400 and s.api_keys == ["a", "b"]
    assert [p.api_key for p in s.providers] == ["k1", "k2"]
    assert s.providers[0].base_url == "http://127.0.0.1:11434/v1"
    assert s.providers[1].proxy_url == "http://proxy:3128"
    assert [(m.name, m.alias) for m in s.providers[0].models] == [("llama3", "fast"), ("qwen", None)]
    assert s.routing.strategy == "fill-first" and s.routing.session_affinity
    assert s.routing.session_affinity_ttl == 1800
    assert s.providers[0].id != s.providers[1].id and "k1" not in s.providers[0].id


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as exc:
        parse(text, "c.yaml")
    return exc.value.problems


def test_each_problem_names_line_and_field() -> None:
    text = """\
port: 70000
openai-compatibility:
  - name: x
    base-url: "htp//nope"
    models:
      - alias: nameless
routing:
  strategy: random
  session-affinity-ttl: soon
"""
    got = {(line, fld) for line, fld, _ in problems(text)}
    assert got == {
        (1, "port"),
        (4, "openai-compatibility[0].base-url"),
        (6, "openai-compatibility[0].models[0].name"),
        (8, "routing.strategy"),
        (9, "routing.session-affinity-ttl"),
    }


def test_yaml_syntax_error_has_a_line() -> None:
    [(line, _, msg)] = problems("port: 1\nmodels: [a, b\nhost: x\n")
    assert line == 3 and "YAML syntax error" in msg
    with pytest.raises(ConfigError) as exc:
        parse("port: [1\n", "c.yaml")
    assert exc.value.render().startswith("c.yaml:")


def test_wrong_types_are_reported() -> None:
    [(line, fld, msg)] = problems("port: '8080'\n")
    assert (line, fld) == (1, "port") and "integer" in msg


def test_unknown_keys_warn_not_fail() -> None:
    s = parse("port: 8000\nremote-management: {secret-key: x}\nopenai-compatibility:\n"
              "  - name: a\n    base-url: http://h\n    models: [m]\n    shiny: 1\n", "c.yaml")
    assert any("remote-management" in w for w in s.warnings)
    assert any("shiny" in w and ":7:" in w for w in s.warnings)


def test_claude_code_session_affinity_is_a_deprecated_alias() -> None:
    s = parse("claude-code-session-affinity: true\n")
    assert s.routing.session_affinity
    assert any("deprecated" in w for w in s.warnings)


def test_provider_lists_default_base_urls() -> None:
    s = parse("claude-api-key:\n  - api-key: sk-ant\ngemini-api-key:\n  - AIza\n")
    assert [(p.kind, p.base_url) for p in s.providers] == [
        ("claude", "https://api.anthropic.com"), ("gemini", "https://generativelanguage.googleapis.com")]


def test_exposure_rule() -> None:
    assert check_exposure(parse("host: 127.0.0.1\n")) is None
    assert check_exposure(parse("host: localhost\n")) is None
    assert "refusing" in (check_exposure(parse("host: 0.0.0.0\n")) or "")
    assert check_exposure(parse("host: 0.0.0.0\napi-keys: [k]\n")) is None
    assert check_exposure(parse("host: 0.0.0.0\nallow-unauthenticated: true\n")) is None


@pytest.mark.parametrize("value,seconds", [("1h", 3600), ("90s", 90), ("250ms", 0.25), (15, 15), ("2d", 172800)])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_proxy_urls() -> None:
    s = parse("proxy-url: http://proxy:3128\nopenai-compatibility:\n  - name: a\n    base-url: http://h\n"
              "    proxy-url: direct\n    models: [m]\n")
    assert s.proxy_url == "http://proxy:3128" and s.providers[0].proxy_url == "direct"
    [(line, fld, msg)] = problems("proxy-url: socks5://127.0.0.1:1080\n")
    assert (line, fld) == (1, "proxy-url") and "SOCKS" in msg
