from __future__ import annotations

from pathlib import Path

import pytest

from crossroute.config import ConfigError, check_exposure, parse, parse_duration, secret_values

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
    s = parse("port: 8000\npprof: {enable: true}\nopenai-compatibility:\n"
              "  - name: a\n    base-url: http://h\n    models: [m]\n    shiny: 1\n", "c.yaml")
    assert any("pprof" in w for w in s.warnings)
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
    for url in ("socks5://127.0.0.1:1080", "socks5h://u:p@proxy:1080", "socks4://10.0.0.1:1080"):
        assert parse(f"proxy-url: {url}\n").proxy_url == url
    [(line, fld, msg)] = problems("proxy-url: ftp://proxy:21\n")
    assert (line, fld) == (1, "proxy-url") and "socks5h" in msg


NOT_YET = "accepted but not implemented yet, ignored"


def test_accepted_but_not_implemented_keys_are_warned_about() -> None:
    text = """\
oauth-request-scoped-errors: {}
pprof: {enable: true}
tls: {enable: false}
streaming: {keepalive-seconds: 15}
payload: {default: []}
openai-compatibility:
  - name: a
    base-url: http://h/v1
    request-retry: 2
    disable-cooling: true
    api-key-entries:
      - api-key: k
        weight: 3
    models:
      - name: m
        alias: fast
        thinking: {levels: [low, high]}
        display-name: Fast
"""
    s = parse(text, "c.yaml")
    expected = {
        "c.yaml:1: oauth-request-scoped-errors", "c.yaml:2: pprof", "c.yaml:3: tls",
        "c.yaml:4: streaming", "c.yaml:5: payload",
        "c.yaml:9: openai-compatibility[0].request-retry", "c.yaml:10: openai-compatibility[0].disable-cooling",
        "c.yaml:13: openai-compatibility[0].api-key-entries[0].weight",
        "c.yaml:17: openai-compatibility[0].models[0].thinking",
        "c.yaml:18: openai-compatibility[0].models[0].display-name",
    }
    got = {w.split(": " + NOT_YET)[0] for w in s.warnings if NOT_YET in w}
    assert got == expected, s.warnings
    assert len(s.warnings) == len(expected)


def test_keys_that_work_are_not_warned_about() -> None:
    text = """\
host: 127.0.0.1
port: 8400
api-keys: [k]
allow-unauthenticated: false
allowed-origins: ["http://localhost:3000"]
allowed-hosts: [gw.internal]
debug: false
proxy-url: http://proxy:3128
request-retry: 1
max-retry-interval: 30
body-limit-mb: 32
connect-timeout-seconds: 10
read-timeout-seconds: 600
default-max-tokens: 8192
force-model-prefix: false
disable-cooling: false
transient-error-cooldown-seconds: 0
passthrough-headers: false
idle-timeout-seconds: 75
body-timeout-seconds: 60
max-connections: 100
shutdown-timeout-seconds: 30
max-session-bindings: 1000
max-upstream-body-mb: 64
access-log: true
routing: {strategy: round-robin, session-affinity: true, session-affinity-ttl: 1h, quota-aware: true}
auth-dir: ~/.cli-proxy-api
oauth-model-alias:
  claude: [{name: claude-sonnet-4-5, alias: sonnet, fork: true}]
oauth-excluded-models:
  codex: ["*-mini"]
state: {redis-url: "redis://127.0.0.1:6379/0"}
mock:
  - name: m
    prefix: t
    priority: 1
    weight: 2
    disabled: false
    excluded-models: ["x-*"]
    models: [{name: mock-model, alias: local}]
openai-compatibility:
  - name: a
    base-url: http://h/v1
    prefix: p
    proxy-url: direct
    headers: {X-Team: ml}
    priority: 1
    weight: 2
    disabled: false
    excluded-models: ["*-preview"]
    responses: true
    api-key-entries:
      - api-key: k1
        proxy-url: http://p2:3128
    models: [{name: m, alias: fast}]
claude-api-key:
  - {api-key: sk-ant-x, base-url: "https://api.anthropic.com", prefix: c, models: [{name: claude-x}]}
gemini-api-key: [AIza-x]
codex-api-key:
  - api-key: sk-x
    websockets: true
vertex-api-key:
  - api-key: vk-x
    base-url: https://vertex.example
    proxy-url: socks5://p:1080
    prefix: v
    headers: {X-Team: ml}
    models: [{name: gemini-2.5-pro, alias: vpro}]
    excluded-models: ["*-lite"]
xai-api-key:
  - {api-key: xai-x, websockets: true}
"""
    assert parse(text, "c.yaml").warnings == []


def test_account_keys_and_cloud_key_lists() -> None:
    text = """\
auth-dir: ~/accounts
routing: {quota-aware: true}
oauth-model-alias:
  claude:
    - {name: claude-sonnet-4-5, alias: sonnet}
    - {name: claude-opus-4-1, alias: opus, fork: true}
  nope: []
oauth-excluded-models:
  codex: ["*-mini", gpt-5]
vertex-api-key:
  - api-key: vk-1
    base-url: https://vertex.example
    prefix: v
    models: [{name: gemini-2.5-pro, alias: vpro}]
    excluded-models: ["*-lite"]
xai-api-key:
  - api-key: xai-1
    websockets: true
codex-api-key:
  - {api-key: sk-1, websockets: true}
claude-api-key:
  - {api-key: sk-ant-1, websockets: true}
"""
    s = parse(text, "c.yaml")
    assert s.auth_dir == str(Path.home() / "accounts")
    assert s.routing.quota_aware is True
    assert [(a.name, a.alias, a.fork) for a in s.oauth_model_alias["claude"]] == [
        ("claude-sonnet-4-5", "sonnet", False), ("claude-opus-4-1", "opus", True)]
    assert s.oauth_excluded_models == {"codex": ["*-mini", "gpt-5"]}
    by = {p.kind: p for p in s.providers}
    v = by["vertex"]
    assert (v.provider, v.api_key, v.base_url, v.prefix, v.excluded_models) == (
        "vertex", "vk-1", "https://vertex.example", "v", ["*-lite"])
    assert [(m.name, m.alias) for m in v.models] == [("gemini-2.5-pro", "vpro")]
    assert (by["xai"].provider, by["xai"].base_url, by["xai"].websockets) == ("xai", "https://api.x.ai/v1", True)
    assert by["codex"].websockets is True and by["claude"].websockets is False
    assert "vk-1" in secret_values(s) and "xai-1" in secret_values(s)
    warned = " ".join(s.warnings)
    assert "oauth-model-alias.nope" in warned and "claude-api-key[0].websockets" in warned
    assert len(s.warnings) == 2, s.warnings
    assert parse("").auth_dir == str(Path.home() / ".crossroute")
    assert parse("").routing.quota_aware is False
    got = {(line, fld) for line, fld, _ in problems("oauth-model-alias:\n  claude:\n    - {name: x}\n"
                                                    "oauth-excluded-models: [a]\n")}
    assert got == {(3, "oauth-model-alias.claude[0].alias"), (4, "oauth-excluded-models")}


def test_mock_upstreams() -> None:
    s = parse("mock:\n  - name: m\n    prefix: test\n    models:\n      - name: mock-model\n        alias: local\n"
              "  - name: other\n    models: [x]\n")
    assert [(p.kind, p.provider, p.api_key, p.prefix, [(m.name, m.alias) for m in p.models]) for p in s.providers] == [
        ("mock", "mock:m", "", "test", [("mock-model", "local")]), ("mock", "mock:other", "", None, [("x", None)])]
    assert s.providers[0].id != s.providers[1].id
    got = {(line, fld) for line, fld, _ in problems("mock:\n  - name: a\n    models: [x]\n  - name: a\n  - 3\n")}
    assert got == {(4, "mock[1].name"), (5, "mock[2]")}
    assert any("mock[0].models" in w for w in parse("mock: [{name: e}]\n").warnings)
