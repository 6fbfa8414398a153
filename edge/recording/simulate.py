"""``biomoe simulate-device``: the firmware_bridge simulator, replaying recordings in the field's formats too.

``--replay FILE`` (EDF/BDF, WFDB, E4 session folder, CSV; ``--map``,
``--rate``) is read here, by :mod:`edge.recording.formats` (firmware_bridge
reads no such format), and handed to the simulated device as its replay
source, its stretches without samples as scheduled lead-offs
(:func:`~edge.recording.replay.dropout_conditions`); ``--replay DIR
--subject ID`` (the AI4PAIN layout) and every other option are the
simulator's own (:mod:`firmware_bridge.simulator.cli`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.recording.replay import add_replay_arguments, recording_from_args
from firmware_bridge.simulator import cli as simulator_cli

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The simulator's options, with ``--map`` and ``--rate`` for a replayed file."""
    simulator_cli.configure_parser(parser)
    add_replay_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Stream the generator, an AI4PAIN subject or a recording file."""
    if args.replay_dir is None or (Path(args.replay_dir).is_dir() and args.subject is not None):
        return simulator_cli.run(args)
    recording, dropouts = recording_from_args(args.replay_dir, args, args.block_ms)
    return simulator_cli.run(argparse.Namespace(**{**vars(args), "replay_dir": None,
                                                   "conditions": [*args.conditions, *dropouts]}),
                             recording, Path(args.replay_dir).name)
