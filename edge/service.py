"""Run the monitor as a systemd service, and stop it cleanly.

``biomoe install-service`` writes a unit that starts ``biomoe monitor
--config FILE`` at boot as an unprivileged user, restarts it on failure
(without end: the hub may be plugged in late), and confines it (no network,
no capabilities, read-only system, only the serial device, one private state
folder, a memory cap; see :func:`render_unit`). The
unit sends SIGTERM to stop; :class:`GracefulShutdown` turns SIGTERM/SIGINT
into a flag the monitor checks between windows, so the window in progress is
finished and committed before the process exits.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import sys
import threading
from pathlib import Path

from edge.config import load_config
from edge.errors import EdgeError

__all__ = [
    "DEFAULT_UNIT_PATH",
    "DEFAULT_CONFIG_PATH",
    "STATE_DIRECTORY",
    "service_command",
    "memory_max_mb",
    "render_unit",
    "GracefulShutdown",
    "configure_parser",
    "run",
]

DEFAULT_UNIT_PATH = Path("/etc/systemd/system/biomoe-monitor.service")
DEFAULT_CONFIG_PATH = Path("/etc/biomoe/monitor.toml")
#: Writable folder systemd creates for the service user (``StateDirectory=biomoe``).
STATE_DIRECTORY = Path("/var/lib/biomoe")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def service_command() -> list[str]:
    """How to start biomoe from a unit: the ``biomoe`` script beside this
    Python if there is one, else on ``PATH``, else ``python -m edge.cli``."""
    beside = Path(sys.executable).parent / "biomoe"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("biomoe")
    if found:
        return [str(Path(found).resolve())]
    return [sys.executable, "-m", "edge.cli"]


def _quote(argument: str) -> str:
    """One word of a unit line, quoted and with ``%`` escaped the way systemd reads it.

    A control character (a newline would start a line of its own, such as a
    root ``ExecStartPre=+``) is refused, never escaped.
    """
    if _CONTROL_CHARACTER.search(argument):
        raise EdgeError(f"{argument!r} contains a control character (a newline?); refused: written into the "
                        "systemd unit it would add lines of its own; fix the value")
    argument = argument.replace("%", "%%")  # systemd expands %-specifiers, even inside quotes
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", argument):
        return argument
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _absolute(what: str, path) -> str:
    """``path`` quoted for the unit; a relative path is refused (the unit has no folder to resolve it in)."""
    text = str(path)
    if not Path(text).is_absolute():
        raise EdgeError(f"{what} {text!r} is a relative path; the systemd unit needs an absolute one; "
                        "write the full path (e.g. /var/lib/biomoe/results.sqlite)")
    return _quote(text)


def _device_lines(port: str | None) -> str:
    """Only the serial device may be opened (``DevicePolicy=closed`` keeps /dev/null, ptys and the like)."""
    if not port or "://" in port:  # the simulated hub, or a pyserial URL: no device node
        return "DevicePolicy=closed\n"
    return f"DevicePolicy=closed\nDeviceAllow={_absolute('port', port)} rw\n"


#: Addresses a dashboard on the hub's own networks may talk to: loopback, link-local and the private ranges.
_LOCAL_NETWORKS = "localhost link-local 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 fc00::/7"


def _network_lines(dashboard: str | None) -> str:
    """No network at all, or with the bedside page only this machine (loopback bind) or the local networks."""
    if dashboard is None:
        return "PrivateNetwork=yes\nIPAddressDeny=any\nRestrictAddressFamilies=AF_UNIX\n"
    from edge.dashboard.access import parse_bind_address

    allowed = "localhost" if parse_bind_address(dashboard).loopback else _LOCAL_NETWORKS
    return f"IPAddressDeny=any\nIPAddressAllow={allowed}\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n"


def _home_protection(paths) -> str:
    """``ProtectHome=yes`` unless the service must read something under a home folder (a venv in ~)."""
    homes = (Path("/home"), Path("/root"), Path("/run/user"))
    inside = any(home == Path(path) or home in Path(path).parents for path in paths for home in homes)
    return "read-only" if inside else "yes"


def memory_max_mb(target: str) -> float:
    """The hard memory limit of the service: the board's ``peak_rss_mb`` budget (``benchmarks/budgets.toml``)."""
    from benchmarks.budgets import get_target

    return get_target(target).peak_rss_mb


def render_unit(config_path, user: str = "biomoe", command: list[str] | None = None, database=None,
                port: str | None = None, memory_mb: float = 400.0, dashboard: str | None = None) -> str:
    """Text of the systemd unit that runs the monitor, confined.

    Every value written into the unit is checked: a control character (a
    newline that would start a line of its own) or a relative path is refused.
    The confinement scores at most 2.0 in ``systemd-analyze security``: no
    capabilities, no network (loopback or the local networks only with the
    bedside page), system calls of ``@system-service`` only,
    read-only system, private /tmp, only the serial device, files created
    ``0600`` (``UMask=0077``) in a ``0700`` state folder, and a memory cap.
    The service restarts without end (every 10 s) while the hub is unplugged.

    Parameters
    ----------
    config_path : str or Path
        Absolute path of the monitor's TOML settings.
    user : str
        Unprivileged account the service runs as (not root).
    command : list of str, optional
        How to start biomoe; default :func:`service_command`.
    database : str or Path, optional
        The results database from the settings (relative: to
        :data:`STATE_DIRECTORY`): its folder is made writable when it lies
        outside that folder.
    port : str, optional
        The serial device from the settings (``DeviceAllow``); None or a
        pyserial URL (the simulated hub): no device.
    memory_mb : float
        ``MemoryMax`` in MiB (:func:`memory_max_mb` of the target board).
    dashboard : str, optional
        The settings' ``dashboard`` (``[HOST:]PORT``): the unit then keeps the
        network, for loopback only or, bound elsewhere, for the local networks.

    Returns
    -------
    str
    """
    _check_user(user)
    config_text = _absolute("the config path", config_path)
    command = command or service_command()
    exec_start = " ".join([_absolute("the biomoe command", command[0]), *(_quote(part) for part in command[1:]),
                           "monitor", "--config", config_text])
    writable = ""
    if database is not None:  # a relative one lies in WorkingDirectory
        folder = Path(os.path.normpath(STATE_DIRECTORY / database)).parent
        if folder != STATE_DIRECTORY and STATE_DIRECTORY not in folder.parents:
            writable = f"ReadWritePaths={_quote(str(folder))}\n"
    protect_home = _home_protection([config_path, command[0], *([database] if database is not None else [])])
    return f"""\
# Written by `biomoe install-service`. Settings: {config_text}
# Apply changes with: sudo systemctl daemon-reload && sudo systemctl restart biomoe-monitor
[Unit]
Description=Tiny-BioMoE Edge continuous pain monitor
After=local-fs.target
# Never give up: a hub unplugged at boot is retried every RestartSec until it is there.
StartLimitIntervalSec=0

[Service]
Type=simple
User={user}
SupplementaryGroups=dialout
ExecStart={exec_start}
Restart=on-failure
RestartSec=10
KillSignal=SIGTERM
TimeoutStopSec=30
Environment=PYTHONUNBUFFERED=1
StateDirectory=biomoe
StateDirectoryMode=0700
WorkingDirectory={STATE_DIRECTORY}
UMask=0077
MemoryMax={memory_mb:.0f}M
{writable}{_device_lines(port)}NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ProtectHome={protect_home}
PrivateTmp=yes
{_network_lines(dashboard)}ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""


def _check_user(user: str) -> None:
    if not _USER_NAME.match(user or ""):
        raise EdgeError(f"--user {user!r} is not a valid account name; use lowercase letters, digits, _ or -")
    if user == "root":
        raise EdgeError("--user root is refused: the monitor runs as an unprivileged account, e.g. --user biomoe")


class GracefulShutdown:
    """SIGTERM/SIGINT set a flag instead of killing the process mid-window.

    Use as a context manager around the monitor loop; the previous handlers
    come back on exit. A second signal while stopping raises
    :class:`KeyboardInterrupt`, for a person who really wants out.

    Examples
    --------
    >>> import os, signal
    >>> with GracefulShutdown() as shutdown:
    ...     os.kill(os.getpid(), signal.SIGTERM)
    ...     shutdown.requested, shutdown.signal_name
    (True, 'SIGTERM')
    """

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self._signals = tuple(signals)
        self._previous: dict = {}
        self.event = threading.Event()
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self.event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until a stop signal arrives or ``timeout`` passes; return :attr:`requested`."""
        return self.event.wait(timeout)

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        self.event.set()

    def __enter__(self):
        for signum in self._signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``biomoe install-service``."""
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                        help="monitor settings the service reads (default: %(default)s)")
    parser.add_argument("--user", default="biomoe", help="unprivileged account to run as (default: %(default)s)")
    parser.add_argument("--target", default="rpi4", metavar="BOARD",
                        help="board whose peak_rss_mb budget caps the service's memory (MemoryMax): rpi4, rpi5, "
                             "rpi-zero-2w, jetson-orin-nano, dev-x86 (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=DEFAULT_UNIT_PATH,
                        help="where to write the unit (default: %(default)s)")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the unit instead of writing it")


def run(args: argparse.Namespace) -> int:
    """Check the settings, then write (or print) the unit and the next steps."""
    config_path = args.config.expanduser().resolve()
    config = load_config(config_path)  # refuse a unit that would start a monitor with bad settings
    config.require_source()
    unit = render_unit(config_path, args.user, database=config.database, port=config.port,
                       memory_mb=memory_max_mb(args.target), dashboard=config.dashboard)
    if args.print_only:
        sys.stdout.write(unit)
        return 0
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(unit, encoding="utf-8")
    except PermissionError:
        raise EdgeError(
            f"cannot write {args.output}: permission denied; run with sudo, or use --print and copy the unit yourself"
        ) from None
    name = args.output.name
    print(f"wrote {args.output}. Next:")
    print(f"  sudo useradd --system --no-create-home --groups dialout {shlex.quote(args.user)}  # once")
    print(f"  sudo systemctl daemon-reload && sudo systemctl enable --now {name}")
    print(f"  journalctl -u {name} -f   # follow the monitor's output")
    return 0
