"""The bedside page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``; ``.ci/run`` installs them).

The browser's network is blocked except for loopback (a dead proxy and host
resolver rules), so a page that fetched anything from outside would show a
failed request. Screenshots are saved under pytest's tmp folder; their paths
are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.dashboard.access import BindAddress, dashboard_token
from edge.dashboard.alerts import HighPainAlerts
from edge.dashboard.feed import DashboardFeed
from edge.dashboard.server import DashboardServer
from edge.storage import ResultStore, WindowResult

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
LABELS = ["No Pain", "Low Pain", "High Pain"]
CHANNELS = ["EDA", "BVP", "RESP", "SpO2"]
#: A scripted pain episode with a flat RESP sensor inside it, at 5x real time, a window every 5 device s.
MONITOR_ARGS = ["monitor", "--simulate", "--speed", "5", "--hop", "5", "--quiet", "--status-every", "1000",
                "--conditions", "pain:high:50-400,flat:RESP:70-85", "--alert-after", "15"]
LINK = re.compile(r"dashboard at (http://127\.0\.0\.1:(\d+)/#token=\S+)")


@pytest.fixture
def browser(monkeypatch):
    """Headless Chromium that can reach loopback only; fails in CI when it is not installed."""
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager: never download a browser or a driver
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if not os.environ.get("CI"):
        pytest.importorskip("selenium")
    if missing:
        message = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message + " (required when CI is set)")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,720",
                     "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no driver download
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": False})
    yield driver
    driver.quit()


def _wait(driver, condition, what: str, timeout: float = 90.0):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,)
                         ).until(lambda d: condition(d), f"waited for {what}")


def _text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def _windows(driver) -> int:
    return int(driver.find_element("id", "timeline").get_attribute("data-windows"))


def _quality(driver) -> dict[str, str]:
    return driver.execute_script("return Object.fromEntries([...document.querySelectorAll('#quality tr')]"
                                 ".map((row) => [row.dataset.channel, row.cells[1].textContent]))")


def _start_monitor(folder: Path, port: int, name: str) -> tuple[subprocess.Popen, str, int]:
    """``biomoe monitor --dashboard 127.0.0.1:PORT`` in ``folder``; its process, the link it printed, its port."""
    log = open(folder / f"{name}.err", "w")
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", *MONITOR_ARGS, "--db", str(folder / "r.sqlite"),
                                "--dashboard", f"127.0.0.1:{port}"], stderr=log, stdout=subprocess.DEVNULL,
                               cwd=folder)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = LINK.search((folder / f"{name}.err").read_text())
        if match:
            return process, match.group(1), int(match.group(2))
        assert process.poll() is None, (folder / f"{name}.err").read_text()
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the monitor printed no dashboard link: " + (folder / f"{name}.err").read_text())


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


def _outside_requests(driver) -> tuple[list[str], list[str]]:
    """URLs the page asked for that are not loopback, and requests that failed (from the performance log)."""
    outside, failed = [], []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith("http://127.0.0.1:"):
                outside.append(url)
        elif message["method"] == "Network.loadingFailed" and not message["params"].get("canceled"):
            failed.append(message["params"].get("errorText", "?"))
    return outside, failed


def test_the_page_follows_a_pain_episode_and_recovers_after_a_restart(browser, tmp_path):
    monitor, link, port = _start_monitor(tmp_path, 0, "first")
    try:
        browser.get(link)
        _wait(browser, lambda d: _text(d, "connection") == "Connected", "the event stream")
        assert "#token" not in browser.current_url  # the token leaves the address bar
        _wait(browser, lambda d: _text(d, "level-text") in LABELS, "a pain level")
        first = _windows(browser)
        _wait(browser, lambda d: _windows(d) >= first + 3, "three more windows on the timeline")
        assert browser.find_element("id", "level").get_attribute("class").split()[-1] in (
            "level-no", "level-low", "level-high")
        assert re.fullmatch(r"probability \d+% \(smoothed\)", _text(browser, "level-probability"))
        assert re.fullmatch(r"\d+ s ago", _text(browser, "age"))
        assert set(_quality(browser)) == set(CHANNELS)
        _wait(browser, lambda d: "flat" in _quality(d)["RESP"], "the flat RESP sensor in the quality panel")
        assert int(browser.find_element("id", "timeline").get_attribute("data-flagged")) >= 1
        assert _text(browser, "link").startswith("Link: connected")
        assert len(browser.find_elements("css selector", "#traces .trace canvas")) == len(CHANNELS)

        _wait(browser, lambda d: d.find_element("id", "alert").is_displayed(), "the High Pain alert banner")
        assert _text(browser, "alert-text").startswith("HIGH PAIN for")
        screenshot = tmp_path / "dashboard.png"
        browser.save_screenshot(str(screenshot))
        print(f"\nscreenshot: {screenshot}")
        browser.find_element("id", "ack").click()
        _wait(browser, lambda d: "acknowledged" in d.find_element("id", "alert").get_attribute("class"),
              "the acknowledged banner", 20)
        seen = _windows(browser)
        _stop(monitor)

        _wait(browser, lambda d: _text(d, "connection") == "Reconnecting", "the page noticing the stop", 30)
        monitor, _, _ = _start_monitor(tmp_path, port, "second")
        _wait(browser, lambda d: _text(d, "connection") == "Connected" and 0 < _windows(d) < seen,
              "the page back on the restarted monitor (a new session)")
        restarted = _windows(browser)
        _wait(browser, lambda d: _windows(d) >= restarted + 2, "windows of the restarted monitor")
    finally:
        if monitor.poll() is None:
            _stop(monitor)
    with ResultStore(tmp_path / "r.sqlite", readonly=True) as store:
        kinds = [event["kind"] for event in store.events() if event["kind"].startswith("alert")]
        assert kinds[:2] == ["alert", "alert_ack"]
        assert len(store.sessions()) == 2


def _served_page(tmp_path) -> DashboardServer:
    """A dashboard with a session in it (a flagged, a skipped window, signals, an alert), no monitor needed."""
    import numpy as np

    from edge.windows import Window

    alerts = HighPainAlerts(after_seconds=20, store_event=lambda kind, detail: None)
    feed = DashboardFeed(LABELS, CHANNELS, alerts)
    rng = np.random.default_rng(0)
    now = time.time()
    for i in range(12):
        level = "No Pain" if i < 6 else "High Pain"
        probabilities = {label: 0.8 if label == level else 0.1 for label in LABELS}
        quality = {name: {"ok": not (i == 4 and name == "EDA"), "flags": ["saturation"] if i == 4 and name == "EDA"
                          else []} for name in CHANNELS}
        skipped = i == 8
        wall_time = now - 7200 + 5 * i if i < 6 else now - 60 + 5 * i  # the session began two hours ago
        result = WindowResult(i, 5.0 * i, 5.0 * i + 10, wall_time, None if skipped else probabilities, level,
                              None if skipped else probabilities, None if skipped else level,
                              {} if skipped else quality, skipped=skipped, skip_reason="behind" if skipped else None)
        samples = rng.normal(size=(4, 1000))
        window = None if skipped else Window(i, 5.0 * i, 5.0 * i + 10, tuple(CHANNELS), samples, 100.0)
        feed.window_stored(result, window)
    return DashboardServer(feed, BindAddress("127.0.0.1", 0), dashboard_token(None, BindAddress("127.0.0.1", 0)))


def test_the_page_fetches_nothing_from_outside_and_acknowledging_needs_the_token(browser, tmp_path):
    with _served_page(tmp_path) as server:
        browser.get(server.url)  # no token in the link
        _wait(browser, lambda d: _windows(d) == 12, "the snapshot", 30)
        assert _text(browser, "level-text") == "High Pain"
        assert browser.find_element("id", "timeline").get_attribute("data-skipped") == "1"
        assert browser.find_element("id", "alert").is_displayed()
        x_range = "return [timelineChart.scales.x.min, timelineChart.scales.x.max]"
        hour = browser.execute_script(x_range)
        browser.find_element("id", "zoom-session").click()
        session = browser.execute_script(x_range)
        assert 3590 <= hour[1] - hour[0] <= 3610 and session[1] - session[0] >= 7100 and session[1] == hour[1]
        assert browser.find_element("id", "zoom-session").get_attribute("aria-pressed") == "true"
        browser.find_element("id", "ack").click()
        _wait(browser, lambda d: "open the link" in _text(d, "ack-note"), "the page asking for the token", 10)

        browser.get("about:blank")  # a fresh load: a fragment alone would not reload the page
        browser.get(server.url + "#token=not-this-one")
        _wait(browser, lambda d: _windows(d) == 12, "the snapshot", 30)
        browser.find_element("id", "ack").click()
        _wait(browser, lambda d: "token not accepted" in _text(d, "ack-note"), "the refusal", 10)
        assert "acknowledged" not in browser.find_element("id", "alert").get_attribute("class")
        assert server._server.feed.alerts.current.acknowledged_wall_time is None

        for width, height in ((800, 480), (412, 915)):  # a 7-inch screen, a phone: nothing wider than the screen
            browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500})
            time.sleep(1.0)
            overflow = browser.execute_script("return document.documentElement.scrollWidth")
            assert overflow <= width, (width, overflow)
            path = tmp_path / f"dashboard-{width}x{height}.png"
            browser.save_screenshot(str(path))
            print(f"\nscreenshot: {path}")

        outside, failed = _outside_requests(browser)
        assert outside == [] and failed == []
        refused_on_purpose = ("/api/alerts/ack", "/api/login")  # the missing and the wrong token above
        problems = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
                    and not any(path in entry["message"] for path in refused_on_purpose)]
        assert problems == []  # no CSP violation, no script error, no missing asset


def test_no_asset_names_an_outside_address():
    """The packaged page and styles name no http(s) address but uPlot's own comment."""
    static = Path(__file__).resolve().parents[1] / "edge" / "dashboard" / "static"
    for path in static.iterdir():
        if path.suffix in (".html", ".js", ".css"):
            addresses = re.findall(r"https?://[^\s\"')]+", path.read_text())
            assert addresses in ([], ["https://github.com/leeoniya/uPlot"]), (path.name, addresses)
