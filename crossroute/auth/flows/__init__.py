"""Login flows: PKCE with a loopback callback (or a pasted redirect URL) and the device code."""

from __future__ import annotations


class LoginError(Exception):
    """A login that did not complete; the message says why and how to retry."""


class LoginDenied(LoginError):
    """The user (or the provider) refused consent."""


class LoginTimeout(LoginError):
    """No answer before the deadline."""


__all__ = ["LoginDenied", "LoginError", "LoginTimeout"]
