"""Upstream failures and whose fault they are (``scope``), shared by the executors and the HTTP
client (``http1.py``); ``base.py`` re-exports them."""

from __future__ import annotations

__all__ = ["CREDENTIAL", "MODEL", "REQUEST", "BadAnswer", "UpstreamError", "scope_for"]

REQUEST = "request"
MODEL = "model"
CREDENTIAL = "credential"


class UpstreamError(Exception):
    """An upstream attempt failed. ``status`` 0: no HTTP answer at all (connection refused, reset,
    DNS); 504: no answer in time. ``body``: the upstream's error body (secrets already masked)."""

    def __init__(self, status: int, message: str, *, body: bytes | None = None, retry_after: float | None = None,
                 scope: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        self.retry_after = retry_after
        self.scope = scope or scope_for(status, body)


class BadAnswer(UpstreamError):
    """A 2xx that is not an answer (an error object, ``{}``, no content, HTML, broken JSON, too
    large): 502, cooled like a 5xx."""

    def __init__(self, message: str) -> None:
        super().__init__(502, message, scope=MODEL)


# 404s that depend on what the request refers to, not on the credential or the model
_REQUEST_404 = (b"previous_response", b"previous response", b"conversation", b"response with id",
                b"item with id", b"no such file", b"file_id", b"thread")


def scope_for(status: int, body: bytes | None = None) -> str:
    """Whose fault a failure with this status is (see the module docstring)."""
    if status == 0:
        return CREDENTIAL
    if status in (400, 413, 422):
        return REQUEST
    if status == 404:
        low = (body or b"")[:2048].lower()
        if any(marker in low for marker in _REQUEST_404):
            return REQUEST
        return MODEL
    if status in (401, 402):
        return CREDENTIAL
    return MODEL
