"""A real process rewriting one account file is killed (SIGKILL) at random instants, 200 times:
every time the file parses and holds one complete version, the last one written or the next."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson

from crossroute.auth.store import AuthStore

ROOT = Path(__file__).resolve().parents[2]

# The writer: from the version on disk, write version n+1, n+2, ... for ever, each ~200 KB so a
# kill often lands inside a write; a line on stdout once the first write is done.
WRITER = r"""
import hashlib, sys
from pathlib import Path
import orjson
from crossroute.auth.files import write_json_atomic

path = Path(sys.argv[1])
seq = orjson.loads(path.read_bytes())["seq"] if path.exists() else 0
first = True
while True:
    seq += 1
    pad = (str(seq) * 40000)[:200000]
    write_json_atomic(path, {"type": "claude", "access_token": f"tok-{seq:08d}", "email": "k@example.com",
                             "seq": seq, "pad": pad, "sha": hashlib.sha256(pad.encode()).hexdigest()})
    if first:
        print("ready", flush=True)
        first = False
"""


def check(path: Path) -> int:
    obj = orjson.loads(path.read_bytes())  # raises on a torn file
    pad = obj["pad"]
    assert pad == (str(obj["seq"]) * 40000)[:200000]
    assert hashlib.sha256(pad.encode()).hexdigest() == obj["sha"]
    assert obj["access_token"] == f"tok-{obj['seq']:08d}"
    return int(obj["seq"])


def test_sigkill_at_random_instants_never_leaves_a_torn_file(tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    path = auth / "claude-k@example.com.json"
    rng = random.Random(9)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    last = 0
    kills_mid_run = 0
    for _ in range(200):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        seq = check(path)
        assert seq >= last and seq >= 1  # the old content or newer, never older, never torn
        kills_mid_run += seq > last + 1
        last = seq
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert kills_mid_run > 0  # kills landed while the writer was between or inside later writes
    assert stat.S_IMODE(auth.stat().st_mode) == 0o700
    # what a killed writer may leave is a hidden temporary file, which the store ignores and later cleans
    store = AuthStore(auth)
    added, _, _ = store.load()
    assert [a.name for a in added] == [path.name]
    leftovers = [p for p in auth.iterdir() if p.name != path.name]
    assert all(p.name.startswith(".") and p.name.endswith(".tmp") for p in leftovers)
