"""config.yaml edited through the management API: masks, validation, comments (management/config_edit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossroute.management import auth, config_edit
from crossroute.management.config_edit import EditError

CONFIG = """\
# crossroute test config
port: 8317  # the port
api-keys:
  - client-key-0123456789   # first client
claude-api-key:
  - api-key: sk-ant-0123456789abcdef
    priority: 2
remote-management:
  secret-key: plain-management-key
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(CONFIG)
    p.chmod(0o640)
    return p


def test_masked_hides_every_secret() -> None:
    text = config_edit.masked(CONFIG)
    for secret in ("client-key-0123456789", "sk-ant-0123456789abcdef", "plain-management-key"):
        assert secret not in text
    assert "# crossroute test config" in text and "# first client" in text
    assert "sk-...cdef" in text


def test_masks_come_back_as_the_secrets(cfg: Path) -> None:
    shown = config_edit.masked(cfg.read_text())
    edited = shown.replace("priority: 2", "priority: 3") + "# added comment\n"
    settings, changed = config_edit.replace(str(cfg), edited)
    assert changed
    text = cfg.read_text()
    assert "sk-ant-0123456789abcdef" in text and "client-key-0123456789" in text
    assert "priority: 3" in text and "# added comment" in text and "# the port" in text
    assert settings.providers[0].priority == 3
    assert (cfg.stat().st_mode & 0o777) == 0o640  # the file's mode is kept


def test_invalid_config_is_never_written(cfg: Path) -> None:
    before = cfg.read_text()
    bad = before.replace("port: 8317", "port: 99999").replace("priority: 2", "priority: high")
    with pytest.raises(EditError) as info:
        config_edit.replace(str(cfg), bad)
    assert info.value.status == 400
    lines = {p["line"] for p in info.value.problems}
    assert lines == {2, 7}
    assert "port" in info.value.message and ":2:" in info.value.message
    assert cfg.read_text() == before
    assert not [p for p in cfg.parent.iterdir() if p.name.endswith(".tmp")]


def test_yaml_syntax_error_names_the_line(cfg: Path) -> None:
    before = cfg.read_text()
    with pytest.raises(EditError) as info:
        config_edit.replace(str(cfg), before + "oops: [unclosed\n")
    assert info.value.problems and info.value.problems[0]["line"]
    assert info.value.body()["error"] == "invalid_yaml"
    assert cfg.read_text() == before


def test_ambiguous_mask_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("api-keys:\n  - sk-aaaa1111zzzz\n  - sk-bbbb2222zzzz\n")
    shown = config_edit.masked(p.read_text())
    assert shown.count("sk-...zzzz") == 2
    with pytest.raises(EditError) as info:
        config_edit.replace(str(p), shown)
    assert "more than one" in info.value.message


def test_edit_tree_keeps_comments(cfg: Path) -> None:
    def change(tree: dict) -> None:
        tree["api-keys"].append("client-key-second-1234")

    config_edit.edit_tree(str(cfg), change)
    text = cfg.read_text()
    assert "# first client" in text and "# crossroute test config" in text and "# the port" in text
    assert "client-key-second-1234" in text


def test_edit_tree_refuses_an_invalid_result(cfg: Path) -> None:
    before = cfg.read_text()

    def change(tree: dict) -> None:
        tree["claude-api-key"][0]["priority"] = "high"

    with pytest.raises(EditError):
        config_edit.edit_tree(str(cfg), change)
    assert cfg.read_text() == before


def test_plain_key_is_hashed_and_written_back(cfg: Path) -> None:
    written = config_edit.hash_plain_key(str(cfg), auth.hash_key, auth.is_hashed)
    assert written and auth.is_hashed(written)
    text = cfg.read_text()
    assert "plain-management-key" not in text and written in text and "# first client" in text
    assert auth.verify_key("plain-management-key", written)
    assert config_edit.hash_plain_key(str(cfg), auth.hash_key, auth.is_hashed) is None  # hashed already


def test_key_from_the_environment_is_left_alone(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("remote-management:\n  secret-key: ${MGMT_KEY:-x}\n")
    assert config_edit.hash_plain_key(str(p), auth.hash_key, auth.is_hashed) is None


def test_an_exposed_config_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("host: 0.0.0.0\napi-keys:\n  - client-key-0123456789\n")
    before = p.read_text()
    with pytest.raises(EditError) as info:
        config_edit.replace(str(p), "host: 0.0.0.0\napi-keys: []\n")
    assert "refusing to listen" in info.value.message and info.value.problems[0]["field"] == "api-keys"
    assert p.read_text() == before
