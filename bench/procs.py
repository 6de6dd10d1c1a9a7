"""Child-process helpers for the benchmark: start pinned, wait for readiness, measure the process
tree's memory, and kill everything on exit."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence

_CHILDREN: list[Child] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _pinner(cpus: set[int] | None):  # type: ignore[no-untyped-def]
    if not cpus:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin


class Child:
    """One started server process (in its own session, so its whole group can be killed)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        cpus: set[int] | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        log_path: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_pinner(cpus),
        )
        _CHILDREN.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left."""
        if self.proc.poll() is None:
            pids = tree_pids(self.pid)
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            for pid in [self.pid, *pids]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout)
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]
        if self in _CHILDREN:
            _CHILDREN.remove(self)

    def log_tail(self, n: int = 20) -> str:
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def stop_all() -> None:
    for child in list(reversed(_CHILDREN)):
        try:
            child.stop(timeout=3.0)
        except Exception:  # best effort at exit
            pass


atexit.register(stop_all)


def finish(tmp: str, keep: bool, what: str) -> None:
    """Stop every started process; remove ``tmp`` unless ``keep`` (then say where it is)."""
    stop_all()
    if keep:
        print(f"{what} kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP become SystemExit so that finally-blocks and atexit kill the children."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def http_status(port: int, path: str = "/healthz", timeout: float = 0.5) -> int:
    """Status of one GET on 127.0.0.1:port (0 when it cannot connect)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = s.recv(64)
    except OSError:
        return 0
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def wait_ready(child: Child, port: int, timeout: float = 30.0, path: str = "/healthz") -> float:
    """Polls until GET path answers 200; returns seconds since the process was started."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if http_status(port, path) == 200:
            return time.perf_counter() - child.started
        if not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{child.log_tail()}")
        time.sleep(0.005)
    raise RuntimeError(f"{child.name} not ready on port {port} after {timeout} s:\n{child.log_tail()}")


def tree_pids(root: int) -> list[int]:
    """All descendants of ``root`` (from /proc), not including root."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces: split after the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        for c in children.get(pid, []):
            out.append(c)
            todo.append(c)
    return out


def _status_kb(pid: int, key: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory_mb(root: int) -> tuple[float, float, int]:
    """(sum of RSS, sum of PSS, process count) over root and its descendants, in MB."""
    pids = [root, *tree_pids(root)]
    rss = sum(_status_kb(p, b"VmRSS:") for p in pids)
    pss = sum(_pss_kb(p) for p in pids)
    return rss / 1024.0, pss / 1024.0, len(pids)


_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by root and its descendants (all threads)."""
    total = 0
    for pid in [root, *tree_pids(root)]:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICKS


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"
