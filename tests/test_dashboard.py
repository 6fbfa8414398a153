"""edge.dashboard without a browser: access rules, alerts, the feed, the HTTP server, the database view."""

from __future__ import annotations

import http.client
import json
import re
import os
import stat
import threading

import numpy as np
import pytest

from edge.config import load_config
from edge.dashboard.access import BindAddress, dashboard_token, parse_bind_address
from edge.dashboard.alerts import HighPainAlerts
from edge.dashboard.feed import TRACE_POINTS, DashboardFeed
from edge.dashboard.server import SECURITY_HEADERS, DashboardServer
from edge.dashboard.viewer import DatabaseFollower
from edge.errors import EdgeError
from edge.storage import ResultStore, WindowResult
from edge.windows import Window

LABELS = ["No Pain", "Low Pain", "High Pain"]
CHANNELS = ["EDA", "BVP", "RESP", "SpO2"]
LOOPBACK = BindAddress("127.0.0.1", 0)


def _result(index: int, level: str | None, hop: float = 10.0, flagged: str | None = None, skipped=None,
            session: int | None = 1) -> WindowResult:
    probabilities = None if level is None else {label: 0.8 if label == level else 0.1 for label in LABELS}
    quality = {} if skipped else {name: {"ok": name != flagged, "flags": ["flat_line"] if name == flagged else []}
                                  for name in CHANNELS}
    return WindowResult(index, hop * index, hop * index + 10.0, 1.7e9 + index, probabilities, level, probabilities,
                        level, quality, {"total": 1.0}, skipped=skipped is not None, skip_reason=skipped,
                        session_id=session)


# --------------------------------------------------------------------------- access


def test_bind_addresses():
    assert parse_bind_address("8080") == BindAddress("127.0.0.1", 8080)
    assert parse_bind_address("0.0.0.0:0") == BindAddress("0.0.0.0", 0)
    assert parse_bind_address("[::1]:9000") == BindAddress("::1", 9000)
    assert parse_bind_address("localhost:1").loopback and parse_bind_address("127.0.0.2:1").loopback
    assert not parse_bind_address("192.168.4.1:80").loopback and not parse_bind_address("hub.local:80").loopback
    for bad in ("http", "80:", "1.2.3.4:70000", ""):
        with pytest.raises(EdgeError, match=r"\[HOST:\]PORT"):
            parse_bind_address(bad)


def test_a_non_loopback_address_needs_a_token_file(tmp_path):
    with pytest.raises(EdgeError, match="--dashboard-token FILE"):
        dashboard_token(None, parse_bind_address("0.0.0.0:8080"))
    with pytest.raises(EdgeError, match="--dashboard-token"):
        load_config(overrides={"dashboard": "0.0.0.0:8080"}).require_dashboard_access()
    load_config(overrides={"dashboard": "8080"}).require_dashboard_access()  # loopback: no file needed
    with pytest.raises(EdgeError, match=r"dashboard = '80a' is not valid"):
        load_config(overrides={"dashboard": "80a"})


def test_the_token_file_is_made_private_once_then_reused(tmp_path):
    path = tmp_path / "state" / "token"
    made = dashboard_token(path, parse_bind_address("0.0.0.0:8080"))
    assert made.new and stat.S_IMODE(path.stat().st_mode) == 0o600 and len(made.value) >= 32
    again = dashboard_token(path, parse_bind_address("0.0.0.0:8080"))
    assert not again.new and again.value == made.value and again.matches(made.value) and not again.matches("x")
    os.chmod(path, 0o644)
    with pytest.raises(EdgeError, match="chmod 600"):
        dashboard_token(path, LOOPBACK)
    assert dashboard_token(None, LOOPBACK).value != dashboard_token(None, LOOPBACK).value  # one per run


# --------------------------------------------------------------------------- alerts


def test_an_alert_needs_persisting_high_pain_and_survives_windows_without_a_level():
    stored = []
    alerts = HighPainAlerts(after_seconds=25, store_event=lambda kind, detail: stored.append((kind, detail)))
    levels = ["High Pain", "High Pain", None, "High Pain", "Low Pain", "High Pain"]
    changes = [alerts.observe(_result(i, level)) for i, level in enumerate(levels)]
    # High since device 0 s: 10, 20, (held), 40 s -> raised at the fourth window; ended by Low Pain.
    assert [c is not None for c in changes] == [False, False, False, True, True, False]
    assert [kind for kind, _ in stored] == ["alert", "alert_end"]
    assert stored[0][1]["high_seconds"] == 40.0 and stored[1][1]["ended_wall_time"] is not None
    assert alerts.current is None


def test_acknowledging_is_stored_once_and_needs_the_current_alert():
    stored = []
    alerts = HighPainAlerts(after_seconds=10, store_event=lambda kind, detail: stored.append(kind))
    alert = alerts.observe(_result(0, "High Pain"))
    assert alerts.acknowledge(alert.id + 1) is None
    assert alerts.acknowledge(alert.id).acknowledged_wall_time is not None
    alerts.acknowledge(alert.id)
    assert stored == ["alert", "alert_ack"]
    assert not HighPainAlerts(10).can_acknowledge  # a read-only view


# --------------------------------------------------------------------------- the feed


def _events(message: bytes) -> tuple[str, dict]:
    kind, data = message.decode().strip().split("\n")
    return kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))


def test_the_feed_keeps_the_timeline_quality_and_traces():
    feed = DashboardFeed(LABELS, CHANNELS, HighPainAlerts(10),
                         link_status=lambda: {"state": "up", "samples_lost": {"EDA": 3}})
    data = np.random.default_rng(0).normal(size=(4, 1000))
    data[1, :500] = np.nan  # half of BVP missing
    window = Window(1, 10.0, 20.0, tuple(CHANNELS), data, 100.0)
    feed.window_stored(_result(0, None, skipped="behind"))
    feed.window_stored(_result(1, "High Pain", flagged="RESP"), window)
    _, snapshot = _events(feed.snapshot())
    assert [p["skip"] for p in snapshot["timeline"]] == ["behind", None]
    assert snapshot["timeline"][1]["flagged"] == ["RESP"] and snapshot["timeline"][1]["p"] == [0.1, 0.1, 0.8]
    assert snapshot["last"]["quality"]["RESP"] == {"ok": False, "flags": ["flat_line"]}
    traces = snapshot["traces"]["channels"]
    assert len(traces["EDA"]) == TRACE_POINTS and traces["BVP"][0] is None and traces["BVP"][-1] is not None
    assert np.isclose(traces["EDA"][0], data[0, :5].mean(), atol=1e-4)
    assert snapshot["link"] == {"state": "up", "samples_lost": {"EDA": 3}}
    assert snapshot["alert"]["high_seconds"] == 10.0  # raised by the second window


def test_a_subscriber_gets_each_window_and_a_slow_one_is_dropped():
    feed = DashboardFeed(LABELS, CHANNELS, HighPainAlerts(1000))
    subscriber = feed.subscribe()
    feed.window_stored(_result(0, "No Pain"))
    kind, data = _events(subscriber.messages.get_nowait())
    assert kind == "window" and data["point"]["level"] == "No Pain"
    for i in range(1, 200):
        feed.window_stored(_result(i, "No Pain"))
    assert subscriber.dropped and feed.subscribers == 0


# --------------------------------------------------------------------------- the server


@pytest.fixture
def served():
    alerts = HighPainAlerts(after_seconds=10, store_event=lambda kind, detail: None)
    feed = DashboardFeed(LABELS, CHANNELS, alerts)
    token = dashboard_token(None, LOOPBACK)
    with DashboardServer(feed, LOOPBACK, token) as server:
        yield server, feed


def _request(server, method, path, headers=None, body=None):
    """One request to ``server`` (a DashboardServer, or its URL) over loopback."""
    url = server if isinstance(server, str) else server.url
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response, response.read()


def test_pages_carry_security_headers_and_only_packaged_files(served):
    server, _ = served
    response, body = _request(server, "GET", "/")
    assert response.status == 200 and b"/static/app.js" in body
    for name, value in SECURITY_HEADERS.items():
        assert response.getheader(name) == value
    assert "unsafe-inline" not in response.getheader("Content-Security-Policy")
    for path in ("/static/app.js", "/static/app.css", "/static/uPlot.iife.min.js", "/static/uPlot.min.css",
                 "/static/uPlot.LICENSE"):
        assert _request(server, "GET", path)[0].status == 200, path
    for path in ("/static/../access.py", "/static/%2e%2e/server.py", "/etc/passwd", "/static/"):
        assert _request(server, "GET", path)[0].status == 404, path


def test_acknowledging_needs_the_token(served):
    server, feed = served
    feed.window_stored(_result(0, "High Pain"))
    alert_id = feed.alerts.current.id
    body = json.dumps({"id": alert_id})
    assert _request(server, "POST", "/api/alerts/ack", body=body)[0].status == 401
    assert _request(server, "POST", "/api/alerts/ack", {"Authorization": "Bearer wrong"}, body)[0].status == 403
    assert feed.alerts.current.acknowledged_wall_time is None
    bearer = {"Authorization": f"Bearer {server.token.value}"}
    assert _request(server, "POST", "/api/alerts/ack", bearer, json.dumps({"id": alert_id + 1}))[0].status == 409
    assert _request(server, "POST", "/api/alerts/ack", bearer, body)[0].status == 204
    assert feed.alerts.current.acknowledged_wall_time is not None


def test_requests_naming_another_host_are_refused_on_loopback(served):
    server, _ = served
    assert _request(server, "GET", "/", {"Host": "attacker.example"})[0].status == 403


def test_the_event_stream_starts_with_retry_and_a_snapshot(served):
    server, feed = served
    feed.window_stored(_result(0, "Low Pain"))
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/api/events")
    response = connection.getresponse()
    assert response.getheader("Content-Type") == "text/event-stream"
    assert response.fp.readline() == b"retry: 2000\n"
    response.fp.readline()
    assert response.fp.readline() == b"event: snapshot\n"
    snapshot = json.loads(response.fp.readline().removeprefix(b"data: "))
    assert snapshot["timeline"][0]["level"] == "Low Pain" and snapshot["can_acknowledge"]
    threading.Timer(0.2, feed.window_stored, [_result(1, "No Pain")]).start()
    response.fp.readline()
    assert response.fp.readline() == b"event: window\n"
    connection.close()


def test_a_server_reachable_from_elsewhere_needs_the_token_to_be_read(tmp_path):
    feed = DashboardFeed(LABELS, CHANNELS, HighPainAlerts(10))
    address = BindAddress("0.0.0.0", 0)
    token = dashboard_token(tmp_path / "token", address)
    with DashboardServer(feed, address, token) as server:
        assert _request(server, "GET", "/api/events")[0].status == 401
        assert _request(server, "GET", "/api/events", {"Cookie": "biomoe_dashboard=guess"})[0].status == 401
        response, _ = _request(server, "POST", "/api/login", {"Authorization": f"Bearer {token.value}"})
        assert response.status == 204
        cookie = response.getheader("Set-Cookie")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        port = int(server.url.rstrip("/").rsplit(":", 1)[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/api/events", headers={"Cookie": cookie.split(";")[0]})
        assert connection.getresponse().status == 200
        connection.close()


def test_busy_port_is_one_line(served):
    server, feed = served
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(EdgeError, match="choose another port"):
        DashboardServer(feed, BindAddress("127.0.0.1", port), server.token)


# --------------------------------------------------------------------------- the database view


def test_the_database_view_follows_new_windows_and_sessions(tmp_path):
    path = tmp_path / "results.sqlite"
    with ResultStore(path) as writer:
        writer.start_session("b", False, LABELS, CHANNELS)
        for i in range(3):
            writer.append(_result(i, "High Pain", session=None))
        with ResultStore(path, readonly=True) as reader:
            follower = DatabaseFollower(reader)
            feed = DashboardFeed(follower.labels, follower.channels, HighPainAlerts(25), live=False)
            follower.start(feed)
            assert len(_events(feed.snapshot())[1]["timeline"]) == 3 and feed.alerts.current is not None
            assert follower.poll(feed) == 0 and feed.alerts.current.acknowledged_wall_time is None
            writer.append_event("alert_ack", {"id": feed.alerts.current.id, "acknowledged_wall_time": 1.7e9 + 5})
            assert follower.poll(feed) == 0 and feed.alerts.current.acknowledged_wall_time == 1.7e9 + 5
            writer.append(_result(3, "No Pain", session=None))
            assert follower.poll(feed) == 1 and feed.alerts.current is None
            writer.start_session("b", False, LABELS, CHANNELS)
            writer.append(_result(0, "Low Pain", session=None))
            assert follower.poll(feed) == 1
            timeline = _events(feed.snapshot())[1]["timeline"]
            assert [p["level"] for p in timeline] == ["Low Pain"]  # the new session replaced the old one


def test_the_database_view_refuses_an_empty_database_or_unknown_session(tmp_path):
    path = tmp_path / "results.sqlite"
    with ResultStore(path) as writer:
        with ResultStore(path, readonly=True) as reader, pytest.raises(EdgeError, match="holds no session"):
            DatabaseFollower(reader)
        writer.start_session("b", False, LABELS, CHANNELS)
        with ResultStore(path, readonly=True) as reader, pytest.raises(EdgeError, match="sessions: 1"):
            DatabaseFollower(reader, session=7)


# --------------------------------------------------------------------------- the commands


@pytest.mark.parametrize("argv, flag", [
    (["monitor", "--simulate", "--dashboard", "0.0.0.0:0", "--windows", "1"], "--dashboard-token"),
    (["dashboard", "--db", "results.sqlite", "--listen", "0.0.0.0:0"], "--token"),
])
def test_a_page_for_other_machines_without_a_token_refuses_to_start(argv, flag, tmp_path, monkeypatch, capsys):
    from edge.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"add {flag} FILE" in error and "Traceback" not in error
    assert not (tmp_path / "results.sqlite").exists()  # refused before anything was opened


# --------------------------------------------------------------------------- the page's colours


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(first: str, second: str) -> float:
    high, low = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_page_text_meets_wcag_aa_contrast():
    from edge.dashboard.server import STATIC_FOLDER

    colours = dict(re.findall(r"--([a-z]+):\s*(#[0-9a-f]{6})", (STATIC_FOLDER / "app.css").read_text()))
    pairs = [("#ffffff", colours[level]) for level in ("no", "low", "high", "none")]  # the level label
    pairs += [(colours[text], colours[background]) for text in ("text", "muted", "warn")
              for background in ("bg", "panel")]
    for text, background in pairs:
        assert _contrast(text, background) >= 4.5, (text, background)


def test_biomoe_dashboard_serves_a_database_and_stops_on_sigterm(tmp_path):
    import signal
    import subprocess
    import sys

    path = tmp_path / "results.sqlite"
    with ResultStore(path) as writer:
        writer.start_session("b", False, LABELS, CHANNELS)
        for i in range(4):
            writer.append(_result(i, "Low Pain", session=None))
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "dashboard", "--db", str(path), "--listen",
                                "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        url = re.search(r"dashboard at (http://127\.0\.0\.1:\d+/)$", line.strip()).group(1)
        assert "token" not in line  # a read-only page on loopback needs none
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/api/events")
        response = connection.getresponse()
        stream = response.fp
        while not stream.readline().startswith(b"event: snapshot"):
            pass
        snapshot = json.loads(stream.readline().removeprefix(b"data: "))
        assert not snapshot["live"] and not snapshot["can_acknowledge"]
        assert [p["level"] for p in snapshot["timeline"]] == ["Low Pain"] * 4
        connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
