"""Error types of the training package.

All of them subclass :class:`edge.errors.EdgeError`, so the ``biomoe`` CLI prints
them on one line without a traceback.
"""

from edge.errors import EdgeError

__all__ = ["TrainingError", "DataError"]


class TrainingError(EdgeError):
    """A user-facing problem in training, evaluation or data preparation."""


class DataError(TrainingError):
    """A data set on disk does not have the expected layout or content.

    The message names the file (and row/column where it applies) and says what
    to fix, or how to skip the problem (``on_error="skip"``).
    """
