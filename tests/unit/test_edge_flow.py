"""The stream writer's view of a client connection: TCP_INFO on the client's socket."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from crossroute import edge_flow
from crossroute.edge_flow import ClientFlow, _find_socket

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO fields are Linux's")


class _Scope:
    def __init__(self, server: str, client: str) -> None:
        self.server = server
        self.client = client


def _addr(a: tuple[str, int]) -> str:
    return f"{a[0]}:{a[1]}"


def _pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    client.connect(listener.getsockname())
    served, _ = listener.accept()
    return listener, client, served


def test_the_connection_is_found_by_its_addresses() -> None:
    listener, client, served = _pair()
    try:
        local = _addr(served.getsockname())
        peer = _addr(served.getpeername())
        found = _find_socket(local, peer)
        assert found is not None
        assert found.fileno() != served.fileno()  # a duplicate: closing it leaves the connection open
        assert found.getpeername() == served.getpeername()
        found.close()
        served.sendall(b"still open")
        assert client.recv(100) == b"still open"
        assert _find_socket(local, "127.0.0.1:1") is None
        assert _find_socket("nonsense", peer) is None
    finally:
        for s in (listener, client, served):
            s.close()


async def test_the_writer_waits_for_a_slow_reader_and_goes_on_when_it_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_flow, "HIGH", 256 * 1024)
    monkeypatch.setattr(edge_flow, "LOW", 128 * 1024)
    listener, client, served = _pair()
    served.setblocking(False)
    try:
        scope = _Scope(_addr(served.getsockname()), _addr(served.getpeername()))
        flow = ClientFlow.open(scope, 0)
        assert flow.active
        # write what the kernel takes; the client reads nothing
        written = 0
        block = b"x" * 16384
        while not flow.behind(len(block)):
            try:
                written += served.send(block)
            except BlockingIOError:
                break
        waiter = asyncio.create_task(flow.wait(30))
        await asyncio.sleep(0.2)
        assert not waiter.done()  # nothing acknowledged: the writer waits
        loop = asyncio.get_running_loop()
        got = 0

        def drain() -> None:
            nonlocal got
            client.settimeout(0.05)
            try:
                while True:
                    data = client.recv(65536)
                    if not data:
                        return
                    got += len(data)
            except TimeoutError:
                return

        for _ in range(40):
            await loop.run_in_executor(None, drain)
            if waiter.done():
                break
        assert waiter.done() and waiter.result() is True
        assert flow.pending <= edge_flow.LOW
        flow.close()
    finally:
        for s in (listener, client, served):
            s.close()


def test_no_socket_means_no_waiting() -> None:
    flow = ClientFlow.open(_Scope("", ""), 10 << 20)
    assert not flow.active
    assert not flow.behind(1 << 30)


async def test_a_client_that_reads_nothing_is_given_up_after_the_stall_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_flow, "HIGH", 64 * 1024)
    monkeypatch.setattr(edge_flow, "LOW", 32 * 1024)
    listener, client, served = _pair()
    served.setblocking(False)
    try:
        flow = ClientFlow.open(_Scope(_addr(served.getsockname()), _addr(served.getpeername())), 0)
        block = b"x" * 16384
        while True:
            try:
                served.send(block)
            except BlockingIOError:
                break
            flow.behind(len(block))
        assert await asyncio.wait_for(flow.wait(0.3), 5) is False
        flow.close()
    finally:
        for s in (listener, client, served):
            s.close()
