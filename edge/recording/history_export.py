"""``biomoe history --export edf``: the stored windows as an EDF+ annotation file, on the recordings' clock.

One EDF+C file per monitor session, holding only the annotation signal (10 s
data records): each window as ``window N: <level> p=<probability>`` with its
duration, as :class:`~edge.recording.Recorder` writes them into the
recordings, plus device restarts. Times are unix seconds of device time 0 per
device session, taken from the ``recording_file`` events the monitor stores
while it records (``--record``), so an EDF viewer lines the file up with the
recordings; a session recorded without ``--record`` has only the results'
wall times, and device time 0 is placed at the earliest ``wall_time -
end_time`` of its windows (within the processing latency).
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

from edge.errors import EdgeError
from edge.recording.edf_writer import EdfPlusWriter
from edge.recording.recorder import window_annotation

__all__ = ["export_edf"]

_RECORD_SECONDS = 10.0


def _boots(results) -> list[list]:
    """The windows of each device session in order: a window starting before the one before it begins a new one."""
    boots: list[list] = []
    for result in results:
        if not boots or result.start_time < boots[-1][-1].start_time:
            boots.append([])
        boots[-1].append(result)
    return boots


def _clock(boots: list[list], events: list[dict]) -> list[float]:
    """Unix time of device time 0 for each device session."""
    zeros = []
    for event in events:
        zero = event["detail"]["device_time_zero_unix"]
        if not zeros or not math.isclose(zero, zeros[-1]):
            zeros.append(zero)
    if len(zeros) >= len(boots):
        return zeros[: len(boots)]
    return [min(r.wall_time - r.end_time for r in windows) for windows in boots]


def export_edf(results, events, path) -> list[Path]:
    """Write ``results`` (:class:`~edge.storage.WindowResult`, any sessions) as EDF+ annotation files.

    Parameters
    ----------
    results : sequence of WindowResult
        In stored order.
    events : sequence of dict
        The database's ``recording_file`` events (:meth:`ResultStore.events`).
    path : str or Path
        The file; with several sessions, ``STEM-session{ID}.edf`` beside it.

    Returns
    -------
    list of Path
        The files written.
    """
    path = Path(path)
    sessions = sorted({r.session_id for r in results})
    if not sessions:
        raise EdgeError("no windows to export; the database holds none (or none of --session/--last)")
    written = []
    for session in sessions:
        windows = [r for r in results if r.session_id == session]
        boots = _boots(windows)
        zeros = _clock(boots, [e for e in events if e["session_id"] == session])
        notes = [(zero + r.start_time, r.end_time - r.start_time, window_annotation(r))
                 for zero, boot in zip(zeros, boots) for r in boot]
        notes += [(zero + boot[0].start_time, None, "device restarted") for zero, boot in zip(zeros[1:], boots[1:])]
        notes.sort(key=lambda note: note[0])
        start = math.floor(notes[0][0])
        end = max(onset + (duration or 0) for onset, duration, _ in notes)
        target = path if len(sessions) == 1 else path.with_name(f"{path.stem}-session{session}{path.suffix}")
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        writer = EdfPlusWriter(partial, [], _RECORD_SECONDS,
                               dt.datetime.fromtimestamp(start, tz=dt.timezone.utc).replace(tzinfo=None))
        waiting = iter(notes)
        note = next(waiting, None)
        for k in range(max(1, math.ceil((end - start) / _RECORD_SECONDS))):
            writer.write_record(k * _RECORD_SECONDS, [])
            while note is not None and note[0] - start < (k + 1) * _RECORD_SECONDS:  # into this record, or the next
                writer.annotate(note[0] - start, note[2], note[1])
                note = next(waiting, None)
        while note is not None:
            writer.annotate(note[0] - start, note[2], note[1])
            note = next(waiting, None)
        if writer.close():
            raise EdgeError(f"{target}: more annotations than the file has room for; export fewer windows (--last)")
        partial.replace(target)
        written.append(target)
    return written
