"""What the page shows, kept up to date window by window and pushed to every open page.

:class:`DashboardFeed` observes the monitor (``window_stored``,
``event_stored``; called on the monitor's thread once a window or event is in
the database) or a database being followed. It keeps a compact timeline of
the session, the last window's quality and signals, the link state and the
alert, and turns each change into one Server-Sent Event, encoded once and
queued for every subscriber. A subscriber that falls ``_QUEUE_LENGTH``
messages behind is dropped; its browser reconnects and starts from a fresh
snapshot, so a slow client never holds the monitor back.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from edge.dashboard.alerts import ALERT_LEVEL, HighPainAlerts
from edge.storage import WindowResult

__all__ = ["TRACE_POINTS", "MAX_TIMELINE_WINDOWS", "Subscriber", "DashboardFeed", "sse_message"]

#: Points per channel of the last window's traces.
TRACE_POINTS = 200
#: Windows the timeline keeps (55 hours at a 10 s hop).
MAX_TIMELINE_WINDOWS = 20_000
#: Messages a subscriber may fall behind before it is dropped (its browser reconnects).
_QUEUE_LENGTH = 64


def sse_message(kind: str, data: dict) -> bytes:
    """One Server-Sent Event: ``event: KIND`` and the JSON of ``data`` (NaN as null)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=_plain)
    return f"event: {kind}\ndata: {text}\n\n".encode()


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__}")


class Subscriber:
    """One open page's queue of encoded events; ``dropped`` once it fell too far behind."""

    def __init__(self):
        self.messages: queue.Queue[bytes] = queue.Queue(maxsize=_QUEUE_LENGTH)
        self.dropped = False


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def _traces(data: np.ndarray, points: int) -> list[list[float | None]]:
    """Each row averaged down to ``points`` values (NaN, missing samples, as None)."""
    starts = np.linspace(0, data.shape[1], min(points, data.shape[1]) + 1).astype(int)[:-1]
    present = ~np.isnan(data)
    sums = np.add.reduceat(np.where(present, data, 0.0), starts, axis=1)
    counts = np.add.reduceat(present, starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan)
    return [[_rounded(value) for value in row] for row in means.tolist()]


class DashboardFeed:
    """The state of the page and its subscribers.

    Parameters
    ----------
    labels, channels : sequence of str
        The bundle's classes (model order) and channels.
    alerts : HighPainAlerts
        Raises the alert from the smoothed level.
    live : bool
        True beside a running monitor (traces and link state are known);
        False for a database view.
    link_status : callable, optional
        ``link_status() -> {"state": "up"|"down"|"no data", "samples_lost": {channel: n}}``,
        read after each window (the monitor's counters).
    """

    def __init__(self, labels: Sequence[str], channels: Sequence[str], alerts: HighPainAlerts, live: bool = True,
                 link_status: Callable[[], dict] | None = None):
        self.labels = list(labels)
        self.channels = list(channels)
        self.alerts = alerts
        self.live = live
        self.link_status = link_status
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._timeline: deque[dict] = deque(maxlen=MAX_TIMELINE_WINDOWS)
        self._last: dict | None = None
        self._traces: dict | None = None
        self._link: dict | None = None
        self._session_id: int | None = None

    # -- observing the monitor (its thread)

    def window_stored(self, result: WindowResult, window=None) -> None:
        """One window is in the database; ``window`` (its samples) when it was processed."""
        point = self._timeline_point(result)
        last = {
            "index": result.window_index, "wall_time": result.wall_time,
            "start_time": result.start_time, "end_time": result.end_time,
            "level": result.smoothed_label, "skip_reason": result.skip_reason,
            "probabilities": point["p"],
            "quality": {name: {"ok": bool(verdict.get("ok")), "flags": list(verdict.get("flags", []))}
                        for name, verdict in result.quality.items()},
        }
        traces = None
        if window is not None:
            traces = {"index": result.window_index, "seconds": window.end_time - window.start_time,
                      "channels": dict(zip(window.channels, _traces(window.data, TRACE_POINTS)))}
        link = self.link_status() if self.link_status is not None else None
        alert = self.alerts.observe(result)
        with self._lock:
            if result.session_id != self._session_id:  # a new session (a followed database): a new timeline
                self._session_id = result.session_id
                self._timeline.clear()
            self._timeline.append(point)
            self._last = last
            self._traces = traces or self._traces
            self._link = link
            self._publish(sse_message("window", {"point": point, "last": last, "traces": traces, "link": link,
                                                 "now": time.time()}))
            if alert is not None:
                self._publish(sse_message("alert", self._alert_state()))

    def event_stored(self, kind: str, detail: dict, wall_time: float) -> None:
        """One monitor event is in the database; a link change goes to the page at once."""
        if kind != "link" or self.link_status is None:
            return
        link = self.link_status()
        with self._lock:
            self._link = link
            self._publish(sse_message("link", {"link": link, "now": time.time()}))

    def _timeline_point(self, result: WindowResult) -> dict:
        probabilities = result.smoothed_probabilities
        flagged = sorted(name for name, verdict in result.quality.items() if not verdict.get("ok", True))
        return {
            "t": round(result.wall_time, 3), "end": round(result.end_time, 3), "level": result.smoothed_label,
            "p": None if probabilities is None else [_rounded(probabilities.get(label)) for label in self.labels],
            "skip": result.skip_reason if result.skipped else None, "flagged": flagged,
        }

    # -- the alert

    def acknowledge(self, alert_id: int, wall_time: float | None = None) -> bool:
        """Acknowledge the current alert (from a page, or as stored); False when it is not the current one."""
        if self.alerts.acknowledge(alert_id, wall_time) is None:
            return False
        with self._lock:
            self._publish(sse_message("alert", self._alert_state()))
        return True

    def _alert_state(self) -> dict:
        current = self.alerts.current
        return {"alert": None if current is None else current.to_dict(), "now": time.time()}

    # -- the pages

    def snapshot(self) -> bytes:
        """Everything a page needs to start: one ``snapshot`` event."""
        with self._lock:
            return sse_message("snapshot", {
                "live": self.live, "labels": self.labels, "channels": self.channels,
                "alert_level": ALERT_LEVEL, "alert_after_seconds": self.alerts.after_seconds,
                "can_acknowledge": self.alerts.can_acknowledge,
                "timeline": list(self._timeline), "last": self._last, "traces": self._traces, "link": self._link,
                **self._alert_state(),
            })

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def _publish(self, message: bytes) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.messages.put_nowait(message)
            except queue.Full:
                subscriber.dropped = True
                self._subscribers.discard(subscriber)
