"""Request ids: unique within a process and not shared by workers forked from one parent."""

from __future__ import annotations

import os

from crossroute.observe.events import new_request_id


def test_ids_differ_within_a_process() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 8 for i in ids)


def test_a_forked_worker_counts_from_its_own_start() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the ids it would make next
        try:
            os.write(w, ",".join(new_request_id() for _ in range(5)).encode())
        finally:
            os._exit(0)
    os.close(w)
    child = os.read(r, 1000).decode().split(",")
    os.close(r)
    os.waitpid(pid, 0)
    mine = [new_request_id() for _ in range(5)]
    assert len(child) == 5 and not set(child) & set(mine)
