"""A LiteRT bundle whose head also reads physiological scalars: conversion, the device backend, a calibrated head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import require_module

require_module("litert_torch")
require_module("ai_edge_litert")

from edge.backends import create_backend  # noqa: E402
from edge.bundle import default_bundle_path, load_bundle, save_bundle  # noqa: E402
from edge.errors import EdgeError  # noqa: E402
from quantize.calibrated_head import main as calibrated_head  # noqa: E402
from quantize.graphs import ProbabilityHead  # noqa: E402
from quantize.tflite import convert_head_tflite, tflite_interpreter  # noqa: E402
from training.models import FusionHead  # noqa: E402

EMBEDDING = 192
SCALARS = ("EDA.level", "EDA.rise", "BVP.rate")


class _PooledBackbone(torch.nn.Module):
    """A stand-in backbone that converts in a second: channel means and a fixed projection to 192 values."""

    def __init__(self):
        super().__init__()
        self.project = torch.nn.Linear(3, EMBEDDING)

    def forward(self, images):
        return self.project(images.mean(dim=(2, 3)))


def _tflite_bundle(folder, head: FusionHead, scalars=SCALARS):
    """The shipped bundle's settings with LiteRT graphs: the stand-in backbone and ``head`` (softmax inside)."""
    import litert_torch

    torch.manual_seed(0)
    with torch.no_grad():
        litert_torch.convert(_PooledBackbone().eval(), (torch.rand(1, 3, 224, 224),)).export(str(folder / "backbone.tflite"))
    head_graph = convert_head_tflite(head, folder / "head.tflite")
    backbone_input = tflite_interpreter(folder / "backbone.tflite").get_input_details()[0]["name"]
    manifest = dict(load_bundle(default_bundle_path()).manifest)
    for key in ("files", "head_training"):
        manifest.pop(key, None)
    manifest.update(backend="litert", name="tflite-scalars", scalars=list(scalars), parity=None, quantization=None,
                    graphs={
        "backbone": {"file": "backbone.tflite", "inputs": [{"name": backbone_input, "shape": [1, 3, 224, 224],
                                                            "dtype": "float32"}],
                     "outputs": [{"name": "embeddings", "shape": [1, EMBEDDING]}], "produces": "embeddings"},
        "head": {"file": "head.tflite", "inputs": [{"name": head_graph["input"], "shape": head_graph["input_shape"],
                                                    "dtype": "float32"}],
                 "outputs": [{"name": head_graph["output"], "shape": [1, 3]}], "produces": "probabilities"},
    })
    if not scalars:
        for key in ("scalars", "calibration"):
            manifest.pop(key)
    return save_bundle(folder / "bundle", manifest, {"backbone.tflite": folder / "backbone.tflite",
                                                     "head.tflite": folder / "head.tflite"})


def _head(n_scalars=len(SCALARS)):
    torch.manual_seed(1)
    return FusionHead(5, num_scalars=n_scalars, embedding_dim=EMBEDDING).eval()


def test_a_two_input_tflite_head_is_the_pytorch_head(tmp_path):
    head = _head()
    graph = convert_head_tflite(head, tmp_path / "head.tflite")
    assert graph["input_shape"] == [1, 5, EMBEDDING] and graph["output_shape"] == [1, 3]
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((4, 5, EMBEDDING)).astype(np.float32)
    scalars = rng.standard_normal((4, len(SCALARS))).astype(np.float32)
    bundle = _tflite_bundle(tmp_path, head)
    with torch.no_grad():
        expected = ProbabilityHead(head)(torch.from_numpy(embeddings), torch.from_numpy(scalars)).numpy()
    with create_backend(bundle, threads=1) as backend:
        np.testing.assert_allclose(backend.classify(embeddings, scalars), expected, rtol=0, atol=1e-6)
        images = rng.random((2, 5, 3, 224, 224), dtype=np.float32)
        one = backend.predict(images[0], scalars[0])
        np.testing.assert_allclose(backend.predict_batch(images, scalars[:2])[0], one, rtol=0, atol=1e-6)
        with pytest.raises(ValueError, match="also reads 3 physiological scalars"):
            backend.predict(images[0])


def test_a_tflite_head_that_disagrees_with_the_manifest_scalars_is_refused(tmp_path):
    bundle = _tflite_bundle(tmp_path, _head(n_scalars=2))  # the manifest lists three
    with pytest.raises(EdgeError, match=r"head.tflite has a scalars input of shape \[1, 2\] but the manifest lists 3"):
        create_backend(bundle, threads=1)
    (tmp_path / "none").mkdir()
    bundle = _tflite_bundle(tmp_path / "none", _head(n_scalars=0))
    manifest = dict(bundle.manifest, scalars=list(SCALARS), calibration={"method": "none", "windows": 0,
                                                                         "embeddings": False})
    manifest.pop("files")
    relisted = save_bundle(tmp_path / "relisted", manifest, {name: bundle.path / name for name in bundle.files})
    with pytest.raises(EdgeError, match="head.tflite has no scalars input but the manifest lists 3"):
        create_backend(relisted, threads=1)


def test_a_calibrated_head_on_a_litert_bundle_is_a_tflite_head(tiny_cohort, tmp_path, capsys):
    source = _tflite_bundle(tmp_path, _head(n_scalars=0), scalars=())
    out = tmp_path / "calibrated"
    assert calibrated_head(["--bundle", str(source.path), "--data", str(tiny_cohort), "--out", str(out)]) == 0
    assert "validation macro-F1" in capsys.readouterr().out
    bundle = load_bundle(out)
    assert bundle.backend == "litert" and sorted(bundle.files) == ["backbone.tflite", "head.tflite"]
    assert bundle.files["backbone.tflite"] == source.files["backbone.tflite"] and len(bundle.scalars) == 10
    assert bundle.manifest["head_training"]["rest_windows"] is False
    again = tmp_path / "again"  # a head retrained on a calibrated bundle: named and described once
    assert calibrated_head(["--bundle", str(out), "--data", str(tiny_cohort), "--out", str(again)]) == 0
    retrained = load_bundle(again).manifest
    assert retrained["name"] == bundle.name == f"{source.name}-calibrated"
    assert retrained["description"].count("head retrained by quantize.calibrated_head") == 1
    parity = bundle.parity["head_tflite_vs_pytorch"]
    assert parity["windows"] == 20 and parity["max_abs_diff_probability"] < 1e-5 and parity["class_agreement"] == 1.0
    with create_backend(bundle, threads=1) as backend:
        probabilities = backend.predict_batch(np.random.default_rng(2).random((2, 5, 3, 224, 224), dtype=np.float32),
                                              np.zeros((2, 10), np.float32))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
