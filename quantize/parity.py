"""Parity of exported graphs with the PyTorch model, and of int8 graphs with float.

Quantization that silently changes the model's answers is worse than none,
so every bundle carries these figures (manifest ``parity``) and
:func:`format_parity` prints them:

- float graph vs PyTorch (the eager model, with its FFT): max abs difference
  of embeddings and of probabilities;
- int8 vs float on a validation set: mean and minimum cosine similarity of
  the embeddings, agreement of the predicted classes, macro-F1 of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from training.metrics import macro_f1
from training.models import FusionHead, TinyBioMoE

from .graphs import ProbabilityHead
from .images import WindowImages
from .onnx_int8 import embedding_cosine, onnx_session, run_batched
from .tflite import tflite_interpreter, tflite_run

__all__ = [
    "INT8_THRESHOLDS",
    "GraphRunner",
    "float_parity",
    "format_parity",
    "int8_parity",
    "onnx_runner",
    "tflite_runner",
    "torch_runner",
]

#: int8 vs float on the validation set: what an int8 bundle must meet.
INT8_THRESHOLDS = {"mean_cosine": 0.99, "class_agreement": 0.98, "macro_f1_drop": 0.01}


@dataclass(frozen=True)
class GraphRunner:
    """Backbone and head of one format as two functions on numpy arrays.

    ``embed``: images (n, 3, S, S) -> embeddings (n, D); ``classify``:
    embeddings (n, k, D) -> probabilities (n, classes).
    """

    embed: Callable[[np.ndarray], np.ndarray]
    classify: Callable[[np.ndarray], np.ndarray]

    def windows(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (n, k, D) and probabilities (n, classes) of windows (n, k, 3, S, S)."""
        n, k = images.shape[:2]
        embeddings = self.embed(images.reshape((n * k,) + images.shape[2:])).reshape(n, k, -1)
        return embeddings, self.classify(embeddings)


def torch_runner(model: TinyBioMoE, head: FusionHead) -> GraphRunner:
    """The PyTorch reference (eager model as loaded, with its FFT)."""
    model, probability = model.eval(), ProbabilityHead(head).eval()

    def embed(images):
        with torch.no_grad():
            return np.concatenate([model(torch.from_numpy(images[i:i + 16])).numpy() for i in range(0, len(images), 16)])

    def classify(embeddings):
        with torch.no_grad():
            return probability(torch.from_numpy(np.ascontiguousarray(embeddings, np.float32))).numpy()

    return GraphRunner(embed, classify)


def onnx_runner(backbone_path, head_path, threads: int = 2, backbone_config: dict | None = None) -> GraphRunner:
    """ONNX Runtime sessions on a backbone (with its session ``backbone_config``) and a head file."""
    backbone, head = onnx_session(backbone_path, threads, backbone_config), onnx_session(head_path, threads)
    return GraphRunner(lambda x: run_batched(backbone, x), lambda e: run_batched(head, e.astype(np.float32)))


def tflite_runner(backbone_path, head_path, threads: int = 2) -> GraphRunner:
    """LiteRT interpreters on a backbone and a head file (one item per call)."""
    backbone, head = tflite_interpreter(backbone_path, threads), tflite_interpreter(head_path, threads)
    return GraphRunner(lambda x: tflite_run(backbone, x), lambda e: tflite_run(head, e.astype(np.float32)))



def float_parity(reference: GraphRunner, exported: GraphRunner, windows: np.ndarray) -> dict:
    """Max abs differences of embeddings and probabilities of a float export vs PyTorch.

    Parameters
    ----------
    reference, exported : GraphRunner
    windows : ndarray, shape (n, k, 3, S, S)
    """
    ref_embeddings, ref_probabilities = reference.windows(windows)
    embeddings, probabilities = exported.windows(windows)
    return {
        "windows": int(len(windows)),
        "max_abs_diff_embedding": float(np.abs(embeddings - ref_embeddings).max()),
        "max_abs_diff_probability": float(np.abs(probabilities - ref_probabilities).max()),
    }


def int8_parity(float_graphs: GraphRunner, int8_graphs: GraphRunner, validation: WindowImages, n_classes: int) -> dict:
    """int8 vs float on a validation set: embedding cosine, class agreement, macro-F1 of both.

    ``passed`` says whether :data:`INT8_THRESHOLDS` are met (macro-F1 only
    when the validation windows are labelled).
    """
    float_embeddings, float_probabilities = float_graphs.windows(validation.images)
    int8_embeddings, int8_probabilities = int8_graphs.windows(validation.images)
    width = float_embeddings.shape[-1]
    cosine = embedding_cosine(float_embeddings.reshape(-1, width), int8_embeddings.reshape(-1, width))
    float_classes, int8_classes = float_probabilities.argmax(axis=1), int8_probabilities.argmax(axis=1)
    report = {
        "validation": validation.source,
        "windows": int(len(validation)),
        "images": int(cosine.size),
        "mean_cosine": float(cosine.mean()),
        "min_cosine": float(cosine.min()),
        "class_agreement": float(np.mean(float_classes == int8_classes)),
        "max_abs_diff_probability": float(np.abs(float_probabilities - int8_probabilities).max()),
    }
    passed = (report["mean_cosine"] >= INT8_THRESHOLDS["mean_cosine"]
              and report["class_agreement"] >= INT8_THRESHOLDS["class_agreement"])
    if validation.labels is not None:
        report["macro_f1_float"] = macro_f1(validation.labels, float_classes, n_classes)
        report["macro_f1_int8"] = macro_f1(validation.labels, int8_classes, n_classes)
        report["macro_f1_drop"] = report["macro_f1_float"] - report["macro_f1_int8"]
        passed = passed and report["macro_f1_drop"] <= INT8_THRESHOLDS["macro_f1_drop"]
    report["thresholds"] = dict(INT8_THRESHOLDS)
    report["passed"] = bool(passed)
    return report


def format_parity(parity: dict) -> str:
    """The parity figures as a few human lines (what ``biomoe export`` prints)."""
    lines = []
    floating = parity.get("float_vs_pytorch")
    if floating:
        lines.append(
            f"float {parity['format']} vs PyTorch ({floating['windows']} windows): max |d embedding| "
            f"{floating['max_abs_diff_embedding']:.2e}, max |d probability| {floating['max_abs_diff_probability']:.2e}"
        )
    quantized = parity.get("int8_vs_float")
    if quantized:
        line = (
            f"int8 vs float ({quantized['windows']} windows, {quantized['images']} images): embedding cosine mean "
            f"{quantized['mean_cosine']:.5f} min {quantized['min_cosine']:.5f}, class agreement "
            f"{100 * quantized['class_agreement']:.1f} %"
        )
        if "macro_f1_float" in quantized:
            line += (f", macro-F1 float {100 * quantized['macro_f1_float']:.1f} int8 "
                     f"{100 * quantized['macro_f1_int8']:.1f} (drop {100 * quantized['macro_f1_drop']:.2f} points)")
        line += " -> " + ("meets" if quantized["passed"] else "MISSES") + " the int8 thresholds"
        lines.append(line)
    return "\n".join(lines)
