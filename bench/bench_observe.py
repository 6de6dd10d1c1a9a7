"""What the observers cost: the core figures of bench/run.py with the usage store, metrics and
routing traces on, against the same gateway with them off, interleaved in the same run.

    python bench/bench_observe.py [--quick] [--rounds N] [--seconds S] [--json out.json]
    python bench/bench_observe.py --icount [--stream] [--requests 400]   # instructions (valgrind)

Starts bench/fake_upstream.py and two ``crossroute serve`` processes on the bench config:
``off`` as it is (error logs only), ``on`` with ``usage-statistics-enabled: true`` (SQLite under a
temporary data dir), routing traces kept (``MANAGEMENT_PASSWORD`` set, so every call is traced and
its trace kept in the ring) and metrics counting (``/metrics`` scraped once a second from a
thread). Measures, alternating the order every round: latency at concurrency 1 (non-streaming),
requests/s at concurrency 64, streams/s at concurrency 16. Prints on/off ratios; issue 11 allows
a drop of at most 10% (ratio >= 0.90 for throughput, <= 1.10 for latency).

Wall-clock figures on a shared machine swing by ±20% between runs; ``--icount`` counts the
instructions per request of both servers (all threads, so the usage store's writer thread too) under
valgrind's callgrind, as bench/icount.py does: the steady measure of what the observers add.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

import orjson

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from load import Target, latency_interleaved, percentile, run_load  # noqa: E402
from procs import (  # noqa: E402
    Child,
    cpu_count,
    finish,
    free_port,
    install_signal_handlers,
    tree_cpu_seconds,
    wait_ready,
)
from run import (  # noqa: E402
    BENCH_KEY,
    CHAT_BODY,
    JSON_CT,
    STREAM_BODY,
    UPSTREAM_KEY,
    crossroute_argv,
    crossroute_env,
    median,
    precheck,
    rotate,
    write_config,
)

GOAL = 0.90


def _scraper(port: int, stop: threading.Event) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {BENCH_KEY}"})
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                r.read()
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 rounds x 2 s")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--json", default=None, help="write the raw figures here")
    p.add_argument("--icount", action="store_true", help="instructions per request under callgrind instead")
    p.add_argument("--stream", action="store_true", help="with --icount: 50-event streams")
    p.add_argument("--requests", type=int, default=400, help="with --icount: requests counted")
    p.add_argument("--on", default="usage,metrics,traces",
                   help="what the 'on' gateway has (comma list of usage, metrics, traces)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (callgrind files, logs)")
    args = p.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 3)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    install_signal_handlers()
    tmp = tempfile.mkdtemp(prefix="crossroute-bench-observe-")
    try:
        return icount(args, tmp) if args.icount else run(args, rounds, seconds, tmp)
    finally:
        finish(tmp, args.keep, "callgrind files and logs")


def _configs(tmp: str, up_port: int, on: set[str]) -> dict[str, tuple[int, list[str], dict[str, str]]]:
    """off/on: (port, argv, env) of the two gateways."""
    out = {}
    for name in ("off", "on"):
        port = free_port()
        config = write_config(os.path.join(tmp, f"config-{name}.yaml"), port, up_port)
        env = crossroute_env()
        with open(config, "a") as f:
            f.write(f"logs-dir: {tmp}/logs-{name}\ndata-dir: {tmp}/data-{name}\n")
            if name == "on" and "usage" in on:
                f.write("usage-statistics-enabled: true\n")
        if name == "on" and "traces" in on:
            env["MANAGEMENT_PASSWORD"] = "bench-management-password"
        out[name] = (port, crossroute_argv(config, 1), env)
    return out


def _scrape(port: int) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {BENCH_KEY}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()


def icount(args: argparse.Namespace, tmp: str) -> int:
    import glob
    import shutil
    import subprocess

    from icount import _TOTALS, send
    from procs import tree_pids

    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind is not installed (apt-get install -y valgrind)")
        return 1
    up_port = free_port()
    upstream = Child("upstream", [sys.executable, os.path.join(HERE, "fake_upstream.py"), "--port", str(up_port),
                                  "--key", UPSTREAM_KEY], log_path=os.path.join(tmp, "upstream.log"))
    wait_ready(upstream, up_port)
    body = STREAM_BODY if args.stream else CHAT_BODY
    results: dict[str, int] = {}
    try:
        for name, (port, argv, env) in _configs(tmp, up_port, set(args.on.split(","))).items():
            out = os.path.join(tmp, f"{name}.%p.out")
            child = Child(name, ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes",
                                 f"--callgrind-out-file={out}", *argv], cwd=os.path.dirname(HERE), env=env,
                          log_path=os.path.join(tmp, f"{name}.log"))
            try:
                wait_ready(child, port, timeout=240)
                if name == "on" and "metrics" in args.on:
                    _scrape(port)  # metrics count from the first scrape on
                send(port, BENCH_KEY, body, 100)
                pids = [str(p) for p in (child.pid, *tree_pids(child.pid))]
                for pid in pids:
                    subprocess.run(["callgrind_control", "-i", "on", pid], capture_output=True)
                send(port, BENCH_KEY, body, args.requests)
                time.sleep(2.0)  # let the usage writer commit what the counted requests queued
                for pid in pids:
                    subprocess.run(["callgrind_control", "-d", pid], capture_output=True)
                    subprocess.run(["callgrind_control", "-i", "off", pid], capture_output=True)
            finally:
                child.stop(timeout=30)
            total = 0
            for path in glob.glob(os.path.join(tmp, f"{name}.*.out*")):
                with open(path, "rb") as f:
                    m = _TOTALS.search(f.read())
                if m and path.rsplit(".", 1)[-1].isdigit():
                    total += int(m.group(1))
            results[name] = total // args.requests
            print(f"{name:4s} {results[name]:>12,} instructions per {'stream' if args.stream else 'request'}",
                  flush=True)
    finally:
        upstream.stop()
    ratio = results["on"] / results["off"] if results.get("off") else float("nan")
    print(f"on/off = {ratio:.3f} (issue 11: at most 1.10, i.e. at most 10% more work per request)")
    return 0


def run(args: argparse.Namespace, rounds: int, seconds: float, tmp: str) -> int:
    ncpu = cpu_count()
    pinned = ncpu >= 2
    driver = {0} if pinned else None
    proxy = {1} if pinned else None
    if driver:
        os.sched_setaffinity(0, driver)
    up_port = free_port()
    upstream = Child("upstream", [sys.executable, os.path.join(HERE, "fake_upstream.py"), "--port", str(up_port),
                                  "--events", str(args.events), "--flush", "batch", "--key", UPSTREAM_KEY],
                     cpus=driver, log_path=os.path.join(tmp, "upstream.log"))
    wait_ready(upstream, up_port)
    ports: dict[str, int] = {}
    children: list[Child] = [upstream]
    for name, (port, argv, env) in _configs(tmp, up_port, set(args.on.split(","))).items():
        ports[name] = port
        child = Child(f"crossroute-{name}", argv, cpus=proxy, cwd=os.path.dirname(HERE), env=env,
                      log_path=os.path.join(tmp, f"crossroute-{name}.log"))
        wait_ready(child, port)
        children.append(child)

    def target(name: str, port: int, body: dict[str, Any]) -> Target:
        return Target(name, port, "/v1/chat/completions", (JSON_CT, ("Authorization", f"Bearer {BENCH_KEY}")),
                      orjson.dumps(body))

    plain = {n: target(f"{n}-chat", ports[n], CHAT_BODY) for n in ports}
    streams = {n: target(f"{n}-stream", ports[n], STREAM_BODY) for n in ports}
    for n in ports:
        for kind, t in (("chat", plain[n]), ("stream", streams[n])):
            err = precheck(t, "openai" if kind == "stream" else None, args.events)
            if err:
                print(f"CHECK {n} {kind}: {err}")
                return 1
    stop = threading.Event()
    if "metrics" in args.on:
        threading.Thread(target=_scraper, args=(ports["on"], stop), daemon=True).start()
    figures: dict[str, dict[str, list[float]]] = {
        n: {"lat_med": [], "lat_p99": [], "rps": [], "sps": [], "cpu_plain": [], "cpu_stream": []} for n in ports}
    pids = {n: c.pid for n, c in zip(ports, children[1:], strict=True)}

    def measure(n: str, t: Target, conns: int, cpu_key: str) -> float:
        """One timed load run: requests/s, and the gateway's CPU µs per request (all its threads)."""
        before = tree_cpu_seconds(pids[n])
        result = run_load(t, conns, seconds, tmp, driver)
        if result.requests:
            figures[n][cpu_key].append((tree_cpu_seconds(pids[n]) - before) / result.requests * 1e6)
        return result.rps
    try:
        for n in ports:  # warm-up
            run_load(plain[n], 16, 1, tmp, driver)
            run_load(streams[n], 4, 1, tmp, driver)
        print(f"bench_observe: {ncpu} CPUs, {'pinned' if pinned else 'unpinned'}, rounds={rounds} x {seconds:g} s",
              flush=True)
        for r in range(rounds):
            order = rotate(list(ports), r)
            lat = latency_interleaved([plain[n] for n in order], seconds)
            for n in order:
                figures[n]["lat_med"].append(median(lat[f"{n}-chat"]))
                figures[n]["lat_p99"].append(percentile(lat[f"{n}-chat"], 99))
            for n in order:
                figures[n]["rps"].append(measure(n, plain[n], 64, "cpu_plain"))
            for n in order:
                figures[n]["sps"].append(measure(n, streams[n], 16, "cpu_stream"))
            print(f"round {r + 1}/{rounds}: " + "  ".join(
                f"{n}: {figures[n]['lat_med'][-1]:.3f} ms {figures[n]['rps'][-1]:.0f} rps "
                f"{figures[n]['sps'][-1]:.0f} sps" for n in order), flush=True)
    finally:
        stop.set()
        for c in reversed(children):
            c.stop()
    on, off = figures["on"], figures["off"]
    rows = [
        ("latency median (ms), c=1", median(off["lat_med"]), median(on["lat_med"]), False),
        ("latency p99 (ms), c=1", median(off["lat_p99"]), median(on["lat_p99"]), False),
        ("requests/s, c=64", median(off["rps"]), median(on["rps"]), True),
        ("streams/s, c=16", median(off["sps"]), median(on["sps"]), True),
        ("CPU us per request, c=64", median(off["cpu_plain"]), median(on["cpu_plain"]), False),
        ("CPU us per stream, c=16", median(off["cpu_stream"]), median(on["cpu_stream"]), False),
    ]
    print(f"\n{'figure':<28} {'off':>10} {'on':>10} {'on/off':>8}  goal")
    ok_all = True
    for label, a, b, higher_better in rows:
        ratio = b / a if a else float("nan")
        ok = ratio >= GOAL if higher_better else ratio <= 1 / GOAL
        if "p99" not in label:
            ok_all &= ok
        goal = f">= {GOAL:.2f}" if higher_better else f"<= {1 / GOAL:.2f}"
        print(f"{label:<28} {a:>10.3f} {b:>10.3f} {ratio:>8.3f}  {goal} {'ok' if ok else 'MISSED'}"
              f"{' (p99: informational)' if 'p99' in label else ''}")
    print(f"issue 11 (at most 10% drop with {args.on} on): {'met' if ok_all else 'NOT met'}"
          " (on a shared machine, the CPU per request rows are the steadier measure)")
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps({"rounds": rounds, "seconds": seconds, "figures": figures},
                                 option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
