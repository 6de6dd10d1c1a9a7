"""The disconnect watch: a stream is watched for its client leaving only once it has lasted
``after`` seconds, by one timer for all streams; a short stream never asks granian."""

from __future__ import annotations

import asyncio
from typing import Any

from crossroute.edge_stream import DisconnectWatch, StreamState, write_stream
from crossroute.replies import StreamReply


class _Proto:
    def __init__(self) -> None:
        self.asked = 0
        self.left = asyncio.get_running_loop().create_future()
        self.sent: list[bytes] = []

    def client_disconnect(self) -> asyncio.Future[Any]:
        self.asked += 1
        return self.left

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> _Proto:
        return self

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)


async def test_a_short_stream_is_never_watched() -> None:
    proto = _Proto()

    async def chunks() -> Any:
        yield b"data: 1\n\n"

    await write_stream(proto, None, StreamReply(200, chunks()), "openai", DisconnectWatch(0.05), 60.0)
    await asyncio.sleep(0.1)
    assert proto.sent == [b"data: 1\n\n"] and proto.asked == 0


async def test_a_long_silent_stream_is_cancelled_when_the_client_leaves() -> None:
    proto = _Proto()
    closed = asyncio.Event()

    async def chunks() -> Any:
        try:
            yield b"data: 1\n\n"
            await asyncio.sleep(30)  # the upstream thinks; nothing to write
            yield b"data: 2\n\n"
        finally:
            closed.set()

    watch = DisconnectWatch(0.05)
    task = asyncio.ensure_future(write_stream(proto, None, StreamReply(200, chunks()), "openai", watch, 60.0))
    await asyncio.sleep(0.2)
    assert proto.asked == 1  # armed once, by the shared timer
    proto.left.set_result(None)  # the client goes away
    await asyncio.wait_for(task, 2)  # ends without raising: the client is gone, nothing to tell it
    assert closed.is_set() and proto.sent == [b"data: 1\n\n"] and not watch.streams


async def test_arming_without_the_hook_keeps_the_stream_going() -> None:
    class Bare:
        pass

    state = StreamState(None, Bare())
    state.arm()
    assert state.gone is not None and not state.client_left()
    state.disarm()
