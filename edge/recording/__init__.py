"""Recordings in the field's formats: the monitor's raw signals kept as EDF+ (BDF+).

=================  =============================================================
``edf_writer``     :class:`EdfPlusWriter`: crash-safe EDF+C/BDF+C, record by record
``recorder``       :class:`Recorder`: ``biomoe monitor --record DIR`` (rotation,
                   annotations, gaps, restarts, disk budget)
=================  =============================================================
"""

from edge.recording.edf_writer import EdfPlusWriter, EdfSignal
from edge.recording.recorder import Recorder, bytes_per_hour, edf_signals

__all__ = ["EdfPlusWriter", "EdfSignal", "Recorder", "bytes_per_hour", "edf_signals"]
