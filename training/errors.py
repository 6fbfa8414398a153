"""Errors of the training package.

They subclass :class:`edge.errors.EdgeError`, so the ``biomoe`` CLI prints them
on one line without a traceback.
"""

from __future__ import annotations

from edge.errors import EdgeError

__all__ = ["CheckpointError", "TrainingError"]


class TrainingError(EdgeError):
    """A user-facing problem in training, fine-tuning or evaluation."""


class CheckpointError(TrainingError):
    """A checkpoint file that cannot be read or does not fit the model.

    The message names the file and the first mismatched parameter names, so a
    checkpoint of another architecture is recognised at a glance.
    """
