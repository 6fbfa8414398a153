"""biomoe doctor (edge.doctor) and the serial-port errors a newcomer meets (edge.ports)."""

import doctest
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import edge.doctor
import edge.ports
from edge.bundle import default_bundle_path, load_bundle, save_bundle
from edge.cli import main
from edge.config import MonitorConfig
from edge.doctor import check_clock, check_cpu, check_packages
from firmware_bridge import SimulatedDevice, SimulatorParams
from tests.bundle_copies import corrupt_bundle
from tests.privileges import without_privileges

ROOT = Path(__file__).resolve().parents[1]


def _cli(*options, preexec_fn=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "edge.cli", *map(str, options)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec_fn)


def _without_privileges():
    """For the child: no capabilities, so root is refused what its file modes refuse (as any user is)."""
    return without_privileges()


def _verdicts(stdout):
    """check name -> (status, detail, fix) of doctor's report."""
    found, last = {}, None
    for line in stdout.splitlines():
        checked = re.match(r"^  (ok|warn|FAIL) +(\S+) +(.*)$", line)
        if checked:
            last = checked.group(2)
            found[last] = [checked.group(1), checked.group(3), ""]
        elif line.startswith("        fix: "):
            found[last][2] = line[len("        fix: "):]
    return {name: tuple(value) for name, value in found.items()}


def _simulated_hub(stack, tmp_path, **options):
    link = tmp_path / "ttyHUB"
    device = SimulatedDevice(SimulatorParams(link=str(link), speed=20, **options))
    stack.callback(device.close)
    device.open()
    device.start()
    return link


def _pty(stack, mode=None):
    master, slave = os.openpty()
    stack.callback(os.close, master)
    stack.callback(os.close, slave)
    path = os.ttyname(slave)
    if mode is not None:
        before = os.stat(path).st_mode & 0o777
        os.chmod(path, mode)
        stack.callback(os.chmod, path, before)
    return path, slave


# --------------------------------------------------------------------------- biomoe doctor


def test_a_healthy_setup_passes(tmp_path):
    with ExitStack() as stack:
        port = _simulated_hub(stack, tmp_path)
        done = _cli("doctor", "--port", port, "--db", tmp_path / "results.sqlite", "--connect-timeout", 20)
    assert done.returncode == 0, done.stdout + done.stderr
    verdicts = _verdicts(done.stdout)
    assert list(verdicts) == ["python", "packages", "cpu", "bundle", "inference", "port", "hello", "database", "clock"]
    assert all(status in ("ok", "warn") for status, _, _ in verdicts.values()), done.stdout
    assert verdicts["hello"][0] == "ok" and "EDA 100 Hz" in verdicts["hello"][1]
    assert verdicts["bundle"][0] == "ok" and "checksums pass" in verdicts["bundle"][1]
    assert re.search(r"one synthetic window in \d+ ms \(budget 10000 ms", verdicts["inference"][1])
    assert done.stdout.splitlines()[-1].endswith("0 failure(s): ready to monitor")
    assert done.stderr == ""


def test_a_missing_port_fails_and_names_the_ports_present(tmp_path):
    done = _cli("doctor", "--only", "port", "--port", tmp_path / "ttyNOPE")
    assert done.returncode == 1
    status, detail, fix = _verdicts(done.stdout)["port"]
    assert status == "FAIL" and detail.endswith("ttyNOPE: it does not exist (is the sensor board plugged in?)")
    assert fix.startswith("pass --port with the sensor board's (")
    assert "serial ports present: " in fix or "no serial ports found" in fix
    assert "Traceback" not in done.stderr


def test_an_unreadable_port_fails_with_the_dialout_fix(tmp_path):
    with ExitStack() as stack:
        port, _ = _pty(stack, mode=0o000)
        done = _cli("doctor", "--only", "port", "--port", port, preexec_fn=_without_privileges())
    assert done.returncode == 1, done.stdout
    status, detail, fix = _verdicts(done.stdout)["port"]
    assert status == "FAIL" and f"cannot open serial port {port}: permission denied for user" in detail
    assert "dialout" in fix and "usermod -aG dialout" in fix


def test_a_port_in_a_group_the_user_is_not_in_fixes_by_joining_it(tmp_path, monkeypatch):
    fake = os.stat_result((0o20660, 0, 0, 1, 0, 20, 0, 0, 0, 0))  # crw-rw---- root:dialout-like group 20
    monkeypatch.setattr(edge.ports.os, "stat", lambda path: fake)
    monkeypatch.setattr(edge.ports.grp, "getgrgid", lambda gid: type("G", (), {"gr_name": "dialout"}))
    assert edge.ports.permission_fix("/dev/ttyACM0").startswith("sudo usermod -aG dialout ")


def test_a_corrupt_bundle_fails(tmp_path):
    done = _cli("doctor", "--only", "bundle", "--bundle", corrupt_bundle(tmp_path))
    assert done.returncode == 1
    verdicts = _verdicts(done.stdout)
    status, detail, fix = verdicts["bundle"]
    assert status == "FAIL" and "checksum mismatch for" in detail
    assert fix.startswith("copy the bundle folder again")
    assert "inference" not in verdicts


def test_a_read_only_database_folder_fails(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        done = _cli("doctor", "--only", "database", "--db", folder / "results.sqlite",
                    preexec_fn=_without_privileges())
    finally:
        folder.chmod(0o755)
    assert done.returncode == 1, done.stdout
    status, detail, fix = _verdicts(done.stdout)["database"]
    assert status == "FAIL" and f"cannot write in {folder} (permission denied)" in detail
    assert "pass --db with a file in a folder you may write" in fix


def test_a_silent_port_fails_on_the_hello_and_lists_the_ports(tmp_path):
    with ExitStack() as stack:
        port, _ = _pty(stack)
        done = _cli("doctor", "--only", "port", "--port", port, "--connect-timeout", 0.5)
    assert done.returncode == 1
    verdicts = _verdicts(done.stdout)
    assert verdicts["port"][0] == "ok"
    status, detail, fix = verdicts["hello"]
    assert status == "FAIL" and "no device description (hello frame) arrived" in detail and "within 0.5 s" in detail
    assert re.search(r"; is a device streaming on this port, at 115200 baud\?( It is also open in pid \d+ .*)?$",
                     detail)
    assert "serial ports present" in fix or "no serial ports found" in fix


def test_a_device_without_the_bundles_channels_fails(tmp_path):
    source = load_bundle(default_bundle_path())
    manifest = {k: v for k, v in source.manifest.items() if k != "files"}
    manifest["channels"] = [*manifest["channels"], "ECG"]
    bundle = save_bundle(tmp_path / "ecg", manifest, {name: source.path / name for name in source.files}).path
    with ExitStack() as stack:
        port = _simulated_hub(stack, tmp_path)
        done = _cli("doctor", "--only", "port", "--port", port, "--bundle", bundle, "--connect-timeout", 20)
    assert done.returncode == 1, done.stdout
    status, detail, _ = _verdicts(done.stdout)["hello"]
    assert status == "FAIL" and "which the device does not send" in detail


def test_only_and_bad_values_are_one_line_errors(capsys):
    assert main(["doctor", "--only", "system,gpu"]) == 1
    assert capsys.readouterr().err.startswith("biomoe doctor: error: --only takes groups of system, bundle")
    assert main(["doctor", "--only", "clock", "--days", "0"]) == 1
    assert "--days must be a number > 0" in capsys.readouterr().err


def test_an_unknown_target_is_named(tmp_path):
    done = _cli("doctor", "--only", "bundle", "--target", "rpi9")
    assert done.returncode == 1
    assert "rpi9" in _verdicts(done.stdout)["inference"][1]


def test_cpu_features():
    assert check_cpu("x86_64", {"sse2", "avx2", "avx512f", "avx512_vnni"}).detail == "x86_64: AVX2, AVX-512, VNNI"
    assert check_cpu("x86_64", {"sse2", "sse4_2"}).status == "warn"
    pi5 = check_cpu("aarch64", {"fp", "asimd", "asimddp"})
    assert pi5.status == "ok" and "dot product" in pi5.detail
    assert check_cpu("aarch64", {"fp"}).status == "warn"
    assert "64-bit" in check_cpu("armv7l", {"neon"}).fix


def test_clock_and_packages(monkeypatch, tmp_path):
    assert check_clock(now=0.0).status == "fail" and "1970-01-01" in check_clock(now=0.0).detail
    assert check_clock(MonitorConfig(database=tmp_path / "none.sqlite")).status == "ok"
    assert check_packages().status == "ok"
    monkeypatch.setattr(edge.doctor, "_requirements", lambda: [("numpy", "999.0"), ("no-such-biomoe-dep", "1.0")])
    missing = check_packages()
    assert missing.status == "fail" and "numpy" in missing.detail and "no-such-biomoe-dep missing" in missing.detail
    assert missing.fix.startswith('pip install -U "numpy>=999.0" "no-such-biomoe-dep>=1.0"')


def test_docstring_examples_run():
    for module in (edge.doctor, edge.ports):
        results = doctest.testmod(module)
        assert results.attempted > 0 and results.failed == 0


# --------------------------------------------------------------------------- biomoe monitor's one-line port errors


def _one_error_line(done):
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("biomoe monitor: error: ")
    return lines[0]


def test_monitor_on_a_port_it_may_not_open_names_the_dialout_fix(tmp_path):
    with ExitStack() as stack:
        port, _ = _pty(stack, mode=0o000)
        done = _cli("monitor", "--port", port, "--db", tmp_path / "r.sqlite", preexec_fn=_without_privileges())
    line = _one_error_line(done)
    assert f"cannot open serial port {port}: permission denied" in line and "dialout" in line


def test_monitor_on_a_port_another_program_holds_says_busy(tmp_path):
    with ExitStack() as stack:
        port, slave = _pty(stack)
        fcntl.flock(slave, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running monitor (or pyserial exclusive=True) does
        done = _cli("monitor", "--port", port, "--db", tmp_path / "r.sqlite", "--connect-timeout", 5)
    line = _one_error_line(done)
    assert f"cannot open serial port {port}: it is busy, another program holds it" in line
    assert f"pid {os.getpid()} (" in line  # this test holds it
    assert "; fix: stop that program (a monitor running as a service: sudo systemctl stop biomoe-monitor)" in line
    assert not (tmp_path / "r.sqlite").exists()


def test_a_second_monitor_on_the_same_port_is_refused(tmp_path):
    with ExitStack() as stack:
        port = _simulated_hub(stack, tmp_path)
        first = subprocess.Popen([sys.executable, "-m", "edge.cli", "monitor", "--port", str(port), "--db",
                                  str(tmp_path / "first.sqlite"), "--format", "jsonl"], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        stack.callback(first.kill)
        assert json.loads(first.stdout.readline())["window_index"] == 0  # the first one reads
        done = _cli("monitor", "--port", port, "--db", tmp_path / "second.sqlite")
    assert "it is busy, another program holds it" in _one_error_line(done)


def test_monitor_on_a_silent_port_lists_the_serial_ports(tmp_path):
    with ExitStack() as stack:
        port, _ = _pty(stack)
        done = _cli("monitor", "--port", port, "--db", tmp_path / "r.sqlite", "--connect-timeout", 0.5)
    line = _one_error_line(done)
    assert "no device description (hello frame) arrived" in line
    assert re.search(r"at 115200 baud\?.* fix: pass --port", line)
    assert "serial ports present: " in line or "no serial ports found" in line


def test_a_bundle_from_a_newer_format_is_one_line(tmp_path):
    folder = Path(shutil.copytree(default_bundle_path(), tmp_path / "newer"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] += 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    done = _cli("monitor", "--simulate", "--bundle", folder, "--db", tmp_path / "r.sqlite")
    line = _one_error_line(done)
    assert f"format_version {manifest['format_version']} is newer than this runtime reads" in line
    assert "upgrade biomoe" in line
