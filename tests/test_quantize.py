"""Static int8 ONNX quantization: parity thresholds, size, sensitivity pass, bad calibration data."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from quantize.build_default_bundle import fit_head
from quantize.errors import ExportError
from quantize.graphs import ProbabilityHead, export_backbone_onnx
from quantize.onnx_int8 import (
    activation_products, compress_large_constants, drop_zero_zero_points, node_groups, onnx_session,
    quantize_backbone_int8, run_batched,
)
from quantize.parity import INT8_THRESHOLDS, GraphRunner, int8_parity
from quantize_data import FUSION, rhythm_windows
from conftest import shared_path
from training.models import load_backbone

GOLDEN_CHECKPOINT = "reference/tiny_biomoe/golden_checkpoint.pth"
SENSITIVITY_GROUPS = ["enc1.post_network.0", "enc2.blocks1.0"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Float backbone (with scope metadata), int8 backbone, train/validation windows, fitted head."""
    folder = tmp_path_factory.mktemp("int8")
    model = load_backbone(shared_path(GOLDEN_CHECKPOINT))
    float_path = export_backbone_onnx(model, folder / "backbone.onnx", keep_metadata=True)
    train, validation = rhythm_windows(8, seed=0), rhythm_windows(8, seed=1)
    float_session = onnx_session(float_path)
    embeddings = run_batched(float_session, train.flat()).reshape(len(train), len(FUSION), -1)
    head = ProbabilityHead(fit_head(embeddings, train.labels, steps=2000))
    result = quantize_backbone_int8(float_path, folder / "backbone.int8.onnx", train.flat(32),
                                    groups=SENSITIVITY_GROUPS)
    return {"float": float_path, "int8": result, "train": train, "validation": validation, "head": head}


def _runner(path, head):
    session = onnx_session(path)

    def classify(embeddings):
        with torch.no_grad():
            return head(torch.from_numpy(embeddings.astype(np.float32))).numpy()

    return GraphRunner(lambda images: run_batched(session, images), classify)


def test_int8_meets_parity_thresholds_on_generated_validation_set(exported):
    report = int8_parity(_runner(exported["float"], exported["head"]), _runner(exported["int8"].path, exported["head"]),
                         exported["validation"], n_classes=3)
    assert report["macro_f1_float"] >= 0.9  # the float model is confident, so agreement means something
    assert report["mean_cosine"] >= INT8_THRESHOLDS["mean_cosine"]
    assert report["class_agreement"] >= INT8_THRESHOLDS["class_agreement"]
    assert report["macro_f1_drop"] <= INT8_THRESHOLDS["macro_f1_drop"]
    assert report["passed"]


def test_int8_file_is_small_and_really_int8(exported):
    path = exported["int8"].path
    assert path.stat().st_size <= 8_000_000
    model = onnx.load(path)
    kinds = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds
    weights = [init for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8]
    assert sum(int(np.prod(init.dims)) for init in weights) > 6_000_000  # the backbone's 7.3 M weights, mostly int8


def test_quantization_settings_record_the_sensitivity_pass(exported):
    settings = exported["int8"].settings
    assert sorted(row["group"] for row in settings["sensitivity"]) == sorted(SENSITIVITY_GROUPS)
    assert all(0.9 < row["mean_cosine"] <= 1.0 for row in settings["sensitivity"])
    assert set(settings["kept_float_groups"]) <= set(SENSITIVITY_GROUPS)
    assert settings["float_activation_products"] == 26
    assert settings["calibration_images"] == 32
    assert settings["probe_mean_cosine"] >= INT8_THRESHOLDS["mean_cosine"]


def test_node_groups_follow_module_names(exported):
    groups = set(node_groups(onnx.load(exported["float"])).values())
    assert {"enc1.block1.0", "enc1.post_network.0", "enc2.blocks1.0", "ln_img"} <= groups
    assert all(len(group.split(".")) <= 3 for group in groups)


def test_unknown_sensitivity_group_is_refused(exported, tmp_path):
    with pytest.raises(ExportError, match="unknown node group"):
        quantize_backbone_int8(exported["float"], tmp_path / "x.onnx", exported["train"].flat(4), groups=["enc9"])


@pytest.mark.parametrize(
    "images, problem",
    [
        (np.zeros((4, 3, 64, 64), np.float32), "must have shape"),
        (np.zeros((4, 224, 224, 3), np.float32), "must have shape"),
        (np.zeros((0, 3, 224, 224), np.float32), "must have shape"),
        (np.full((2, 3, 224, 224), 255, np.float32), r"float32 in \[0, 1\]"),
        (np.zeros((2, 3, 224, 224), np.uint8), r"float32 in \[0, 1\]"),
    ],
)
def test_calibration_images_of_the_wrong_kind_are_refused(exported, tmp_path, images, problem):
    with pytest.raises(ExportError, match=problem):
        quantize_backbone_int8(exported["float"], tmp_path / "x.onnx", images, sensitivity=False)
    assert not (tmp_path / "x.onnx").exists()


def _graph_with_constant(values: np.ndarray, zero_point: np.ndarray | None = None) -> onnx.ModelProto:
    nodes = [helper.make_node("Mul", ["x", "w"], ["y"])]
    initializers = [numpy_helper.from_array(values, "w")]
    if zero_point is not None:
        nodes = [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["wq"], axis=0), helper.make_node("Mul", ["x", "wq"], ["y"])]
        initializers = [numpy_helper.from_array(values, "q"), numpy_helper.from_array(np.ones(len(values), np.float32), "s"),
                        numpy_helper.from_array(zero_point, "z")]
    shape = list(values.shape)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, shape)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)


def test_compress_large_constants_keeps_values_within_half_a_step(tmp_path):
    values = np.random.default_rng(0).normal(1.0, 0.2, size=(512, 16)).astype(np.float32)  # slices along the longest axis: rows
    model = compress_large_constants(_graph_with_constant(values), min_elements=1000)
    assert {init.name for init in model.graph.initializer} == {"w_uint8", "w_scale", "w_zero_point"}
    onnx.save(model, tmp_path / "m.onnx")
    ones = np.ones_like(values)
    restored = onnx_session(tmp_path / "m.onnx").run(None, {"x": ones})[0]
    step = (np.maximum(values.max(axis=1), 0) - np.minimum(values.min(axis=1), 0)) / 255
    assert np.all(np.abs(restored - values) <= step[:, None] * 0.5 + 1e-6)


def test_drop_zero_zero_points_only_drops_zeros():
    zeros = drop_zero_zero_points(_graph_with_constant(np.ones(4, np.int8), np.zeros(4, np.int8)))
    assert [len(n.input) for n in zeros.graph.node if n.op_type == "DequantizeLinear"] == [2]
    kept = drop_zero_zero_points(_graph_with_constant(np.ones(4, np.int8), np.array([0, 1, 0, 0], np.int8)))
    assert [len(n.input) for n in kept.graph.node if n.op_type == "DequantizeLinear"] == [3]


def test_activation_products_are_the_matmuls_without_constants():
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["ab"], name="aa"), helper.make_node("MatMul", ["ab", "w"], ["y"], name="aw")],
        "g",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [2, 2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 2])],
        [numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")],
    )
    assert activation_products(helper.make_model(graph)) == ["aa"]
