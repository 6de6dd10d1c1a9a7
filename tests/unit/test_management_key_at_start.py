"""``crossroute serve`` hashes a plain ``remote-management.secret-key`` when it starts
(crossroute/management/auth.py ``hash_key_at_start``): the file keeps its comments and layout,
the settings given take the hash and the file's new digest (so the config watcher sees no change)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from crossroute.config import load
from crossroute.management import auth

PLAIN = "plain-management-key-0123"
TEXT = ("# top comment, kept\nhost: 127.0.0.1  # the host\nremote-management:\n"
        "  # the key, hashed at start\n  secret-key: \"{key}\"\n  allow-remote: false\n"
        "mock: [{{name: m, models: [mock-1]}}]\n")


def _write(tmp_path: Path, key: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(TEXT.format(key=key))
    return path


def test_plain_key_is_hashed_and_comments_kept(tmp_path: Path) -> None:
    path = _write(tmp_path, PLAIN)
    settings = load(path)
    settings.port = 9999  # a --port override stays
    assert auth.hash_key_at_start(path, settings)
    text = path.read_text()
    assert PLAIN not in text
    assert text.startswith("# top comment, kept\nhost: 127.0.0.1  # the host\n")
    assert "  # the key, hashed at start\n" in text and "allow-remote: false" in text
    stored = settings.remote_management.secret_key
    assert auth.is_hashed(stored) and stored in text and auth.verify_key(PLAIN, stored)
    assert settings.digest == hashlib.sha256(text.encode()).hexdigest()  # the file as written: no reload
    assert settings.digest == load(path).digest and settings.port == 9999
    assert not auth.hash_key_at_start(path, load(path))  # once


def test_a_hashed_key_or_no_key_is_left_alone(tmp_path: Path) -> None:
    path = _write(tmp_path, auth.hash_key(PLAIN))
    before = path.read_text()
    assert not auth.hash_key_at_start(path, load(path)) and path.read_text() == before
    path.write_text("mock: [{name: m, models: [mock-1]}]\n")
    assert not auth.hash_key_at_start(path, load(path))


def test_a_key_from_the_environment_is_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSROUTE_TEST_MGMT_KEY", PLAIN)
    path = _write(tmp_path, "${CROSSROUTE_TEST_MGMT_KEY}")
    before = path.read_text()
    settings = load(path)
    assert settings.remote_management.secret_key == PLAIN
    assert not auth.hash_key_at_start(path, settings) and path.read_text() == before
    assert settings.remote_management.secret_key == PLAIN


def test_an_unwritable_file_keeps_the_plain_key(tmp_path: Path) -> None:
    path = _write(tmp_path, PLAIN)
    settings = load(path)
    tmp_path.chmod(0o500)  # the atomic write needs a temporary file next to the config
    try:
        if _writable(tmp_path):
            pytest.skip("running as a user who can write anywhere")
        assert not auth.hash_key_at_start(path, settings) and PLAIN in path.read_text()
    finally:
        tmp_path.chmod(0o700)


def _writable(directory: Path) -> bool:
    try:
        (directory / "probe").write_text("x")
    except OSError:
        return False
    (directory / "probe").unlink()
    return True
