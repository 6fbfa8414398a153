"""Keeping the monitor within its time and memory budget, visibly.

- :class:`StageTimer` times each stage of one window (quality, represent,
  infer, store...) for the window's ``latency_ms`` record.
- :class:`SkippingQueue` sits between the serial reader and the inference
  worker. It holds at most ``maxsize`` windows: when the device falls behind,
  the *oldest* waiting window is dropped and handed back to the caller, who
  stores it as skipped. Nothing waits without bound, and the results stay
  current.
- :class:`BudgetTracker` follows per-window processing time and process
  memory against the budgets and writes the periodic status line.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager

import numpy as np

__all__ = ["process_memory_mb", "peak_memory_mb", "StageTimer", "SkippingQueue", "QueueClosed", "BudgetTracker"]


def process_memory_mb() -> float:
    """Resident memory of this process now, in MiB (peak where the current value is unknown)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            resident_pages = int(handle.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_memory_mb()


def peak_memory_mb() -> float:
    """Peak resident memory of this process, in MiB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: ``ru_maxrss`` survives
    ``exec``, so a monitor started by a large parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


class StageTimer:
    """Wall time of each stage of one window, in milliseconds.

    Examples
    --------
    >>> timer = StageTimer()
    >>> with timer.stage("infer"):
    ...     pass
    >>> sorted(timer.latency_ms())
    ['infer', 'total']
    """

    def __init__(self):
        self._started = time.perf_counter()
        self._stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        """Time the ``with`` block as stage ``name`` (repeated stages add up)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self._stages[name] = self._stages.get(name, 0.0) + (time.perf_counter() - began) * 1000.0

    def latency_ms(self) -> dict[str, float]:
        """Each stage's time and ``total`` (since the timer was made), in ms."""
        total = (time.perf_counter() - self._started) * 1000.0
        return {**{k: round(v, 3) for k, v in self._stages.items()}, "total": round(total, 3)}


class QueueClosed(Exception):
    """Raised by :meth:`SkippingQueue.get` once the queue is closed and empty."""


class SkippingQueue:
    """Bounded FIFO that drops its oldest item instead of blocking or growing.

    Parameters
    ----------
    maxsize : int
        Items that may wait, >= 1.

    Examples
    --------
    >>> queue = SkippingQueue(2)
    >>> [queue.put(item) for item in "abc"]
    [None, None, 'a']
    >>> queue.get(), queue.skipped
    ('b', 1)
    """

    def __init__(self, maxsize: int):
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be an integer >= 1, got {maxsize!r}")
        self.maxsize = maxsize
        self._items: deque = deque()
        self._condition = threading.Condition()
        self._closed = False
        self.skipped = 0

    def put(self, item):
        """Add ``item``; return the oldest waiting item if it had to be dropped, else None."""
        with self._condition:
            dropped = None
            if len(self._items) >= self.maxsize:
                dropped = self._items.popleft()
                self.skipped += 1
            self._items.append(item)
            self._condition.notify()
            return dropped

    def get(self, timeout: float | None = None):
        """Oldest waiting item; waits up to ``timeout`` seconds.

        Raises
        ------
        TimeoutError
            When nothing arrived in time.
        QueueClosed
            When the queue was closed and every item has been taken.
        """
        with self._condition:
            if not self._condition.wait_for(lambda: self._items or self._closed, timeout):
                raise TimeoutError("no window arrived in time")
            if self._items:
                return self._items.popleft()
            raise QueueClosed

    def close(self) -> None:
        """No more items will come: waiting :meth:`get` calls return what is left, then raise."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def __len__(self) -> int:
        with self._condition:
            return len(self._items)


class BudgetTracker:
    """Per-window processing time and process memory against their budgets.

    Parameters
    ----------
    window_ms : float
        Processing time allowed per window (ms).
    memory_mb : float
        Resident memory the process should stay under (MiB).
    recent : int
        Windows the latency statistics are computed over.
    """

    def __init__(self, window_ms: float, memory_mb: float, recent: int = 100):
        for name, value in (("window_ms", window_ms), ("memory_mb", memory_mb)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        self.window_ms = float(window_ms)
        self.memory_mb = float(memory_mb)
        self.windows = 0
        self.over_time = 0
        self.max_ms = 0.0
        self.memory_now_mb = process_memory_mb()
        self.memory_max_mb = self.memory_now_mb
        self._recent: deque[float] = deque(maxlen=recent)

    def observe(self, total_ms: float) -> bool:
        """Record one processed window's total time; sample memory. Return True if within both budgets."""
        self.windows += 1
        self._recent.append(float(total_ms))
        self.max_ms = max(self.max_ms, float(total_ms))
        within_time = total_ms <= self.window_ms
        if not within_time:
            self.over_time += 1
        self.memory_now_mb = process_memory_mb()
        self.memory_max_mb = max(self.memory_max_mb, self.memory_now_mb)
        return within_time and self.memory_now_mb <= self.memory_mb

    def status(self, **counters) -> dict:
        """Budget figures plus the caller's ``counters`` (``skipped``, ``bridge_lost``...), JSON-ready."""
        recent = np.asarray(self._recent) if self._recent else np.asarray([math.nan])
        return {
            "windows": self.windows,
            "over_time_budget": self.over_time,
            "latency_ms": {
                "mean": round(float(np.mean(recent)), 1),
                "p95": round(float(np.percentile(recent, 95)), 1),
                "max": round(self.max_ms, 1),
                "budget": self.window_ms,
            },
            "memory_mb": {"now": round(self.memory_now_mb, 1), "max": round(self.memory_max_mb, 1),
                          "budget": self.memory_mb},
            **counters,
        }

    def status_line(self, skipped: int, bridge_lost: int, **counters) -> str:
        """One human line: windows, skipped, losses, latency and memory against budget."""
        status = self.status()
        latency, memory = status["latency_ms"], status["memory_mb"]
        parts = [
            f"status: {self.windows} windows processed",
            f"{skipped} skipped (behind)",
            f"{bridge_lost} samples lost on the link",
            f"latency mean {latency['mean']:.0f} ms, p95 {latency['p95']:.0f} ms, "
            f"{self.over_time} over the {self.window_ms:.0f} ms budget",
            f"memory {memory['now']:.0f} MiB (max {memory['max']:.0f}, budget {self.memory_mb:.0f})"
            + (" OVER BUDGET" if memory["now"] > self.memory_mb else ""),
        ]
        parts += [f"{value} {name.replace('_', ' ')}" for name, value in counters.items()]
        return "; ".join(parts)
