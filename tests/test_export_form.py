"""Export form: FFT-free, BatchNorm-free, equal to the eager model, exportable."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module
import torch

from training.models import TinyBioMoE, load_backbone, to_export_form
from training.models.export_form import GridMlp, SpectralGatingMatmul, _irfft_matrix, _rfft_matrix
from training.models.tiny_biomoe import DWConvMlp, SpectralGatingNetwork

TOLERANCE = 1e-5


@functools.lru_cache(maxsize=1)
def _golden_export(path: Path) -> TinyBioMoE:
    return to_export_form(load_backbone(path))


@pytest.mark.parametrize("size", [1, 2, 7, 8, 28, 56])
def test_real_dft_matrices_match_torch_fft(size):
    generator = torch.Generator().manual_seed(size)
    signal = torch.randn(size, 5, dtype=torch.float64, generator=generator)
    spectrum = torch.fft.rfft(signal, dim=0, norm="ortho")
    torch.testing.assert_close(_rfft_matrix(size) @ signal, torch.cat([spectrum.real, spectrum.imag]))
    # arbitrary bins, including imaginary parts at DC/Nyquist that irfft ignores
    bins = torch.randn(size // 2 + 1, 5, dtype=torch.complex128, generator=generator)
    expected = torch.fft.irfft(bins, n=size, dim=0, norm="ortho")
    torch.testing.assert_close(_irfft_matrix(size) @ torch.cat([bins.real, bins.imag]), expected)


@pytest.mark.parametrize("grid", [(56, 56), (28, 28), (7, 7), (6, 9), (5, 4)])
def test_spectral_gating_matmul_equals_fft(grid):
    height, width = grid
    torch.manual_seed(height * 100 + width)
    module = SpectralGatingNetwork(16, grid)
    with torch.no_grad():
        module.complex_weight.normal_()  # non-trivial filter, DC/Nyquist imaginary parts included
    tokens = torch.randn(3, height * width, 16)
    with torch.no_grad():
        expected = module(tokens, height, width)
        actual = SpectralGatingMatmul.from_module(module)(tokens, height, width)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("grid", [(56, 56), (7, 7), (6, 9)])
def test_grid_mlp_equals_token_mlp(grid):
    height, width = grid
    torch.manual_seed(height * 100 + width)
    module = DWConvMlp(16, 64).eval()
    tokens = torch.randn(3, height * width, 16)
    with torch.no_grad():
        expected = module(tokens, height, width)
        actual = GridMlp(module)(tokens, height, width)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


def test_export_form_has_no_fft_batchnorm_or_dropout(golden_checkpoint):
    export_model = _golden_export(golden_checkpoint)
    kinds = {type(module) for module in export_model.modules()}
    assert not kinds & {SpectralGatingNetwork, DWConvMlp, torch.nn.BatchNorm2d, torch.nn.Dropout}
    assert export_model.is_export_form and not export_model.training
    assert not any(parameter.requires_grad for parameter in export_model.parameters())


def test_original_model_is_left_untouched(golden_checkpoint):
    model = load_backbone(golden_checkpoint)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    to_export_form(model)
    assert list(model.state_dict()) == list(before)
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())
    assert any(isinstance(module, SpectralGatingNetwork) for module in model.modules())


def test_export_form_reproduces_golden_batch_and_single(golden_checkpoint, golden_io):
    export_model = _golden_export(golden_checkpoint)
    golden = np.load(golden_io)
    images = torch.from_numpy(golden["images"])
    with torch.no_grad():
        enc1, enc2 = export_model.forward_experts(images)
        np.testing.assert_allclose(enc1.numpy(), golden["enc1"], rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(enc2.numpy(), golden["enc2"], rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(export_model(images).numpy(), golden["embedding"], rtol=0, atol=TOLERANCE)
        for index in range(len(images)):
            single = export_model(images[index : index + 1])
            np.testing.assert_allclose(single[0].numpy(), golden["embedding"][index], rtol=0, atol=TOLERANCE)


def test_export_form_checks_images(golden_checkpoint):
    with pytest.raises(ValueError, match=r"\(B, 3, 224, 224\)"):
        _golden_export(golden_checkpoint)(torch.rand(1, 3, 256, 256))


def test_torch_export_has_no_fft_or_batchnorm(golden_checkpoint, golden_io):
    export_model = _golden_export(golden_checkpoint)
    golden = np.load(golden_io)
    images = torch.from_numpy(golden["images"])
    program = torch.export.export(export_model, (images,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not [target for target in targets if "fft" in target or "batch_norm" in target or "dropout" in target]
    with torch.no_grad():
        embedding = program.module()(images)
    np.testing.assert_allclose(embedding.numpy(), golden["embedding"], rtol=0, atol=TOLERANCE)


def test_dynamo_onnx_export_runs_in_onnxruntime(golden_checkpoint, golden_io, tmp_path):
    onnx = require_module("onnx")
    onnxruntime = require_module("onnxruntime")
    require_module("onnxscript")
    export_model = _golden_export(golden_checkpoint)
    golden = np.load(golden_io)
    path = tmp_path / "tiny_biomoe.onnx"
    torch.onnx.export(export_model, (torch.from_numpy(golden["images"][:1]),), str(path), dynamo=True, verbose=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not ops & {"DFT", "STFT", "BatchNormalization"}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for index in range(len(golden["images"])):
        (embedding,) = session.run(None, {name: golden["images"][index : index + 1]})
        np.testing.assert_allclose(embedding[0], golden["embedding"][index], rtol=0, atol=1e-4)
