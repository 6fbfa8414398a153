"""Wheels for another machine, downloaded here, pinned with their hashes.

:func:`download_wheels` runs ``pip download --only-binary=:all:`` with the
target's platform tags and Python, so an x86 workstation fetches the aarch64
wheels a hub installs offline; :func:`pinned_requirements` turns a folder of
wheels into a requirements file for ``pip install --require-hashes``;
:func:`build_project_wheel` builds this project's own wheel from a clean copy
of its source (no stale ``build/`` folder slips into it).
"""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edge.deploy.targets import DeployTarget
from edge.errors import EdgeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["project_source", "build_project_wheel", "download_wheels", "pinned_requirements", "python_tag"]


def project_source() -> Path:
    """The source tree this biomoe runs from (a clone installed with ``pip install -e .``)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise EdgeError(f"biomoe deploy build needs the project's source tree (pyproject.toml above {root / 'edge'}); "
                        "run it from a clone installed with pip install -e .")
    return root


def python_tag(version: str) -> str:
    """``"3.11"`` -> ``"cp311"``."""
    return "cp" + version.replace(".", "")


def _pip(arguments: list[str], what: str) -> None:
    """Run pip with this Python; its output (progress bars) goes to stderr, its failure is one error."""
    done = subprocess.run([sys.executable, "-m", "pip", *arguments], stdout=sys.stderr)
    if done.returncode != 0:
        raise EdgeError(f"{what} failed (pip exit status {done.returncode}, its message is above); "
                        "check the network and the package index")


def build_project_wheel(source: Path, out: Path) -> Path:
    """Build this project's wheel into ``out`` from a copy of its packages and metadata; return its path."""
    with open(source / "pyproject.toml", "rb") as handle:
        include = tomllib.load(handle)["tool"]["setuptools"]["packages"]["find"]["include"]
    with tempfile.TemporaryDirectory(prefix="biomoe-wheel-") as scratch:
        copy = Path(scratch) / "source"
        copy.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(source / name, copy / name)
        for folder in source.iterdir():
            if folder.is_dir() and any(fnmatch.fnmatch(folder.name, pattern) for pattern in include):
                shutil.copytree(folder, copy / folder.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        out.mkdir(parents=True, exist_ok=True)
        _pip(["wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(copy)],
             "building the biomoe wheel")
    wheels = sorted(out.glob("tiny_biomoe_edge-*.whl"))
    if len(wheels) != 1:
        raise EdgeError(f"building the biomoe wheel left {len(wheels)} wheels in {out}; expected one")
    return wheels[0]


def download_wheels(requirements: list[str], target: DeployTarget, python: str, out: Path,
                    dependencies: bool = True) -> None:
    """Binary wheels of ``requirements`` (and their dependencies) for ``target`` and Python ``python`` into ``out``."""
    platforms = [option for tag in target.platforms for option in ("--platform", tag)]
    _pip(["download", "--only-binary=:all:", *([] if dependencies else ["--no-deps"]), *platforms, "--python-version", python, "--implementation", "cp",
          "--abi", python_tag(python), "--dest", str(out), *requirements],
         f"downloading the {target.machine} wheels for Python {python}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pinned_requirements(wheels: Path) -> str:
    """``name==version --hash=sha256:...`` for every wheel in ``wheels``, one per line, sorted by name.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "pyserial-3.5-py2.py3-none-any.whl").write_bytes(b"")
    >>> pinned_requirements(folder).split(" --hash=")[0]
    'pyserial==3.5'
    """
    lines = []
    for wheel in sorted(wheels.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]  # {name}-{version}(-{build})?-{python}-{abi}-{platform}.whl
        lines.append(f"{name}=={version} --hash=sha256:{_sha256(wheel)}")
    return "\n".join(lines) + "\n"
