"""Build the placeholder default bundle, so ``biomoe monitor --simulate`` runs
before a trained model exists.

The model is honest about being a stand-in: it averages each image's three
colour planes (global average pool), maps the ``k * 3`` means through a
*fixed random* linear layer (seeded) and a softmax. It takes exactly the input
of a real bundle, ``(k, 3, 224, 224)`` float32, so the whole pipeline
(representations, batching, storage) is exercised, but its pain levels mean
nothing, and its manifest says ``"placeholder": true`` so the monitor warns on
every start. A trained bundle from ``biomoe export`` replaces it.

Fusion (5 images, all four AI4PAIN channels, following the paper's best
fusions): EDA scalogram + EDA recurrence plot (best single-modality pair),
BVP scalogram, RESP scalogram, SpO2 waveform (SpO2 moves slowly: its shape
over 10 s says more than its spectrum).

Rebuild the committed bundle with::

    python -m quantize.placeholder            # writes edge/bundles/default
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.bundle import Bundle, default_bundle_path, save_bundle
from edge.representations import RepresentationSpec

from .manifest import build_manifest, graph_entry

__all__ = [
    "PLACEHOLDER_FUSION", "LABELS", "REPRESENTATION_SPEC",
    "build_placeholder_model", "build_placeholder_bundle", "main",
]

PLACEHOLDER_FUSION = (
    ("EDA", "scalogram"),
    ("EDA", "recurrence"),
    ("BVP", "scalogram"),
    ("RESP", "scalogram"),
    ("SpO2", "waveform"),
)
LABELS = ("No Pain", "Low Pain", "High Pain")
IMAGE_SIZE = 224
SAMPLING_RATE = 100.0
WINDOW_SECONDS = 10.0
# Settings of the representations, stored in the manifest (the monitor reads
# them with RepresentationSpec.from_dict). Suited to 100 Hz physiological
# signals: 2.56 s STFT segments every 0.16 s, zero-padded to 0.2 Hz bins and
# cropped at 10 Hz, where EDA, BVP (with its harmonics) and RESP carry their
# power; the scalogram keeps its 0.05-5 Hz default. A trained bundle carries
# the settings it was trained with.
REPRESENTATION_SPEC = RepresentationSpec(
    sampling_rate=SAMPLING_RATE,
    window_seconds=WINDOW_SECONDS,
    image_size=IMAGE_SIZE,
    stft_nperseg=256,
    stft_noverlap=240,
    stft_nfft=512,
    stft_fmax_hz=10.0,
)
_OPSET = 17
_IR_VERSION = 8  # readable by onnxruntime >= 1.14, as found on Raspberry Pi OS wheels


def build_placeholder_model(n_images: int, n_classes: int = 3, image_size: int = IMAGE_SIZE, seed: int = 0):
    """ONNX graph ``images (k, 3, S, S) -> probabilities (n_classes,)`` with fixed random weights.

    Parameters
    ----------
    n_images : int
        Images per window (``k``).
    n_classes : int
        Output classes.
    image_size : int
        Image side ``S``.
    seed : int
        Seed of the random linear layer (a local ``numpy.random.default_rng``).

    Returns
    -------
    onnx.ModelProto
    """
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 2.0, size=(n_images * 3, n_classes)).astype(np.float32)
    bias = np.zeros(n_classes, dtype=np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),  # (k, 3, 1, 1)
        helper.make_node("Reshape", ["pooled", "row_shape"], ["row"]),  # (1, k*3)
        helper.make_node("Gemm", ["row", "weight", "bias"], ["logits"]),  # (1, classes)
        helper.make_node("Softmax", ["logits"], ["softmax"], axis=-1),
        helper.make_node("Reshape", ["softmax", "out_shape"], ["probabilities"]),  # (classes,)
    ]
    initializers = [
        numpy_helper.from_array(np.array([1, n_images * 3], dtype=np.int64), "row_shape"),
        numpy_helper.from_array(np.array([n_classes], dtype=np.int64), "out_shape"),
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(bias, "bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "biomoe_placeholder",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [n_images, 3, image_size, image_size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [n_classes])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="biomoe quantize.placeholder"
    )
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    return model


def build_placeholder_bundle(directory) -> Bundle:
    """Write the placeholder bundle to ``directory`` (atomically) and return it."""
    n_images = len(PLACEHOLDER_FUSION)
    model = build_placeholder_model(n_images, len(LABELS))
    manifest = build_manifest(
        name="placeholder-default",
        description=(
            "PLACEHOLDER: fixed random weights, predictions are meaningless. Built by "
            "python -m quantize.placeholder so the monitor runs before a trained bundle exists."
        ),
        placeholder=True,
        backend="onnxruntime",
        pipeline="end_to_end",
        graphs={"model": graph_entry("model.onnx", "images", [n_images, 3, IMAGE_SIZE, IMAGE_SIZE],
                                     "probabilities", [len(LABELS)], "probabilities")},
        spec=REPRESENTATION_SPEC,
        fusion=PLACEHOLDER_FUSION,
        labels=LABELS,
    )
    return save_bundle(directory, manifest, {"model.onnx": model.SerializeToString()})


def main(argv: list[str] | None = None) -> int:
    """``python -m quantize.placeholder [--output DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m quantize.placeholder", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=default_bundle_path(), help="bundle folder (default: %(default)s)")
    args = parser.parse_args(argv)
    bundle = build_placeholder_bundle(args.output)
    print(f"wrote {bundle.path}: {bundle.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
