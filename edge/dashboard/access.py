"""Who may reach the dashboard: its bind address and its access token.

The dashboard binds to 127.0.0.1 unless told otherwise. Any other address
makes the page reachable from the network (the hub's hotspot), so it needs an
access token kept in a file only its owner may read (mode 0600); without one
the dashboard refuses to start. Acknowledging an alert always needs the token,
on loopback too: a token made for the run (in memory) when no file is given.

The token reaches the browser in the link's fragment (``#token=...``), which
browsers never send to a server, so it stays out of request lines and logs.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgeError

__all__ = ["DEFAULT_HOST", "BindAddress", "parse_bind_address", "require_token", "AccessToken", "dashboard_token"]

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class BindAddress:
    """Where the dashboard listens; ``port`` 0 lets the system choose a free one."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        """True when only this machine can connect (127.0.0.0/8, ::1, localhost)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: assume it is reachable from elsewhere
            return False


def parse_bind_address(text: str, where: str = "--dashboard") -> BindAddress:
    """``[HOST:]PORT`` -> :class:`BindAddress` (host default :data:`DEFAULT_HOST`).

    Examples
    --------
    >>> parse_bind_address("8080")
    BindAddress(host='127.0.0.1', port=8080)
    >>> parse_bind_address("0.0.0.0:8080").loopback
    False
    """
    host, _, port = str(text).strip().rpartition(":")
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise EdgeError(f"{where} {text!r} is not [HOST:]PORT; e.g. 8080 or 127.0.0.1:8080 (port 0 to 65535)")
    return BindAddress(host, int(port))


def require_token(address: BindAddress, token_path, flag: str = "--dashboard-token") -> None:
    """Refuse an address reachable from other machines when no token file is given."""
    if token_path is None and not address.loopback:
        raise EdgeError(
            f"the dashboard on {address.host} would be reachable from other machines without an access token; "
            f"add {flag} FILE (created with a new token, mode 0600, if missing) or bind 127.0.0.1"
        )


@dataclass(frozen=True)
class AccessToken:
    """The dashboard's token and whether it was just made (then it is shown once)."""

    value: str
    new: bool
    path: Path | None = None

    def matches(self, offered: str | None) -> bool:
        """Constant-time comparison with what a request offered."""
        return offered is not None and secrets.compare_digest(offered.encode(), self.value.encode())


def dashboard_token(path: Path | None, address: BindAddress, flag: str = "--dashboard-token") -> AccessToken:
    """The token of a dashboard at ``address``: read from (or created in) ``path``, or made for this run.

    Raises
    ------
    EdgeError
        For a non-loopback address without a token file, or a token file that
        others may read or that holds no token.
    """
    require_token(address, path, flag)
    if path is None:
        return AccessToken(secrets.token_urlsafe(24), new=True)
    path = Path(path)
    if not path.exists():
        value = secrets.token_urlsafe(24)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(value + "\n")
        return AccessToken(value, new=True, path=path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise EdgeError(f"dashboard token file {path} may be read by others (mode {mode:04o}); chmod 600 {path}")
    value = path.read_text().strip()
    if not value:
        raise EdgeError(f"dashboard token file {path} is empty; delete it to have a new token made")
    return AccessToken(value, new=False, path=path)
