"""The two graphs of a bundle, as PyTorch modules, and their ONNX export.

A bundle uses the ``backbone_head`` pipeline (``edge/BUNDLE.md``): the
backbone maps any batch of images to embeddings and the head maps one
window's ``k`` embeddings to probabilities. Why two graphs and not one is
measured in ``quantize/README.md``: the backbone is the only part worth
quantizing (the head is 3 x 960 weights), one backbone serves every fusion
of the same images, and the runtime already batches all ``k`` images of a
window into one backbone call.

The backbone is exported in its export form
(:func:`training.models.to_export_form`: no FFT, BatchNorm folded), which
every exporter and quantizer takes, through ``torch.onnx.export(dynamo=True)``.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
import torch.nn as nn

from training.models import FusionHead, TinyBioMoE, to_export_form

__all__ = [
    "BACKBONE_INPUT",
    "BACKBONE_OUTPUT",
    "HEAD_INPUT",
    "HEAD_OUTPUT",
    "ONNX_OPSET",
    "ProbabilityHead",
    "export_form_backbone",
    "export_onnx",
    "export_backbone_onnx",
    "export_head_onnx",
]

BACKBONE_INPUT, BACKBONE_OUTPUT = "images", "embeddings"
HEAD_INPUT, HEAD_OUTPUT = "embeddings", "probabilities"
ONNX_OPSET = 20


class ProbabilityHead(nn.Module):
    """A :class:`FusionHead` followed by a softmax: (B, k, D) embeddings [+ (B, d) scalars] -> (B, classes) probabilities."""

    def __init__(self, head: FusionHead):
        super().__init__()
        self.head = head.eval()

    def forward(self, embeddings: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.head(embeddings, scalars), dim=-1)


def export_form_backbone(model: TinyBioMoE) -> TinyBioMoE:
    """``model`` in export form (converted unless it already is)."""
    return model if getattr(model, "is_export_form", False) else to_export_form(model)


def strip_metadata(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the exporter's per-node metadata (source paths, stack traces): not needed to run, and large."""
    for node in model.graph.node:
        del node.metadata_props[:]
    return model


def export_onnx(module: nn.Module, example, path, input_name, output_name: str,
                keep_metadata: bool = False) -> Path:
    """Export ``module`` (eval mode) to ONNX with the dynamo exporter, batch dimension ``"n"`` dynamic.

    Parameters
    ----------
    module : torch.nn.Module
    example : torch.Tensor or tuple of torch.Tensor
        An example input, or one per input (the first dimension of each becomes the dynamic batch).
    path : str or Path
        Output file.
    input_name : str or sequence of str
        Input tensor name(s) in the graph, one per example input.
    output_name : str
        Output tensor name.
    keep_metadata : bool
        Keep the exporter's node metadata (module name scopes), which the
        int8 sensitivity pass reads; the bundle's files drop it.
    """
    path = Path(path)
    examples = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    names = [input_name] if isinstance(input_name, str) else list(input_name)
    batch = torch.export.Dim("n", min=1, max=1024)
    with torch.no_grad():
        program = torch.onnx.export(
            module.eval(),
            examples,
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=names,
            output_names=[output_name],
            dynamic_shapes=tuple({0: batch} for _ in examples),
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    if not keep_metadata:
        strip_metadata(model)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def export_backbone_onnx(model: TinyBioMoE, path, keep_metadata: bool = False) -> Path:
    """Float32 ONNX of the backbone: ``images (n, 3, S, S)`` -> ``embeddings (n, D)``."""
    backbone = export_form_backbone(model)
    example = torch.rand(2, 3, backbone.img_size, backbone.img_size, generator=torch.Generator().manual_seed(0))
    return export_onnx(backbone, example, path, BACKBONE_INPUT, BACKBONE_OUTPUT, keep_metadata)


def export_head_onnx(head: FusionHead, path) -> Path:
    """Float32 ONNX of the head with its softmax: ``embeddings (n, k, D)`` -> ``probabilities (n, classes)``."""
    example = torch.randn(2, head.num_embeddings, head.embedding_dim, generator=torch.Generator().manual_seed(0))
    return export_onnx(ProbabilityHead(head), example, path, HEAD_INPUT, HEAD_OUTPUT)
