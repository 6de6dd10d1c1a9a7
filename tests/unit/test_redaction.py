"""Configured secrets are collected from the config and masked by value in log lines and messages."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from crossroute import redaction
from crossroute.config import ConfigError, parse, secret_values
from crossroute.logs import setup_logging

CONFIG = """\
api-keys: [client-key-123456]
proxy-url: "http://user:global-proxy-pw@127.0.0.1:3128"
state:
  redis-url: "redis://:redis-pass-000@127.0.0.1:6379/0"
openai-compatibility:
  - name: up
    base-url: http://127.0.0.1:9/v1
    api-key-entries:
      - api-key: sk-upstream-aaaa1111
        proxy-url: "http://bob:entry-proxy-pw@127.0.0.1:3129"
    headers:
      Authorization: "Bearer hdr-token-5555"
      X-Api-Key: plain-header-key-66
      X-Team: ml-platform
      X-Copy: "$X-Client"
    models: [m]
claude-api-key:
  - api-key: sk-ant-bbbb2222
remote-management:
  secret-key: mgmt-secret-777
"""


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    root = logging.getLogger("crossroute")
    usage = logging.getLogger("crossroute.usage")
    saved = (root.handlers[:], root.level, root.propagate, usage.level)
    yield
    redaction.set_secrets([])
    root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]
    usage.setLevel(saved[3])


def test_secret_values_collects_every_configured_secret() -> None:
    got = set(secret_values(parse(CONFIG)))
    assert {
        "client-key-123456", "global-proxy-pw", "redis-pass-000", "sk-upstream-aaaa1111", "entry-proxy-pw",
        "Bearer hdr-token-5555", "hdr-token-5555", "plain-header-key-66", "sk-ant-bbbb2222", "mgmt-secret-777",
    } <= got
    assert "ml-platform" not in got and "$X-Client" not in got and "" not in got


def test_a_log_record_with_a_configured_key_prints_masked() -> None:
    settings = parse(CONFIG)
    setup_logging(False, settings)
    stream = io.StringIO()
    handler = logging.getLogger("crossroute").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    log = logging.getLogger("crossroute.test")
    # shapes the pattern redaction does not catch: a key after "provided:" and a bare password
    log.warning("upstream said: Incorrect API key provided: sk-upstream-aaaa1111 (proxy entry-proxy-pw)")
    try:
        raise RuntimeError("boom with sk-ant-bbbb2222 inside")
    except RuntimeError:
        log.exception("failed")
    out = stream.getvalue()
    for secret in ("sk-upstream-aaaa1111", "entry-proxy-pw", "sk-ant-bbbb2222"):
        assert secret not in out
    assert "sk-...1111" in out and "sk-...2222" in out


def test_scrub_by_value_before_the_pattern() -> None:
    redaction.set_secrets(secret_values(parse(CONFIG)))
    from crossroute.logs import scrub_line

    line = scrub_line("Authorization: Bearer hdr-token-5555 api_key=unknown-key-999999")
    assert "hdr-token-5555" not in line and "unknown-key-999999" not in line


def test_config_errors_mask_the_files_secrets() -> None:
    text = "port: sk-upstream-aaaa1111\nclaude-api-key: [sk-upstream-aaaa1111]\n"
    with pytest.raises(ConfigError) as exc:
        parse(text, "c.yaml")
    assert "sk-upstream-aaaa1111" not in exc.value.render()
    # a malformed proxy URL is quoted in the problem; its password is not
    bad = 'openai-compatibility:\n  - name: x\n    base-url: http://h/v1\n    proxy-url: "http://u:proxy-secret-1@"\n'
    with pytest.raises(ConfigError) as exc:
        parse(bad, "c.yaml")
    assert "proxy-secret-1" not in exc.value.render()


def test_scrub_with_ignores_short_values() -> None:
    assert redaction.scrub_with("key abc and longsecret1", ["abc", "longsecret1"]) == "key abc and lon...ret1"
