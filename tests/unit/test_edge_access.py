"""The access log line: layout, what it leaves out, batching, and the fallback to logging."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from collections.abc import Iterator

import pytest

from crossroute import redaction
from crossroute.edge_access import AccessLog
from crossroute.logs import setup_logging


def _stock() -> io.StringIO:
    """The stock set-up of ``crossroute serve`` (without the capture handlers pytest adds)."""
    setup_logging(False)
    buf = io.StringIO()
    root = logging.getLogger("crossroute")
    handler = root.handlers[0]
    handler.stream = buf  # type: ignore[attr-defined]
    root.handlers[:] = [handler]
    return buf


@pytest.fixture
def stderr() -> Iterator[None]:
    yield None
    redaction.set_secrets([])


async def test_a_line_in_the_stock_layout_written_in_batches(stderr: None) -> None:
    out = _stock()
    log = AccessLog()
    log.configure(True)
    log.line("POST", "/v1/chat/completions", 200, "openai", "gpt-4o", "openai:1a2b3c", time.perf_counter() - 0.0123)
    assert out.getvalue() == ""  # batched
    await asyncio.sleep(1.3)
    line = out.getvalue()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO crossroute\.access: POST /v1/chat/completions 200 "
                        r"openai model=gpt-4o credential=openai:1a2b3c \d+\.\dms\n", line), line
    assert float(line.split()[-1].removesuffix("ms")) >= 12.3
    logging.getLogger("crossroute").info("x")
    stock = out.getvalue().splitlines()[-1]
    assert len(stock.split(" ")[0]) == len(line.split(" ")[0]) and stock.split(" ")[2] == "INFO"


async def test_client_values_are_cleaned_and_known_secrets_masked(stderr: None) -> None:
    out = _stock()
    redaction.set_secrets(["sk-upstream-very-secret-1234"])
    log = AccessLog()
    log.configure(True)
    log.line("POST", "/v1beta/models/a\nb:generateContent", 400, "gemini", "sk-upstream-very-secret-1234", None,
             time.perf_counter())
    log.line("POST", "/x", 200, "openai", "m" * 5000, None, time.perf_counter())
    log.flush()
    text = out.getvalue()
    assert "very-secret" not in text
    assert "a\\nb:generateContent" in text and len(text.splitlines()) == 2
    assert "m" * 201 not in text and "credential=-" in text


async def test_off_and_other_logging_setups(stderr: None, caplog: pytest.LogCaptureFixture) -> None:
    _stock()
    off = AccessLog()
    off.configure(False)
    assert not off.enabled
    # a handler added by someone else: every line goes through logging as usual
    extra = logging.StreamHandler(io.StringIO())
    logging.getLogger("crossroute.access").addHandler(extra)
    try:
        log = AccessLog()
        log.configure(True)
        with caplog.at_level(logging.INFO, logger="crossroute.access"):
            log.line("GET", "/", 200, "openai", None, None, time.perf_counter())
        assert "GET / 200 openai model=- credential=-" in extra.stream.getvalue()  # type: ignore[attr-defined]
    finally:
        logging.getLogger("crossroute.access").removeHandler(extra)
