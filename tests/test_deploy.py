"""``biomoe deploy build`` and ``install.sh``.

The archive is built once per run (downloads about 160 MB of aarch64
wheels). The tests marked ``arm64`` install it in Debian arm64 systems under
qemu-user, for a Pi 4 (Cortex-A72) and a Pi 5 (Cortex-A76) CPU, with no
network, and compare the predictions with x86's (root, debootstrap and
qemu-user-static needed; ``BIOMOE_ARM64=1 .ci/run`` or ``pytest -m arm64``).
"""

import doctest
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import requires
from pathlib import Path

import pytest

import edge.deploy.wheelhouse
from edge.bundle import default_bundle_path, load_bundle
from edge.config import load_config
from edge.deploy.archive import HUB_BUNDLE, HUB_CONFIG, HUB_PREFIX
from edge.deploy.targets import DEPLOY_TARGETS
from edge.service import render_unit
from tests.bundle_copies import corrupt_bundle

ROOT = Path(__file__).resolve().parents[1]
PORT = "/dev/ttyUSB0"
DATABASE = "/var/lib/biomoe/results.sqlite"
SETTINGS = f'port = "{PORT}"\ndatabase = "{DATABASE}"\nbundle = "/somewhere/else"\nthreads = 1\n\n[smoothing]\nmethod = "none"\n'
TARGET = DEPLOY_TARGETS["rpi-arm64"]


def _cli(*options, cwd=ROOT, timeout=900):
    return subprocess.run([sys.executable, "-m", "edge.cli", *map(str, options)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The archive built with custom settings and a copy of the shipped bundle, and its unpacked folder."""
    folder = tmp_path_factory.mktemp("hub")
    config = folder / "monitor.toml"
    config.write_text(SETTINGS)
    bundle = shutil.copytree(default_bundle_path(), folder / "my-bundle")
    archive = folder / "biomoe-hub.tar.gz"
    done = _cli("deploy", "build", "--target", "rpi-arm64", "--out", archive, "--bundle", bundle, "--config", config)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == str(archive)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "unpacked", filter="tar")
    return archive, folder / "unpacked" / "biomoe-hub"


def _wheel(folder: Path, name: str) -> Path:
    (found,) = folder.glob(f"{name}-*.whl")
    return found


def test_archive_holds_one_folder_with_an_executable_installer(hub):
    archive, unpacked = hub
    with tarfile.open(archive) as tar:
        assert {member.name.split("/")[0] for member in tar.getmembers()} == {"biomoe-hub"}
    assert os.access(unpacked / "install.sh", os.X_OK)
    env = dict(line.split("=", 1) for line in (unpacked / "hub.env").read_text().splitlines())
    assert env["MACHINE"] == "aarch64" and env["PYTHONS"] == '"3.11 3.13"' and env["BOARD"] == "rpi4"
    assert env["RELEASE"].startswith("0.") and len(env["RELEASE"].rsplit("-", 1)[1]) == 12
    assert _wheel(unpacked, "pip").name.endswith("-py3-none-any.whl")


@pytest.mark.parametrize("python", TARGET.pythons)
def test_every_wheel_is_pinned_with_its_hash_for_the_hubs_cpu_and_python(hub, python):
    wheels = hub[1] / "wheels" / ("cp" + python.replace(".", ""))
    pinned = {}
    for line in (wheels / "requirements.txt").read_text().splitlines():
        requirement, digest = line.split(" --hash=sha256:")
        name, version = requirement.split("==")
        pinned[name] = (version, digest)
    files = sorted(wheels.glob("*.whl"))
    assert len(files) == len(pinned)
    for wheel in files:
        name, version, *_, abi, platform = wheel.name[:-4].split("-")
        assert pinned[name] == (version, hashlib.sha256(wheel.read_bytes()).hexdigest())
        assert platform == "any" or platform.endswith("aarch64"), wheel.name
        assert abi in ("none", "abi3", "cp" + python.replace(".", "")), wheel.name
    device_install = {"tiny_biomoe_edge", "numpy", "scipy", "pywavelets", "pyserial", "onnxruntime"}
    assert device_install <= set(pinned)
    assert "torch" not in pinned and "ai_edge_litert" not in pinned  # an ONNX bundle needs no LiteRT


def test_newest_releases_are_chosen_not_the_manylinux2014_ones(hub):
    """Listing the glibc tags gets onnxruntime wheels tagged manylinux_2_27/2_28 (2014 alone: 1.16)."""
    floor = next(r for r in requires("tiny-biomoe-edge") if r.startswith("onnxruntime")).split(">=")[1]
    for python in ("cp311", "cp313"):
        wheel = _wheel(hub[1] / "wheels" / python, "onnxruntime")
        version = tuple(int(part) for part in wheel.name.split("-")[1].split(".")[:2])
        assert version >= tuple(int(part) for part in floor.split("."))
        assert "manylinux_2_2" in wheel.name


def test_the_hubs_settings_point_at_the_carried_bundle(hub):
    unpacked = hub[1]
    config = load_config(unpacked / "monitor.toml")
    assert config.bundle == HUB_BUNDLE and config.port == PORT and str(config.database) == DATABASE
    assert config.threads == 1 and config.smoothing.method == "none"
    assert "/somewhere/else" not in (unpacked / "monitor.toml").read_text()
    carried = load_bundle(unpacked / "bundle")  # checksums pass
    assert carried.bundle_id == load_bundle(default_bundle_path()).bundle_id


def test_the_unit_for_review_is_the_hardened_one_for_these_settings(hub):
    unit = (hub[1] / "biomoe-monitor.service").read_text()
    assert unit == render_unit(HUB_CONFIG, "biomoe", [str(HUB_PREFIX / "current/venv/bin/biomoe")],
                               database=DATABASE, port=PORT, memory_mb=400)
    assert f"DeviceAllow={PORT} rw" in unit.splitlines()


def test_install_sh_refuses_another_cpu_first(hub):
    done = subprocess.run([hub[1] / "install.sh"], capture_output=True, text=True)
    assert done.returncode != 0
    assert done.stderr.startswith("install.sh: error: this archive is for aarch64") and "x86_64" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = subprocess.run([hub[1] / "install.sh", "--upgrade", "--purge"], capture_output=True, text=True)
    assert done.returncode != 0 and "--purge goes with --uninstall" in done.stderr


@pytest.mark.parametrize("settings, message", [
    ('port = "/dev/ttyACM0"\ndatabase = "/home/me/results.sqlite"\n', "lies outside /var/lib/biomoe"),
    ("threads = 2\n", "no sensor port"),
    ('port = "/dev/ttyACM0"\nhop_seconds = -1\n', "hop_seconds = -1 is not valid"),
])
def test_settings_the_hub_could_not_run_are_refused_before_downloading(tmp_path, settings, message):
    config = tmp_path / "monitor.toml"
    config.write_text(settings)
    done = _cli("deploy", "build", "--target", "rpi-arm64", "--config", config, "--out", tmp_path / "a.tar.gz")
    assert done.returncode == 1 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "a.tar.gz").exists()


def test_a_corrupt_bundle_is_refused_before_downloading(tmp_path):
    done = _cli("deploy", "build", "--target", "rpi-arm64", "--bundle", corrupt_bundle(tmp_path),
                "--out", tmp_path / "a.tar.gz")
    assert done.returncode == 1 and "checksum mismatch" in done.stderr


def test_unknown_target_is_a_usage_error(tmp_path):
    done = _cli("deploy", "build", "--target", "rpi-armhf", "--out", tmp_path / "a.tar.gz")
    assert done.returncode == 2 and "rpi-arm64" in done.stderr


def test_docstring_examples_run():
    results = doctest.testmod(edge.deploy.wheelhouse)
    assert results.attempted > 0 and results.failed == 0
