"""crossroute end-to-end benchmark: fake upstream, reference proxy and crossroute, interleaved.

    python bench/run.py [--quick] [--rounds N] [--seconds S] [--workers N] [--flush batch|each]

Starts bench/fake_upstream.py, bench/reference_proxy.py and ``crossroute serve --config <tmp>``,
each as its own process, then measures them in the same run, alternating targets every round:
added latency at concurrency 1 (non-streaming), throughput at concurrency 64 (non-streaming),
streams/s at concurrency 16 (50-event streams), cross-format streams/s (Anthropic Messages client
over the OpenAI-compatible upstream), idle memory of the crossroute process tree and start-up time.
Prints absolute figures, ratios and the goals of issue 2 (and 3). See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from load import (  # noqa: E402
    Target,
    check_stream,
    fetch,
    latency_interleaved,
    percentile,
    run_load,
    wrk_path,
)
from procs import (  # noqa: E402
    Child,
    cpu_count,
    finish,
    free_port,
    install_signal_handlers,
    loadavg,
    tree_cpu_seconds,
    tree_memory_mb,
    wait_ready,
)

BENCH_KEY = "bench-key"
UPSTREAM_KEY = "sk-fake"
CHAT_BODY = {"model": "fast", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 64}
STREAM_BODY = {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}
MESSAGES_BODY = {
    "model": "fast",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "Say hello."}],
}
# Anthropic client over the Anthropic-shaped upstream: same-format passthrough (issue 3)
CLAUDE_PASS_BODY = {**MESSAGES_BODY, "model": "fast-claude"}
JSON_CT = ("Content-Type", "application/json")

CONFIG_TEMPLATE = """\
host: 127.0.0.1
port: {port}
api-keys: [{key}]
openai-compatibility:
  - name: fake
    base-url: http://127.0.0.1:{upstream_port}/v1
    api-key-entries: [{{api-key: {upstream_key}}}]
    models: [{{name: fake-model, alias: fast}}]
claude-api-key:
  - api-key: {upstream_key}
    base-url: http://127.0.0.1:{upstream_port}
    models: [{{name: fake-model, alias: fast-claude}}]
"""


# ---------------------------------------------------------------------------------------------
# the three servers


@dataclass
class Server:
    """A proxy under test: how to start it, where it listens, what key its clients send."""

    label: str
    port: int
    argv: list[str]
    client_key: str
    cpus: set[int] | None
    env: dict[str, str] | None = None
    child: Child | None = None
    startups: list[float] = field(default_factory=list)


def write_config(path: str, port: int, upstream_port: int, affinity: bool = False) -> str:
    """The bench config for a crossroute on ``port`` over the fake upstream; returns ``path``."""
    with open(path, "w") as f:
        f.write(CONFIG_TEMPLATE.format(
            port=port, key=BENCH_KEY, upstream_port=upstream_port, upstream_key=UPSTREAM_KEY))
        if affinity:
            f.write("routing:\n  session-affinity: true\n")
    return path


def crossroute_env(tree: str | None = None) -> dict[str, str]:
    """The environment for a crossroute process: this checkout's package (or ``tree``'s, a source
    tree made with ``git archive <commit> crossroute | tar -x -C TREE``) first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(tree or REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def crossroute_argv(config: str, workers: int) -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "crossroute")
    if os.path.exists(exe):
        argv = [exe]
    else:
        argv = [sys.executable, "-c", "import sys; from crossroute.cli import main; sys.exit(main())"]
    argv += ["serve", "--config", config]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return argv


def crossroute_available() -> bool:
    pkg = os.path.join(REPO, "crossroute")
    return os.path.exists(os.path.join(pkg, "cli.py")) and os.path.exists(os.path.join(pkg, "app.py"))


def start(server: Server, logdir: str, times: int) -> None:
    """Starts ``server`` ``times`` times (recording start-up each time); the last one stays up."""
    for i in range(times):
        child = Child(
            server.label,
            server.argv,
            cpus=server.cpus,
            cwd=REPO,
            env=server.env,
            log_path=os.path.join(logdir, f"{server.label.split()[0]}.log"),
        )
        server.startups.append(wait_ready(child, server.port))
        if i < times - 1:
            child.stop()
            time.sleep(0.2)
        else:
            server.child = child


# ---------------------------------------------------------------------------------------------
# measurement


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Results:
    latency_median: dict[str, list[float]] = field(default_factory=dict)  # per round
    latency_p99: dict[str, list[float]] = field(default_factory=dict)
    latency_n: dict[str, int] = field(default_factory=dict)
    added_median: dict[str, list[float]] = field(default_factory=dict)
    added_p99: dict[str, list[float]] = field(default_factory=dict)
    rps: dict[str, list[float]] = field(default_factory=dict)
    sps: dict[str, list[float]] = field(default_factory=dict)
    cpu_plain: dict[str, list[float]] = field(default_factory=dict)  # CPU µs per request
    cpu_stream: dict[str, list[float]] = field(default_factory=dict)  # CPU µs per stream
    errors: dict[str, int] = field(default_factory=dict)
    tool: str = "wrk"

    def add(self, table: dict[str, list[float]], key: str, value: float) -> None:
        table.setdefault(key, []).append(value)


def rotate(items: Sequence[Any], r: int) -> list[Any]:
    r %= len(items)
    return list(items[r:]) + list(items[:r])


def precheck(target: Target, stream_kind: str | None, events: int) -> str | None:
    """None when the target answers 200 with a well-formed body, else the problem."""
    try:
        status, body = fetch(target)
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if status != 200:
        return f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}"
    if stream_kind is None:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            return f"not JSON: {body[:200]!r}"
        return None
    return check_stream(body, stream_kind, events)


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or value != value:  # NaN
        return "-"
    return f"{value:,.{digits}f}"


def status_word(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="crossroute benchmark (see bench/README.md)")
    p.add_argument("--quick", action="store_true", help="2 rounds x 2 s per measurement")
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick 2)")
    p.add_argument("--seconds", type=float, default=None, help="seconds per measurement (5; --quick 2)")
    p.add_argument("--workers", type=int, default=1, help="worker processes for both proxies")
    p.add_argument("--events", type=int, default=50, help="chunk events per stream (default 50)")
    p.add_argument(
        "--flush",
        choices=("batch", "each"),
        default="batch",
        help="upstream writes a stream at once (batch) or one event per loop turn (each)",
    )
    p.add_argument("--affinity", action="store_true",
                   help="also measure a second crossroute with routing.session-affinity on, in the same rounds "
                        "(issue 4: the core figures must hold with affinity)"),
    p.add_argument("--baseline", metavar="TREE",
                   help="also measure crossroute from another source tree (e.g. `git archive <commit> crossroute | "
                        "tar -x -C TREE`), in the same rounds: the 'this / baseline' rows say what a change cost")
    p.add_argument("--stand-in", action="store_true", help="use the reference proxy in place of crossroute")
    p.add_argument("--json", metavar="PATH", help="also write the raw figures as JSON")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with configs and logs")
    args = p.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 3)
    seconds = args.seconds or (2.0 if args.quick else 5.0)

    install_signal_handlers()
    tmp = tempfile.mkdtemp(prefix="crossroute-bench-")
    try:
        return run(args, rounds, seconds, tmp)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        finish(tmp, args.keep_logs, "logs and config")


def run(args: argparse.Namespace, rounds: int, seconds: float, tmp: str) -> int:
    ncpu = cpu_count()
    pinned = ncpu >= 2 and args.workers == 1
    driver_cpus = {0} if pinned else None  # upstream, wrk, latency client
    proxy_cpus = {1} if pinned else None  # the proxy under load
    if driver_cpus:
        os.sched_setaffinity(0, driver_cpus)
    stand_in = args.stand_in or not crossroute_available()
    tool = "wrk" if wrk_path() else "aiohttp (wrk not installed: throughput figures are client-bound)"

    up_port = free_port()
    upstream = Child(
        "upstream",
        [
            sys.executable,
            os.path.join(HERE, "fake_upstream.py"),
            "--port",
            str(up_port),
            "--events",
            str(args.events),
            "--flush",
            args.flush,
            "--key",
            UPSTREAM_KEY,
        ],
        cpus=driver_cpus,
        log_path=os.path.join(tmp, "upstream.log"),
    )
    wait_ready(upstream, up_port)

    ref_port = free_port()
    ref_argv = [
        sys.executable,
        os.path.join(HERE, "reference_proxy.py"),
        "--port",
        str(ref_port),
        "--upstream",
        f"http://127.0.0.1:{up_port}",
        "--workers",
        str(args.workers),
    ]
    reference = Server("reference", ref_port, ref_argv, UPSTREAM_KEY, proxy_cpus)

    cr_port = free_port()
    affinity: Server | None = None
    baseline: Server | None = None
    if stand_in:
        cr_argv = [*ref_argv[:3], str(cr_port), *ref_argv[4:]]
        crossroute = Server("crossroute (STAND-IN)", cr_port, cr_argv, UPSTREAM_KEY, proxy_cpus)
    else:
        config = write_config(os.path.join(tmp, "config.yaml"), cr_port, up_port)
        env = crossroute_env()
        crossroute = Server("crossroute", cr_port, crossroute_argv(config, args.workers), BENCH_KEY, proxy_cpus, env)
        if args.affinity:
            aff_port = free_port()
            aff_config = write_config(os.path.join(tmp, "config-affinity.yaml"), aff_port, up_port, affinity=True)
            affinity = Server("crossroute-affinity", aff_port, crossroute_argv(aff_config, args.workers), BENCH_KEY,
                              proxy_cpus, env)
        if args.baseline:
            tree = os.path.abspath(args.baseline)
            base_port = free_port()
            base_config = write_config(os.path.join(tmp, "config-baseline.yaml"), base_port, up_port)
            base_env = {**os.environ, "PYTHONPATH": tree + os.pathsep + os.environ.get("PYTHONPATH", "")}
            baseline = Server("crossroute-baseline", base_port, crossroute_argv(base_config, args.workers), BENCH_KEY,
                              proxy_cpus, base_env)

    starts = 1 if args.quick else 3
    print(
        f"crossroute bench: {ncpu} CPUs, {'pinned: proxies on CPU 1, upstream+load on CPU 0' if pinned else 'unpinned'}"
        f", workers={args.workers}, rounds={rounds} x {seconds:g} s, load={tool}, "
        f"stream={args.events} events flush={args.flush}"
    )
    if stand_in:
        print("NOTE: crossroute/cli.py or app.py missing (or --stand-in): the reference proxy stands in for it")
    start(reference, tmp, starts)
    try:
        start(crossroute, tmp, starts)
    except RuntimeError as exc:
        print(f"crossroute failed to start:\n{exc}")
        return 1
    if affinity is not None:
        try:
            start(affinity, tmp, 1)
        except RuntimeError as exc:
            print(f"crossroute (session affinity on) failed to start:\n{exc}")
            return 1
    if baseline is not None:
        try:
            start(baseline, tmp, 1)
        except RuntimeError as exc:
            print(f"crossroute from {args.baseline} failed to start:\n{exc}")
            return 1

    def target(name: str, port: int, path: str, key: str, body: dict[str, Any], anthropic: bool = False) -> Target:
        headers: list[tuple[str, str]] = [JSON_CT]
        if anthropic:
            headers += [("x-api-key", key), ("anthropic-version", "2023-06-01")]
        else:
            headers.append(("Authorization", f"Bearer {key}"))
        return Target(name, port, path, tuple(headers), orjson.dumps(body))

    chat = "/v1/chat/completions"
    names: tuple[str, ...] = ("direct", "reference", "crossroute")
    ports = {"direct": up_port, "reference": ref_port, "crossroute": cr_port}
    keys = {"direct": UPSTREAM_KEY, "reference": UPSTREAM_KEY, "crossroute": crossroute.client_key}
    if affinity is not None:
        names += (affinity.label,)
        ports[affinity.label] = affinity.port
        keys[affinity.label] = affinity.client_key
    if baseline is not None:
        names += (baseline.label,)
        ports[baseline.label] = baseline.port
        keys[baseline.label] = baseline.client_key
    plain = {n: target(f"{n}-chat", ports[n], chat, keys[n], CHAT_BODY) for n in names}
    streams = {n: target(f"{n}-stream", ports[n], chat, keys[n], STREAM_BODY) for n in names}
    messages: Target | None = target(
        "crossroute-messages", cr_port, "/v1/messages", keys["crossroute"], MESSAGES_BODY, anthropic=True
    )

    problems: dict[str, str] = {}
    for n in names:
        for kind, t in (("chat", plain[n]), ("stream", streams[n])):
            err = precheck(t, "openai" if kind == "stream" else None, args.events)
            if err:
                problems[f"{n} {kind}"] = err
    messages_note = ""
    assert messages is not None
    status, answer = fetch(messages)
    if status == 404:
        messages_note = "n/a (endpoint not available)"
        print(f"CHECK crossroute messages: 404 {answer[:200].decode('utf-8', 'replace')}")
        messages = None
    elif status == 401:  # some gateways only read Authorization; say so and use it
        alt = target("crossroute-messages", cr_port, "/v1/messages", keys["crossroute"], MESSAGES_BODY)
        if fetch(alt)[0] == 200:
            messages = Target(alt.name, alt.port, alt.path, (*messages.headers, alt.headers[1]), alt.body)
            problems["crossroute messages (note)"] = "x-api-key alone was refused (401); sent Authorization too"
    if messages is not None:
        err = precheck(messages, "anthropic", args.events)
        if err:
            problems["crossroute messages"] = err
            messages_note = f"error ({err[:60]})"
            messages = None
    base_messages: Target | None = None
    if baseline is not None and messages is not None:
        base_messages = Target("crossroute-baseline-messages", baseline.port, messages.path, messages.headers,
                               messages.body)
    claude_pass: Target | None = None
    if not stand_in:
        claude_pass = target(
            "crossroute-claude", cr_port, "/v1/messages", keys["crossroute"], CLAUDE_PASS_BODY, anthropic=True
        )
        err = precheck(claude_pass, "anthropic", args.events)
        if err:
            problems["crossroute anthropic passthrough"] = err
            claude_pass = None
    for k, v in problems.items():
        print(f"CHECK {k}: {v}")
    broken = {n for n in names if f"{n} chat" in problems or f"{n} stream" in problems}
    if "direct" in broken or "reference" in broken:
        print("the upstream or the reference proxy is broken: nothing to compare against")
        return 1

    # warm-up: connection pools, caches, imports on first use
    res = Results(tool=tool)
    live = [n for n in names if n not in broken]
    for n in live:
        run_load(plain[n], 16, 1, tmp, driver_cpus)
        run_load(streams[n], 4, 1, tmp, driver_cpus)
    if messages is not None:
        run_load(messages, 4, 1, tmp, driver_cpus)
    if base_messages is not None:
        run_load(base_messages, 4, 1, tmp, driver_cpus)
    if claude_pass is not None:
        run_load(claude_pass, 4, 1, tmp, driver_cpus)
    time.sleep(1.0)
    assert crossroute.child is not None and reference.child is not None
    idle = {s.label: tree_memory_mb(s.child.pid) for s in (reference, crossroute) if s.child}

    pids = {"reference": reference.child.pid, "crossroute": crossroute.child.pid}
    if affinity is not None and affinity.child is not None:
        pids[affinity.label] = affinity.child.pid
    if baseline is not None and baseline.child is not None:
        pids[baseline.label] = baseline.child.pid

    def measure(key: str, t: Target, conns: int, who: str, cpu_table: dict[str, list[float]], row: str) -> float:
        """One timed load run; records errors and, for a proxy, its CPU µs per request."""
        pid = pids.get(who)
        before = tree_cpu_seconds(pid) if pid else 0.0
        result = run_load(t, conns, seconds, tmp, driver_cpus)
        if pid and result.requests:
            res.add(cpu_table, row, (tree_cpu_seconds(pid) - before) / result.requests * 1e6)
        if result.errors:
            res.errors[key] = res.errors.get(key, 0) + result.errors
        return result.rps

    load_start = loadavg()
    for r in range(rounds):
        order = rotate(live, r)
        t0 = time.perf_counter()
        lat = latency_interleaved([plain[n] for n in order], seconds)
        base_med = median(lat["direct-chat"])
        base_p99 = percentile(lat["direct-chat"], 99)
        for n in order:
            s = lat[f"{n}-chat"]
            res.add(res.latency_median, n, median(s))
            res.add(res.latency_p99, n, percentile(s, 99))
            res.latency_n[n] = res.latency_n.get(n, 0) + len(s)
            if n != "direct":
                res.add(res.added_median, n, median(s) - base_med)
                res.add(res.added_p99, n, percentile(s, 99) - base_p99)
        for n in order:
            res.add(res.rps, n, measure(f"{n} c64", plain[n], 64, n, res.cpu_plain, n))
        for n in order:
            res.add(res.sps, n, measure(f"{n} streams", streams[n], 16, n, res.cpu_stream, n))
        if messages is not None:
            xf = "crossroute-messages"
            res.add(res.sps, xf, measure("cr messages", messages, 16, "crossroute", res.cpu_stream, xf))
        if base_messages is not None:
            bx = "crossroute-baseline-messages"
            res.add(res.sps, bx, measure("baseline messages", base_messages, 16, "crossroute-baseline",
                                         res.cpu_stream, bx))
        if claude_pass is not None:
            cp = "crossroute-claude"
            res.add(res.sps, cp, measure("cr claude", claude_pass, 16, "crossroute", res.cpu_stream, cp))
        line = " ".join(
            f"{n}: +{res.added_median[n][-1]:.3f}ms {res.rps[n][-1]:.0f}rps {res.sps[n][-1]:.0f}sps"
            for n in order
            if n != "direct"
        )
        print(f"round {r + 1}/{rounds} ({time.perf_counter() - t0:.0f} s): {line}", flush=True)

    after = {s.label: tree_memory_mb(s.child.pid) for s in (reference, crossroute) if s.child}
    print(f"load average (1/5/15 min) at start of rounds: {load_start}; at end: {loadavg()}")
    print_table(res, reference, crossroute, idle, after, messages_note, broken, args)
    if res.errors:
        print("load errors (non-2xx or socket errors): " + ", ".join(f"{k}={v}" for k, v in res.errors.items()))
    if args.json:
        dump = {
            "args": vars(args),
            "rounds": rounds,
            "seconds": seconds,
            "results": res.__dict__,
            "startup": {reference.label: reference.startups, crossroute.label: crossroute.startups},
            "idle_mb": idle,
            "after_load_mb": after,
        }
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(dump, option=orjson.OPT_INDENT_2))
    return 0


def print_table(
    res: Results,
    reference: Server,
    crossroute: Server,
    idle: dict[str, tuple[float, float, int]],
    after: dict[str, tuple[float, float, int]],
    messages_note: str,
    broken: set[str],
    args: argparse.Namespace,
) -> None:
    m: Callable[[dict[str, list[float]], str], float] = lambda table, key: median(table.get(key, []))  # noqa: E731
    cr = "crossroute"
    rows: list[tuple[str, str, str, str, str, str, str]] = []

    def row(metric: str, d: str, r: str, c: str, ratio: str, goal: str, ok: bool | None) -> None:
        rows.append((metric, d, r, c, ratio, goal, status_word(ok)))

    row(
        "latency c=1 median (ms)",
        fmt(m(res.latency_median, "direct")),
        fmt(m(res.latency_median, "reference")),
        fmt(m(res.latency_median, cr)),
        "",
        "",
        None,
    )
    ref_add = m(res.added_median, "reference")
    cr_add = m(res.added_median, cr)
    diff = cr_add - ref_add
    row(
        "  added median over direct (ms)",
        "",
        fmt(ref_add),
        fmt(cr_add),
        f"cr-ref {diff:+.3f}",
        "cr-ref <= +0.25 ms",
        None if diff != diff else diff <= 0.25,
    )
    row(
        "latency c=1 p99 (ms)",
        fmt(m(res.latency_p99, "direct")),
        fmt(m(res.latency_p99, "reference")),
        fmt(m(res.latency_p99, cr)),
        "",
        "",
        None,
    )
    ref_p99 = m(res.added_p99, "reference")
    cr_p99 = m(res.added_p99, cr)
    row("  added p99 over direct (ms)", "", fmt(ref_p99), fmt(cr_p99), f"cr-ref {cr_p99 - ref_p99:+.3f}", "", None)

    def ratio_row(metric: str, table: dict[str, list[float]], key: str, base: str, goal: float) -> None:
        c = m(table, key)
        r = m(table, base)
        ratio = c / r if r == r and r else float("nan")
        row(
            metric,
            fmt(m(table, "direct"), 0) if key == cr else "",
            fmt(r, 0),
            fmt(c, 0),
            f"cr/ref {ratio:.2f}" if ratio == ratio else "-",
            f">= {goal:.2f} x ref",
            None if ratio != ratio else ratio >= goal,
        )

    ratio_row("throughput c=64 non-stream (req/s)", res.rps, cr, "reference", 0.75)
    ratio_row(f"streams/s c=16 ({args.events} events)", res.sps, cr, "reference", 0.75)
    aff = "crossroute-affinity"
    if res.rps.get(aff):
        # issue 4: the same figures with session affinity on (a second process, same rounds)
        a_add = m(res.added_median, aff)
        row("session affinity on: added median (ms)", "", fmt(ref_add), fmt(a_add),
            f"cr-ref {a_add - ref_add:+.3f}", "cr-ref <= +0.25 ms",
            None if a_add != a_add else a_add - ref_add <= 0.25)
        ratio_row("session affinity on: non-stream (req/s)", res.rps, aff, "reference", 0.75)
        ratio_row("session affinity on: streams/s", res.sps, aff, "reference", 0.75)

    def cpu_row(metric: str, table: dict[str, list[float]], key: str) -> None:
        c, r = m(table, key), m(table, "reference")
        ratio = f"cr/ref {c / r:.2f}" if c == c and r == r and r else "-"
        row(metric, "", fmt(r, 0), fmt(c, 0), ratio, "", None)

    cpu_row("  proxy CPU per request (us)", res.cpu_plain, cr)
    cpu_row("  proxy CPU per stream (us)", res.cpu_stream, cr)
    if res.rps.get(aff):
        cpu_row("  proxy CPU per request, affinity on (us)", res.cpu_plain, aff)
    if messages_note:
        row(
            "cross-format streams/s (anthropic client)",
            "",
            fmt(m(res.sps, "reference"), 0),
            messages_note,
            "-",
            ">= 0.60 x ref",
            None,
        )
    else:
        ratio_row("cross-format streams/s (anthropic client)", res.sps, "crossroute-messages", "reference", 0.60)
        cpu_row("  proxy CPU per stream (us)", res.cpu_stream, "crossroute-messages")
    base = "crossroute-baseline"
    if res.rps.get(base):
        # a change's cost: this tree against the baseline tree, both measured in the same rounds
        def vs_row(metric: str, table: dict[str, list[float]], key: str, ref_key: str) -> None:
            c, b = m(table, key), m(table, ref_key)
            ratio = c / b if b == b and b else float("nan")
            row(metric, "", fmt(b, 0), fmt(c, 0), f"cr/base {ratio:.2f}" if ratio == ratio else "-", ">= 0.90 x base",
                None if ratio != ratio else ratio >= 0.90)

        row(f"baseline {args.baseline}: ratios to reference", "", "", "",
            f"{m(res.rps, base) / m(res.rps, 'reference'):.2f} / {m(res.sps, base) / m(res.sps, 'reference'):.2f}"
            + (f" / {m(res.sps, base + '-messages') / m(res.sps, 'reference'):.2f}"
               if res.sps.get(base + "-messages") else ""), "non-stream / streams / cross-format", None)
        vs_row("this vs baseline: non-stream (req/s)", res.rps, cr, base)
        vs_row("this vs baseline: streams/s", res.sps, cr, base)
        if res.sps.get(base + "-messages") and res.sps.get("crossroute-messages"):
            vs_row("this vs baseline: cross-format streams/s", res.sps, "crossroute-messages", base + "-messages")
        cpu_row("  proxy CPU per request, baseline (us)", res.cpu_plain, base)
        cpu_row("  proxy CPU per stream, baseline (us)", res.cpu_stream, base)
    if res.sps.get("crossroute-claude"):
        # issue 3: same-format passthrough of another format stays within 10% of the core (chat) figure
        c, core = m(res.sps, "crossroute-claude"), m(res.sps, cr)
        ratio = c / core if core == core and core else float("nan")
        row("same-format streams/s (anthropic passthrough)", "", "", fmt(c, 0),
            f"cr chat {ratio:.2f}" if ratio == ratio else "-", ">= 0.90 x cr chat",
            None if ratio != ratio else ratio >= 0.90)
        cpu_row("  proxy CPU per stream (us)", res.cpu_stream, "crossroute-claude")
    ri, ci = idle.get(reference.label), idle.get(crossroute.label)
    row(
        "idle RSS, process tree (MB)",
        "",
        f"{ri[0]:.1f} ({ri[2]} proc)" if ri else "-",
        f"{ci[0]:.1f} ({ci[2]} proc)" if ci else "-",
        "",
        "< 100 MB",
        None if not ci else ci[0] < 100,
    )
    row(
        "  idle PSS (MB) [shared pages split]",
        "",
        f"{ri[1]:.1f}" if ri else "-",
        f"{ci[1]:.1f}" if ci else "-",
        "",
        "",
        None,
    )
    ra, ca = after.get(reference.label), after.get(crossroute.label)
    row("  RSS after the load (MB)", "", f"{ra[0]:.1f}" if ra else "-", f"{ca[0]:.1f}" if ca else "-", "", "", None)
    rs, cs = median(reference.startups), median(crossroute.startups)
    row("start-up to first /healthz 200 (s)", "", fmt(rs), fmt(cs), "", "< 1.5 s", None if cs != cs else cs < 1.5)

    headers = ("metric", "direct", "reference", crossroute.label, "ratio", "goal (issue 2/3)", "")
    widths = [max(len(str(x[i])) for x in [headers, *rows]) for i in range(len(headers))]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for rrow in rows:
        cells = [rrow[0].ljust(widths[0])] + [str(x).rjust(w) for x, w in zip(rrow[1:5], widths[1:5], strict=True)]
        cells += [rrow[5].ljust(widths[5]), rrow[6]]
        print("  ".join(cells).rstrip())
    spread = []
    for key, table in (("reference", res.rps), (cr, res.rps), (aff, res.rps)):
        vals = table.get(key, [])
        if vals:
            spread.append(f"{key} req/s {min(vals):.0f}..{max(vals):.0f}")
    for key, table in (("reference", res.sps), (cr, res.sps), ("crossroute-messages", res.sps)):
        vals = table.get(key, [])
        if vals:
            spread.append(f"{key} streams/s {min(vals):.0f}..{max(vals):.0f}")
    print(f"medians of rounds; spread over rounds: {'; '.join(spread)}")
    print(
        f"latency samples per target: {', '.join(f'{k}={v}' for k, v in res.latency_n.items())}; "
        f"load generator: {res.tool}"
    )
    if broken:
        print(f"not measured (failed its check): {', '.join(sorted(broken))}")


if __name__ == "__main__":
    sys.exit(main())
