"""The control panel in a real headless Chromium (Debian's chromium + chromium-driver) against a
real gateway: sign in, an account with quota bars, a usage chart from seeded records, a trace,
a config edit refused inline and then saved; escaping of hostile data; a phone-sized screen.
Screenshots go to $CROSSROUTE_ARTIFACTS (or a temporary directory), printed by the test."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossroute.usage.backends import SQLiteBackend

from ..conftest import need_binary
from .fake_oauth import FakeOAuth
from .management_support import CLIENT_KEY, HEADER_COMMENT, MGMT_KEY, MgmtGateway, base_config, claude_account

ACCOUNT_EMAIL = "ops@example.com"
HOSTILE_EMAIL = "<img src=x onerror=window.__xss=1>@example.com"


def artifacts_dir() -> Path:
    base = os.environ.get("CROSSROUTE_ARTIFACTS")
    path = Path(base) / "panel" if base else Path(tempfile.mkdtemp(prefix="crossroute-panel-"))
    path.mkdir(parents=True, exist_ok=True)
    print(f"\npanel screenshots: {path}")
    return path


def seed_usage(data_dir: Path, account_id: str) -> None:
    """Records of the last seven days, written through the store's SQLite backend (segments and rollups)."""
    path = data_dir / "usage.sqlite3"
    now = time.time()
    rows = []
    for i in range(40):
        ts = now - i * 4 * 3600 - 60
        model = "claude-sonnet-4" if i % 2 else "gpt-5"
        credential = account_id if i % 2 else "mock:m#seed"
        rows.append((ts, f"{i:08x}", "key-0123456789", "openai", "/v1/chat/completions", "generate", "claude",
                     credential, model, model, 0, "http", 200, None, 420.0, 120.0, 1000 + i * 10, 200, 600, 0, 0,
                     "claude", 1))
    backend = SQLiteBackend(str(path))
    backend.open()
    try:
        backend.insert(rows)
    finally:
        backend.close()


def seed_accounts(auth_dir: Path) -> str:
    auth_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    name, obj = claude_account(ACCOUNT_EMAIL)
    (auth_dir / name).write_text(json.dumps(obj))
    hostile_name, hostile = claude_account(HOSTILE_EMAIL)
    (auth_dir / hostile_name).write_text(json.dumps(hostile))
    now = time.time()
    snapshot = {"accounts": {name: {"id": f"auth:{name}", "provider": "claude", "updated": now, "windows": [
        {"name": "5h", "used": 0.38, "reset_at": now + 3600},
        {"name": "7d", "used": 0.8, "reset_at": now + 3 * 86400},
    ]}}}
    (auth_dir / ".crossroute-quota.json").write_text(json.dumps(snapshot))
    return name


@pytest.fixture
def fake() -> Iterator[FakeOAuth]:
    f = FakeOAuth().start()
    f.device_interval = 0.2
    yield f
    f.stop()


@pytest.fixture
def gateway(tmp_path: Path, fake: FakeOAuth) -> Iterator[tuple[MgmtGateway, str]]:
    name = seed_accounts(tmp_path / "auth")
    seed_usage(tmp_path / "data", f"auth:{name}")
    g = MgmtGateway(base_config(tmp_path), tmp_path, env=fake.env("kimi"))
    # a browser sends Origin on every write: the gateway's own origin must be allowed
    g.config = {**g.config, "usage-statistics-enabled": True, "request-log": True,
                "allowed-origins": [f"http://127.0.0.1:{g.port}"]}
    g.write_config(g.config)
    g.start()
    yield g, name
    g.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = need_binary("chromium")
    driver_path = need_binary("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(driver: Any, cond: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(cond)
    except Exception as exc:
        logs = driver.get_log("browser")
        raise AssertionError(f"{what} not reached; browser log: {logs}") from exc


def test_panel_end_to_end(gateway: tuple[MgmtGateway, str], browser: Any, fake: FakeOAuth) -> None:
    from selenium.webdriver.common.by import By

    g, account = gateway
    shots = artifacts_dir()
    for i in range(3):  # real requests: their traces are what the panel shows
        status, body, _ = g.call("POST", "/v1/chat/completions", {"model": "mock-1", "messages": [
            {"role": "user", "content": f"hello {i}"}]}, key=CLIENT_KEY)
        assert status == 200, body

    d = browser
    d.get(g.url + "/management.html")
    assert not d.find_element(By.ID, "tabs").is_displayed()  # nothing but the key form before signing in
    d.find_element(By.ID, "key").send_keys("wrong-key")
    d.find_element(By.ID, "login-button").click()
    wait(d, lambda d: "Not signed in" in d.find_element(By.ID, "login-error").text, what="refused sign-in")
    key = d.find_element(By.ID, "key")
    key.clear()
    key.send_keys(MGMT_KEY)
    d.find_element(By.ID, "login-button").click()

    # accounts: the seeded account with its quota bars
    card = wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-credential="auth:{account}"]'),
                what="account card")[0]
    assert ACCOUNT_EMAIL in card.text and "active" in card.text
    fills = card.find_elements(By.CSS_SELECTOR, ".quota .bar .fill")
    assert len(fills) == 2
    widths = [d.execute_script("return arguments[0].style.width", f) for f in fills]
    assert [float(w.rstrip("%")) for w in widths] == [62.0, 20.0], widths
    assert "5h: 62% left" in card.text and "7d: 20% left" in card.text
    assert "cache hit: " in card.text and "of " in card.text  # from the seeded records
    # hostile data is shown as text, never run or parsed
    hostile = d.find_element(By.CSS_SELECTOR, f'[data-credential="auth:claude-{HOSTILE_EMAIL}.json"]')
    assert HOSTILE_EMAIL in hostile.text
    assert not d.find_elements(By.CSS_SELECTOR, "#account-list img")
    assert d.execute_script("return window.__xss === undefined")
    assert d.execute_script("return sessionStorage.getItem('crossroute-management-key')") == MGMT_KEY
    d.save_screenshot(str(shots / "accounts.png"))

    # usage: a chart drawn from the seeded records
    d.find_element(By.CSS_SELECTOR, 'nav button[data-tab="usage"]').click()
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#usage-chart svg rect.bar-rect")) >= 10,
         what="usage chart bars")
    keys = {r.get_attribute("data-key") for r in d.find_elements(By.CSS_SELECTOR, "#usage-chart rect.bar-rect")}
    assert {"gpt-5", "claude-sonnet-4"} <= keys, keys
    assert "gpt-5" in d.find_element(By.ID, "usage-legend").text
    assert "gpt-5" in d.find_element(By.ID, "usage-totals").text
    d.save_screenshot(str(shots / "usage.png"))
    d.find_element(By.CSS_SELECTOR, '#usage-by option[value="credential"]').click()
    chart_keys = ("return Array.from(document.querySelectorAll('#usage-chart rect.bar-rect'))"
                  ".map((r) => r.getAttribute('data-key'))")  # read in one go: the chart is redrawn meanwhile
    wait(d, lambda d: f"auth:{account}" in d.execute_script(chart_keys), what="usage by account")
    d.save_screenshot(str(shots / "usage-by-account.png"))

    # requests: open a trace
    d.find_element(By.CSS_SELECTOR, 'nav button[data-tab="requests"]').click()
    rows = wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#trace-list tbody tr"), what="trace rows")
    assert len(rows) >= 3
    rows[0].click()
    detail = wait(d, lambda d: (e := d.find_element(By.ID, "trace-detail")).is_displayed() and e, what="trace detail")
    wait(d, lambda d: "mock" in d.find_element(By.ID, "trace-attempts").text, what="trace attempts")
    assert "status 200" in detail.text
    d.find_element(By.ID, "show-log").click()
    wait(d, lambda d: d.find_element(By.ID, "trace-log").is_displayed(), what="request log")
    assert CLIENT_KEY not in d.find_element(By.ID, "trace-log").text
    d.save_screenshot(str(shots / "trace.png"))

    # config: an invalid edit is refused inline with its line, a valid one is saved
    d.find_element(By.CSS_SELECTOR, 'nav button[data-tab="config"]').click()
    area = d.find_element(By.ID, "config-text")
    wait(d, lambda d: HEADER_COMMENT.strip() in area.get_attribute("value"), what="config text")
    text = area.get_attribute("value")
    assert MGMT_KEY not in text and CLIENT_KEY not in text
    bad = text.replace("host: 127.0.0.1", "host: 127.0.0.1\nrequest-retry: lots")
    d.execute_script("arguments[0].value = arguments[1]", area, bad)
    before = g.config_path.read_text()
    d.find_element(By.ID, "save-config").click()
    line = bad.splitlines().index("request-retry: lots") + 1
    wait(d, lambda d: f"line {line}: request-retry" in d.find_element(By.ID, "config-errors").text,
         what="inline validation error")
    assert g.config_path.read_text() == before
    d.save_screenshot(str(shots / "config-error.png"))
    good = text.replace("- mock-1", "- mock-1\n  - mock-panel  # added in the panel")
    d.execute_script("arguments[0].value = arguments[1]", area, good)
    d.find_element(By.ID, "save-config").click()
    wait(d, lambda d: "Saved" in d.find_element(By.ID, "config-message").text, what="saved")
    saved = g.config_path.read_text()
    assert "# added in the panel" in saved and saved.startswith(HEADER_COMMENT) and CLIENT_KEY in saved
    g.wait_for(lambda: "mock-panel" in json.dumps(g.call("GET", "/v1/models", key=CLIENT_KEY)[1]),
               what="the saved config applied")
    d.save_screenshot(str(shots / "config-saved.png"))

    # login buttons are there for every OAuth provider
    d.find_element(By.CSS_SELECTOR, 'nav button[data-tab="logins"]').click()
    labels = [b.text for b in d.find_elements(By.CSS_SELECTOR, "button[data-login]")]
    assert {"Claude", "Codex (browser)", "Kimi"} <= set(labels)
    d.find_element(By.CSS_SELECTOR, 'button[data-login="kimi"]').click()
    code = wait(d, lambda d: d.find_element(By.ID, "login-code").text, what="device code")
    assert not d.find_element(By.ID, "paste-form").is_displayed()  # a device flow has no redirect to paste
    assert d.find_element(By.ID, "login-url").get_attribute("href").startswith(fake.base)
    fake.approve(code)  # the user approves on the provider's page
    wait(d, lambda d: "Signed in: kimi-" in d.find_element(By.ID, "login-status").text, timeout=20,
         what="login finished")
    d.save_screenshot(str(shots / "login.png"))
    assert any(p.name.startswith("kimi-") for p in Path(g.config["auth-dir"]).glob("*.json"))

    # a phone-sized screen: nothing wider than the viewport
    d.set_window_size(390, 844)
    d.find_element(By.CSS_SELECTOR, 'nav button[data-tab="accounts"]').click()
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-credential="auth:{account}"]'), what="accounts")
    overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, overflow
    d.save_screenshot(str(shots / "phone-accounts.png"))
    # no violation of the Content-Security-Policy, no script error
    # (the refused sign-in and the refused config are network errors, expected)
    errors = [e for e in d.get_log("browser") if e.get("level") == "SEVERE" and e.get("source") != "network"]
    assert not errors, errors
