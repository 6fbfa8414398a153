"""Replay a recording over the serial protocol: ``--replay FILE`` of ``biomoe monitor`` and ``biomoe simulate-device``.

:func:`replay_recording` turns what :func:`~edge.recording.formats.read_recording`
read into a :class:`firmware_bridge.simulator.ReplayRecording`: each channel
keeps its rate when a whole number of its samples fits one block (else it is
resampled to the protocol's 100 Hz), and an EDF/BDF file's channels keep the
file's digital range and scaling, so the bytes on the wire carry the stored
integers unchanged (a recording made with ``--record`` replays the samples
the bridge delivered). The simulated device then streams it like a board.
A channel's stretches without samples (:attr:`SourceRecording.missing`)
become scheduled lead-offs of that channel (:func:`dropout_conditions`), so
the monitor's quality gate flags the windows over them as for a real lead-off.
"""

from __future__ import annotations

import argparse
import math

from edge.recording.formats import PROTOCOL_RATE_HZ, SourceRecording, parse_channel_map, read_recording, resample_to
from firmware_bridge.simulator import Condition, ReplayRecording

__all__ = ["replay_recording", "dropout_conditions", "add_replay_arguments", "recording_from_args", "replay_windows"]


def replay_recording(source: SourceRecording, block_ms: int = 1000) -> ReplayRecording:
    """The simulator's replay source for ``source``, in blocks of ``block_ms``."""
    signals, rates = {}, {}
    for name, values in source.signals.items():
        rate = source.rates[name]
        per_block = rate * block_ms / 1000
        if per_block >= 1 and math.isclose(per_block, round(per_block), abs_tol=1e-9):
            signals[name], rates[name] = values, rate
        else:
            signals[name], rates[name] = resample_to(values, rate, PROTOCOL_RATE_HZ), PROTOCOL_RATE_HZ
    scaling = {name: value for name, value in source.scaling.items() if rates[name] == source.rates[name]}
    return ReplayRecording(signals, rates, source.units, scaling)


def dropout_conditions(source: SourceRecording) -> tuple[Condition, ...]:
    """A lead-off of each channel over each of its stretches without samples (stream seconds = recording seconds)."""
    return tuple(Condition("leadoff", channel, start, end)
                 for channel, gaps in source.missing.items() for start, end in gaps)


def replay_windows(recording: ReplayRecording, block_ms: int, window_seconds: float, hop_seconds: float) -> int:
    """Windows a monitor can cut whole from a replay (the last block only ends the stream)."""
    seconds = (recording.blocks(block_ms) - 1) * block_ms / 1000
    return max(0, math.floor((seconds - window_seconds) / hop_seconds + 1e-9) + 1)


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """``--map`` and ``--rate`` of a replay of a file (``--replay`` is the command's own)."""
    parser.add_argument("--map", metavar="CH=NAME,...",
                        help="which of the recording's channels is EDA, BVP, RESP, SpO2 (e.g. EDA=GSR,BVP=Pleth); "
                             "default: by the usual names")
    parser.add_argument("--rate", type=float, metavar="HZ",
                        help="sampling rate of a CSV recording without a time column")


def recording_from_args(path, args: argparse.Namespace,
                        block_ms: int = 1000) -> tuple[ReplayRecording, tuple[Condition, ...]]:
    """Read ``path`` with the ``--map`` and ``--rate`` of ``args``: the replay, and the lead-offs to schedule
    over its stretches without samples (:func:`dropout_conditions`)."""
    source = read_recording(path, parse_channel_map(args.map), args.rate)
    return replay_recording(source, block_ms), dropout_conditions(source)
