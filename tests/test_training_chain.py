"""The whole chain through the CLI: synth -> pretrain (a few steps) -> finetune (frozen) -> evaluate."""

from __future__ import annotations

import json

from edge.cli import main
from tests.tiny_cohort import trim_cohort
from training.models import load_backbone


def test_synth_pretrain_finetune_evaluate(tmp_path, capsys):
    data, cache = tmp_path / "data", tmp_path / "cache"
    assert main(["synth", "--out", str(data), "--split", "train", "--subjects", "2"]) == 0
    assert main(["synth", "--out", str(data), "--split", "validation", "--subjects", "1"]) == 0
    trim_cohort(data)

    pretrained = tmp_path / "pretrain"
    assert main(["pretrain", "--out", str(pretrained), "--steps", "2", "--corpus-size", "6", "--holdout-size", "3",
                 "--global-batch", "3", "--representations", "waveform", "--device", "auto"]) == 0
    load_backbone(pretrained / "backbone.pth")

    run = tmp_path / "run"
    assert main(["finetune", "--data", str(data), "--out", str(run), "--backbone", str(pretrained / "backbone.pth"),
                 "--pairs", "Eda:waveform", "--mode", "frozen", "--cache", str(cache)]) == 0
    assert main(["evaluate", "--run", str(run), "--data", str(data), "--split", "validation",
                 "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "macro-F1" in out
    report = json.loads((run / "evaluation" / "validation" / "report.json").read_text())
    assert report["n_windows"] == 10 and sum(report["support"].values()) == 10
    assert set(report["per_class_recall"]) == {"No Pain", "Low Pain", "High Pain"}
    assert (run / "evaluation" / "validation" / "confusion.png").is_file()
    assert report["backbone"].startswith("sha256:")
    assert json.loads((run / "config.json").read_text())["backbone"] == str(pretrained / "backbone.pth")
