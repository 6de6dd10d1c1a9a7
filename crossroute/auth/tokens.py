"""Token sources: what an executor asks for the secret to send, and for a new one after a 401.

Both fit ``providers.base.TokenSource`` (``token()`` and ``async refresh()``):

- ``StaticToken``: an API key (or a token with no way to refresh it); ``refresh()`` is False.
- ``AccountToken``: an OAuth account of the store. ``token()`` is the current access token, read
  from the store each time, so a rotation (by this process, another replica or a new login) is seen
  at once. ``refresh(stale)`` asks the ``Refresher`` for a new one: concurrent callers share one
  refresh; a caller whose token was already replaced gets True without a new refresh.
  ``fresh_token()`` refreshes first when the token is due (for an executor that wants to avoid a
  known-expired token when the background refresher is behind).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .refresh import Refresher

__all__ = ["AccountToken", "StaticToken"]


class StaticToken:
    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        self._key = key

    def token(self) -> str:
        return self._key

    async def refresh(self, stale: str | None = None) -> bool:
        return False


class AccountToken:
    __slots__ = ("_refresher", "name")

    def __init__(self, name: str, refresher: Refresher) -> None:
        self.name = name
        self._refresher = refresher

    def token(self) -> str:
        acct = self._refresher.store.get(self.name)
        if acct is None:
            return ""
        return acct.access_token or acct.api_key or ""

    async def refresh(self, stale: str | None = None) -> bool:
        """After a 401: True when there is a (new) token to resend with."""
        return await self._refresher.refresh(self.name, stale=stale, reason="the upstream answered 401")

    async def fresh_token(self) -> str:
        acct = self._refresher.store.get(self.name)
        if acct is not None and self._refresher.due(acct):
            await self._refresher.refresh(self.name, stale=acct.access_token, reason="the token is due")
        return self.token()

    async def remember(self, **fields: Any) -> bool:
        """Keep what an executor learnt about the account in its file (``Refresher.remember``)."""
        return await self._refresher.remember(self.name, **fields)

    def __repr__(self) -> str:
        return f"AccountToken({self.name!r})"
