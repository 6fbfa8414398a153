"""Run the monitor as a systemd service, and stop it cleanly.

``biomoe install-service`` writes a unit that starts ``biomoe monitor
--config FILE`` at boot as an unprivileged user, restarts it on failure, and
confines it (no network, read-only system, one writable state folder). The
unit sends SIGTERM to stop; :class:`GracefulShutdown` turns SIGTERM/SIGINT
into a flag the monitor checks between windows, so the window in progress is
finished and committed before the process exits.
"""

from __future__ import annotations

import argparse
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
    """Quote one ExecStart argument the way systemd reads it."""
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", argument):
        return argument
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(config_path, user: str = "biomoe", command: list[str] | None = None, database=None) -> str:
    """Text of the systemd unit that runs the monitor.

    Parameters
    ----------
    config_path : str or Path
        Absolute path of the monitor's TOML settings.
    user : str
        Unprivileged account the service runs as (not root).
    command : list of str, optional
        How to start biomoe; default :func:`service_command`.
    database : str or Path, optional
        The results database from the settings: its folder is made writable
        when it lies outside :data:`STATE_DIRECTORY`.

    Returns
    -------
    str
    """
    _check_user(user)
    config_path = Path(config_path)
    if not config_path.is_absolute():
        raise EdgeError(f"the unit needs an absolute config path, got {config_path}; pass --config with a full path")
    command = command or service_command()
    exec_start = " ".join(_quote(part) for part in [*command, "monitor", "--config", str(config_path)])
    writable = ""
    if database is not None and Path(database).is_absolute():  # relative: inside WorkingDirectory
        folder = Path(database).parent
        if folder != STATE_DIRECTORY and STATE_DIRECTORY not in folder.parents:
            writable = f"ReadWritePaths={_quote(str(folder))}\n"
    return f"""\
# Written by `biomoe install-service`. Apply changes with:
#   sudo systemctl daemon-reload && sudo systemctl restart biomoe-monitor
[Unit]
Description=Tiny-BioMoE Edge continuous pain monitor
Documentation=file://{config_path}
After=local-fs.target
StartLimitIntervalSec=300
StartLimitBurst=10

[Service]
Type=simple
User={user}
SupplementaryGroups=dialout
ExecStart={exec_start}
Restart=on-failure
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=30
Environment=PYTHONUNBUFFERED=1
StateDirectory=biomoe
WorkingDirectory={STATE_DIRECTORY}
{writable}NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateNetwork=yes
RestrictAddressFamilies=AF_UNIX
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes

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
    parser.add_argument("--output", type=Path, default=DEFAULT_UNIT_PATH,
                        help="where to write the unit (default: %(default)s)")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the unit instead of writing it")


def run(args: argparse.Namespace) -> int:
    """Check the settings, then write (or print) the unit and the next steps."""
    config_path = args.config.expanduser().resolve()
    config = load_config(config_path)  # refuse a unit that would start a monitor with bad settings
    config.require_source()
    unit = render_unit(config_path, args.user, database=config.database)
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
