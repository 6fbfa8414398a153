import doctest
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import edge.service
from edge.cli import main
from edge.errors import EdgeError
from edge.service import GracefulShutdown, render_unit, service_command


def _config(tmp_path, text='port = "/dev/ttyACM0"\n'):
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    return path


def _settings(unit):
    """Key=value lines of a unit, by key (repeated keys keep the last)."""
    return dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))


def test_unit_runs_the_monitor_unprivileged_and_restarts_on_failure(tmp_path):
    unit = render_unit(tmp_path / "monitor.toml", user="pain", command=["/opt/venv/bin/biomoe"])
    settings = _settings(unit)
    assert settings["ExecStart"] == f"/opt/venv/bin/biomoe monitor --config {tmp_path / 'monitor.toml'}"
    assert settings["User"] == "pain"
    assert settings["Restart"] == "on-failure"
    assert settings["KillSignal"] == "SIGTERM"
    assert settings["SupplementaryGroups"] == "dialout"  # serial ports
    assert settings["StateDirectory"] == "biomoe"
    assert settings["WantedBy"] == "multi-user.target"
    for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateNetwork=yes", "PrivateTmp=yes",
                      "ProtectHome=yes", "UMask=0077", "StateDirectoryMode=0700", "CapabilityBoundingSet=",
                      "SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_UNIX", "DevicePolicy=closed"):
        assert hardening in unit.splitlines()
    assert "[Unit]" in unit and "[Service]" in unit and "[Install]" in unit
    assert "ReadWritePaths" not in settings


INJECTED_DATABASE = "/srv/biomoe\nExecStartPre=+/bin/sh -c 'id > /root/pwned'\n/results.sqlite"


@pytest.mark.parametrize("field, value", [
    ("database", INJECTED_DATABASE),
    ("port", "/dev/ttyACM0\nExecStartPre=+/bin/true"),
    ("config_path", "/etc/biomoe/m.toml\r\nUser=root"),
    ("command", "/opt/biomoe/bin/biomoe\x1b"),
])
def test_control_characters_in_any_value_are_refused(field, value):
    values = {"config_path": "/etc/biomoe/m.toml", "command": "/usr/bin/biomoe", field: value}
    with pytest.raises(EdgeError, match="control character"):
        render_unit(values["config_path"], command=[values["command"]], database=values.get("database"),
                    port=values.get("port"))


@pytest.mark.parametrize("keywords, what", [
    ({"port": "ttyACM0"}, "port"),
    ({"command": ["venv/bin/biomoe"]}, "biomoe command"),
])
def test_relative_paths_in_the_unit_are_refused(keywords, what):
    keywords = {"command": ["/usr/bin/biomoe"], **keywords}
    with pytest.raises(EdgeError, match=f"{what} .* is a relative path"):
        render_unit("/etc/biomoe/m.toml", **keywords)


def test_injected_config_value_writes_no_unit(tmp_path, capsys):
    config = _config(tmp_path, 'port = "/dev/ttyACM0"\ndatabase = "/srv/biomoe\\nExecStartPre=+/bin/sh -c '
                               "'id > /root/pwned'\\n/results.sqlite\"\n")
    output = tmp_path / "biomoe-monitor.service"
    assert main(["install-service", "--config", str(config), "--output", str(output)]) == 1
    err = capsys.readouterr().err
    assert "control character" in err and len(err.strip().splitlines()) == 1
    assert not output.exists()


def test_percent_signs_are_not_systemd_specifiers():
    unit = render_unit("/etc/biomoe/100%h.toml", command=["/usr/bin/biomoe"])
    assert _settings(unit)["ExecStart"] == "/usr/bin/biomoe monitor --config /etc/biomoe/100%%h.toml"


def test_only_the_serial_device_is_allowed_and_memory_is_capped(tmp_path):
    unit = render_unit("/etc/biomoe/m.toml", command=["/usr/bin/biomoe"], port="/dev/ttyACM0", memory_mb=250)
    settings = _settings(unit)
    assert settings["DeviceAllow"] == "/dev/ttyACM0 rw" and settings["MemoryMax"] == "250M"
    assert "DeviceAllow" not in render_unit("/etc/biomoe/m.toml", command=["/usr/bin/biomoe"], port="sim://")


def test_the_hub_is_retried_without_end():
    settings = _settings(render_unit("/etc/biomoe/m.toml", command=["/usr/bin/biomoe"]))
    assert settings["StartLimitIntervalSec"] == "0" and settings["Restart"] == "on-failure"
    assert "StartLimitBurst" not in settings


def test_a_venv_in_a_home_folder_stays_readable():
    unit = render_unit("/etc/biomoe/m.toml", command=["/home/nurse/.venv/bin/biomoe"])
    assert _settings(unit)["ProtectHome"] == "read-only"


def test_memory_cap_is_the_target_boards_budget(tmp_path, capsys):
    config = _config(tmp_path)
    assert main(["install-service", "--config", str(config), "--print", "--target", "rpi-zero-2w"]) == 0
    assert _settings(capsys.readouterr().out)["MemoryMax"] == "250M"


def _systemd_analyze():
    found = shutil.which("systemd-analyze")
    if found is None:
        message = "systemd-analyze is not installed (apt-get install systemd)"
        if os.environ.get("CI"):
            pytest.fail(message + " (required when CI is set)")
        pytest.skip(message)
    return found


def test_security_exposure_is_at_most_2(tmp_path):
    """systemd's own score of the confinement (0 = fully confined, 10 = none)."""
    unit_path = tmp_path / "biomoe-monitor.service"
    unit_path.write_text(render_unit("/etc/biomoe/monitor.toml", command=["/opt/biomoe/current/venv/bin/biomoe"],
                                     database="/var/lib/biomoe/results.sqlite", port="/dev/ttyACM0"))
    done = subprocess.run([_systemd_analyze(), "security", "--offline=true", "--no-pager", str(unit_path)],
                          capture_output=True, text=True)
    score = float(re.search(r"Overall exposure level for .*: (\d+\.\d+)", done.stdout + done.stderr).group(1))
    assert score <= 2.0, done.stdout


@pytest.mark.parametrize("dashboard, allowed", [
    (None, None),
    ("8080", "localhost"),
    ("0.0.0.0:8080", "localhost link-local 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 fc00::/7"),
])
def test_the_network_is_open_only_as_far_as_the_bedside_page_needs(tmp_path, dashboard, allowed):
    unit_path = tmp_path / "biomoe-monitor.service"
    unit_path.write_text(render_unit("/etc/biomoe/monitor.toml", command=["/opt/biomoe/current/venv/bin/biomoe"],
                                     port="/dev/ttyACM0", dashboard=dashboard))
    settings = _settings(unit_path.read_text())
    assert settings["IPAddressDeny"] == "any"
    if dashboard is None:
        assert settings["PrivateNetwork"] == "yes" and settings["RestrictAddressFamilies"] == "AF_UNIX"
    else:
        assert "PrivateNetwork" not in settings and settings["IPAddressAllow"] == allowed
        assert settings["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    done = subprocess.run([_systemd_analyze(), "security", "--offline=true", "--no-pager", str(unit_path)],
                          capture_output=True, text=True)
    score = float(re.search(r"Overall exposure level for .*: (\d+\.\d+)", done.stdout + done.stderr).group(1))
    assert score <= 2.0, done.stdout  # measured: 1.0 without the page, 1.7 loopback, 1.8 local networks


def test_database_outside_the_state_folder_is_made_writable(tmp_path):
    unit = render_unit(tmp_path / "m.toml", command=["/usr/bin/biomoe"], database="/data/pain/results.sqlite")
    assert _settings(unit)["ReadWritePaths"] == "/data/pain"
    unit = render_unit(tmp_path / "m.toml", command=["/usr/bin/biomoe"], database="/var/lib/biomoe/r.sqlite")
    assert "ReadWritePaths" not in unit
    unit = render_unit(tmp_path / "m.toml", command=["/usr/bin/biomoe"], database="results.sqlite")
    assert "ReadWritePaths" not in unit  # in the working directory, the state folder
    unit = render_unit(tmp_path / "m.toml", command=["/usr/bin/biomoe"], database="../../cache/r.sqlite")
    assert _settings(unit)["ReadWritePaths"] == "/var/cache"


def test_paths_with_spaces_are_quoted(tmp_path):
    unit = render_unit(tmp_path / "my config.toml", command=["/opt/my venv/bin/python", "-m", "edge.cli"])
    assert _settings(unit)["ExecStart"] == (
        f'"/opt/my venv/bin/python" -m edge.cli monitor --config "{tmp_path / "my config.toml"}"'
    )


def test_service_command_points_at_this_installation():
    command = service_command()
    assert os.path.isabs(command[0])
    assert command[-1] == "edge.cli" or command[0].endswith("biomoe")


@pytest.mark.parametrize("user, match", [("root", "unprivileged"), ("Bad User", "not a valid account")])
def test_bad_users_are_refused(tmp_path, user, match):
    with pytest.raises(EdgeError, match=match):
        render_unit(tmp_path / "m.toml", user=user, command=["/usr/bin/biomoe"])


def test_relative_config_path_is_refused():
    with pytest.raises(EdgeError, match="config path .* is a relative path"):
        render_unit("monitor.toml", command=["/usr/bin/biomoe"])


def test_install_service_prints_the_unit(tmp_path, capsys):
    config = _config(tmp_path)
    assert main(["install-service", "--config", str(config), "--print"]) == 0
    out = capsys.readouterr().out
    assert f"monitor --config {config}" in out and "User=biomoe" in out


def test_install_service_writes_the_unit_and_says_what_next(tmp_path, capsys):
    config = _config(tmp_path, 'port = "/dev/ttyACM0"\ndatabase = "/srv/biomoe/results.sqlite"\n')
    output = tmp_path / "units" / "biomoe-monitor.service"
    assert main(["install-service", "--config", str(config), "--output", str(output), "--user", "nurse"]) == 0
    unit = output.read_text()
    assert "User=nurse" in unit and "ReadWritePaths=/srv/biomoe" in unit
    out = capsys.readouterr().out
    assert "systemctl enable --now biomoe-monitor.service" in out and "useradd" in out


def test_install_service_checks_the_settings_first(tmp_path, capsys):
    assert main(["install-service", "--config", str(tmp_path / "missing.toml"), "--print"]) == 1
    assert "config file" in capsys.readouterr().err
    bad = _config(tmp_path, 'port = "/dev/ttyACM0"\nhop_seconds = -2\n')
    assert main(["install-service", "--config", str(bad), "--print"]) == 1
    assert "hop_seconds = -2 is not valid" in capsys.readouterr().err
    no_port = _config(tmp_path, "threads = 2\n")
    assert main(["install-service", "--config", str(no_port), "--print"]) == 1
    assert "no sensor port" in capsys.readouterr().err


def test_graceful_shutdown_turns_signals_into_a_flag():
    previous = signal.getsignal(signal.SIGTERM)
    with GracefulShutdown() as shutdown:
        assert not shutdown.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert shutdown.wait(1.0) and shutdown.signal_name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # a second signal means: out now
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is previous


def test_sigterm_lets_the_current_window_finish():
    child = textwrap.dedent("""
        import time
        from edge.service import GracefulShutdown
        with GracefulShutdown() as shutdown:
            print("ready", flush=True)
            windows = 0
            while not shutdown.requested:
                time.sleep(0.05)  # one window of work
                windows += 1
            print(f"committed after {windows} windows on {shutdown.signal_name}", flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert out.startswith("committed after") and out.strip().endswith("on SIGTERM")


def test_docstring_examples_run():
    results = doctest.testmod(edge.service)
    assert results.attempted > 0 and results.failed == 0
