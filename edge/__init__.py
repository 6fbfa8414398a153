"""Device runtime of Tiny-BioMoE Edge: windows, signal quality, representations,
inference backends and the monitoring service. Never imports torch."""

from edge.errors import EdgeError

__all__ = ["EdgeError"]
