"""The bedside alert: High Pain that persists.

An alert is raised once the smoothed level has been High Pain for
``after_seconds`` of device time, and ends at the first window with another
level. Windows without a level (skipped, calibrating) hold it, as the monitor
does. A person acknowledges it from the page; raising, acknowledging and
ending are each stored as an event (``alert``, ``alert_ack``, ``alert_end``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

from edge.storage import WindowResult

__all__ = ["ALERT_LEVEL", "DEFAULT_ALERT_SECONDS", "Alert", "HighPainAlerts"]

#: The level whose persistence raises an alert.
ALERT_LEVEL = "High Pain"
#: Seconds of High Pain before the banner (``--alert-after``).
DEFAULT_ALERT_SECONDS = 60.0


@dataclass
class Alert:
    """One alert: when it was raised, since when the level was high, whether someone acknowledged it."""

    id: int
    raised_wall_time: float
    high_since_device_time: float
    high_seconds: float
    acknowledged_wall_time: float | None = None
    ended_wall_time: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class HighPainAlerts:
    """Follows the smoothed level window by window; raises, ends and acknowledges alerts.

    Parameters
    ----------
    after_seconds : float
        Device seconds of persisting High Pain before an alert.
    store_event : callable, optional
        ``store_event(kind, detail)``: keeps each change in the database; None
        (a read-only view) means alerts cannot be acknowledged.

    Examples
    --------
    >>> alerts = HighPainAlerts(after_seconds=20)
    >>> windows = [WindowResult(i, 10.0 * i, 10.0 * i + 10, 0.0, smoothed_label="High Pain") for i in range(3)]
    >>> [alerts.observe(window) is not None for window in windows]
    [False, True, False]
    """

    def __init__(self, after_seconds: float = DEFAULT_ALERT_SECONDS, store_event=None):
        self.after_seconds = after_seconds
        self.store_event = store_event
        self.current: Alert | None = None
        self._high_since: float | None = None
        self._lock = threading.Lock()

    @property
    def can_acknowledge(self) -> bool:
        return self.store_event is not None

    def observe(self, result: WindowResult) -> Alert | None:
        """Take one stored window; return the alert when it was raised or ended by it, else None."""
        level = result.smoothed_label
        with self._lock:
            if self._high_since is not None and result.end_time < self._high_since:
                self._high_since = None  # the device clock started again (a restart)
            if level is None:
                return None
            if level != ALERT_LEVEL:
                self._high_since = None
                return self._end(result.wall_time)
            if self._high_since is None:
                self._high_since = result.start_time
            high_seconds = result.end_time - self._high_since
            if self.current is None and high_seconds >= self.after_seconds:
                self.current = Alert(int(result.wall_time * 1000), result.wall_time, self._high_since, high_seconds)
                self._store("alert", self.current)
                return self.current
            return None

    def _end(self, wall_time: float) -> Alert | None:
        ended, self.current = self.current, None
        if ended is not None:
            ended.ended_wall_time = wall_time
            self._store("alert_end", ended)
        return ended

    def acknowledge(self, alert_id: int, wall_time: float | None = None) -> Alert | None:
        """Acknowledge the current alert if it has this id (at ``wall_time``, default now); return it, or None."""
        with self._lock:
            if self.current is None or self.current.id != alert_id:
                return None
            if self.current.acknowledged_wall_time is None:
                self.current.acknowledged_wall_time = time.time() if wall_time is None else wall_time
                self._store("alert_ack", self.current)
            return self.current

    def _store(self, kind: str, alert: Alert) -> None:
        if self.store_event is not None:
            self.store_event(kind, alert.to_dict())
