"""``biomoe dashboard --db FILE``: the bedside page of a results database, after the fact or followed.

Shows the database's latest session (``--session N`` another) and follows
it: every second it asks SQLite whether rows were added, so a monitor
writing the file elsewhere (another process, the systemd service) shows up
within a second, and a new session replaces the old one. The database is
opened read-only: alerts are computed from the stored levels as the monitor
does (the same ids) and show as acknowledged once the monitor's page stored
the acknowledgement; they cannot be acknowledged here, and the last window's signals (never
stored) and the link state are only shown beside a running monitor
(``biomoe monitor --dashboard``).
"""

from __future__ import annotations

import argparse

from edge.dashboard.access import AccessToken, dashboard_token, parse_bind_address
from edge.dashboard.alerts import DEFAULT_ALERT_SECONDS, HighPainAlerts
from edge.dashboard.feed import DashboardFeed
from edge.dashboard.live import announce
from edge.dashboard.server import DashboardServer
from edge.errors import EdgeError
from edge.service import GracefulShutdown
from edge.storage import ResultStore

__all__ = ["DatabaseFollower", "configure_parser", "run"]

#: Seconds between looks at the database for new rows.
POLL_SECONDS = 1.0


class DatabaseFollower:
    """Feeds the stored windows of one session, then each new one, to a :class:`DashboardFeed`.

    Parameters
    ----------
    store : ResultStore
        Opened read-only.
    session : int, optional
        The session to show; default the latest, and each newer one as it starts.
    """

    def __init__(self, store: ResultStore, session: int | None = None):
        sessions = store.sessions()
        if not sessions:
            raise EdgeError(f"results database {store.path} holds no session yet; start biomoe monitor --db "
                            f"{store.path}, then open the dashboard")
        known = [s["id"] for s in sessions]
        if session is not None and session not in known:
            raise EdgeError(f"results database {store.path} has no session {session}; sessions: "
                            f"{', '.join(map(str, known))}")
        self.store = store
        self.session = session
        chosen = next(s for s in sessions if s["id"] == (session or known[-1]))
        self.labels, self.channels = chosen["labels"], chosen["channels"]
        self._first = chosen["id"]
        self._seen = 0

    def start(self, feed: DashboardFeed) -> None:
        """Give ``feed`` the chosen session's windows so far."""
        self._seen = self.store.count()
        for result in self.store.windows(session=self._first):
            feed.window_stored(result)

    def poll(self, feed: DashboardFeed) -> int:
        """Give ``feed`` the windows stored since the last look; return how many."""
        total = self.store.count()
        new = [r for r in self.store.windows(last=total - self._seen) if self.session in (None, r.session_id)] \
            if total > self._seen else []
        self._seen = total
        for result in new:
            feed.window_stored(result)
        self._acknowledgements(feed)
        return len(new)

    def _acknowledgements(self, feed: DashboardFeed) -> None:
        """Mark the current alert acknowledged once the monitor stored that (looked up only while it is not)."""
        current = feed.alerts.current
        if current is None or current.acknowledged_wall_time is not None:
            return
        for event in self.store.events("alert_ack"):
            if event["detail"].get("id") == current.id:
                feed.acknowledge(current.id, event["detail"]["acknowledged_wall_time"])


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``biomoe dashboard``."""
    parser.description = ("Serve the bedside page of a results database (read-only): the latest session, "
                          "followed as a monitor adds windows.")
    parser.add_argument("--db", required=True, metavar="FILE", help="SQLite results database of biomoe monitor")
    parser.add_argument("--listen", default="8080", metavar="[HOST:]PORT",
                        help="where to serve the page (default %(default)s, on 127.0.0.1)")
    parser.add_argument("--token", metavar="FILE",
                        help="access token file, created (mode 0600) if missing; needed for a HOST other than "
                             "loopback")
    parser.add_argument("--session", type=int, metavar="N", help="show session N (default: the latest)")
    parser.add_argument("--alert-after", type=float, default=DEFAULT_ALERT_SECONDS, metavar="SECONDS",
                        help="persisting High Pain before the alert banner (default %(default)g)")


def run(args: argparse.Namespace) -> int:
    """Run ``biomoe dashboard``; see the module docstring."""
    if not args.alert_after > 0:
        raise EdgeError(f"--alert-after must be a number of seconds > 0, got {args.alert_after!r}")
    address = parse_bind_address(args.listen, "--listen")
    token: AccessToken = dashboard_token(args.token, address, "--token")
    with ResultStore(args.db, readonly=True) as store:
        follower = DatabaseFollower(store, args.session)
        feed = DashboardFeed(follower.labels, follower.channels, HighPainAlerts(args.alert_after), live=False)
        follower.start(feed)
        with DashboardServer(feed, address, token) as server, GracefulShutdown() as shutdown:
            announce(server, "biomoe dashboard", None if address.loopback else "lets the page show the database")
            while not shutdown.wait(POLL_SECONDS):
                follower.poll(feed)
    return 0
