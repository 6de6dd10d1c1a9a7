from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .fake_upstream import FakeUpstream
from .gateway_process import GatewayProcess

if TYPE_CHECKING:
    from .test_quota_gateway import QuotaUpstream

CLIENT_KEY = "test-client-key"
SCENARIOS = [
    "text",
    "tools",
    "parallel",
    "thinking",
    "refusal",
    "midstream",
    "cut",
    "hang",
    "html",
    "trickle",
    "err400",
    "err401",
    "err429",
    "err500",
    "err503",
]


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream()
    up.start()
    yield up
    up.stop()


def provider_config(
    upstream: FakeUpstream, kinds: tuple[str, ...] = ("openai", "claude", "gemini", "responses"), keys: int = 1
) -> dict[str, Any]:
    """One upstream per kind, each serving every scenario as '<kind>-<scenario>'."""
    cfg: dict[str, Any] = {}

    def models(kind: str) -> list[dict[str, str]]:
        extra = [{"name": "text", "alias": "local"}] if kind == "openai" else []  # the README's model name
        return [{"name": s, "alias": f"{kind}-{s}"} for s in SCENARIOS] + extra

    if "openai" in kinds:
        cfg["openai-compatibility"] = [
            {
                "name": "fake-openai",
                "base-url": upstream.base + "/v1",
                "api-key-entries": [{"api-key": f"sk-openai-{i}"} for i in range(keys)],
                "models": models("openai"),
            },
            {
                # the same server declared as serving the Responses API natively
                "name": "fake-openai-native",
                "base-url": upstream.base,
                "responses": True,
                "api-key-entries": [{"api-key": "sk-native"}],
                "models": [{"name": "text", "alias": "native-text"}],
            },
        ]
    if "responses" in kinds:
        cfg["codex-api-key"] = [
            {"api-key": f"sk-responses-{i}", "base-url": upstream.base + "/v1", "models": models("responses")}
            for i in range(keys)
        ]
    if "claude" in kinds:
        cfg["claude-api-key"] = [
            {"api-key": f"sk-claude-{i}", "base-url": upstream.base, "models": models("claude")} for i in range(keys)
        ]
    if "gemini" in kinds:
        cfg["gemini-api-key"] = [
            {"api-key": f"sk-gemini-{i}", "base-url": upstream.base, "models": models("gemini")} for i in range(keys)
        ]
    return cfg


@pytest.fixture(scope="session")
def gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    cfg = {
        "api-keys": [CLIENT_KEY],
        "read-timeout-seconds": 2,
        "connect-timeout-seconds": 2,
        "disable-cooling": True,
        **provider_config(upstream),
    }
    gw = GatewayProcess(cfg, tmp_path_factory.mktemp("gw")).start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def qup() -> Iterator[QuotaUpstream]:
    """The quota-announcing fake upstream (test_quota_gateway.py) of one test module."""
    from .test_quota_gateway import QuotaUpstream

    u = QuotaUpstream()
    u.start()
    yield u
    u.stop()


@pytest.fixture
def quota_up(qup: QuotaUpstream) -> QuotaUpstream:
    """``qup`` with no recorded requests and no quota set."""
    qup.clear()
    qup.quota.clear()
    return qup
