"""biomoe evaluate --bundle: a deployable bundle scored on a data set through the device's code."""

import json
import shutil

import numpy as np
import pytest

from edge.bundle import default_bundle_path, load_bundle, save_bundle
from edge.cli import main
from training.errors import DataError
from training.evaluate_bundle import evaluate_bundle


def test_the_shipped_bundle_is_scored_without_its_calibration_minute(tiny_cohort, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", "--bundle", str(default_bundle_path()), "--data", str(tiny_cohort), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert (out / "confusion.png").stat().st_size > 0
    # 2 validation subjects x 10 windows, each subject's first 6 (No Pain) windows calibrate and are not scored.
    assert report["calibration_windows_left_out"] == 12 and report["windows_scored"] == 8
    assert np.sum(report["confusion_matrix"]) == 8 and report["calibration"] == "baseline"
    assert f"8 windows accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}" in printed


def test_a_bundle_without_calibration_scores_every_window(tiny_cohort, tmp_path):
    bundle = load_bundle(default_bundle_path())
    manifest = json.loads(json.dumps(bundle.manifest))
    manifest.pop("files")
    manifest["calibration"] = {"method": "none", "windows": 0, "embeddings": False}
    uncalibrated = save_bundle(tmp_path / "none", manifest, {name: bundle.path / name for name in bundle.files})
    report = evaluate_bundle(uncalibrated.path, tiny_cohort)
    assert report["windows_scored"] == 20 and report["calibration_windows_left_out"] == 0


def test_data_without_a_signal_the_bundle_reads_is_a_one_line_error(tiny_cohort, tmp_path, capsys):
    data = tmp_path / "no_spo2"
    shutil.copytree(tiny_cohort, data)
    shutil.rmtree(data / "validation" / "SpO2")
    with pytest.raises(DataError, match="SpO2"):
        evaluate_bundle(default_bundle_path(), data)
    assert main(["evaluate", "--bundle", str(default_bundle_path()), "--data", str(data)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "SpO2" in error
