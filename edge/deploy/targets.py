"""The boards ``biomoe deploy build`` makes archives for.

A target names the CPU's wheel platform tags and the Pythons of the
operating systems it runs: Raspberry Pi OS / Debian Bookworm ship Python 3.11,
Trixie 3.13. pip does not expand ``manylinux2014`` into the glibc tags of
newer wheels (``--platform manylinux2014_aarch64`` alone silently picks old
releases, such as onnxruntime 1.16), so every ``manylinux_2_X`` tag the
board's glibc accepts is listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.errors import EdgeError

__all__ = ["DeployTarget", "DEPLOY_TARGETS", "get_deploy_target"]


@dataclass(frozen=True)
class DeployTarget:
    """One kind of hub an archive is built for.

    Attributes
    ----------
    name, description : str
    machine : str
        ``uname -m`` of the hub; ``install.sh`` refuses any other.
    platforms : tuple of str
        pip ``--platform`` tags of the wheels, newest glibc first.
    pythons : tuple of str
        ``X.Y`` versions the archive carries wheels for.
    board : str
        Target in ``benchmarks/budgets.toml`` whose memory budget caps the
        service (``MemoryMax``).
    """

    name: str
    description: str
    machine: str
    platforms: tuple[str, ...]
    pythons: tuple[str, ...]
    board: str


DEPLOY_TARGETS = {
    "rpi-arm64": DeployTarget(
        name="rpi-arm64",
        description="Raspberry Pi 4 / 5 on Raspberry Pi OS or Debian, 64-bit (Bookworm: Python 3.11, Trixie: 3.13)",
        machine="aarch64",
        # Bookworm has glibc 2.36, Trixie 2.41: both take every tag up to 2_28.
        platforms=("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
                   "manylinux2014_aarch64"),
        pythons=("3.11", "3.13"),
        # The Pi 4 and Pi 5 share the 400 MB peak-memory budget.
        board="rpi4",
    ),
}


def get_deploy_target(name: str) -> DeployTarget:
    """The target called ``name``, or an error listing the known ones."""
    try:
        return DEPLOY_TARGETS[name]
    except KeyError:
        raise EdgeError(f"--target {name!r} is not a deploy target; known: {', '.join(DEPLOY_TARGETS)}") from None
