"""One background task that a component starts and stops with itself (a sweep, a sharing round).

``Background(name)``: ``start(make)`` runs ``make()`` as a task named ``name`` unless one is running
(a task that ended, by failure too, is started again); ``stop()`` cancels it and waits for it to
end; ``running`` says whether it is, ``task`` is the task itself. ``cancel_and_wait(task)`` is the
stop step alone, for a task held some other way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Background", "cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended; its cancellation is not raised here."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Background:
    __slots__ = ("_task", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task last started (None before a start and after ``stop()``)."""
        return self._task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start ``make()`` on the running loop, unless the task is running already."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(make(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
