"""The serial port of the sensor hub, as a newcomer meets it: present, permitted, free, talking.

What goes wrong first on a new hub is rarely the model: the board is on
another device node, the user is not in the group that may open serial
ports, another program (a monitor already running as a service, a terminal
program) holds the port, or nothing speaks the protocol on it. Each of these
is one line here, with its fix, for ``biomoe monitor`` and ``biomoe doctor``:

- :func:`serial_ports` lists the serial devices present (pyserial's
  ``list_ports``), for a port that does not exist or stays silent;
- :func:`port_problem` checks a port before it is opened;
- the reader locks every port it opens (pyserial's ``exclusive=True``, an
  advisory ``flock``), so a second monitor on the same port is refused
  instead of splitting the byte stream with the first; that refusal, too, is
  one line here;
- :func:`explain_port_error` turns a :class:`firmware_bridge.BridgeError`
  from opening or waiting for the hello into an :class:`~edge.errors.EdgeError`
  naming the fix.

Only local device paths are checked; pyserial URLs (``socket://``,
``loop://``, ``sim://``) pass through.
"""

from __future__ import annotations

import errno
import getpass
import grp
import os
import stat

from edge.errors import EdgeError

__all__ = ["user_name", "serial_ports", "ports_hint", "port_problem", "permission_fix", "port_holders",
           "explain_port_error"]


def _is_url(port: str) -> bool:
    return "://" in port


def serial_ports() -> list[str]:
    """The serial devices present, as ``"/dev/ttyACM0 (description)"``, from pyserial's ``list_ports``."""
    try:
        from serial.tools import list_ports

        found = sorted(list_ports.comports(), key=lambda info: info.device)
    except Exception:  # noqa: BLE001 - listing is a hint; never let it hide the real problem
        return []
    names = []
    for info in found:
        description = info.description if info.description and info.description != "n/a" else ""
        names.append(f"{info.device} ({description})" if description else info.device)
    return names


def ports_hint() -> str:
    """``"serial ports present: A, B"``, or what to check when there is none."""
    present = serial_ports()
    if present:
        return "serial ports present: " + ", ".join(present)
    return "no serial ports found (dmesg | tail shows a board arrive when it is plugged in)"


def _port_fix() -> str:
    return f"pass --port with the sensor board's ({ports_hint()}), or --simulate to try without hardware"


def user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no name for this uid (a container)
        return str(os.getuid())


def permission_fix(port: str) -> str:
    """The fix for a port this user may not open: join its group, or give it one."""
    user = user_name()
    try:
        info = os.stat(port)
        group = grp.getgrgid(info.st_gid).gr_name
        group_rw = info.st_mode & (stat.S_IRGRP | stat.S_IWGRP) == stat.S_IRGRP | stat.S_IWGRP
    except (OSError, KeyError):
        group, group_rw = "dialout", True
    if group_rw and group != "root":
        return f"sudo usermod -aG {group} {user}, then log out and back in (or run: newgrp {group})"
    return (f"give the port to group dialout (sudo chgrp dialout {port} && sudo chmod 660 {port}; a udev rule "
            f"MODE=\"0660\", GROUP=\"dialout\" makes it last), then sudo usermod -aG dialout {user} and log in again")


def port_problem(port: str) -> EdgeError | None:
    """Why ``port`` cannot be opened by this user, before opening it; None if nothing is known wrong.

    A missing device node names the ports present; a node this user may
    neither read nor write names the group fix (``dialout``).

    Examples
    --------
    >>> port_problem("socket://localhost:7000") is None  # URLs are not checked
    True
    >>> "does not exist" in str(port_problem("/dev/ttyNOPE-biomoe"))
    True
    """
    if _is_url(port):
        return None
    if not os.path.exists(port):
        return _missing(port)
    if not os.access(port, os.R_OK | os.W_OK):
        return _denied(port)
    return None


def port_holders(port: str) -> list[str]:
    """Other processes that have ``port`` open, as ``"pid N (command)"``; only those this user may see."""
    try:
        target = os.stat(port)
    except OSError:
        return []
    if not stat.S_ISCHR(target.st_mode):
        return []
    holders = []
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit() and int(name) != os.getpid()]
    except OSError:
        return []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                info = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == target.st_rdev:
                holders.append(f"pid {pid} ({_command(pid)})")
                break
    return holders


def _command(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read().split(b"\0")
    except OSError:
        return "?"
    words = [os.path.basename(w.decode(errors="replace")) if i == 0 else w.decode(errors="replace")
             for i, w in enumerate(words) if w]
    text = " ".join(words) or "?"
    return text if len(text) <= 80 else text[:77] + "..."


def _missing(port: str) -> EdgeError:
    return EdgeError(f"cannot open serial port {port}: it does not exist (is the sensor board plugged in?); "
                     f"fix: {_port_fix()}")


def _denied(port: str) -> EdgeError:
    return EdgeError(f"cannot open serial port {port}: permission denied for user {user_name()}; "
                     f"fix: {permission_fix(port)}")


def _busy(port: str) -> EdgeError:
    holders = port_holders(port)
    held = f" (open in: {', '.join(holders)})" if holders else ""
    return EdgeError(
        f"cannot open serial port {port}: it is busy, another program holds it{held}; fix: stop that program (a "
        "monitor running as a service: sudo systemctl stop biomoe-monitor), or pass --port with another device"
    )


def explain_port_error(exc: BaseException, port: str, timeout_s: float | None = None) -> BaseException:
    """The one-line error, with its fix, for a failure to open ``port`` or to hear its hello.

    Returns ``exc`` itself when there is nothing better to say.
    """
    code = getattr(exc, "code", None)
    if code == "no_config":
        waited = f" within {timeout_s:g} s" if timeout_s is not None else ""
        holders = [] if _is_url(port) else port_holders(port)
        also = f" It is also open in {', '.join(holders)}, which may be taking the bytes." if holders else ""
        return EdgeError(
            f"no device description (hello frame) arrived from {port}{waited}; is a device streaming on this port, "
            f"at 115200 baud?{also} fix: {_port_fix()}"
        )
    if code != "port_open_failed" or _is_url(port):
        return exc
    cause = exc.__cause__
    number = getattr(cause, "errno", None)
    text = str(cause or exc)
    if number in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return _denied(port)
    if number == errno.EBUSY or "exclusively lock" in text or "Device or resource busy" in text:
        return _busy(port)
    if number == errno.ENOENT or not os.path.exists(port):
        return _missing(port)
    return exc
