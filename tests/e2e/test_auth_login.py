"""Every login end to end through the real CLI command, against fake OAuth servers on 127.0.0.1.

The CLI runs as a subprocess through the real entry point (``python -m crossroute login ...``, what
the ``crossroute`` script runs). The browser step is an HTTP client following the URL:
``$BROWSER`` is ``python -m tests.e2e.fake_oauth browse %s``, so the CLI's own ``webbrowser.open``
starts it; with ``--no-browser`` the test follows the URL itself and pastes the redirect URL into
the CLI's stdin, as a user on SSH would.
"""

from __future__ import annotations

import os
import queue
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from .fake_oauth import CODEX_ACCOUNT_ID, EMAILS, FakeOAuth

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeOAuth]:
    f = FakeOAuth().start()
    yield f
    f.stop()


class Cli:
    """One CLI process with its stdout/stderr read line by line in threads."""

    def __init__(self, args: list[str], env: dict[str, str], stdin: bool = False) -> None:
        full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "crossroute", *args], cwd=ROOT,
                                     env=full_env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.out, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err, False), daemon=True).start()

    def _pump(self, stream: object, sink: list[str], feed: bool) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line)
            if feed:
                self._lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self._lines.empty():
                    break
                continue
            if m := rx.search(line):
                return m
        raise AssertionError(f"no line matching {pattern!r}; stdout={''.join(self.out)!r} stderr={''.join(self.err)!r}")

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60.0) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        time.sleep(0.1)  # let the reader threads drain
        return rc

    @property
    def text(self) -> str:
        return "".join(self.out) + "".join(self.err)


def browser_env() -> dict[str, str]:
    return {"BROWSER": f"{sys.executable} -m tests.e2e.fake_oauth browse %s"}


def no_browser_env() -> dict[str, str]:
    return {"BROWSER": f"{sys.executable} -c pass"}  # never used; a stray open must not reach a real one


def load(path: Path) -> dict:
    return orjson.loads(path.read_bytes())


def assert_private(auth_dir: Path, file: Path) -> None:
    assert stat.S_IMODE(auth_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(file.stat().st_mode) == 0o600


def assert_no_tokens(text: str, obj: dict) -> None:
    for key in ("access_token", "refresh_token", "id_token"):
        if obj.get(key):
            assert obj[key] not in text, f"{key} leaked into the CLI output"


# ------------------------------------------------------------------ authorization code + PKCE
@pytest.mark.parametrize("provider", ["claude", "codex", "antigravity"])
def test_browser_login_writes_the_providers_file(fake: FakeOAuth, tmp_path: Path, provider: str) -> None:
    auth = tmp_path / "auth"
    cli = Cli(["login", provider, "--auth-dir", str(auth), "--timeout", "30"], {**fake.env(provider), **browser_env()})
    assert cli.finish() == 0, cli.text
    assert fake.errors == []
    names = {"claude": "claude-ada@example.com.json",
             "antigravity": "antigravity-alan@example.com.json"}
    if provider == "codex":
        import hashlib

        digest = hashlib.sha256(CODEX_ACCOUNT_ID.encode()).hexdigest()[:8]
        names["codex"] = f"codex-{digest}-grace@example.com-plus.json"
    file = auth / names[provider]
    assert file.is_file(), sorted(p.name for p in auth.iterdir())
    assert_private(auth, file)
    obj = load(file)
    assert obj["type"] == provider
    assert obj["email"] == EMAILS[provider]
    assert obj["access_token"].startswith(f"at-{provider}-") and obj["refresh_token"].startswith(f"rt-{provider}-")
    assert obj["expired"].endswith("Z") and obj["last_refresh"].endswith("Z")
    if provider == "claude":
        assert obj["account_uuid"] == "acc-uuid-1" and obj["organization_name"] == "Ada's Org"
    if provider == "codex":
        assert obj["account_id"] == CODEX_ACCOUNT_ID and obj["id_token"].count(".") == 2
    assert "Logged in" in cli.text and str(file) in cli.text
    assert "-> 200" in cli.text  # the fake browser reached the loopback callback and got the done page
    assert_no_tokens(cli.text, obj)
    # the authorize request carried PKCE S256 and the registered redirect URI
    authz = next(r for r in fake.requests if r["path"] == f"/{provider}/authorize")
    assert authz["query"]["code_challenge_method"] == "S256"
    assert authz["query"]["redirect_uri"] == fake.redirect_uris[provider]


def test_no_browser_paste_rejects_a_wrong_state_then_accepts_the_right_one(fake: FakeOAuth, tmp_path: Path) -> None:
    import urllib.request

    auth = tmp_path / "auth"
    cli = Cli(["login", "claude", "--no-browser", "--auth-dir", str(auth), "--timeout", "30"],
              {**fake.env("claude"), **no_browser_env()}, stdin=True)
    url = cli.wait_for(r"(http://127\.0\.0\.1:\d+/claude/authorize\?\S+)").group(1)
    cli.wait_for(r"Paste that full URL")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: object, **k: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(url)
        raise AssertionError("the authorize endpoint did not redirect")
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        location = exc.headers["Location"]
    forged = re.sub(r"state=[^&]+", "state=not-this-login", location)
    cli.send(forged)
    cli.wait_for(r"state does not match")
    cli.send(location)
    assert cli.finish() == 0, cli.text
    assert (auth / "claude-ada@example.com.json").is_file()
    assert fake.errors == []


def test_wrong_state_on_the_callback_is_rejected(fake: FakeOAuth, tmp_path: Path) -> None:
    fake.mode = "wrong_state"
    auth = tmp_path / "auth"
    cli = Cli(["login", "codex", "--auth-dir", str(auth), "--timeout", "4"], {**fake.env("codex"), **browser_env()})
    rc = cli.finish()
    assert rc == 1
    assert "-> 400" in cli.text  # the loopback answered the forged redirect 400
    assert "timed out" in cli.text and "crossroute login codex" in cli.text
    assert not auth.exists() or not list(auth.glob("*.json"))


def test_denied_consent_is_reported_as_denied(fake: FakeOAuth, tmp_path: Path) -> None:
    fake.mode = "deny"
    auth = tmp_path / "auth"
    cli = Cli(["login", "antigravity", "--auth-dir", str(auth), "--timeout", "30"],
              {**fake.env("antigravity"), **browser_env()})
    assert cli.finish() == 1
    assert "login denied" in cli.text and "consent was denied" in cli.text
    assert "crossroute login antigravity" in cli.text
    assert not auth.exists() or not list(auth.glob("*.json"))


def test_login_times_out_and_says_how_to_retry(fake: FakeOAuth, tmp_path: Path) -> None:
    cli = Cli(["login", "claude", "--no-browser", "--auth-dir", str(tmp_path / "a"), "--timeout", "1.5"],
              {**fake.env("claude"), **no_browser_env()}, stdin=True)
    assert cli.finish() == 1
    assert "login timed out: no login callback within 1.5 seconds" in cli.text
    assert "Run `crossroute login claude` to try again" in cli.text


# ------------------------------------------------------------------ device code
def _approve_when_shown(cli: Cli, fake: FakeOAuth, deny: bool = False) -> str:
    code = cli.wait_for(r"enter the code\s+(\S+)").group(1)
    fake.approve(code, deny=deny)
    return code


def test_kimi_device_login_stores_a_stable_device_id_and_headers(fake: FakeOAuth, tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    ids = []
    for _ in range(2):
        cli = Cli(["login", "kimi", "--auth-dir", str(auth), "--timeout", "30"], fake.env("kimi"))
        _approve_when_shown(cli, fake)
        assert cli.finish() == 0, cli.text
        time.sleep(0.01)
    files = sorted(auth.glob("kimi-*.json"))
    assert len(files) == 2 and all(re.fullmatch(r"kimi-\d{13}\.json", f.name) for f in files)
    for f in files:
        assert_private(auth, f)
        obj = load(f)
        assert obj["type"] == "kimi" and obj["token_type"] == "Bearer" and obj["scope"] == "kimi-code"
        assert obj["headers"]["X-Msh-Device-Id"] == obj["device_id"]
        assert obj["headers"]["X-Msh-Platform"] == "crossroute"
        ids.append(obj["device_id"])
    assert ids[0] == ids[1]  # one device id per install, reused
    sent = {r["headers"].get("X-Msh-Device-Id") for r in fake.requests if r["path"].startswith("/kimi/")}
    assert sent == {ids[0]}
    assert fake.errors == []


def test_kimi_slow_down_makes_the_poll_slower(fake: FakeOAuth, tmp_path: Path) -> None:
    fake.slow_down_first = True
    fake.device_interval = 0.5
    cli = Cli(["login", "kimi", "--auth-dir", str(tmp_path / "a"), "--timeout", "60"], fake.env("kimi"))
    code = _approve_when_shown(cli, fake)
    dev = fake.devices[code]
    assert cli.finish() == 0, cli.text
    assert dev.slow_downs == 1
    assert len(dev.polls) == 2
    assert dev.polls[1] - dev.polls[0] >= 0.5 + 5.0 - 0.15  # the interval grew by 5 s
    assert fake.errors == []  # and no poll came early


def test_kimi_expired_code_stops_the_login(fake: FakeOAuth, tmp_path: Path) -> None:
    fake.device_expires_in = 2.0
    fake.device_interval = 0.5
    cli = Cli(["login", "kimi", "--auth-dir", str(tmp_path / "a"), "--timeout", "60"], fake.env("kimi"))
    cli.wait_for(r"enter the code")
    assert cli.finish() == 1
    assert "the device code expired" in cli.text and "crossroute login kimi" in cli.text


def test_kimi_denied_on_the_verification_page(fake: FakeOAuth, tmp_path: Path) -> None:
    cli = Cli(["login", "kimi", "--auth-dir", str(tmp_path / "a"), "--timeout", "30"], fake.env("kimi"))
    _approve_when_shown(cli, fake, deny=True)
    assert cli.finish() == 1
    assert "login denied" in cli.text


def test_codex_device_login(fake: FakeOAuth, tmp_path: Path) -> None:
    fake.device_interval = 1.0
    auth = tmp_path / "auth"
    cli = Cli(["login", "codex", "--device", "--auth-dir", str(auth), "--timeout", "30"], fake.env("codex"))
    _approve_when_shown(cli, fake)
    assert cli.finish() == 0, cli.text
    files = list(auth.glob("codex-*-grace@example.com-plus.json"))
    assert len(files) == 1
    obj = load(files[0])
    assert obj["account_id"] == CODEX_ACCOUNT_ID and obj["access_token"].startswith("at-codex-")
    assert_no_tokens(cli.text, obj)
    assert fake.errors == []


# ------------------------------------------------------------------ auth list / disable / enable / remove
def test_auth_list_disable_enable_remove(fake: FakeOAuth, tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    cli = Cli(["login", "claude", "--auth-dir", str(auth), "--timeout", "30"], {**fake.env("claude"), **browser_env()})
    assert cli.finish() == 0, cli.text
    file = auth / "claude-ada@example.com.json"
    obj = load(file)
    obj["x_cliproxy_field"] = {"kept": True}  # a field crossroute does not know
    obj["proxy-url"] = "http://127.0.0.1:9"  # the dashed spelling
    file.write_bytes(orjson.dumps(obj))
    (auth / "broken.json").write_text("{ not json")

    def run(*args: str) -> Cli:
        c = Cli([*args, "--auth-dir", str(auth)], {})
        c.finish()
        return c

    listing = run("auth", "list")
    assert "claude-ada@example.com.json" in listing.text and "active" in listing.text
    assert "ada@example.com" in listing.text
    assert_no_tokens(listing.text, obj)
    assert "..." + obj["access_token"][-4:] in listing.text  # masked, not absent
    assert "broken.json" in listing.text and "not valid JSON" in listing.text  # skipped, one line

    c = run("auth", "disable", "ada@example.com")
    assert c.proc.returncode == 0 and "disabled" in c.text
    after = load(file)
    assert after["disabled"] is True and after["x_cliproxy_field"] == {"kept": True}
    assert after["proxy-url"] == "http://127.0.0.1:9" and "proxy_url" not in after
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert "disabled" in run("auth", "list").text
    assert run("auth", "enable", "claude-ada@example.com").proc.returncode == 0
    assert "disabled" not in load(file)
    assert run("auth", "remove", "claude-ada@example.com.json").proc.returncode == 0
    assert not file.exists()
    missing = run("auth", "remove", "nobody")
    assert missing.proc.returncode == 1 and "no account 'nobody'" in missing.text


def test_xai_device_login_through_discovery_then_refresh(fake: FakeOAuth, tmp_path: Path) -> None:
    """``crossroute login xai``: endpoints from xAI's discovery document, the Grok CLI's public
    client and scope, the file in CLIProxyAPI's xAI fields (token_endpoint kept); a refresh of
    that account uses the file's token endpoint."""
    import asyncio

    from crossroute.auth.refresh import Refresher
    from crossroute.auth.store import AuthStore

    fake.device_interval = 0.5
    auth = tmp_path / "auth"
    cli = Cli(["login", "xai", "--auth-dir", str(auth), "--timeout", "30"], fake.env("xai"))
    _approve_when_shown(cli, fake)
    assert cli.finish() == 0, cli.text
    file = auth / "xai-lin@example.com.json"
    assert file.is_file(), sorted(p.name for p in auth.iterdir())
    assert_private(auth, file)
    obj = load(file)
    assert obj["type"] == "xai" and obj["auth_kind"] == "oauth" and obj["email"] == "lin@example.com"
    assert obj["sub"] == "xai-user-1" and obj["base_url"] == "https://api.x.ai/v1"
    assert obj["token_endpoint"] == f"{fake.base}/xai/token"
    assert obj["access_token"].startswith("at-xai-") and obj["refresh_token"].startswith("rt-xai-")
    assert obj["expired"].endswith("Z") and obj["id_token"].count(".") == 2
    assert_no_tokens(cli.text, obj)
    paths = [r["path"] for r in fake.requests]
    assert paths[0] == "/xai/.well-known/openid-configuration" and "/xai/device" in paths
    assert fake.errors == []

    store = AuthStore(auth)
    store.load()
    refresher = Refresher(store, env={})  # no override: the token endpoint comes from the file

    async def refresh() -> bool:
        try:
            return await refresher.refresh(file.name, stale=obj["access_token"])
        finally:
            await refresher.stop()

    # a loopback token endpoint is only trusted with the discovery URL it came from
    assert asyncio.run(refresh()) is False and fake.refresh_count == 0
    refresher = Refresher(store, env=fake.env("xai"))
    assert asyncio.run(refresh()) is True and fake.refresh_count == 1
    new = load(file)
    assert new["access_token"] != obj["access_token"] and new["refresh_token"] != obj["refresh_token"]
    assert new["token_endpoint"] == obj["token_endpoint"] and new["sub"] == "xai-user-1"
    assert fake.errors == []
