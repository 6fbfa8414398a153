"""Error types of the training package.

All of them subclass :class:`edge.errors.EdgeError`, so the ``biomoe`` CLI prints
them on one line without a traceback.
"""

from edge.errors import EdgeError

__all__ = ["CheckpointError", "DataError", "TrainingError"]


class TrainingError(EdgeError):
    """A user-facing problem in training, evaluation or data preparation."""


class DataError(TrainingError):
    """A data set on disk does not have the expected layout or content.

    The message names the file (and row/column where it applies) and says what
    to fix, or how to skip the problem (``on_error="skip"``).
    """


class CheckpointError(TrainingError):
    """A checkpoint file that cannot be read or does not fit the model.

    The message names the file and the first mismatched parameter names, so a
    checkpoint of another architecture is recognised at a glance.
    """
