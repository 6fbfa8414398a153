"""The dashboard beside a running monitor, in its process.

In-process rather than a sibling reading the SQLite file: the page gets the
last window's signals (not stored) and link changes the moment they happen,
and the monitor pays one JSON encoding per window (measured in
``benchmarks/dashboard_load.py``).
"""

from __future__ import annotations

import sys

from edge.dashboard.access import dashboard_token, parse_bind_address
from edge.dashboard.alerts import HighPainAlerts
from edge.dashboard.feed import DashboardFeed
from edge.dashboard.server import DashboardServer

__all__ = ["serve_monitor", "announce"]


def serve_monitor(monitor, config) -> DashboardServer:
    """The dashboard observing ``monitor`` (an :class:`edge.monitor.Monitor`) as ``config`` says, bound, announced.

    Use it as a context manager: serving starts on entering, stops on leaving.
    Alerts and their acknowledgements are stored as the monitor's events.
    """
    address = parse_bind_address(config.dashboard)
    token = dashboard_token(config.dashboard_token, address)
    alerts = HighPainAlerts(config.alert_after_seconds, store_event=monitor._event)

    def link_status() -> dict:
        counters = monitor.counters()
        return {"state": counters["link"], "samples_lost": counters["samples_lost"]}

    feed = DashboardFeed(monitor.bundle.labels, monitor.channels, alerts, live=True, link_status=link_status)
    server = DashboardServer(feed, address, token)
    monitor.observers.append(feed)
    announce(server, "biomoe monitor", "lets the page acknowledge alerts" if address.loopback
             else "lets the page show the monitor and acknowledge alerts")
    return server


def announce(server: DashboardServer, program: str, token_use: str | None) -> None:
    """Say where the page is; with the token once, when it was just made, if the page needs it (``token_use``)."""
    if token_use is None:
        print(f"{program}: dashboard at {server.url}", file=sys.stderr, flush=True)
    elif server.token.new:
        kept = f"kept in {server.token.path}, mode 0600" if server.token.path else "for this run"
        print(f"{program}: dashboard at {server.link()}  <- open this link: its token ({kept}) {token_use}",
              file=sys.stderr, flush=True)
    else:
        print(f"{program}: dashboard at {server.url}; open {server.url}#token=TOKEN with the token in "
              f"{server.token.path}: it {token_use}", file=sys.stderr, flush=True)
