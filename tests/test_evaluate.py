"""Evaluation: confusion-matrix PNG, run reports and the fusion table."""

from __future__ import annotations

import json

import pytest

from edge.cli import main
from training.evaluate import fusion_combinations, fusion_table, plot_confusion_matrix
from training.finetune import FinetuneConfig


def test_confusion_png(tmp_path):
    path = plot_confusion_matrix([[5, 1, 0], [2, 3, 1], [0, 1, 4]], ("No", "Low", "High"), tmp_path / "c.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fusion_combinations():
    rows = fusion_combinations(("Eda:scalogram", "Eda:waveform", "Bvp:scalogram", "Bvp:waveform"))
    assert rows == [
        ("single", ("Eda:scalogram",)), ("single", ("Eda:waveform",)),
        ("single", ("Bvp:scalogram",)), ("single", ("Bvp:waveform",)),
        ("intra-modality", ("Eda:scalogram", "Eda:waveform")),
        ("intra-modality", ("Bvp:scalogram", "Bvp:waveform")),
        ("multimodal", ("Eda:scalogram", "Eda:waveform", "Bvp:scalogram", "Bvp:waveform")),
    ]
    assert fusion_combinations(("Eda:waveform", "Eda:recurrence")) == [
        ("single", ("Eda:waveform",)), ("single", ("Eda:recurrence",)),
        ("intra-modality", ("Eda:waveform", "Eda:recurrence")),
    ]


def test_fusion_table_on_a_tiny_cohort(tiny_cohort, feature_cache_dir, tmp_path):
    base = FinetuneConfig(max_epochs=5, patience=3)
    pairs = ("Eda:waveform", "Eda:recurrence", "Resp:waveform")
    table = fusion_table(tiny_cohort, "random:0", tmp_path, pairs=pairs, base=base, head_seeds=2,
                         cache_dir=feature_cache_dir, device="cpu")
    assert [row["group"] for row in table["rows"]] == ["single"] * 3 + ["intra-modality", "multimodal"]
    assert table["rows"][-1]["pairs"] == list(pairs)
    assert table["n_eval_windows"] == 20
    for row in table["rows"]:
        assert 0 <= row["macro_f1_mean"] <= 1 and row["macro_f1_std"] >= 0
    best = table["best_single_modality"]
    assert table["multimodal_minus_best_single_modality"] == pytest.approx(
        table["rows"][-1]["macro_f1_mean"] - best["macro_f1_mean"])
    markdown = (tmp_path / "fusion_table.md").read_text()
    assert markdown.count("\n| ") == 2 + len(table["rows"]) and "Eda:waveform, Eda:recurrence" in markdown
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["backbone"] == "random:0" and config["head_seeds"] == 2 and config["max_epochs"] == 5


def test_fusion_table_scored_on_another_data_set(tiny_cohort, feature_cache_dir, tmp_path):
    """--eval-data: heads learn from one cohort's train split and are scored on another cohort's validation."""
    from tests.tiny_cohort import make_tiny_cohort

    other = make_tiny_cohort(tmp_path / "other", n_train=1, n_validation=1, seed=9)
    base = FinetuneConfig(max_epochs=3, patience=2)
    table = fusion_table(tiny_cohort, "random:0", tmp_path / "table", pairs=("Eda:waveform",), base=base,
                         head_seeds=1, eval_data=other, cache_dir=feature_cache_dir, device="cpu")
    assert table["n_train_windows"] == 30 and table["n_eval_windows"] == 10
    assert table["eval_data"] == str(other)
    config = json.loads((tmp_path / "table" / "config.json").read_text())
    assert config["data"] == str(tiny_cohort) and config["eval_data"] == str(other)
    assert f"scored on `validation` of `{other}` (10 windows)" in (tmp_path / "table" / "fusion_table.md").read_text()


def test_evaluate_cli_errors(tiny_cohort, tmp_path, capsys):
    assert main(["evaluate", "--data", str(tiny_cohort)]) == 1
    assert "--run" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tiny_cohort), "--run", str(tmp_path)]) == 1
    assert "not a finetune run" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tiny_cohort), "--fusion-table", "--out", str(tmp_path)]) == 1
    assert "--backbone" in capsys.readouterr().err
