"""Which observers a gateway has, from its settings (called at start and on every reload)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["install"]


def install(gw: Gateway) -> None:
    """Add, keep or remove the observers the settings ask for (none yet)."""
    return None
