"""``biomoe deploy build`` and ``install.sh``.

The archive is built once per run (downloads about 160 MB of aarch64
wheels). It carries the placeholder bundle (the same input and pipeline as a
trained one, a tiny graph): qemu-user runs ONNX Runtime's vector code several
hundred times slower than a Pi, so the shipped backbone (about 100 s per
image under emulation here) is checked on its own, on one image.

The tests marked ``arm64`` install the archive in Debian arm64 systems under
qemu-user, with no network: Bookworm (Python 3.11) on a Pi 4's Cortex-A72 and
Trixie (3.13) on a Pi 5's Cortex-A76, and compare the predictions with x86's
(root, debootstrap and qemu-user-static needed: ``BIOMOE_ARM64=1 .ci/run``
or ``pytest -m arm64``).
"""

import doctest
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from importlib.metadata import requires
from pathlib import Path

import numpy as np
import pytest

import edge.deploy.wheelhouse
from edge.bundle import load_bundle
from edge.config import load_config
from edge.deploy.archive import HUB_BUNDLE, HUB_CONFIG, HUB_PREFIX
from edge.deploy.targets import DEPLOY_TARGETS
from edge.service import render_unit
from tests.arm64_rootfs import SUITE_PYTHON, Arm64System, debian_rootfs
from tests.bundle_copies import corrupt_bundle

ROOT = Path(__file__).resolve().parents[1]
PORT = "/dev/ttyUSB0"
DATABASE = "/var/lib/biomoe/results.sqlite"
# A deep queue: under emulation windows wait; none may be skipped before the comparison with x86.
SETTINGS = (f'port = "{PORT}"\ndatabase = "{DATABASE}"\nbundle = "/somewhere/else"\nthreads = 1\n\n'
            '[smoothing]\nmethod = "none"\n\n[budgets]\nmax_pending_windows = 64\n')
TARGET = DEPLOY_TARGETS["rpi-arm64"]


def _cli(*options, cwd=ROOT, timeout=900):
    return subprocess.run([sys.executable, "-m", "edge.cli", *map(str, options)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The archive built with custom settings and the placeholder bundle, and its unpacked folder."""
    from quantize.placeholder import build_placeholder_bundle

    folder = tmp_path_factory.mktemp("hub")
    config = folder / "monitor.toml"
    config.write_text(SETTINGS)
    bundle = build_placeholder_bundle(folder / "my-bundle").path
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
    device_install = {"tiny_biomoe_edge", "numpy", "scipy", "pywavelets", "pyserial", "onnxruntime", "ai_edge_litert"}
    assert device_install <= set(pinned)
    assert "torch" not in pinned


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
    assert carried.placeholder and carried.name == "placeholder-default"


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


# --------------------------------------------------------------------------- on arm64, under qemu-user

SYSTEMS = [("bookworm", "cortex-a72"), ("trixie", "cortex-a76")]  # Pi 4 on Bookworm, Pi 5 on Trixie
MONITOR = ("monitor --config /etc/biomoe/monitor.toml --simulate --windows 2 --format jsonl "
           "--db /var/lib/biomoe/results.sqlite")


def _release(unpacked: Path) -> str:
    return dict(line.split("=", 1) for line in (unpacked / "hub.env").read_text().splitlines())["RELEASE"]


def _facts(system: Arm64System) -> dict:
    """What an installed hub looks like, each line ``key: value``."""
    script = """
        echo "python: $(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        echo "groups: $(id -nG biomoe)"
        echo "state: $(stat -c '%a %U' /var/lib/biomoe)"
        echo "config: $(stat -c '%a %U %G' /etc/biomoe/monitor.toml)"
        echo "current: $(readlink /opt/biomoe/current)"
        echo "releases: $(ls /opt/biomoe/releases | tr '\\n' ' ')"
        echo "enabled: $(systemctl is-enabled biomoe-monitor.service 2>&1)"
        echo "footprint_mb: $(du -sm /opt/biomoe/releases | cut -f1)"
        echo "unit_sha256: $(sha256sum < /etc/systemd/system/biomoe-monitor.service | cut -d' ' -f1)"
        echo "hwcap: $(python3 -c "import struct; print(dict(struct.iter_unpack('<QQ', open('/proc/self/auxv', 'rb').read()))[16])")"
    """
    done = system.run(script)
    assert done.returncode == 0, done.stderr
    return dict(line.split(": ", 1) for line in done.stdout.splitlines())


@pytest.fixture(scope="module", params=SYSTEMS, ids=["bookworm-pi4", "trixie-pi5"])
def installed(request, hub, tmp_path_factory):
    """A Debian arm64 system with the archive installed by ``install.sh`` (offline), and how long it took."""
    suite, cpu = request.param
    system = Arm64System(debian_rootfs(suite), tmp_path_factory.mktemp(suite), cpu, hub[1].parent)
    began = time.monotonic()
    done = system.run("/share/biomoe-hub/install.sh")
    print(f"\ninstall.sh on {suite}/{cpu}: {time.monotonic() - began:.0f} s under qemu (not a device figure)")
    return suite, system, done


@pytest.fixture(scope="module")
def x86_windows(hub, tmp_path_factory):
    """The same simulated stream through the same bundle and settings on this x86 machine."""
    unpacked = hub[1]
    database = tmp_path_factory.mktemp("x86") / "results.sqlite"
    done = _cli(*MONITOR.replace("/etc/biomoe/monitor.toml", str(unpacked / "monitor.toml"))
                .replace("/var/lib/biomoe/results.sqlite", str(database)).split(), "--bundle", unpacked / "bundle")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.arm64
@pytest.mark.timeout(3600)  # the first test of a suite builds its root filesystem under qemu (Trixie: over 10 min)
def test_install_sh_installs_the_hub_offline(installed, hub):
    suite, system, done = installed
    assert done.returncode == 0, done.stdout + done.stderr
    facts = _facts(system)
    assert facts["python"] == SUITE_PYTHON[suite]
    assert "dialout" in facts["groups"].split()
    assert facts["state"] == "700 biomoe" and facts["config"] == "640 root biomoe"
    assert facts["current"] == f"releases/{_release(hub[1])}" and facts["enabled"] == "enabled"
    unit = (hub[1] / "biomoe-monitor.service").read_bytes()
    assert facts["unit_sha256"] == hashlib.sha256(unit).hexdigest()  # written on the hub from its settings
    dot_product = 1 << 20  # HWCAP_ASIMDDP: the Cortex-A76 has it, the A72 not (QEMU_CPU took effect)
    assert bool(int(facts["hwcap"]) & dot_product) == (system.cpu == "cortex-a76")
    print(f"installed footprint on {suite}: {facts['footprint_mb']} MB")


@pytest.mark.arm64
@pytest.mark.timeout(3600)
def test_predictions_on_arm64_match_x86(installed, x86_windows):
    suite, system, _ = installed
    done = system.run(f"cd / && runuser -u biomoe -- /opt/biomoe/current/venv/bin/biomoe {MONITOR}")
    assert done.returncode == 0, done.stderr
    windows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(windows) == len(x86_windows) == 2
    for arm, x86 in zip(windows, x86_windows):
        assert not arm["skipped"] and arm["label"] == x86["label"]
        difference = max(abs(arm["probabilities"][k] - x86["probabilities"][k]) for k in x86["probabilities"])
        print(f"{suite}/{system.cpu} window {arm['window_index']}: max |p_arm64 - p_x86| = {difference:.2e}")
        assert difference <= 1e-5
    modes = system.run("stat -c '%a %U' /var/lib/biomoe/results.sqlite")
    assert modes.stdout.strip() == "600 biomoe"


@pytest.mark.arm64
@pytest.mark.timeout(3600)
def test_install_sh_again_changes_nothing(installed, hub):
    _, system, _ = installed
    before = _facts(system)
    done = system.run("/share/biomoe-hub/install.sh")
    assert done.returncode == 0, done.stderr
    assert "already in" in done.stdout and "keeping the settings" in done.stdout
    assert _facts(system) == before


@pytest.mark.arm64
@pytest.mark.timeout(3600)
def test_shipped_backbone_matches_x86_on_arm64(installed):
    """The trained backbone installed with the wheel, on one fixed image, through the backend the monitor makes
    for the bundle (its runtime and settings, whichever the bundle ships: LiteRT or ONNX Runtime)."""
    suite, system, _ = installed
    folder = system.share / f"backbone-{suite}"
    folder.mkdir()
    image = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    np.save(folder / "image.npy", image)
    embed = (
        "import sys, numpy as np; from edge.backends import create_backend; "
        "from edge.bundle import default_bundle_path, load_bundle; "
        "backend = create_backend(load_bundle(default_bundle_path()), 1); "
        "np.save(sys.argv[2], backend.embed(np.load(sys.argv[1])[np.newaxis]))"
    )
    done = system.run(f'cd / && /opt/biomoe/current/venv/bin/python -c "{embed}" '
                      f"/share/{folder.name}/image.npy /share/{folder.name}/embedding.npy")
    assert done.returncode == 0, done.stderr
    subprocess.run([sys.executable, "-c", embed, folder / "image.npy", folder / "expected.npy"], check=True)
    embedding, expected = np.load(folder / "embedding.npy"), np.load(folder / "expected.npy")
    difference = float(np.max(np.abs(embedding - expected)))
    scale = float(np.max(np.abs(expected)))
    print(f"{suite}/{system.cpu} shipped backbone: max |e_arm64 - e_x86| = {difference:.2e} (largest |e| {scale:.2f})")
    assert difference <= 1e-4 * scale  # float32 sums in another order (NEON, not AVX-512) through 7 M weights


def _another_release(unpacked: Path, name: str, broken_bundle: bool = False) -> Path:
    """A copy of the unpacked archive as release ``name``; ``broken_bundle``: its model file damaged in transit."""
    copy = Path(shutil.copytree(unpacked, unpacked.parent / name))
    env = copy / "hub.env"
    env.write_text(env.read_text().replace(f"RELEASE={_release(unpacked)}", f"RELEASE={name}"))
    if broken_bundle:
        model = copy / "bundle" / sorted(load_bundle(copy / "bundle").files)[0]
        data = bytearray(model.read_bytes())
        data[-1] ^= 0xFF
        model.write_bytes(bytes(data))
    return copy


@pytest.mark.arm64
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("installed", [SYSTEMS[0]], indirect=True, ids=["bookworm-pi4"])
def test_upgrade_keeps_the_data_rolls_back_a_broken_release_and_uninstall_purges(installed, hub):
    suite, system, done = installed
    assert done.returncode == 0, done.stderr
    first = _release(hub[1])
    assert system.run(f"cd / && runuser -u biomoe -- /opt/biomoe/current/venv/bin/biomoe {MONITOR}").returncode == 0
    system.run("echo '# edited on the hub' >> /etc/biomoe/monitor.toml")
    data = "sha256sum /etc/biomoe/monitor.toml /var/lib/biomoe/results.sqlite"
    kept = system.run(data).stdout

    _another_release(hub[1], "0.2.0-good")
    upgraded = system.run("/share/0.2.0-good/install.sh --upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    facts = _facts(system)
    assert facts["current"] == "releases/0.2.0-good" and facts["releases"].split() == sorted([first, "0.2.0-good"])
    assert system.run(data).stdout == kept

    _another_release(hub[1], "0.3.0-broken", broken_bundle=True)
    broken = system.run("/share/0.3.0-broken/install.sh --upgrade")
    assert broken.returncode == 1 and "checksum mismatch" in broken.stdout
    assert broken.stderr.strip().endswith("rolled back to 0.2.0-good, which runs again")
    facts = _facts(system)
    assert facts["current"] == "releases/0.2.0-good" and "0.3.0-broken" not in facts["releases"]
    assert system.run(data).stdout == kept

    refused = system.run("/share/biomoe-hub/install.sh")  # a plain install over another release
    assert refused.returncode == 1 and "--upgrade" in refused.stderr

    removed = system.run("/share/biomoe-hub/install.sh --uninstall")
    assert removed.returncode == 0, removed.stderr
    left = system.run("ls /opt/biomoe; ls /etc/systemd/system/biomoe-monitor.service; id biomoe")
    assert "No such file" in left.stderr and left.stdout.count("biomoe") >= 1  # the user stays
    assert system.run(data).stdout == kept

    purged = system.run("/share/biomoe-hub/install.sh --uninstall --purge")
    assert purged.returncode == 0, purged.stderr
    gone = system.run("ls -d /etc/biomoe /var/lib/biomoe; id biomoe")
    assert gone.stdout == "" and gone.stderr.count("No such file") == 2 and "no such user" in gone.stderr
