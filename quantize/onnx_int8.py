"""Static int8 quantization of the ONNX backbone, with a per-layer sensitivity pass.

Recipe (measured in ``quantize/README.md``):

1. ``quant_pre_process``: shape inference and ONNX Runtime's graph optimisation.
2. ``quantize_static``: QDQ format, per-channel symmetric int8 weights,
   asymmetric uint8 activations (the U8S8 kernels ONNX Runtime runs fastest
   on x86 and ARM), MinMax ranges calibrated on representation images of
   real windows. Only ``Conv``, ``MatMul`` and ``Gemm`` with a constant
   operand are quantized: LayerNorm, Softmax, GELU and the residual adds
   stay float (quantizing them too cost 1 point of embedding cosine for
   little speed), and so do the 26 activation x activation products of
   attention (``q @ k``, ``attention @ v``): they hold no weights, so
   float costs no file size, and quantizing them was the largest error
   source (embedding error rms 0.104 -> 0.037, mean cosine 0.9943 ->
   0.9993 on validation images).
3. Sensitivity: the calibration ranges are computed once and cached; then
   each *node group* (a module of the backbone: ``enc1.block1.0``,
   ``enc2.blocks2.1``...) is kept float alone, and the embedding cosine to
   the float model on the calibration images says what quantizing that
   group costs. Groups whose float copy removes at least
   ``min_loss_share`` of the int8 loss are kept float, best first, while
   the file stays within ``size_budget_bytes``.
4. Large float constants left by step 2 (the per-pixel affine of ``ln_img``,
   the spectral-gating filters, attention bias tables: 2.6 MB) are stored
   as per-slice uint8 with a ``DequantizeLinear`` (weight-only), and the
   all-zero zero points of symmetric weights and biases are dropped, which
   brings the file under 8 MB.

The result's ``quantization`` dict (settings, sensitivity table, kept-float
groups, cosines) goes into the bundle manifest.

**Weight-only int8** (:func:`quantize_backbone_weight_only`) is the other
scheme: every float constant of at least 4096 elements is stored as
per-slice uint8 with a ``DequantizeLinear``, and the bundle asks ONNX
Runtime (:data:`WEIGHT_ONLY_SESSION_CONFIG`) to fold those back to float32
once, at load. The file is int8-sized, the computation float32: no speed
gain, but the embeddings stay within cosine 0.9999 of the float model where
the static scheme reaches 0.995, and a 3-class pain head with many windows
near its decision boundaries needs that to keep 98 % of its answers
(``quantize/README.md``).
"""

from __future__ import annotations

import ast
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from edge.backends import onnx_session

from .errors import ExportError
from .graphs import BACKBONE_INPUT, strip_metadata

__all__ = [
    "QUANTIZED_OP_TYPES",
    "GroupSensitivity",
    "Int8Result",
    "activation_products",
    "compress_large_constants",
    "drop_zero_zero_points",
    "embedding_cosine",
    "node_groups",
    "onnx_session",
    "WEIGHT_ONLY_SESSION_CONFIG",
    "quantize_backbone_int8",
    "quantize_backbone_weight_only",
    "run_batched",
]

QUANTIZED_OP_TYPES = ("Conv", "MatMul", "Gemm")
_GROUP_DEPTH = 3  # module-path components naming a group: enc1.block1.0, enc2.blocks2.1, enc1.patch_embed1.conv
_CONSTANT_MIN_ELEMENTS = 1 << 12

#: ONNX Runtime session entries of a weight-only graph: constant-fold its
#: ``DequantizeLinear`` nodes at load (ONNX Runtime keeps them by default, to
#: preserve QDQ groups, and would dequantize every weight on every run: 1.7x
#: slower than float).
WEIGHT_ONLY_SESSION_CONFIG = {"session.disable_quant_qdq": "1"}


def run_batched(session: ort.InferenceSession, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """The session's single output on ``images``, ``batch`` at a time."""
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[i:i + batch]})[0] for i in range(0, len(images), batch)])


def embedding_cosine(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows (float64)."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1)
    return (reference * other).sum(axis=1) / np.maximum(norms, 1e-12)


def node_groups(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> group (module path cut to 3 components) from the dynamo exporter's name scopes.

    Nodes without scope metadata (or at the top level) are left out: they
    cannot be kept float on their own.
    """
    groups = {}
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if scopes is None:
            continue
        modules = [scope for scope in ast.literal_eval(scopes)[:-1] if scope]  # last entry names the op
        if modules:
            groups[node.name] = ".".join(modules[-1].split(".")[:_GROUP_DEPTH])
    return groups


@dataclass(frozen=True)
class GroupSensitivity:
    """What quantizing one node group costs: the int8 model's mean cosine with the group float."""

    group: str
    nodes: int
    float_bytes: int
    mean_cosine: float

    def as_dict(self) -> dict:
        return {"group": self.group, "nodes": self.nodes, "float_bytes": self.float_bytes,
                "mean_cosine": round(self.mean_cosine, 6)}


@dataclass(frozen=True)
class Int8Result:
    """Outcome of :func:`quantize_backbone_int8`: the file and the manifest's ``quantization`` dict."""

    path: Path
    settings: dict


class _Images(CalibrationDataReader):
    def __init__(self, images: np.ndarray, batch: int = 8):
        self._batches = [images[i:i + batch] for i in range(0, len(images), batch)]
        self._next = 0

    def get_next(self):
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return {BACKBONE_INPUT: self._batches[self._next - 1]}


def _check_calibration(images: np.ndarray, expected: tuple) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != expected or len(images) == 0:
        raise ExportError(
            f"calibration images must have shape (n, {', '.join(map(str, expected))}) with n >= 1, "
            f"got {images.shape}; draw them with edge.representations.to_model_input"
        )
    if images.dtype != np.float32 or not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ExportError("calibration images must be finite float32 in [0, 1] (to_model_input output)")
    return images


def quantize_backbone_int8(
    float_path,
    out_path,
    calibration_images: np.ndarray,
    *,
    sensitivity: bool = True,
    groups: list[str] | None = None,
    min_loss_share: float = 0.1,
    max_float_groups: int = 3,
    size_budget_bytes: int = 8_000_000,
    probe_images: int = 32,
    activation_bits: int = 8,
    progress=None,
) -> Int8Result:
    """Quantize the float backbone at ``float_path`` (exported with metadata) to static int8.

    Parameters
    ----------
    float_path : str or Path
        Float ONNX backbone from ``export_backbone_onnx(..., keep_metadata=True)``.
    out_path : str or Path
        Where to write the int8 model.
    calibration_images : ndarray of float32, shape (n, 3, S, S)
        Representation images of real windows, in [0, 1].
    sensitivity : bool
        Run the per-group sensitivity pass and keep the costliest groups float.
    groups : list of str, optional
        Groups to try in the sensitivity pass (default: every group).
    min_loss_share : float
        A group is kept float only if that alone removes at least this share
        of the int8 model's loss (1 - mean cosine).
    max_float_groups : int
        Keep at most this many groups float.
    size_budget_bytes : int
        Stop keeping groups float before the file would exceed this size.
    probe_images : int
        Calibration images the sensitivity pass scores on.
    activation_bits : {8, 16}
        Activation precision: 8 (uint8, int8 kernels) or 16 (uint16, "A16W8":
        int8 weights, activations quantized finer; ONNX Runtime computes those
        ops in float between the Q/DQ pairs).
    progress : callable, optional
        ``progress(iterable, description)`` wrapper (e.g. tqdm) for the pass.

    Returns
    -------
    Int8Result
    """
    if activation_bits not in (8, 16):
        raise ExportError(f"activation_bits must be 8 or 16, got {activation_bits!r}")
    activation_type = QuantType.QUInt8 if activation_bits == 8 else QuantType.QUInt16
    float_path, out_path = Path(float_path), Path(out_path)
    float_model = onnx.load(float_path)
    shape = [d.dim_value for d in float_model.graph.input[0].type.tensor_type.shape.dim[1:]]
    images = _check_calibration(calibration_images, tuple(shape))
    group_of = node_groups(float_model)
    unknown = sorted(set(groups or []) - set(group_of.values()))
    if unknown:
        raise ExportError(f"unknown node group(s) {unknown}; known: {sorted(set(group_of.values()))}")
    probe = images[np.linspace(0, len(images) - 1, min(probe_images, len(images))).astype(int)]
    reference = run_batched(onnx_session(float_path), probe)
    progress = progress or (lambda iterable, description: iterable)

    with tempfile.TemporaryDirectory(prefix="biomoe-int8-") as workdir:
        workdir = Path(workdir)
        prepared, cache = workdir / "prepared.onnx", workdir / "ranges.json"
        quant_pre_process(str(float_path), str(prepared))
        prepared_model = onnx.load(prepared)
        present = {node.name for node in prepared_model.graph.node}
        always_float = activation_products(prepared_model)
        members: dict[str, list[str]] = {}
        for node, group in group_of.items():
            if node in present:
                members.setdefault(group, []).append(node)

        def quantize(excluded_nodes, target):
            quantize_static(
                str(prepared), str(target), _Images(images),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=activation_type, weight_type=QuantType.QInt8,
                op_types_to_quantize=list(QUANTIZED_OP_TYPES), nodes_to_exclude=always_float + list(excluded_nodes),
                calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
            )
            return target

        def score(path):
            return float(embedding_cosine(reference, run_batched(onnx_session(path), probe)).mean())

        baseline_model = _shrink(onnx.load(quantize([], workdir / "all.onnx")))
        baseline = score(_save(baseline_model, workdir / "all.onnx"))
        weights = _group_weight_bytes(onnx.load(prepared), members)
        table: list[GroupSensitivity] = []
        if sensitivity:
            candidates = [g for g in (groups or sorted(members)) if weights.get(g, 0) > 0]
            for group in progress(candidates, "int8 sensitivity"):
                cosine = score(quantize(members[group], workdir / "probe.onnx"))
                table.append(GroupSensitivity(group, len(members[group]), 4 * weights[group], cosine))
        room = size_budget_bytes - len(baseline_model.SerializeToString())
        chosen = _choose_float_groups(table, baseline, min_loss_share, max_float_groups, room)
        model = baseline_model
        while chosen:
            excluded = [node for group in chosen for node in members[group]]
            model = _shrink(onnx.load(quantize(excluded, workdir / "final.onnx")))
            if len(model.SerializeToString()) <= size_budget_bytes:
                break
            chosen.pop()  # the estimate was short: the least useful group goes back to int8
            model = baseline_model
        excluded = [node for group in chosen for node in members[group]]
        _save(model, out_path)
    settings = {
        "scheme": "onnxruntime static int8, QDQ",
        "weights": "int8 symmetric, per channel",
        "activations": f"uint{activation_bits} asymmetric, per tensor (MinMax)",
        "quantized_op_types": list(QUANTIZED_OP_TYPES),
        "calibration_images": int(len(images)),
        "weight_only_constants": f"float initializers of >= {_CONSTANT_MIN_ELEMENTS} elements as uint8 per slice",
        "size_budget_bytes": int(size_budget_bytes),
        "float_activation_products": len(always_float),
        "kept_float_groups": list(chosen),
        "kept_float_nodes": len(excluded),
        "sensitivity_probe_images": int(len(probe)),
        "probe_mean_cosine_all_int8": round(baseline, 6),
        "probe_mean_cosine": round(score(out_path), 6),
        "sensitivity": [row.as_dict() for row in sorted(table, key=lambda row: -row.mean_cosine)],
    }
    return Int8Result(out_path, settings)


def quantize_backbone_weight_only(
    float_path, out_path, size_budget_bytes: int = 8_000_000, min_elements: int = _CONSTANT_MIN_ELEMENTS,
) -> Int8Result:
    """Store the float backbone's large constants as uint8 (weight-only int8); computation stays float32.

    Parameters
    ----------
    float_path : str or Path
        Float ONNX backbone (``export_backbone_onnx``).
    out_path : str or Path
        Where to write the weight-only model. Run it with
        :data:`WEIGHT_ONLY_SESSION_CONFIG`, which the bundle's graph entry carries.
    size_budget_bytes : int
        Largest file wanted: constants smaller than ``min_elements`` stay
        float32, and ``min_elements`` is halved until the file fits.
    min_elements : int
        Starting threshold. Keeping the constants under 4096 elements float
        (biases, norms, the small stem convolutions: 0.3 MB) raised the
        trained head's class agreement from 97.5 % to 98.6 % (``quantize/README.md``).
    """
    if not isinstance(min_elements, int) or min_elements < 1:
        raise ExportError(f"min_elements must be a positive integer, got {min_elements!r}")
    float_model = strip_metadata(onnx.load(float_path))
    while True:
        model = compress_large_constants(onnx.ModelProto.FromString(float_model.SerializeToString()), min_elements)
        if len(model.SerializeToString()) <= size_budget_bytes or min_elements == 1:
            break
        min_elements //= 2
    out_path = _save(model, Path(out_path))
    settings = {
        "scheme": "weight-only int8",
        "weights": "uint8 asymmetric, per slice along the longest axis; dequantized to float32 at load",
        "activations": "float32",
        "min_elements": int(min_elements),
        "quantized_constants": sum(node.op_type == "DequantizeLinear" for node in model.graph.node),
        "size_budget_bytes": int(size_budget_bytes),
        "onnxruntime_config": dict(WEIGHT_ONLY_SESSION_CONFIG),
    }
    return Int8Result(out_path, settings)


def activation_products(model: onnx.ModelProto) -> list[str]:
    """Names of the ``MatMul`` nodes whose operands are both activations (no constant input)."""
    constants = {init.name for init in model.graph.initializer}
    constants |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    return [node.name for node in model.graph.node
            if node.op_type == "MatMul" and not any(name in constants for name in node.input)]


def _group_weight_bytes(model: onnx.ModelProto, members: dict[str, list[str]]) -> dict[str, int]:
    """Elements of the constant weights of each group's quantizable nodes (their int8 size in bytes)."""
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    by_node = {node.name: node for node in model.graph.node}
    totals = {}
    for group, nodes in members.items():
        totals[group] = sum(
            sizes.get(by_node[name].input[1], 0)
            for name in nodes if by_node[name].op_type in QUANTIZED_OP_TYPES and len(by_node[name].input) > 1
        ) + sum(
            sizes.get(by_node[name].input[0], 0)
            for name in nodes if by_node[name].op_type == "MatMul"
        )
    return totals


def _choose_float_groups(table, baseline: float, min_loss_share: float, max_groups: int, room: int) -> list[str]:
    """Groups worth keeping float, most loss removed per added byte first, within ``room`` bytes.

    Keeping a group float adds about 3/4 of its float weight bytes (float32
    instead of int8).
    """
    loss = max(1.0 - baseline, 1e-12)
    useful = [row for row in table if (row.mean_cosine - baseline) >= min_loss_share * loss]
    useful.sort(key=lambda row: (row.mean_cosine - baseline) / max(row.float_bytes, 1), reverse=True)
    chosen = []
    for row in useful[:max_groups]:
        added = 3 * row.float_bytes // 4
        if added <= room:
            chosen.append(row.group)
            room -= added
    return chosen


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, path)
    return path


def _shrink(model: onnx.ModelProto) -> onnx.ModelProto:
    """The int8 model's file made small: large float constants as uint8, all-zero zero points dropped."""
    return drop_zero_zero_points(compress_large_constants(model))


def drop_zero_zero_points(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove all-zero int8/int32 zero points of ``DequantizeLinear`` (an optional input that defaults to 0).

    The symmetric weights and the int32 biases of a QDQ model carry one
    zero per channel: about 110 kB of zeros for Tiny-BioMoE.
    """
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node.op_type)
    dropped = set()
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) != 3 or node.input[2] not in initializers:
            continue
        zero = numpy_helper.to_array(initializers[node.input[2]])
        if zero.dtype in (np.int8, np.int32) and not zero.any() and set(users[node.input[2]]) == {"DequantizeLinear"}:
            dropped.add(node.input[2])
            del node.input[2]
    kept = [init for init in graph.initializer if init.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


def compress_large_constants(model: onnx.ModelProto, min_elements: int = _CONSTANT_MIN_ELEMENTS) -> onnx.ModelProto:
    """Store float initializers of at least ``min_elements`` as uint8 plus a ``DequantizeLinear``.

    Per-slice asymmetric scale along the initializer's longest axis (weight
    only: the computation stays float). Used for constants the int8 pass
    leaves float: LayerNorm's per-pixel affine and the spectral filters.
    """
    graph = model.graph
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    new_nodes, kept = [], []
    for init in graph.initializer:
        values = numpy_helper.to_array(init)
        if (values.dtype != np.float32 or values.size < min_elements or values.ndim == 0
                or "DequantizeLinear" in consumers.get(init.name, [])):
            kept.append(init)
            continue
        axis = int(np.argmax(values.shape))
        moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
        low, high = np.minimum(moved.min(axis=1), 0.0), np.maximum(moved.max(axis=1), 0.0)
        scale = np.where(high > low, (high - low) / 255.0, 1.0).astype(np.float32)
        zero = np.clip(np.round(-low / scale), 0, 255).astype(np.uint8)
        shape = [-1 if i == axis else 1 for i in range(values.ndim)]
        quantized = np.clip(np.round(values / scale.reshape(shape)) + zero.reshape(shape), 0, 255).astype(np.uint8)
        kept += [
            numpy_helper.from_array(quantized, init.name + "_uint8"),
            numpy_helper.from_array(scale, init.name + "_scale"),
            numpy_helper.from_array(zero, init.name + "_zero_point"),
        ]
        new_nodes.append(helper.make_node(
            "DequantizeLinear", [init.name + "_uint8", init.name + "_scale", init.name + "_zero_point"],
            [init.name], name=init.name + "_dequantize", axis=axis,
        ))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = new_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model
