"""The dashboard's HTTP server: the page, its assets, one event stream, one acknowledge endpoint.

Standard library only (:class:`http.server.ThreadingHTTPServer`, one thread
per connection): on a Pi it costs no import beyond what Python loads anyway
(see ``benchmarks/dashboard_load.py``), and a handful of pages is all a
bedside hub serves.

Endpoints::

    GET  /                  the page (edge/dashboard/static/index.html)
    GET  /static/NAME       its script, styles and the vendored uPlot (nothing from outside)
    GET  /api/events        Server-Sent Events: a snapshot, then one event per window, link change, alert
    POST /api/login         Authorization: Bearer TOKEN -> a session cookie for the event stream
    POST /api/alerts/ack    Authorization: Bearer TOKEN, body {"id": N}: acknowledge the alert

Reading needs the token (cookie or header) when the server is reachable from
other machines; acknowledging always needs it in the ``Authorization``
header (a cookie alone would let another site's form acknowledge). Requests
naming another host than the server's are refused on loopback (DNS
rebinding). Every response carries a Content-Security-Policy without
``unsafe-inline`` and no-sniff, no-referrer, no-framing headers.
"""

from __future__ import annotations

import http.server
import json
import logging
import queue
import socket
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from pathlib import Path

from edge.dashboard.access import AccessToken, BindAddress
from edge.dashboard.feed import DashboardFeed
from edge.errors import EdgeError

__all__ = ["STATIC_FOLDER", "SECURITY_HEADERS", "DashboardServer"]

logger = logging.getLogger(__name__)

STATIC_FOLDER = Path(__file__).resolve().parent / "static"
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".png": "image/png", ".LICENSE": "text/plain; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_COOKIE = "biomoe_dashboard"
#: Seconds between keep-alive comments on an idle event stream (proxies and browsers drop silent ones).
_KEEPALIVE_S = 15.0
#: The browser's reconnection delay after the stream ends (ms), sent as ``retry:``.
_RETRY_MS = 2000


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"
    timeout = 120  # seconds an idle kept-alive connection holds its thread (event streams write every 15 s)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        logger.debug("dashboard %s: " + format, self.client_address[0], *args)

    # -- routing

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if not self._host_allowed():
            return self._reply(HTTPStatus.FORBIDDEN, b"unknown host\n")
        if path == "/":
            return self._file("index.html")
        if path == "/favicon.ico":  # browsers ask; the page has none
            return self._reply(HTTPStatus.NO_CONTENT, b"")
        if path.startswith("/static/"):
            return self._file(path[len("/static/"):])
        if path == "/api/events":
            if not self._may_read():
                return self._reply(HTTPStatus.UNAUTHORIZED, b"open the link with the access token\n")
            return self._events()
        return self._reply(HTTPStatus.NOT_FOUND, b"not found\n")

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        if not self._host_allowed():
            return self._reply(HTTPStatus.FORBIDDEN, b"unknown host\n")
        if path not in ("/api/login", "/api/alerts/ack"):
            return self._reply(HTTPStatus.NOT_FOUND, b"not found\n")
        offered = self._bearer()
        if offered is None:
            return self._reply(HTTPStatus.UNAUTHORIZED, b"an access token is needed\n")
        if not self.server.token.matches(offered):
            return self._reply(HTTPStatus.FORBIDDEN, b"the access token is not this dashboard's\n")
        if path == "/api/login":
            cookie = f"{_COOKIE}={offered}; HttpOnly; SameSite=Strict; Path=/"
            return self._reply(HTTPStatus.NO_CONTENT, b"", {"Set-Cookie": cookie})
        return self._acknowledge()

    # -- access

    def _host_allowed(self) -> bool:
        if not self.server.address.loopback:
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in ("127.0.0.1", "localhost", "::1", self.server.address.host)

    def _bearer(self) -> str | None:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    def _may_read(self) -> bool:
        if self.server.address.loopback:
            return True
        cookie = SimpleCookie(self.headers.get("Cookie") or "")
        offered = cookie[_COOKIE].value if _COOKIE in cookie else self._bearer()
        return self.server.token.matches(offered)

    # -- answers

    def _reply(self, status: HTTPStatus, body: bytes, headers: dict | None = None,
               content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file(self, name: str) -> None:
        path = STATIC_FOLDER / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return self._reply(HTTPStatus.NOT_FOUND, b"not found\n")
        content_type = _CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        self._reply(HTTPStatus.OK, path.read_bytes(), {"Cache-Control": "no-cache"}, content_type)

    def _acknowledge(self) -> None:
        if not self.server.feed.alerts.can_acknowledge:
            return self._reply(HTTPStatus.CONFLICT, b"this view is read-only (a database): nothing to acknowledge\n")
        try:
            length = int(self.headers.get("Content-Length") or 0)
            alert_id = int(json.loads(self.rfile.read(min(length, 1024)) or b"{}")["id"])
        except (ValueError, KeyError, TypeError):
            return self._reply(HTTPStatus.BAD_REQUEST, b'send {"id": N}, the alert\'s id\n')
        if not self.server.feed.acknowledge(alert_id):
            return self._reply(HTTPStatus.CONFLICT, b"no such alert now (it ended or was replaced)\n")
        self._reply(HTTPStatus.NO_CONTENT, b"")

    def _events(self) -> None:
        feed = self.server.feed
        subscriber = feed.subscribe()  # before the snapshot: no window falls between the two
        try:
            self.send_response(HTTPStatus.OK)
            for name, value in {**SECURITY_HEADERS, "Content-Type": "text/event-stream",
                                "Cache-Control": "no-store", "Connection": "close"}.items():
                self.send_header(name, value)
            self.end_headers()
            self.close_connection = True
            self.wfile.write(f"retry: {_RETRY_MS}\n\n".encode() + feed.snapshot())
            self.wfile.flush()
            idle = 0.0
            while not self.server.closing.is_set() and not subscriber.dropped:
                try:
                    message = subscriber.messages.get(timeout=1.0)
                    idle = 0.0
                except queue.Empty:
                    idle += 1.0
                    if idle < _KEEPALIVE_S:
                        continue
                    message, idle = b": keep-alive\n\n", 0.0
                self.wfile.write(message)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the page went away
        finally:
            feed.unsubscribe(subscriber)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: BindAddress, feed: DashboardFeed, token: AccessToken):
        if ":" in address.host:
            self.address_family = socket.AF_INET6
        self.address = address
        self.feed = feed
        self.token = token
        self.closing = threading.Event()
        super().__init__((address.host, address.port), _Handler)


class DashboardServer:
    """The dashboard, served from a background thread.

    Parameters
    ----------
    feed : DashboardFeed
        What the page shows.
    address : BindAddress
        Where to listen (port 0: a free one, see :attr:`url`).
    token : AccessToken
        See :mod:`edge.dashboard.access`.

    Raises
    ------
    EdgeError
        When the address cannot be bound (in use, not this machine's).
    """

    def __init__(self, feed: DashboardFeed, address: BindAddress, token: AccessToken):
        try:
            self._server = _Server(address, feed, token)
        except OSError as exc:
            raise EdgeError(f"cannot serve the dashboard on {address.host}:{address.port}: {exc.strerror or exc}; "
                            "choose another port or address") from None
        self.token = token
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                         name="biomoe-dashboard", daemon=True)

    @property
    def url(self) -> str:
        """The page's address (the bound port when 0 was asked)."""
        host, port = self._server.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def link(self) -> str:
        """The address with the token in the fragment (never sent to the server)."""
        return f"{self.url}#token={self.token.value}"

    def start(self) -> "DashboardServer":
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; open event streams end within a second (browsers then retry)."""
        self._server.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()
