"""Float ONNX export of the backbone and the head: parity with PyTorch, graph interface."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from quantize.graphs import (
    BACKBONE_INPUT, BACKBONE_OUTPUT, HEAD_INPUT, HEAD_OUTPUT, ProbabilityHead, export_backbone_onnx, export_head_onnx,
)
from quantize.onnx_int8 import onnx_session, run_batched
from conftest import shared_path
from training.models import FusionHead, load_backbone

GOLDEN_CHECKPOINT = "reference/tiny_biomoe/golden_checkpoint.pth"
TOLERANCE = 1e-4  # the bound for float exports; measured ~2e-6


@pytest.fixture(scope="module")
def golden_model():
    return load_backbone(shared_path(GOLDEN_CHECKPOINT))


@pytest.fixture(scope="module")
def backbone_onnx(golden_model, tmp_path_factory):
    return export_backbone_onnx(golden_model, tmp_path_factory.mktemp("onnx") / "backbone.onnx")


def test_float_onnx_matches_golden_embeddings(backbone_onnx, golden_io):
    golden = np.load(golden_io)
    session = onnx_session(backbone_onnx)
    batch = run_batched(session, golden["images"])
    np.testing.assert_allclose(batch, golden["embedding"], rtol=0, atol=TOLERANCE)
    for index, image in enumerate(golden["images"]):  # batch 1, as the device may run it
        single = session.run(None, {BACKBONE_INPUT: image[np.newaxis]})[0]
        np.testing.assert_allclose(single[0], golden["embedding"][index], rtol=0, atol=TOLERANCE)


def test_float_onnx_matches_eager_pytorch(backbone_onnx, golden_model):
    images = np.random.default_rng(3).random((4, 3, 224, 224), dtype=np.float32)
    with torch.no_grad():
        expected = golden_model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(run_batched(onnx_session(backbone_onnx), images), expected, rtol=0, atol=TOLERANCE)


def test_backbone_graph_interface(backbone_onnx):
    model = onnx.load(backbone_onnx)
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    assert (graph_input.name, graph_output.name) == (BACKBONE_INPUT, BACKBONE_OUTPUT)
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert dims == ["n", 3, 224, 224]
    assert not {node.op_type for node in model.graph.node} & {"DFT", "STFT", "BatchNormalization"}
    assert not any(node.metadata_props for node in model.graph.node)  # no source paths in shipped graphs


def test_head_onnx_is_softmax_of_fusion_head(tmp_path):
    torch.manual_seed(0)
    head = FusionHead(3, hidden=16).eval()
    path = export_head_onnx(head, tmp_path / "head.onnx")
    embeddings = np.random.default_rng(0).standard_normal((5, 3, 192)).astype(np.float32)
    session = onnx_session(path)
    assert [i.name for i in session.get_inputs()] == [HEAD_INPUT]
    assert [o.name for o in session.get_outputs()] == [HEAD_OUTPUT]
    with torch.no_grad():
        expected = ProbabilityHead(head)(torch.from_numpy(embeddings)).numpy()
    actual = session.run(None, {HEAD_INPUT: embeddings})[0]
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(actual.sum(axis=1), 1.0, atol=1e-6)
