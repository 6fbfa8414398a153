"""The transfer table and a calibrated head on the shipped backbone, on a tiny cohort."""

import numpy as np
import pytest

from edge.backends import create_backend
from edge.bundle import default_bundle_path, load_bundle
from quantize.calibrated_head import main as calibrated_head
from tests.conftest import shared_path
from training.transfer_table import ROWS, markdown, transfer_table


def test_transfer_table_scores_every_row_on_every_column(tiny_cohort, tmp_path):
    table = transfer_table(default_bundle_path(), synth=tiny_cohort, held_out=tiny_cohort, real=tiny_cohort,
                           folds=3, seeds=1, cache=tmp_path / "cache")
    assert table["columns"] == ["synthetic cohort", "held-out generator setting", "real wrist stress (CV)"]
    assert [(row["inputs"], row["normalise"]) for row in table["rows"]] == [(i, n) for _, i, n in ROWS]
    for row in table["rows"]:
        for column in table["columns"]:
            assert len(row["scores"][column]) == 1 and 0.0 <= row["scores"][column][0] <= 1.0
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "held_out_validation_embeddings.npy", "real_train_embeddings.npy",
        "synth_train_embeddings.npy", "synth_validation_embeddings.npy"]
    lines = markdown(table).splitlines()
    assert len(lines) == 2 + len(ROWS) and lines[0].startswith("| inputs | calibration | synthetic cohort")


def test_calibrated_head_writes_a_bundle_the_device_runs(tiny_cohort, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert calibrated_head(["--bundle", str(default_bundle_path()), "--data", str(tiny_cohort), "--out", str(out)]) == 0
    assert "validation macro-F1" in capsys.readouterr().out
    bundle = load_bundle(out)
    shipped = load_bundle(default_bundle_path())
    assert bundle.calibration == {"method": "baseline", "windows": 6, "embeddings": True} and len(bundle.scalars) == 10
    backbone = shipped.graphs["backbone"].file
    assert bundle.files[backbone] == shipped.files[backbone]  # the parity-checked backbone, unchanged
    assert 0.0 <= bundle.manifest["head_training"]["validation_macro_f1"] <= 1.0
    head_parity = bundle.parity[f"head_{backbone.rsplit('.', 1)[1]}_vs_pytorch"]
    assert head_parity["windows"] == 20 and head_parity["max_abs_diff_probability"] < 1e-4
    assert head_parity["class_agreement"] == 1.0
    backend = create_backend(bundle, threads=1)
    images = np.random.default_rng(0).random((2, bundle.n_images, 3, 224, 224), dtype=np.float32)
    probabilities = backend.predict_batch(images, np.zeros((2, len(bundle.scalars)), np.float32))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_export_refuses_a_calibrated_head_and_names_the_way_that_works(tmp_path):
    import torch

    from quantize.errors import ExportError
    from quantize.export import export_bundle
    from training.models import FusionHead, save_head

    head = FusionHead(1, num_scalars=2)
    path = save_head(head, tmp_path / "head.pt", fusion=[("Eda", "scalogram")], scalars=["EDA.level", "EDA.rise"],
                     calibration={"method": "baseline", "windows": 6, "embeddings": True})
    torch.manual_seed(0)
    with pytest.raises(ExportError, match="python -m quantize.calibrated_head"):
        export_bundle(shared_path("reference/tiny_biomoe/golden_checkpoint.pth"), path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
