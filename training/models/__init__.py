"""Tiny-BioMoE models; importing this package registers ``tiny_biomoe`` with timm."""

from .tiny_biomoe import TinyBioMoE, checkpoint_filter_fn, tiny_biomoe

__all__ = ["TinyBioMoE", "checkpoint_filter_fn", "tiny_biomoe"]
