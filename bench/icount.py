"""Instructions per request of the real servers, counted by valgrind's callgrind.

Wall-clock figures on a shared machine swing by ±20% between runs; instruction counts do not.
This starts the fake upstream, then each server in turn under ``valgrind --tool=callgrind
--instr-atstart=no`` (the real ``crossroute serve`` process, granian and all): after a warm-up,
counting is switched on with ``callgrind_control -i on``, N requests are sent one after another on
a keep-alive connection, and the counters are dumped. Prints instructions per request (all
threads and processes of the server) and the ratio to the reference proxy.

    apt-get install -y valgrind
    python bench/icount.py [--requests 400] [--stream | --messages] [--only reference,crossroute,crossroute-affinity]

``--messages``: the cross-format row of run.py (an Anthropic client streaming ``/v1/messages`` over
the OpenAI-compatible upstream); the reference proxy has no such endpoint, so it is counted on its
plain chat stream, as run.py compares them.

Slow (each server runs ~50x slower under valgrind; about a minute per server). No thresholds.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import orjson

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from load import RawClient, Target  # noqa: E402
from procs import Child, finish, free_port, install_signal_handlers, tree_pids, wait_ready  # noqa: E402
from run import (  # noqa: E402
    BENCH_KEY,
    CHAT_BODY,
    MESSAGES_BODY,
    STREAM_BODY,
    UPSTREAM_KEY,
    crossroute_argv,
    crossroute_env,
    write_config,
)

_TOTALS = re.compile(rb"^(?:totals|summary):\s*(\d+)", re.M)


def send(port: int, key: str, body: dict, n: int, path: str = "/v1/chat/completions") -> None:
    t = Target("t", port, path,
               (("Content-Type", "application/json"), ("Authorization", f"Bearer {key}")), orjson.dumps(body))
    client = RawClient(t, timeout=120)
    try:
        for _ in range(n):
            status, answer = client.request()
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {answer[:300]!r}")
    finally:
        client.close()


def count(label: str, argv: list[str], port: int, key: str, body: dict, n: int, tmp: str,
          env: dict[str, str] | None, path: str = "/v1/chat/completions") -> int:
    out = os.path.join(tmp, f"{label}.%p.out")
    child = Child(label, ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes",
                          f"--callgrind-out-file={out}",
                          *argv], cwd=REPO, env=env, log_path=os.path.join(tmp, f"{label}.log"))
    try:
        wait_ready(child, port, timeout=240)
        send(port, key, body, 100, path)  # warm-up: connection pool, first-use imports, caches
        # every process of the server (the reference proxy serves from a worker process)
        pids = [str(p) for p in (child.pid, *tree_pids(child.pid))]

        def control(*flags: str) -> None:
            for pid in pids:
                subprocess.run(["callgrind_control", *flags, pid], capture_output=True)

        control("-i", "on")
        send(port, key, body, n, path)
        control("-d")
        control("-i", "off")
    finally:
        child.stop(timeout=30)
    total = 0
    for path in glob.glob(os.path.join(tmp, f"{label}.*.out*")):
        with open(path, "rb") as f:
            m = _TOTALS.search(f.read())
        if m and path.rsplit(".", 1)[-1].isdigit():  # the dump taken by -d (not the one at exit)
            total += int(m.group(1))
    return total // n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--stream", action="store_true", help="50-event streams instead of JSON answers")
    ap.add_argument("--messages", action="store_true",
                    help="crossroute: Anthropic /v1/messages streams over the OpenAI upstream (cross-format)")
    ap.add_argument("--only", default="reference,crossroute,crossroute-affinity")
    ap.add_argument("--keep", action="store_true", help="keep the callgrind files (for callgrind_annotate)")
    ap.add_argument("--baseline", metavar="TREE",
                    help="also count crossroute from another source tree (row crossroute-baseline), e.g. "
                         "`git archive <commit> crossroute | tar -x -C TREE`")
    args = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind is not installed (apt-get install -y valgrind)")
        return 1
    install_signal_handlers()
    tmp = tempfile.mkdtemp(prefix="crossroute-icount-")
    body = STREAM_BODY if args.stream or args.messages else CHAT_BODY
    try:
        up_port = free_port()
        upstream = Child("upstream", [sys.executable, os.path.join(HERE, "fake_upstream.py"), "--port", str(up_port),
                                      "--key", UPSTREAM_KEY], log_path=os.path.join(tmp, "upstream.log"))
        wait_ready(upstream, up_port)
        env = crossroute_env()
        results: dict[str, int] = {}
        labels = [x for x in args.only.split(",") if x] + (["crossroute-baseline"] if args.baseline else [])
        for label in labels:
            port = free_port()
            if label == "reference":
                argv = [sys.executable, os.path.join(HERE, "reference_proxy.py"), "--port", str(port),
                        "--upstream", f"http://127.0.0.1:{up_port}"]
                key = UPSTREAM_KEY
            else:
                config = write_config(os.path.join(tmp, f"{label}.yaml"), port, up_port,
                                      affinity=label == "crossroute-affinity")
                argv, key = crossroute_argv(config, 1), BENCH_KEY
            run_env = crossroute_env(args.baseline) if label == "crossroute-baseline" else env
            if args.messages and label != "reference":
                results[label] = count(label, argv, port, key, MESSAGES_BODY, args.requests, tmp, run_env,
                                       "/v1/messages")
            else:
                results[label] = count(label, argv, port, key, body, args.requests, tmp, run_env)
            what = "request" if body is CHAT_BODY else "stream"
            print(f"{label:22s} {results[label]:>10,} instructions per {what}", flush=True)
        ref = results.get("reference")
        if ref:
            for label, v in results.items():
                if label != "reference":
                    print(f"{label:22s} reference/{label} = {ref / v:.2f}")
        if "crossroute" in results and "crossroute-baseline" in results:
            print(f"{'crossroute':22s} baseline/this = {results['crossroute-baseline'] / results['crossroute']:.3f}")
    finally:
        finish(tmp, args.keep, "callgrind files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
