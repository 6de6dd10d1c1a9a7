"""Management parts without a gateway process: multipart uploads, the observers' fallbacks, the
login mailbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossroute.api.request import Request
from crossroute.management import logins
from crossroute.management.data_routes import _multipart
from crossroute.management.http import BadInput


def _req(body: bytes, ctype: str) -> Request:
    return Request("POST", "/v0/management/auth-files", "", {"content-type": ctype}, body)


def test_multipart_files_are_read_with_their_names() -> None:
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.json\"\r\n\r\n{\"x\": 1}\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nignored\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.json\"\r\n"
            b"Content-Type: application/json\r\n\r\n{}\r\n--b--\r\n")
    assert _multipart(_req(body, "multipart/form-data; boundary=b")) == [("a.json", b"{\"x\": 1}"), ("b.json", b"{}")]


def test_multipart_without_parts_or_names_is_a_bad_input() -> None:
    with pytest.raises(BadInput):
        _multipart(_req(b"nothing", "multipart/form-data; boundary=b"))
    body = b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n{}\r\n--b--\r\n"
    with pytest.raises(BadInput) as info:
        _multipart(_req(body, "multipart/form-data; boundary=b"))
    assert info.value.field == "file"


def test_mailbox_round_trip(tmp_path: Path) -> None:
    box = logins.Mailbox(tmp_path, "some-state")
    assert "some-state" not in box.base and box.read_status() is None
    box.write_status({"status": "wait", "provider": "kimi", "state": "some-state"})
    assert box.read_status()["status"] == "wait"  # type: ignore[index]
    assert box.take(".paste") is None
    assert box.leave(".paste", "http://localhost/cb?code=1") and box.take(".paste") == "http://localhost/cb?code=1"
    assert box.take(".paste") is None  # taken once
    box.remove()
    assert not list((tmp_path / logins.MAILBOX_DIR).iterdir())


def test_other_worker_view_comes_from_the_mailbox(tmp_path: Path) -> None:
    owner = logins.Mailbox(tmp_path, "st-1")
    owner.write_status({"status": "wait", "provider": "claude", "state": "st-1", "url": "https://x"})
    other = logins.Logins()
    assert other.get("st-1", tmp_path) == {"status": "wait", "provider": "claude", "state": "st-1", "url": "https://x"}
    assert other.get("st-2", tmp_path) is None
    assert other.deliver("st-1", "http://localhost/cb?code=1&state=st-1", tmp_path)
    assert owner.take(".paste") == "http://localhost/cb?code=1&state=st-1"
    assert other.cancel("st-1", tmp_path) and owner.take(".cancel") == "1"
    owner.write_status({"status": "ok", "provider": "claude", "state": "st-1", "account": "claude-a.json"})
    assert not other.deliver("st-1", "late", tmp_path)  # finished: nothing waits any more
