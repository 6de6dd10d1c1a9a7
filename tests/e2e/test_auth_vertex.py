"""``crossroute import vertex KEY.json``: the key stored in CLIProxyAPI's vertex file; access tokens
minted with the JWT bearer grant (RS256, checked by the fake token endpoint), cached until near
expiry, one mint for concurrent callers."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from crossroute.auth.refresh import Refresher
from crossroute.auth.store import AuthStore

from .fake_oauth import FakeOAuth

ROOT = Path(__file__).resolve().parents[2]
crypto = pytest.importorskip("cryptography")


@pytest.fixture
def fake() -> Iterator[FakeOAuth]:
    f = FakeOAuth().start()
    yield f
    f.stop()


def key_file(fake: FakeOAuth, path: Path, email: str = "sa@proj-7.iam.gserviceaccount.com") -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake.sa_keys[email] = key.public_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    sa = {"type": "service_account", "project_id": "proj-7", "private_key_id": "kid-1", "private_key": pem,
          "client_email": email, "client_id": "1234", "token_uri": f"{fake.base}/vertex/token"}
    path.write_bytes(orjson.dumps(sa))
    return sa


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crossroute", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})


async def test_import_then_mint_cached_and_single_flight(fake: FakeOAuth, tmp_path: Path) -> None:
    sa = key_file(fake, tmp_path / "key.json")
    auth = tmp_path / "auth"
    done = cli("import", "vertex", str(tmp_path / "key.json"), "--prefix", "team-a", "--auth-dir", str(auth))
    assert done.returncode == 0, done.stderr
    file = auth / "vertex-proj-7.json"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    obj = orjson.loads(file.read_bytes())
    assert obj == {"service_account": sa, "project_id": "proj-7", "email": sa["client_email"], "type": "vertex",
                   "prefix": "team-a"}
    assert "PRIVATE KEY" not in done.stdout + done.stderr

    store = AuthStore(auth)
    store.load()
    r = Refresher(store, env={})
    try:
        src = r.source("vertex-proj-7.json")
        tokens = await asyncio.gather(*(src.fresh_token() for _ in range(10)))  # type: ignore[union-attr]
        assert len(set(tokens)) == 1 and tokens[0].startswith("ya29.vertex-")
        assert fake.minted == 1 and fake.errors == []
        assert await src.fresh_token() == tokens[0] and fake.minted == 1  # type: ignore[union-attr]
        assert await src.refresh(tokens[0]) is True and fake.minted == 2  # after a 401: a new one
        assert src.token() != tokens[0]
        assert "access_token" not in orjson.loads(file.read_bytes())  # minted tokens stay in memory
    finally:
        await r.stop()


async def test_a_rejected_key_marks_the_account_needs_login(fake: FakeOAuth, tmp_path: Path) -> None:
    key_file(fake, tmp_path / "key.json")
    fake.sa_keys.clear()  # the key was deleted in the console
    store = AuthStore(tmp_path / "auth")
    from crossroute.auth.flows.service_account import import_vertex

    import_vertex(store, tmp_path / "key.json")
    r = Refresher(store, env={})
    try:
        assert await r.source("vertex-proj-7.json").refresh() is False
        assert store.get("vertex-proj-7.json").status == "needs login"  # type: ignore[union-attr]
    finally:
        await r.stop()


@pytest.mark.parametrize(("content", "problem"), [
    (b"{ nope", "is not valid JSON"),
    (b'{"type": "authorized_user", "project_id": "p", "private_key": "x", "client_email": "e"}',
     "not 'service_account'"),
    (b'{"type": "service_account", "project_id": "p"}', "lacks private_key, client_email"),
])
def test_bad_key_files_are_refused_by_name(tmp_path: Path, content: bytes, problem: str) -> None:
    (tmp_path / "k.json").write_bytes(content)
    done = cli("import", "vertex", str(tmp_path / "k.json"), "--auth-dir", str(tmp_path / "auth"))
    assert done.returncode == 1 and problem in done.stderr and "k.json" in done.stderr
    assert not (tmp_path / "auth").exists() or not list((tmp_path / "auth").iterdir())
