"""Per-credential quota state, read from every upstream answer's rate-limit and usage signals.

``QuotaBook.note(entry, status, headers)`` is called by the HTTP executor for every answer (2xx
and errors alike); it must return at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["QuotaBook"]


class QuotaBook:
    def attach(self, router: Any, settings: Any, auth_dir: Any = None) -> None:
        """Called by the gateway at start and on every reload, before requests use it."""
        return None

    def note(self, entry: Any, status: int, headers: Mapping[str, str]) -> None:
        """Take in what one upstream answer says about its credential's quota."""
        return None
