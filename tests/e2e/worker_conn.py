"""Which worker process of a ``serve --workers N`` holds a test's HTTP connection.

The workers share one listening socket, so the kernel hands each new connection to one of them and
nothing in the answer says which. Linux does: the accepted socket shows in ``/proc/net/tcp`` (local
address the gateway's port, remote address the client's port) with an inode, and the process that
accepted it holds a descriptor ``socket:[inode]`` in ``/proc/<pid>/fd``. A connection is accepted only
once it has been answered, so ``owner`` expects one request to have gone through it.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path

__all__ = ["WorkerConnection", "connections_to_each", "owner"]

_LOOPBACK_HEX = "0100007F"  # 127.0.0.1 as /proc/net/tcp prints it


def _inodes(server_port: int, client_port: int) -> set[int]:
    local = f"{_LOOPBACK_HEX}:{server_port:04X}"
    remote = f"{_LOOPBACK_HEX}:{client_port:04X}"
    found: set[int] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[1] == local and fields[2] == remote:
            found.add(int(fields[9]))
    return found


def owner(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """The pid among ``pids`` holding the gateway's end of the connection from ``client_port``."""
    wanted = {f"socket:[{inode}]" for inode in _inodes(server_port, client_port) if inode}
    if not wanted:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    return pid
            except OSError:
                continue
    return None


class WorkerConnection:
    """A keep-alive HTTP/1.1 connection to the gateway and the worker that serves it."""

    def __init__(self, port: int, pids: list[int], key: str) -> None:
        self.port = port
        self.key = key
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        status, _ = self.request("GET", "/healthz")
        assert status == 200
        assert self.conn.sock is not None
        self.client_port: int = self.conn.sock.getsockname()[1]
        self.pids = pids
        self.worker = self.current_worker()

    def current_worker(self) -> int | None:
        return owner(self.port, self.client_port, self.pids)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.key}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        assert not resp.will_close, f"{method} {path}: the gateway closed the connection"
        return resp.status, data

    def close(self) -> None:
        self.conn.close()


def connections_to_each(port: int, pids: list[int], key: str, tries: int = 200) -> dict[int, WorkerConnection]:
    """One open connection per worker (new connections until every worker holds one)."""
    held: dict[int, WorkerConnection] = {}
    spare: list[WorkerConnection] = []
    try:
        for _ in range(tries):
            c = WorkerConnection(port, pids, key)
            if c.worker is not None and c.worker not in held:
                held[c.worker] = c
            else:
                spare.append(c)
            if len(held) == len(pids):
                return held
    finally:
        for c in spare:
            c.close()
    for c in held.values():
        c.close()
    raise AssertionError(f"{tries} connections reached only workers {sorted(held)} of {pids}")
