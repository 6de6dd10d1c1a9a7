"""Where crossroute spends its time per request: py-spy while wrk loads one scenario.

    python bench/profile.py [--scenario chat|stream|messages] [--seconds 8] [--top 25]

Starts the fake upstream (CPU 0) and ``crossroute serve`` (CPU 1, one process), loads it with wrk
on CPU 0 and samples it with ``py-spy record --format raw`` (``pip install py-spy``). Prints the
process's CPU µs per request (all threads, from /proc) and, per Python function, the self and
inclusive sampled time in µs per request. The gap between the two totals is time outside Python
(granian's Rust threads, the kernel). Keeps the raw stacks in --out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter

import orjson

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from load import Target, run_wrk  # noqa: E402
from procs import Child, free_port, install_signal_handlers, stop_all, tree_cpu_seconds, wait_ready  # noqa: E402
from run import CHAT_BODY, MESSAGES_BODY, REPO, STREAM_BODY, crossroute_argv, crossroute_env, write_config  # noqa: E402


def frame_name(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (file.py)': lines merged so a function is one row."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    short = path
    for marker in ("/crossroute/", "/site-packages/", "/lib/python3"):
        if marker in path:
            short = path.split(marker, 1)[1]
            if marker == "/crossroute/":
                short = "crossroute/" + short
            break
    return f"{name} ({short})" if where else name


def aggregate(raw_path: str) -> tuple[Counter[str], Counter[str], int]:
    """(self samples, inclusive samples, total samples) per function from py-spy's raw output."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    with open(raw_path) as f:
        for line in f:
            stack, _, count_s = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_s)
            frames = [frame_name(fr) for fr in stack.split(";") if not fr.startswith("process ")]
            frames = [fr for fr in frames if not fr.startswith("thread ")]
            if not frames:
                continue
            total += count
            own[frames[-1]] += count
            for fr in set(frames):
                incl[fr] += count
    return own, incl, total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="profile crossroute under wrk with py-spy")
    p.add_argument("--scenario", choices=("chat", "stream", "messages"), default="chat")
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "crossroute-profile"))
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--target", choices=("crossroute", "reference"), default="crossroute", help="what to profile")
    p.add_argument("--tree", help="profile crossroute from another source tree (`git archive <commit> crossroute | "
                                  "tar -x -C TREE`)")
    args = p.parse_args(argv)
    pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(pyspy):
        print("py-spy is not installed: pip install py-spy")
        return 1
    install_signal_handlers()
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="crossroute-profile-")
    try:
        return profile(args, pyspy, tmp)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def profile(args: argparse.Namespace, pyspy: str, tmp: str) -> int:
    two = (os.cpu_count() or 1) >= 2
    driver, proxy = ({0}, {1}) if two else (None, None)
    if driver:
        os.sched_setaffinity(0, driver)
    up_port, cr_port = free_port(), free_port()
    up = Child(
        "upstream",
        [sys.executable, os.path.join(HERE, "fake_upstream.py"), "--port", str(up_port), "--events", str(args.events)],
        cpus=driver,
    )
    wait_ready(up, up_port)
    config = write_config(os.path.join(tmp, "config.yaml"), cr_port, up_port)
    env = crossroute_env(args.tree)
    if args.target == "reference":
        argv = [
            sys.executable,
            os.path.join(HERE, "reference_proxy.py"),
            "--port",
            str(cr_port),
            "--upstream",
            f"http://127.0.0.1:{up_port}",
        ]
        key = "sk-fake"
    else:
        argv, key = crossroute_argv(config, 1), "bench-key"
    cr = Child(args.target, argv, cpus=proxy, cwd=REPO, env=env)
    wait_ready(cr, cr_port)
    if args.scenario == "messages":
        headers = (
            ("Content-Type", "application/json"),
            ("x-api-key", key),
            ("anthropic-version", "2023-06-01"),
        )
        target = Target("messages", cr_port, "/v1/messages", headers, orjson.dumps(MESSAGES_BODY))
        conns = 16
    else:
        headers = (("Content-Type", "application/json"), ("Authorization", f"Bearer {key}"))
        body = CHAT_BODY if args.scenario == "chat" else STREAM_BODY
        target = Target(args.scenario, cr_port, "/v1/chat/completions", headers, orjson.dumps(body))
        conns = 64 if args.scenario == "chat" else 16
    run_wrk(target, conns, 2, tmp, driver)  # warm-up
    raw = os.path.join(args.out, f"{args.target}-{args.scenario}.raw")
    spy = subprocess.Popen(
        [
            pyspy,
            "record",
            "--pid",
            str(cr.pid),
            "--duration",
            str(args.seconds + 2),
            "--rate",
            str(args.rate),
            "--format",
            "raw",
            "-o",
            raw,
            "--nonblocking",
            "--subprocesses",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)
    cpu0 = tree_cpu_seconds(cr.pid)
    result = run_wrk(target, conns, args.seconds, tmp, driver)
    cpu = tree_cpu_seconds(cr.pid) - cpu0
    _, err = spy.communicate(timeout=args.seconds + 30)
    if not os.path.exists(raw):
        print(f"py-spy failed: {err.decode(errors='replace')}")
        return 1
    own, incl, total = aggregate(raw)
    # py-spy ran about 1 s longer than the load on each side; scale samples to the load window
    window = args.seconds / (args.seconds + 2)
    n = max(result.requests, 1)
    per = 1e6 / args.rate / n * window
    print(
        f"{args.target}, scenario {args.scenario}: {result.rps:,.0f} req/s, {result.requests} requests, "
        f"{result.errors} errors; "
        f"process CPU {cpu / n * 1e6:,.0f} us/request (all threads); "
        f"Python sampled {total * per:,.0f} us/request"
    )
    print(f"\n{'self us/req':>11}  {'incl us/req':>11}  function")
    for name, count in own.most_common(args.top):
        print(f"{count * per:11.1f}  {incl[name] * per:11.1f}  {name}")
    print(f"\ninclusive, {args.target}'s own functions only (top {args.top}):")
    mine = [(k, v) for k, v in incl.items() if "crossroute/" in k or "reference_proxy" in k]
    for name, count in sorted(mine, key=lambda kv: -kv[1])[: args.top]:
        print(f"{count * per:11.1f}  {name}")
    print(f"\nraw stacks (collapsed format, for inferno or speedscope): {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
