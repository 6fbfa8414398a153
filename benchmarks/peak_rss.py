"""Run a Python module as ``__main__`` and record its process's peak resident memory.

``python -m benchmarks.peak_rss OUT.json MODULE [ARGS...]`` runs ``MODULE``
like ``python -m MODULE ARGS...`` and, when it exits, writes
``{"peak_rss_mb": ...}`` to ``OUT.json``: the ``VmHWM`` line of
``/proc/self/status`` (Linux), else ``getrusage(RUSAGE_SELF).ru_maxrss``.

Why not ``getrusage(RUSAGE_CHILDREN)`` or ``wait4`` in the parent: on Linux a
child's ``ru_maxrss`` keeps the high-water mark of the parent's memory it was
forked from, so a bench process holding torch would report its own size for
every child. ``VmHWM`` belongs to the address space the child's ``exec``
created.
"""

from __future__ import annotations

import atexit
import json
import resource
import runpy
import sys

__all__ = ["peak_rss_mb", "main"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        raise SystemExit("usage: python -m benchmarks.peak_rss OUT.json MODULE [ARGS...]")
    out, module, arguments = argv[0], argv[1], argv[2:]

    def record() -> None:
        with open(out, "w", encoding="utf-8") as handle:
            json.dump({"peak_rss_mb": peak_rss_mb()}, handle)

    atexit.register(record)
    sys.argv = [module, *arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
