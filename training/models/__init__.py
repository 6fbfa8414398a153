"""Tiny-BioMoE models.

Importing this package registers ``tiny_biomoe`` with timm, so
``timm.create_model("tiny_biomoe")`` builds the backbone.
"""

from .checkpoint import load_backbone, save_backbone
from .export_form import to_export_form
from .fusion import FusionHead, HeadCheckpoint, load_head, save_head
from .tiny_biomoe import TinyBioMoE, checkpoint_filter_fn, tiny_biomoe

__all__ = [
    "FusionHead",
    "HeadCheckpoint",
    "TinyBioMoE",
    "checkpoint_filter_fn",
    "load_backbone",
    "load_head",
    "save_backbone",
    "save_head",
    "tiny_biomoe",
    "to_export_form",
]
