"""``biomoe export``: a verified bundle end to end, and clean refusals of bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import shared_path
from edge.backends import create_backend
from edge.bundle import load_bundle
from edge.cli import main as biomoe
from edge.errors import EdgeError
from quantize.build_default_bundle import fit_head
from quantize.errors import ExportError
from quantize.export import ExportOptions, export_bundle
from quantize_data import FUSION, rhythm_windows
from tests.privileges import without_privileges
from training.errors import CheckpointError
from training.models import load_backbone, save_head

GOLDEN_CHECKPOINT = "reference/tiny_biomoe/golden_checkpoint.pth"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Golden checkpoint, a head fitted on its embeddings, calibration and validation .npz files."""
    folder = tmp_path_factory.mktemp("export-inputs")
    checkpoint = shared_path(GOLDEN_CHECKPOINT)
    model = load_backbone(checkpoint)
    train, validation = rhythm_windows(8, seed=0), rhythm_windows(6, seed=1)
    with torch.no_grad():
        embeddings = model(torch.from_numpy(train.flat())).numpy().reshape(len(train), len(FUSION), -1)
    head_path = save_head(fit_head(embeddings, train.labels, steps=2000), folder / "head.pt", fusion=FUSION)
    np.savez(folder / "calibration.npz", images=train.flat())
    np.savez(folder / "validation.npz", images=validation.images, labels=validation.labels)
    return {"checkpoint": checkpoint, "head": head_path, "calibration": folder / "calibration.npz",
            "validation": folder / "validation.npz", "windows": validation, "folder": folder}


@pytest.fixture(scope="module")
def int8_bundle(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "int8"
    code = biomoe(["export", "--checkpoint", str(inputs["checkpoint"]), "--head", str(inputs["head"]),
                   "--out", str(out), "--int8", "--calibration", str(inputs["calibration"]),
                   "--validation", str(inputs["validation"]), "--no-sensitivity", "--calibration-images", "24"])
    assert code == 0
    return out


def test_int8_bundle_manifest(int8_bundle, inputs):
    bundle = load_bundle(int8_bundle)
    manifest = bundle.manifest
    assert not bundle.placeholder and bundle.backend == "onnxruntime" and bundle.pipeline == "backbone_head"
    assert sorted(bundle.files) == ["backbone.onnx", "head.onnx"]
    assert [(e.modality, e.representation) for e in bundle.fusion] == [("EDA", "scalogram"), ("BVP", "spectrogram_psd")]
    assert bundle.channel_names == ("EDA", "BVP")
    assert bundle.labels == ("No Pain", "Low Pain", "High Pain")
    assert (bundle.sampling_rate, bundle.window_seconds) == (100.0, 10.0)
    assert manifest["representation_spec"]["image_size"] == 224
    assert manifest["quantization"]["calibration_images"] == 24
    assert manifest["parity"]["float_vs_pytorch"]["max_abs_diff_embedding"] < 1e-3
    int8 = manifest["parity"]["int8_vs_float"]
    assert int8["passed"] and int8["mean_cosine"] >= 0.99 and int8["class_agreement"] >= 0.98
    assert (int8_bundle / "backbone.onnx").stat().st_size <= 8_000_000
    assert int8["validation"] == f"{inputs['folder'].name}/validation.npz"  # no path of the build machine
    assert str(inputs["folder"]) not in (int8_bundle / "manifest.json").read_text()


def test_int8_bundle_runs_in_the_device_runtime(int8_bundle, inputs):
    backend = create_backend(load_bundle(int8_bundle), threads=2)
    windows = inputs["windows"]
    probabilities = backend.predict_batch(windows.images)
    assert probabilities.shape == (len(windows), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert np.mean(probabilities.argmax(axis=1) == windows.labels) >= 0.9
    np.testing.assert_allclose(backend.predict(windows.images[0]), probabilities[0], atol=1e-6)


def test_weight_only_int8_bundle_keeps_the_float_answers(inputs, tmp_path):
    out = tmp_path / "weight-only"
    code = biomoe(["export", "--checkpoint", str(inputs["checkpoint"]), "--head", str(inputs["head"]),
                   "--out", str(out), "--int8", "--int8-scheme", "weight-only",
                   "--validation", str(inputs["validation"])])  # no calibration needed
    assert code == 0
    bundle = load_bundle(out)
    int8 = bundle.manifest["parity"]["int8_vs_float"]
    assert int8["passed"] and int8["mean_cosine"] >= 0.999 and int8["class_agreement"] == 1.0
    assert bundle.manifest["quantization"]["scheme"] == "weight-only int8"
    assert bundle.graphs["backbone"].onnxruntime_config == {"session.disable_quant_qdq": "1"}
    assert (out / "backbone.onnx").stat().st_size <= 8_000_000
    float_out = tmp_path / "float"
    export_bundle(inputs["checkpoint"], inputs["head"], float_out)
    windows = inputs["windows"].images
    expected = create_backend(load_bundle(float_out)).predict_batch(windows)
    probabilities = create_backend(bundle).predict_batch(windows)  # the runtime, as the manifest configures it
    assert np.array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))
    assert np.abs(probabilities - expected).max() == pytest.approx(int8["max_abs_diff_probability"], abs=1e-5)


def test_weight_only_is_refused_for_tflite(inputs, tmp_path):
    with pytest.raises(ExportError, match="onnx only"):
        export_bundle(inputs["checkpoint"], inputs["head"], tmp_path / "out",
                      ExportOptions(fmt="tflite", int8=True, int8_scheme="weight-only",
                                    validation=inputs["validation"]))
    assert _no_bundle_left(tmp_path / "out")


def test_tampered_bundle_is_refused(int8_bundle, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in int8_bundle.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    data = bytearray((copy / "head.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "head.onnx").write_bytes(bytes(data))
    with pytest.raises(EdgeError, match="head.onnx"):
        load_bundle(copy)


def test_export_prints_the_parity_report(inputs, tmp_path, capsys):
    code = biomoe(["export", "--checkpoint", str(inputs["checkpoint"]), "--head", str(inputs["head"]),
                   "--out", str(tmp_path / "float"), "--validation", str(inputs["validation"])])
    assert code == 0
    printed = capsys.readouterr().out
    assert "float onnx vs PyTorch" in printed and "wrote" in printed
    manifest = json.loads((tmp_path / "float" / "manifest.json").read_text())
    assert manifest["quantization"] is None
    assert manifest["parity"]["float_vs_pytorch"]["max_abs_diff_embedding"] < 1e-3


def _no_bundle_left(folder):
    return not folder.exists() or not any(folder.iterdir())


def test_checkpoint_of_another_architecture_is_refused(inputs, tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"model_state_dict": {"conv.weight": torch.zeros(3, 3)}}, wrong)
    with pytest.raises(CheckpointError, match="not a Tiny-BioMoE checkpoint"):
        export_bundle(wrong, inputs["head"], tmp_path / "out")
    assert _no_bundle_left(tmp_path / "out")


@pytest.mark.parametrize(
    "images, problem",
    [
        (np.zeros((4, 3, 112, 112), np.float32), "have shape"),
        (np.zeros((4, 5, 3, 224, 224), np.float32), "have shape"),  # 5 images per window, the fusion has 2
        (np.full((2, 3, 224, 224), 2.0, np.float32), r"float32 in \[0, 1\]"),
    ],
)
def test_calibration_data_of_the_wrong_shape_is_refused(inputs, tmp_path, images, problem):
    np.savez(tmp_path / "bad.npz", images=images)
    with pytest.raises(ExportError, match=problem):
        export_bundle(inputs["checkpoint"], inputs["head"], tmp_path / "out",
                      ExportOptions(int8=True, calibration=tmp_path / "bad.npz", validation=inputs["validation"]))
    assert _no_bundle_left(tmp_path / "out")


def test_cli_reports_bad_input_on_one_line(inputs, tmp_path, capsys):
    code = biomoe(["export", "--checkpoint", str(inputs["checkpoint"]), "--head", str(inputs["head"]),
                   "--out", str(tmp_path / "out"), "--int8"])
    assert code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("biomoe export: error:") and "--calibration" in error and "\n" not in error


def test_unwritable_or_foreign_output_folder_is_refused(inputs, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a bundle"):
        export_bundle(inputs["checkpoint"], inputs["head"], foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:  # in a process without root's privileges, as CI runs as root
        done = subprocess.run([sys.executable, "-m", "edge.cli", "export", "--checkpoint", str(inputs["checkpoint"]),
                               "--head", str(inputs["head"]), "--out", str(locked / "bundle")],
                              capture_output=True, text=True, timeout=300, preexec_fn=without_privileges())
    finally:
        locked.chmod(0o700)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (f"biomoe export: error: cannot write the bundle {locked / 'bundle'}: {locked} is not "
                           "writable; choose another --out\n")
    assert list(locked.iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_tflite_int8_bundle_end_to_end(inputs, tmp_path):
    result = export_bundle(inputs["checkpoint"], inputs["head"], tmp_path / "tflite",
                           ExportOptions(fmt="tflite", int8=True, calibration=inputs["calibration"],
                                         validation=inputs["validation"]))
    bundle = load_bundle(tmp_path / "tflite")
    assert bundle.backend == "litert" and result.parity["int8_vs_float"]["passed"]
    probabilities = create_backend(bundle).predict_batch(inputs["windows"].images[:3])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
