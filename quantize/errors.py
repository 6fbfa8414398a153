"""Error type of the export: a subclass of :class:`edge.errors.EdgeError`, so the
``biomoe`` CLI prints it on one line without a traceback."""

from edge.errors import EdgeError

__all__ = ["ExportError", "ParityError"]


class ExportError(EdgeError):
    """A user-facing problem while exporting, quantizing or checking a bundle."""


class ParityError(ExportError):
    """An int8 model that misses the parity thresholds (nothing was written)."""
