"""A Debian arm64 system in a folder, run under qemu-user, for the offline installer's tests.

:func:`debian_rootfs` builds a minimal Debian (``debootstrap --foreign``, then
its second stage under ``qemu-user-static``) once per suite and recipe, and
caches it outside the repository (``$BIOMOE_ROOTFS_CACHE``, default
``~/.cache/biomoe-arm64``). :class:`Arm64System` runs commands in a copy-on-write
view of it (overlayfs: the cache stays pristine, the test's changes persist
between its commands) as root in a chroot, with no network (a fresh network
namespace; a fresh PID namespace whose PID 1 stays outside the chroot, so
``systemctl`` knows it is in one and only enables units), the CPU chosen by ``QEMU_CPU`` and an ARM ``/proc/cpuinfo`` of the
matching Raspberry Pi (ONNX Runtime reads the host's x86 one under qemu-user
and crashes at import).

Needs root, ``debootstrap``, ``qemu-user-static`` and binfmt_misc (the
kernel runs aarch64 programs through qemu; :func:`require_arm64_emulation`
registers it when it is missing).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["SUITE_PYTHON", "PI_CPUS", "require_arm64_emulation", "debian_rootfs", "Arm64System"]

#: Debian suite -> its Python (Raspberry Pi OS follows the same suites).
SUITE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
#: What a Raspberry Pi OS hub has that the installer uses (runuser, useradd: in every Debian base).
_PACKAGES = ("python3", "systemd")
_BINFMT = Path("/proc/sys/fs/binfmt_misc")
_BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")


def _pi_cpuinfo(part: str, features: str, model: str) -> str:
    """``/proc/cpuinfo`` as a Raspberry Pi's kernel writes it (4 cores)."""
    core = (f"BogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
            f"CPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 3\n\n")
    return "".join(f"processor\t: {i}\n{core}" for i in range(4)) + f"Model\t\t: {model}\n"


#: QEMU_CPU -> the cpuinfo of the board with that core.
PI_CPUS = {
    "cortex-a72": _pi_cpuinfo("0xd08", "fp asimd evtstrm crc32 cpuid", "Raspberry Pi 4 Model B Rev 1.4"),
    "cortex-a76": _pi_cpuinfo("0xd0b", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                                       "asimdrdm lrcpc dcpop asimddp", "Raspberry Pi 5 Model B Rev 1.0"),
}


def require_arm64_emulation() -> None:
    """Make sure the kernel runs aarch64 programs through qemu (binfmt_misc), registering it if needed."""
    for tool in ("debootstrap", "qemu-aarch64-static", "unshare", "chroot"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: apt-get install debootstrap qemu-user-static")
    entry = _BINFMT / "qemu-aarch64"
    if entry.exists():
        return
    if not (_BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(_BINFMT)], check=True)
    (_BINFMT / "register").write_text(_BINFMT_CONF.read_text())  # flag F: usable inside any chroot
    if not entry.exists():
        raise RuntimeError("could not register qemu-aarch64 with binfmt_misc")


def _apt_mirror() -> str:
    """The Debian mirror apt on this machine uses (debootstrap must use the same)."""
    texts = [path.read_text() for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
             if path.is_file() and path.suffix in (".list", ".sources", "")]
    for text in texts:
        for url in re.findall(r"(?:URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, flags=re.M):
            if not url.rstrip("/").endswith("-security"):
                return url
    return "http://deb.debian.org/debian"


def debian_rootfs(suite: str) -> Path:
    """A cached Debian ``suite`` arm64 root filesystem (built on first use, a few minutes)."""
    require_arm64_emulation()
    recipe = f"{suite} arm64 minbase {','.join(_PACKAGES)}"
    cache = Path(os.environ.get("BIOMOE_ROOTFS_CACHE", Path.home() / ".cache" / "biomoe-arm64"))
    root = cache / f"{suite}-arm64-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}"
    if (root / ".complete").exists():
        return root
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    _build_step(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
                 f"--include={','.join(_PACKAGES)}", suite, str(partial), _apt_mirror()])
    # In a mount namespace of its own: the /proc and /sys the second stage mounts go when it ends, even when it
    # fails (left mounted, they kept the next attempt from removing the folder, and debootstrap from starting).
    _build_step(["unshare", "--mount", "--propagation", "private", "chroot", str(partial),
                 "/debootstrap/debootstrap", "--second-stage"])
    (partial / ".complete").write_text(recipe + "\n")
    partial.rename(root)
    return root


def _build_step(command: list[str]) -> None:
    """Run one step of building a root filesystem; on failure, the error names it with the end of its output."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... failed (exit {done.returncode}): "
                           f"{(done.stdout + done.stderr)[-2000:]}")


_ENTER = r"""
set -e
lower=$1 scratch=$2 cpuinfo=$3 share=$4 command=$5
mount --make-rprivate /
mkdir -p "$scratch/upper" "$scratch/work" "$scratch/merged"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/merged"
root=$scratch/merged
mount -t proc proc "$root/proc"
mount --bind "$cpuinfo" "$root/proc/cpuinfo"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mkdir -p "$root/share"
mount --bind "$share" "$root/share"
chroot "$root" /bin/sh -c "$command"  # a child: PID 1 stays outside, so systemctl sees a chroot
"""


class Arm64System:
    """A copy-on-write Debian arm64 system in ``scratch`` on top of ``rootfs``, with one Pi CPU.

    ``share`` (a host folder) is ``/share`` inside. Every :meth:`run` has no
    network and sees what earlier runs left.
    """

    def __init__(self, rootfs: Path, scratch: Path, cpu: str, share: Path):
        self.rootfs, self.scratch, self.cpu, self.share = Path(rootfs), Path(scratch), cpu, Path(share)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._cpuinfo = self.scratch / f"cpuinfo-{cpu}"
        self._cpuinfo.write_text(PI_CPUS[cpu])

    def run(self, command: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        """``sh -c command`` as root inside (stdout and stderr captured as text)."""
        environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                       "LANG": "C.UTF-8", "QEMU_CPU": self.cpu}
        return subprocess.run(
            ["unshare", "--mount", "--net", "--pid", "--fork", "sh", "-c", _ENTER, "enter", str(self.rootfs),
             str(self.scratch), str(self._cpuinfo), str(self.share), command],
            env=environment, capture_output=True, text=True, timeout=timeout)
