"""The management key, the loopback rule and the ban (crossroute/management/auth.py)."""

from __future__ import annotations

import pytest

from crossroute.management import auth
from crossroute.management.auth import BAN_SECONDS, MAX_FAILURES, Guard


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_hash_is_not_the_key_and_verifies() -> None:
    h = auth.hash_key("s3cret-key")
    assert auth.is_hashed(h) and "s3cret-key" not in h
    assert auth.verify_key("s3cret-key", h)
    assert not auth.verify_key("s3cret-kez", h)
    assert auth.hash_key("s3cret-key") != h  # salted


def test_cliproxyapi_bcrypt_hash_verifies() -> None:
    if not auth._BCRYPT:
        pytest.skip("the C library has no bcrypt")
    stored = "$2a$10$N9qo8uLOickgx2ZMRZoMyecBPBZPbMY9K9Iy/VaK.7YTHTLYF41De"  # bcrypt of "secret", cost 10
    assert auth.verify_key("secret", stored)
    assert not auth.verify_key("Secret", stored)


def test_pbkdf2_hash_verifies() -> None:
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"pw-123456", salt, 1000)
    stored = f"pbkdf2-sha256$1000${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert auth.is_hashed(stored)
    assert auth.verify_key("pw-123456", stored) and not auth.verify_key("pw-12345", stored)
    assert not auth.verify_key("x", "pbkdf2-sha256$garbage")


def test_plain_stored_key_compares() -> None:
    assert auth.verify_key("plain", "plain") and not auth.verify_key("plain", "plain2")
    assert not auth.verify_key("", "plain") and not auth.verify_key("x", "")


@pytest.mark.parametrize(("headers", "key"), [
    ({"authorization": "Bearer abc"}, "abc"),
    ({"authorization": "bearer  abc "}, "abc"),
    ({"authorization": "abc"}, "abc"),
    ({"x-management-key": "k2"}, "k2"),
    ({}, None),
])
def test_presented_key(headers: dict[str, str], key: str | None) -> None:
    assert auth.presented_key(headers) == key


class Req:
    def __init__(self, client: str | None) -> None:
        self.client = client


@pytest.mark.parametrize(("client", "bound", "want"), [
    ("127.0.0.1:5555", "0.0.0.0", ("127.0.0.1", True)),
    ("[::1]:80", "0.0.0.0", ("::1", True)),
    ("::1", "0.0.0.0", ("::1", True)),
    ("192.0.2.7:4000", "127.0.0.1", ("192.0.2.7", False)),
    (None, "127.0.0.1", (None, True)),  # address unknown: a loopback-bound gateway only has local clients
    (None, "0.0.0.0", (None, False)),  # bound anywhere else: counted as remote
])
def test_client_address(client: str | None, bound: str, want: tuple[str | None, bool]) -> None:
    assert auth.client_address(Req(client), bound) == want


def test_not_enabled_is_404() -> None:
    v = Guard().decide("anything", "127.0.0.1", True, stored="", allow_remote=False)
    assert v.status == 404


def test_remote_refused_unless_allowed() -> None:
    g = Guard()
    assert g.decide("k", "192.0.2.7", False, stored="k", allow_remote=False).status == 403
    assert g.decide("k", "192.0.2.7", False, stored="k", allow_remote=False).message == "remote management disabled"
    assert g.decide("k", "192.0.2.7", False, stored="k", allow_remote=True).status == 0


def test_missing_and_wrong_key() -> None:
    g = Guard()
    assert g.decide(None, "127.0.0.1", True, stored="k", allow_remote=False).status == 401
    v = g.decide("bad", "127.0.0.1", True, stored="k", allow_remote=False)
    assert (v.status, v.message) == (401, "invalid management key")
    assert g.decide("k", "127.0.0.1", True, stored="k", allow_remote=False).status == 0


def test_env_password() -> None:
    g = Guard()
    assert g.decide("pw", "127.0.0.1", True, stored="", allow_remote=False, env_password="pw").status == 0
    assert g.decide("no", "127.0.0.1", True, stored="", allow_remote=False, env_password="pw").status == 401


def test_five_failures_ban_the_address_for_30_minutes() -> None:
    clock = Clock()
    g = Guard(clock)
    for i in range(MAX_FAILURES - 1):
        assert g.decide("bad", "10.0.0.1", True, stored="k", allow_remote=True).status == 401, i
    v = g.decide("bad", "10.0.0.1", True, stored="k", allow_remote=True)
    assert v.status == 403 and "banned" in v.message
    # banned: even the right key is refused, from that address only
    assert g.decide("k", "10.0.0.1", True, stored="k", allow_remote=True).status == 403
    assert g.decide("k", "10.0.0.2", True, stored="k", allow_remote=True).status == 0
    clock.t += BAN_SECONDS - 1
    assert g.decide("k", "10.0.0.1", True, stored="k", allow_remote=True).status == 403
    clock.t += 2
    assert g.decide("k", "10.0.0.1", True, stored="k", allow_remote=True).status == 0


def test_success_resets_the_count() -> None:
    g = Guard(Clock())
    for _ in range(MAX_FAILURES - 1):
        g.decide("bad", "10.0.0.1", True, stored="k", allow_remote=True)
    assert g.decide("k", "10.0.0.1", True, stored="k", allow_remote=True).status == 0
    for _ in range(MAX_FAILURES - 1):
        assert g.decide("bad", "10.0.0.1", True, stored="k", allow_remote=True).status == 401


def test_good_key_is_remembered_not_rehashed(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = auth.hash_key("key-1")
    g = Guard()
    assert g.check_key("key-1", stored, None)
    calls = []
    monkeypatch.setattr(auth, "verify_key", lambda k, s: calls.append(k) or False)
    assert g.check_key("key-1", stored, None) and not calls
    assert not g.check_key("key-2", stored, None) and calls == ["key-2"]


def test_shared_bans_count_across_guards(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two processes (two guards on one directory): the five failures add up, the ban holds for both."""
    a, b = Guard(), Guard()
    a.shared = auth.SharedBans(tmp_path)
    b.shared = auth.SharedBans(tmp_path)
    results = [(a if i % 2 else b).decide("bad", "10.0.0.9", True, stored="k", allow_remote=True).status
               for i in range(MAX_FAILURES)]
    assert results == [401, 401, 401, 401, 403]
    assert a.decide("k", "10.0.0.9", True, stored="k", allow_remote=True).status == 403
    assert b.decide("k", "10.0.0.9", True, stored="k", allow_remote=True).status == 403
    assert b.decide("k", "10.0.0.8", True, stored="k", allow_remote=True).status == 0
    assert "10.0.0.9" not in " ".join(p.name for p in tmp_path.iterdir())  # files named by a hash


def test_shared_success_resets_the_count(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = Guard(), Guard()
    a.shared = b.shared = auth.SharedBans(tmp_path)
    for _ in range(MAX_FAILURES - 1):
        a.decide("bad", "10.0.0.9", True, stored="k", allow_remote=True)
    assert b.decide("k", "10.0.0.9", True, stored="k", allow_remote=True).status == 0
    b2 = Guard()
    b2.shared = auth.SharedBans(tmp_path)
    assert b2.decide("bad", "10.0.0.9", True, stored="k", allow_remote=True).status == 401


def test_unwritable_shared_directory_falls_back_to_this_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    g = Guard()
    g.shared = auth.SharedBans(blocker / "bans")
    statuses = [g.decide("bad", "10.0.0.9", True, stored="k", allow_remote=True).status for _ in range(MAX_FAILURES)]
    assert statuses == [401, 401, 401, 401, 403]
