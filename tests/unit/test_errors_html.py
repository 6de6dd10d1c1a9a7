"""An upstream's HTML error page never reaches the client verbatim: one line from its title."""

from __future__ import annotations

from crossroute.formats.errors import upstream_error_message

PAGE = (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body><h1>Bad gateway</h1>"
        b"<p>Request id 7f3a; upstream host internal-10-0-0-7; cookie session=abc</p></body></html>")


def test_html_page_becomes_its_title() -> None:
    message, kind = upstream_error_message(PAGE)
    assert message == "the upstream answered with a web page, not an API answer: 502 Bad Gateway"
    assert kind is None
    assert "internal-10-0-0-7" not in message and "<" not in message


def test_html_without_title_uses_heading_then_a_plain_line() -> None:
    assert upstream_error_message(b"<html><body><h1>Service &amp; more</h1></body></html>")[0].endswith(
        "Service & more")
    assert upstream_error_message(b"<html><body>nothing</body></html>")[0] == (
        "the upstream answered with a web page, not an API answer")


def test_plain_text_and_json_unchanged() -> None:
    assert upstream_error_message(b"overloaded, try later") == ("overloaded, try later", None)
    assert upstream_error_message(b'{"error": {"message": "m", "type": "t"}}') == ("m", "t")
