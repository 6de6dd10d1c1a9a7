"""``crossroute.background``: one background task, started once at a time, stopped by cancelling it."""

from __future__ import annotations

import asyncio

import pytest

from crossroute.background import Background, cancel_and_wait


async def test_start_runs_one_task_and_stop_cancels_and_waits() -> None:
    started: list[int] = []
    ended: list[str] = []

    async def loop() -> None:
        started.append(1)
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append("cleaned up")

    bg = Background("test-loop")
    assert not bg.running and bg.task is None
    bg.start(loop)
    bg.start(loop)  # already running: not a second task
    await asyncio.sleep(0)
    task = bg.task
    assert bg.running and started == [1] and task is not None and task.get_name() == "test-loop"
    await bg.stop()
    assert task.cancelled() and ended == ["cleaned up"]  # waited for: its finally ran
    assert not bg.running and bg.task is None
    await bg.stop()  # stopping again (or before any start) is nothing


async def test_a_task_that_ended_is_started_again() -> None:
    runs: list[int] = []

    async def once() -> None:
        runs.append(1)
        raise RuntimeError("a failed round")

    bg = Background("test-once")
    bg.start(once)
    await asyncio.sleep(0.01)
    assert not bg.running and runs == [1]
    bg.start(once)
    await asyncio.sleep(0.01)
    assert runs == [1, 1]
    with pytest.raises(RuntimeError, match="a failed round"):
        await bg.stop()  # only the task's cancellation is swallowed, not its own failure
    assert bg.task is None
    await cancel_and_wait(None)
