"""TFLite (LiteRT) graphs of a bundle through litert-torch, and their int8 variant.

Float32: :func:`litert_torch.convert` of the backbone's *export form*
(:func:`training.models.to_export_form`) and of the head with its softmax.
The export form is what makes the conversion exact: the authors' eager
model computes spectral gating with ``torch.fft.rfft2(..., norm="ortho")``,
which litert-torch cannot lower (its FFT lowering refuses any normalisation
other than none). The export form's spectral gating is four
real matrix products with the orthonormal DFT folded in, and its BatchNorms
are folded, so the TFLite graph has only ops LiteRT runs exactly (max abs
difference to PyTorch about 6e-6 on the golden images; see
``quantize/README.md``).

int8: ai-edge-quantizer's full-integer recipe (``static_wi8_ai8``: every
op int8) loses too much (embedding cosine mean 0.966, minimum 0.80), and
dynamic-range int8 on every op fails to load (LiteRT's BATCH_MATMUL takes
no int8 constant left operand, which the DFT products are). The int8 scheme
here is static int8 (calibrated activations, per-channel weights) on the
convolutions and fully connected layers only, the rest float, and
EfficientViT's patch embedding float too (:data:`INT8_TFLITE_FLOAT_SCOPES`;
``python -m quantize.int8_scopes`` measures why). On the shipped model it
takes 0.52x the time of float TFLite per image under XNNPACK (``python -m
benchmarks.bench_forms``) but changes 2.8 % of the trained head's decisions
(``quantize/README.md``), so the default bundle is the float TFLite one.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import numpy as np
import torch

from training.models import FusionHead, TinyBioMoE

from .errors import ExportError
from .graphs import ProbabilityHead, export_form_backbone

__all__ = [
    "INT8_TFLITE_FLOAT_SCOPES",
    "INT8_TFLITE_OPS",
    "TfliteGraph",
    "convert_backbone_tflite",
    "convert_head_tflite",
    "quantize_tflite_int8",
    "tflite_interpreter",
    "tflite_run",
]

#: TFLite operators quantized to static int8; everything else stays float32.
INT8_TFLITE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: Scopes (module paths in the converted graph's tensor names) whose operators stay float32 all the same:
#: EfficientViT's patch embedding. On the GPU-pretrained backbone, int8 there alone takes the embedding
#: cosine from 0.998 to 0.982, waveform images down to 0.89 (``python -m quantize.int8_scopes``).
INT8_TFLITE_FLOAT_SCOPES = ("EfficientViT_enc2/.*patch_embed",)


class TfliteGraph(dict):
    """Input/output description of a converted graph: ``{"file", "input", "output", "input_shape"}``."""


def _quiet():
    """Silence the converters' progress prints (they write to stdout)."""
    return contextlib.redirect_stdout(io.StringIO())


def tflite_interpreter(path, threads: int = 2):
    """A LiteRT interpreter on ``path`` with tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def tflite_run(interpreter, inputs: np.ndarray) -> np.ndarray:
    """Run a single-input, single-output float graph one batch-1 item at a time."""
    detail_in, detail_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for item in inputs:
        interpreter.set_tensor(detail_in["index"], np.ascontiguousarray(item[np.newaxis], dtype=np.float32))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(detail_out["index"])[0].copy())
    return np.stack(outputs)


def _convert(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> TfliteGraph:
    import litert_torch

    with torch.no_grad(), _quiet():
        edge_model = litert_torch.convert(module.eval(), example)
        edge_model.export(str(path))
    return _describe(path, n_inputs=len(example))


def _describe(path: Path, n_inputs: int = 1) -> TfliteGraph:
    interpreter = tflite_interpreter(path, threads=1)
    detail_in = sorted(interpreter.get_input_details(), key=lambda detail: detail["index"])
    detail_out = interpreter.get_output_details()
    if len(detail_in) != n_inputs or len(detail_out) != 1:
        raise ExportError(f"{path.name}: expected {n_inputs} input(s) and one output, got {len(detail_in)} "
                          f"and {len(detail_out)}")
    return TfliteGraph(
        file=path.name,
        input=detail_in[0]["name"],
        output=detail_out[0]["name"],
        input_shape=[int(d) for d in detail_in[0]["shape"]],
        output_shape=[int(d) for d in detail_out[0]["shape"]],
    )


def convert_backbone_tflite(model: TinyBioMoE, path) -> TfliteGraph:
    """Float32 TFLite backbone: ``images (1, 3, S, S)`` -> ``embeddings (1, D)`` (one image per call)."""
    backbone = export_form_backbone(model)
    example = torch.rand(1, 3, backbone.img_size, backbone.img_size, generator=torch.Generator().manual_seed(0))
    return _convert(backbone, (example,), Path(path))


def convert_head_tflite(head: FusionHead, path) -> TfliteGraph:
    """Float32 TFLite head with softmax: ``embeddings (1, k, D)`` [, ``scalars (1, d)``] -> ``probabilities (1, classes)``.

    A head with scalars has them as its second input (``input`` names the first).
    """
    generator = torch.Generator().manual_seed(0)
    example = (torch.randn(1, head.num_embeddings, head.embedding_dim, generator=generator),)
    if head.num_scalars:
        example += (torch.randn(1, head.num_scalars, generator=generator),)
    return _convert(ProbabilityHead(head), example, Path(path))


def quantize_tflite_int8(float_path, out_path, calibration_images: np.ndarray,
                         float_scopes=INT8_TFLITE_FLOAT_SCOPES) -> TfliteGraph:
    """Static int8 (ai-edge-quantizer) of the convolutions and fully connected layers of a float graph,
    but for those in ``float_scopes``.

    Parameters
    ----------
    float_path, out_path : str or Path
    calibration_images : ndarray of float32, shape (n, 3, S, S)
        Representation images of real windows (activation ranges).
    float_scopes : sequence of str
        Regular expressions on the graph's tensor names (module paths) whose operators stay float.
    """
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    interpreter = tflite_interpreter(float_path, threads=1)
    names = [detail["name"] for detail in interpreter.get_tensor_details()]
    missing = [scope for scope in float_scopes if not any(re.search(scope, name) for name in names)]
    if missing:
        raise ExportError(f"{Path(float_path).name}: no operator in scope {missing} to keep float; "
                          "the model's module names changed: update INT8_TFLITE_FLOAT_SCOPES")
    engine = quantizer.Quantizer(str(float_path))
    for operation in INT8_TFLITE_OPS:
        engine.add_static_config(".*", getattr(qtyping.TFLOperationName, operation), 8, 8)
        for scope in float_scopes:  # later scopes override earlier ones
            engine.update_quantization_recipe(scope, getattr(qtyping.TFLOperationName, operation),
                                              algorithm_key=AlgorithmName.NO_QUANTIZE)
    (signature, description), = interpreter.get_signature_list().items()
    (input_name,) = description["inputs"]
    samples = [{input_name: image[np.newaxis].astype(np.float32)} for image in calibration_images]
    out_path = Path(out_path)
    with _quiet():
        ranges = engine.calibrate({signature: samples}, num_threads=1)
        engine.quantize(ranges).export_model(str(out_path), overwrite=True)
    if not out_path.is_file() or os.path.getsize(out_path) == 0:
        raise ExportError(f"ai-edge-quantizer wrote no model to {out_path}")
    return _describe(out_path)
