"""The Responses API over WebSocket (issue 10): what a gateway in the middle costs.

    python bench/bench_ws.py [--quick] [--turns N] [--idle N] [--json out.json]
    python bench/bench_ws.py --icount [--turns N] [--root TREE]   (valgrind: instructions per warm turn)

Starts the fake WebSocket upstream of the tests (tests/e2e/fake_ws_upstream.py, in this process's
threads) and one ``crossroute serve`` with a ``codex-api-key`` entry at it (``websockets: true``).
Measures, all on 127.0.0.1:

1. Warm-turn latency: one client connection, one-message turns (``previous_response_id`` + one new
   user item, ten events back), through the gateway and directly to the fake upstream, alternating
   in blocks; the median of each, the difference (target: at most 1 ms) and the ratio; and the
   gateway process's CPU time per warm turn (from /proc: steadier than wall time on a busy machine).
2. Bytes upstream per turn at turns 1, 10 and 50 of one conversation (the ``response.create`` the
   upstream received), next to what the full history would have been (an HTTP upstream's request):
   an incremental turn stays flat as the conversation grows.
3. Memory of idle client sockets: the gateway's resident memory (VmRSS) before and after opening N
   (default 1,000) client WebSockets that stay idle (target: under 40 MB extra), the same for a bare
   granian RSGI app that only accepts WebSockets (granian's own part: the floor), and crossroute's own
   Python objects per idle session (measured in-process with tracemalloc). granian 2.8 builds every
   WebSocket with tungstenite's default configuration, whose 128 KiB read buffer is allocated at once
   (not configurable from Python, nor through jemalloc's options): about 150 KB per socket with the bare
   app, which alone is over the target.

Wall-clock figures on a shared 2-core machine swing between runs; the turn latency is a median
over hundreds of turns to keep that noise down. ``--icount`` does not swing: it runs the gateway
under valgrind's callgrind (``apt-get install -y valgrind``; about 50x slower) and counts the
instructions of all its threads over N warm turns of one conversation (default 200, after 20 to
warm up); ``--root`` runs the crossroute package of another tree (say ``git archive <commit>``
unpacked) with this one's fake upstream, for before/after figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402

from tests.e2e.fake_ws_upstream import KEY, FakeWsUpstream  # noqa: E402
from tests.e2e.gateway_process import GatewayProcess  # noqa: E402

CLIENT_KEY = "bench-ws-key"


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def _turn(ws: Any, msg: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "response.create", **msg}))
    while True:
        ev = json.loads(await ws.recv())
        if ev["type"] in ("response.completed", "response.failed", "error"):
            return ev


async def latency(gw_url: str, up_url: str, turns: int, block: int = 20) -> dict[str, float]:
    """Median warm-turn time through the gateway and direct, in alternating blocks."""
    through: list[float] = []
    direct: list[float] = []
    async with websockets.connect(gw_url, additional_headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                                  max_size=None) as gws, \
            websockets.connect(up_url, additional_headers={"Authorization": f"Bearer {KEY}"}, max_size=None) as dws:
        prev = {"g": None, "d": None}

        async def one(ws: Any, key: str, model: str, out: list[float] | None) -> None:
            msg: dict[str, Any] = {"model": model, "input": [user("next step")]}
            if prev[key]:
                msg["previous_response_id"] = prev[key]
            t0 = time.perf_counter()
            ev = await _turn(ws, msg)
            elapsed = time.perf_counter() - t0
            assert ev["type"] == "response.completed", ev
            prev[key] = ev["response"]["id"]
            if out is not None:
                out.append(elapsed * 1000)

        for _ in range(10):  # warm both connections (and the gateway's upstream connection)
            await one(gws, "g", "ws-text", None)
            await one(dws, "d", "text", None)
        done = 0
        while done < turns:
            for _ in range(block):
                await one(gws, "g", "ws-text", through)
            for _ in range(block):
                await one(dws, "d", "text", direct)
            done += block
    mg, md = statistics.median(through), statistics.median(direct)
    return {"gateway_median_ms": round(mg, 3), "direct_median_ms": round(md, 3),
            "added_ms": round(mg - md, 3), "ratio": round(mg / md, 3), "turns": len(through)}


async def bytes_per_turn(gw_url: str, up: FakeWsUpstream, turns: int = 50) -> dict[str, Any]:
    up.clear()
    full: list[Any] = []
    full_sizes: list[int] = []
    async with websockets.connect(gw_url, additional_headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                                  max_size=None) as ws:
        prev = None
        for i in range(turns):
            item = user(f"turn {i}: " + "please continue with the next part of the task. " * 3)
            msg: dict[str, Any] = {"model": "ws-text", "input": [item],
                                   "instructions": "You are a coding agent. " * 20}
            if prev:
                msg["previous_response_id"] = prev
            ev = await _turn(ws, msg)
            prev = ev["response"]["id"]
            full.append(item)
            full_sizes.append(len(json.dumps({"type": "response.create", **msg, "input": full})))
            full.extend(ev["response"]["output"])
    sizes = [s for c in up.connections for s, m in zip(c.sizes, c.messages, strict=True)
             if m.get("type") == "response.create"]
    pick = {n: {"upstream_bytes": sizes[n - 1], "full_history_bytes": full_sizes[n - 1]} for n in (1, 10, 50)
            if n <= len(sizes)}
    return {"connections": len(up.connections), "turns": len(sizes), "per_turn": pick}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_per_turn(gw: GatewayProcess, gw_url: str, turns: int, restart_every: int = 0) -> dict[str, float]:
    """The gateway's CPU time per warm turn (steadier than wall time on a busy machine). With
    ``restart_every`` N a new conversation starts every N turns (a short history: the fixed cost);
    without, one conversation grows over all the turns."""
    assert gw.proc is not None
    async with websockets.connect(gw_url, additional_headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                                  max_size=None) as ws:
        prev = None
        for i in range(turns + 10):
            if i == 10:
                c0 = cpu_seconds(gw.proc.pid)
            msg: dict[str, Any] = {"model": "ws-text", "input": [user("next step")]}
            if restart_every and i % restart_every == 0:  # a transcript that replaces the session's state
                prev = None
                msg["input"] = [user("start"), {"type": "message", "role": "assistant",
                                                "content": [{"type": "output_text", "text": "ok"}]}, user("go")]
            if prev:
                msg["previous_response_id"] = prev
            prev = (await _turn(ws, msg))["response"]["id"]
        used = cpu_seconds(gw.proc.pid) - c0
    return {"turns": turns, "cpu_ms_per_turn": round(used * 1000 / turns, 3)}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def idle_sockets(gw: GatewayProcess, gw_url: str, count: int) -> dict[str, Any]:
    assert gw.proc is not None
    pid = gw.proc.pid
    await asyncio.sleep(0.5)
    before = rss_kb(pid)
    conns = []
    try:
        for i in range(0, count, 50):
            batch = [websockets.connect(gw_url, additional_headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                                        open_timeout=30) for _ in range(min(50, count - i))]
            conns.extend(await asyncio.gather(*batch))
        await asyncio.sleep(1.0)
        after = rss_kb(pid)
        # still served: one turn on the last socket
        ev = await _turn(conns[-1], {"model": "ws-text", "input": [user("still there?")]})
        assert ev["type"] == "response.completed", ev
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    extra_mb = (after - before) / 1024
    return {"sockets": len(conns), "rss_before_mb": round(before / 1024, 1), "rss_after_mb": round(after / 1024, 1),
            "extra_mb": round(extra_mb, 1), "per_socket_kb": round((after - before) / max(1, len(conns)), 1)}


BARE_APP = """
import sys
import uvloop
from granian.constants import HTTPModes, Interfaces
from granian.server.embed import Server

class App:
    async def __rsgi__(self, scope, proto):
        if scope.proto != "ws":
            proto.response_bytes(200, [], b"ok")
            return
        transport = await proto.accept()
        while (await transport.receive()).kind != 0:
            pass
        proto.close(None)

uvloop.run(Server(App(), address="127.0.0.1", port=int(sys.argv[1]), interface=Interfaces.RSGI, log_enabled=False,
                  http=HTTPModes.http1, websockets=True, backpressure=4096).serve())
"""


def granian_alone(count: int) -> dict[str, Any]:
    """The same idle sockets on a bare granian RSGI app (granian's own cost per socket)."""
    import subprocess

    from tests.e2e.gateway_process import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])
    try:
        return asyncio.run(_idle_on(port, proc.pid, count))
    finally:
        proc.terminate()
        proc.wait(10)


async def _idle_on(port: int, pid: int, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    before = rss_kb(pid)
    url = f"ws://127.0.0.1:{port}/"
    conns = []
    try:
        for i in range(0, count, 50):
            conns.extend(await asyncio.gather(*(websockets.connect(url, open_timeout=30)
                                                for _ in range(min(50, count - i)))))
        await asyncio.sleep(1.0)
        after = rss_kb(pid)
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    return {"sockets": len(conns), "extra_mb": round((after - before) / 1024, 1),
            "per_socket_kb": round((after - before) / max(1, len(conns)), 1)}


async def python_part(count: int) -> dict[str, Any]:
    """What crossroute itself keeps per idle session (the WsSession and its reader; a session has a
    lane, with its turn state, queue and worker task, from its first message on), measured in this
    process with tracemalloc on sessions whose transport blocks in ``receive()`` as granian's does;
    granian's own buffers per socket are not in it."""
    import tracemalloc

    from crossroute.api.responses_ws import WsSession
    from crossroute.config import Settings
    from crossroute.gateway import Gateway

    gw = Gateway(Settings())

    class Blocked:
        def __init__(self) -> None:
            self.gone = asyncio.Event()

        async def receive(self) -> Any:
            await self.gone.wait()
            return type("Close", (), {"kind": 0, "data": None})()

        async def send_str(self, data: str) -> None:
            return None

    headers = {"host": "127.0.0.1:8317", "authorization": "Bearer x" * 2, "user-agent": "codex_exec/0.171.0",
               "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13"}
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    transports = [Blocked() for _ in range(count)]
    sessions = [WsSession(lambda: gw, t, "/v1/responses", headers, None, 1 << 20) for t in transports]
    tasks = [asyncio.get_running_loop().create_task(s.run()) for s in sessions]
    await asyncio.sleep(0.2)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    for t in transports:
        t.gone.set()
    await asyncio.gather(*tasks)
    return {"sessions": count, "python_kb_each": round((after - before) / count / 1024, 2),
            "python_mb_total": round((after - before) / 1024 / 1024, 2)}


def icount(turns: int, root: str, keep: bool = False) -> int:
    """Instructions per warm turn of a gateway under callgrind (all its threads)."""
    import glob
    import re
    import shutil
    import subprocess
    import tempfile

    from tests.e2e.gateway_process import free_port

    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind is not installed (apt-get install -y valgrind)")
        return 1
    up = FakeWsUpstream().start()
    tmp = tempfile.mkdtemp(prefix="crossroute-wsicount-")
    port = free_port()
    cfg = Path(tmp) / "config.yaml"
    cfg.write_text(json.dumps({"host": "127.0.0.1", "port": port, "api-keys": [CLIENT_KEY],
                               "auth-dir": f"{tmp}/auth", "data-dir": f"{tmp}/data", "logs-dir": f"{tmp}/logs",
                               "codex-api-key": [{"api-key": KEY, "base-url": up.base + "/v1", "websockets": True,
                                                  "models": [{"name": "text", "alias": "ws-text"}]}]}))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = f"{tmp}/cg.%p.out"
    log = open(f"{tmp}/gateway.log", "wb")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                             sys.executable, "-m", "crossroute", "serve", "--config", str(cfg)],
                            cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"ws://127.0.0.1:{port}/v1/responses"

    async def control(*flags: str) -> None:
        await asyncio.to_thread(subprocess.run, ["callgrind_control", *flags, str(proc.pid)], capture_output=True)

    async def conversation() -> None:
        deadline = time.monotonic() + 300
        while True:
            try:
                ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                                              max_size=None, open_timeout=60)
                break
            except (OSError, websockets.exceptions.InvalidStatus, TimeoutError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                await asyncio.sleep(1.0)
        async with ws:
            prev = None
            for i in range(20 + turns):
                if i == 20:
                    await control("-i", "on")
                msg: dict[str, Any] = {"model": "ws-text", "input": [user("next step")]}
                if prev:
                    msg["previous_response_id"] = prev
                ev = await asyncio.wait_for(_turn(ws, msg), 120)
                assert ev["type"] == "response.completed", ev
                prev = ev["response"]["id"]
            await control("-d")
            await control("-i", "off")

    try:
        asyncio.run(conversation())
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        up.stop()
    total = 0
    for path in glob.glob(f"{tmp}/cg.*.out*"):
        if not path.rsplit(".", 1)[-1].isdigit():
            continue  # the dump at exit, not the one taken over the timed turns
        m = re.search(rb"^(?:totals|summary):\s*(\d+)", Path(path).read_bytes(), re.M)
        if m:
            total += int(m.group(1))
    if keep:
        print(f"callgrind files kept in {tmp} (callgrind_annotate)")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{root}: {total // turns:,} instructions per warm turn (gateway, all threads; {turns} turns)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer turns and sockets")
    ap.add_argument("--turns", type=int, default=400, help="timed turns per side")
    ap.add_argument("--idle", type=int, default=1000, help="idle client sockets")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--icount", action="store_true", help="instructions per warm turn under valgrind")
    ap.add_argument("--root", default=str(ROOT), help="--icount: the tree whose crossroute package runs")
    ap.add_argument("--keep", action="store_true", help="--icount: keep the callgrind files")
    args = ap.parse_args()
    if args.icount:
        return icount(args.turns if args.turns != 400 else 200, args.root, args.keep)
    turns, idle = (100, 300) if args.quick else (args.turns, args.idle)
    up = FakeWsUpstream().start()
    cfg = {"api-keys": [CLIENT_KEY], "max-connections": max(2048, idle + 100),
           "codex-api-key": [{"api-key": KEY, "base-url": up.base + "/v1", "websockets": True,
                              "models": [{"name": "text", "alias": "ws-text"}]}]}
    gw = GatewayProcess(cfg).start()
    gw_url = gw.url.replace("http://", "ws://") + "/v1/responses"
    up_url = up.base.replace("http://", "ws://") + "/v1/responses"
    results: dict[str, Any] = {}
    try:
        results["latency"] = asyncio.run(latency(gw_url, up_url, turns))
        print(f"warm turn: gateway {results['latency']['gateway_median_ms']} ms, direct "
              f"{results['latency']['direct_median_ms']} ms median over {results['latency']['turns']} turns: "
              f"+{results['latency']['added_ms']} ms (x{results['latency']['ratio']}; target: at most +1 ms)")
        results["cpu_short"] = asyncio.run(cpu_per_turn(gw, gw_url, turns, restart_every=5))
        results["cpu"] = asyncio.run(cpu_per_turn(gw, gw_url, turns))
        print(f"gateway CPU per warm turn (ten events): {results['cpu_short']['cpu_ms_per_turn']} ms with a short "
              f"history (a new conversation every 5 turns), {results['cpu']['cpu_ms_per_turn']} ms over one "
              f"conversation of {results['cpu']['turns'] + 10} turns")
        results["bytes"] = asyncio.run(bytes_per_turn(gw_url, up))
        for n, row in results["bytes"]["per_turn"].items():
            print(f"turn {n:>2}: {row['upstream_bytes']:>6} bytes upstream (full history would be "
                  f"{row['full_history_bytes']} bytes)")
        print(f"  over {results['bytes']['connections']} upstream connection(s)")
        results["python_part"] = asyncio.run(python_part(idle))
        r = results["python_part"]
        print(f"crossroute's own part of an idle session: {r['python_kb_each']} KB each "
              f"({r['python_mb_total']} MB for {r['sessions']}, tracemalloc)")
        results["idle"] = asyncio.run(idle_sockets(gw, gw_url, idle))
        r = results["idle"]
        print(f"{r['sockets']} idle client sockets: gateway RSS {r['rss_before_mb']} -> {r['rss_after_mb']} MB "
              f"(+{r['extra_mb']} MB, {r['per_socket_kb']} KB each; target: under 40 MB for 1,000)")
        results["granian_alone"] = granian_alone(idle)
        g = results["granian_alone"]
        print(f"  a bare granian RSGI app with the same sockets: +{g['extra_mb']} MB ({g['per_socket_kb']} KB each); "
              f"crossroute's share: {round(r['per_socket_kb'] - g['per_socket_kb'], 1)} KB per socket")
    finally:
        gw.stop()
        up.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
