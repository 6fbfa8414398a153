"""``biomoe deploy build``: one archive that installs the monitor on a hub with no network.

::

    biomoe deploy build --target rpi-arm64 --out biomoe-hub.tar.gz [--bundle DIR] [--config monitor.toml]

The archive unpacks to ``biomoe-hub/``:

``install.sh``
    Run on the hub as root (``sudo biomoe-hub/install.sh``; ``--upgrade``,
    ``--uninstall [--purge]``): checks the CPU and Python, creates the
    ``biomoe`` user, a venv under ``/opt/biomoe`` installed with
    ``pip --no-index``, the settings in ``/etc/biomoe``, the private state
    folder ``/var/lib/biomoe``, and enables the service.
``wheels/cpXY/``
    Every wheel of the device install for Python X.Y on the target's CPU,
    with ``requirements.txt`` pinning each to its SHA-256.
``pip-*.whl``
    The pip that installs them (run from the wheel: the hub needs no
    ``python3-venv`` or ``python3-pip``).
``monitor.toml``
    The settings (``--config``, default ``edge/monitor.example.toml``); when
    a bundle is carried, its ``bundle`` line points at the installed copy.
``bundle/``
    ``--bundle``, or the settings' ``bundle`` (absent: the bundle inside the
    biomoe wheel).
``biomoe-monitor.service``
    The unit ``install.sh`` will write from these settings, for review.
``hub.env``
    Release id (version and content hash), CPU, Pythons, budget board.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from edge.bundle import default_bundle_path, load_bundle
from edge.config import example_config_path, load_config
from edge.deploy.targets import DEPLOY_TARGETS, DeployTarget, get_deploy_target
from edge.deploy.wheelhouse import (build_project_wheel, download_wheels, pinned_requirements, project_source,
                                    python_tag)
from edge.errors import EdgeError
from edge.service import STATE_DIRECTORY, memory_max_mb, render_unit

__all__ = ["HUB_PREFIX", "HUB_CONFIG", "HUB_BUNDLE", "ARCHIVE_FOLDER", "build_archive", "configure_parser", "run"]

#: Where install.sh puts the releases (``releases/ID``) and the ``current`` link.
HUB_PREFIX = Path("/opt/biomoe")
HUB_CONFIG = Path("/etc/biomoe/monitor.toml")
HUB_BUNDLE = HUB_PREFIX / "current" / "bundle"
#: The one folder the archive unpacks to.
ARCHIVE_FOLDER = "biomoe-hub"
_INSTALLER = Path(__file__).with_name("install.sh")


def _step(text: str) -> None:
    print(f"biomoe deploy: {text}", file=sys.stderr, flush=True)


def _hub_config_text(path: Path, bundle_carried: bool) -> str:
    """The settings as the hub gets them: a carried bundle replaces any top-level ``bundle`` line."""
    text = path.read_text(encoding="utf-8")
    if not bundle_carried:
        return text
    lines = text.splitlines(keepends=True)
    first_table = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    kept = [line for i, line in enumerate(lines) if i >= first_table or not re.match(r"\s*bundle\s*=", line)]
    return f'# Set by biomoe deploy build: the bundle this archive carries.\nbundle = "{HUB_BUNDLE}"\n' + "".join(kept)


def _content_id(folder: Path) -> str:
    """SHA-256 of every file's path and bytes under ``folder``: equal archives, equal releases."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def build_archive(target: DeployTarget, out: Path, bundle_path: Path | None = None,
                  config_path: Path | None = None) -> str:
    """Build the hub archive at ``out``; return its release id.

    Parameters
    ----------
    target : DeployTarget
    out : Path
        The ``.tar.gz`` to write (replaced if it exists).
    bundle_path : Path, optional
        Bundle folder to carry; default the settings' ``bundle``, else none
        (the hub uses the bundle inside the biomoe wheel).
    config_path : Path, optional
        Monitor settings; default the annotated example.

    Raises
    ------
    EdgeError
        Settings the hub could not run (no port, a database outside
        ``/var/lib/biomoe``), a bundle that fails its checksums, a failed
        download.
    """
    config_path = (config_path or example_config_path()).expanduser().resolve()
    config = load_config(config_path)
    config.require_source()
    if STATE_DIRECTORY not in Path(config.database).parents:
        raise EdgeError(f"config {config_path}: database = {str(config.database)!r} lies outside {STATE_DIRECTORY}, "
                        f"the hub's private state folder; set database = \"{STATE_DIRECTORY}/results.sqlite\"")
    bundle_path = bundle_path or config.bundle
    bundle = load_bundle(bundle_path or default_bundle_path())  # checksums, before minutes of downloads
    version = importlib.metadata.version("tiny-biomoe-edge")
    with tempfile.TemporaryDirectory(prefix="biomoe-deploy-") as scratch:
        stage = Path(scratch) / ARCHIVE_FOLDER
        stage.mkdir()
        hub_config = stage / "monitor.toml"
        hub_config.write_text(_hub_config_text(config_path, bundle_path is not None), encoding="utf-8")
        if bundle_path is not None:
            shutil.copytree(bundle.path, stage / "bundle")
            if load_config(hub_config).bundle != HUB_BUNDLE:
                raise EdgeError(f"config {config_path}: cannot point its bundle line at {HUB_BUNDLE}; "
                                "write bundle = \"...\" on one line before the first [table]")
        steps = len(target.pythons) + 2
        _step(f"[1/{steps}] building the biomoe wheel")
        project_wheel = build_project_wheel(project_source(), Path(scratch) / "project")
        for number, python in enumerate(target.pythons, start=2):
            _step(f"[{number}/{steps}] downloading the {target.machine} wheels for Python {python}")
            wheels = stage / "wheels" / python_tag(python)
            download_wheels([str(project_wheel)], target, python, wheels)
            (wheels / "requirements.txt").write_text(pinned_requirements(wheels), encoding="utf-8")
        download_wheels(["pip"], target, target.pythons[0], stage, dependencies=False)
        unit = render_unit(HUB_CONFIG, "biomoe", [str(HUB_PREFIX / "current" / "venv" / "bin" / "biomoe")],
                           database=config.database, port=config.port, memory_mb=memory_max_mb(target.board),
                           dashboard=config.dashboard)
        (stage / "biomoe-monitor.service").write_text(unit, encoding="utf-8")
        shutil.copy2(_INSTALLER, stage / "install.sh")
        os.chmod(stage / "install.sh", 0o755)
        release = f"{version}-{_content_id(stage)[:12]}"
        (stage / "hub.env").write_text(
            f"RELEASE={release}\nMACHINE={target.machine}\nPYTHONS=\"{' '.join(target.pythons)}\"\n"
            f"BOARD={target.board}\n", encoding="utf-8")
        _step(f"[{steps}/{steps}] writing {out}")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w:gz") as archive:
            archive.add(stage, arcname=ARCHIVE_FOLDER)
        partial.replace(out)
    return release


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``biomoe deploy``: one action, ``build``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build the offline installer archive of a hub",
                               description="Build one archive that installs the monitor on a hub with no network: "
                                           "wheels for the hub's CPU and Pythons (pinned, hashed), the bundle, the "
                                           "settings, the systemd unit and install.sh.")
    build.add_argument("--target", required=True, choices=sorted(DEPLOY_TARGETS),
                       help="the hub: " + "; ".join(f"{t.name}: {t.description}" for t in DEPLOY_TARGETS.values()))
    build.add_argument("--out", type=Path, default=Path("biomoe-hub.tar.gz"), metavar="FILE",
                       help="archive to write (default: %(default)s)")
    build.add_argument("--bundle", type=Path, metavar="DIR",
                       help="bundle to carry (default: the config's bundle, else the one inside biomoe)")
    build.add_argument("--config", type=Path, metavar="FILE",
                       help="monitor settings for the hub (default: edge/monitor.example.toml: port /dev/ttyACM0, "
                            "database /var/lib/biomoe/results.sqlite)")


def run(args: argparse.Namespace) -> int:
    """Build the archive; print its size and the install command, the path on the last line."""
    release = build_archive(get_deploy_target(args.target), args.out.expanduser(), args.bundle, args.config)
    size_mb = args.out.stat().st_size / 2**20
    print(f"release {release}, {size_mb:.0f} MiB. On the hub: tar xzf {args.out.name} && "
          f"sudo ./{ARCHIVE_FOLDER}/install.sh")
    print(args.out)
    return 0
