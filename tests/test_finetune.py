"""Fine-tuning: pairs, subject-wise splits and folds, head training, frozen and full runs, resume, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge.cli import main
from training.ai4pain import MODALITIES
from training.finetune import (
    FinetuneConfig,
    finetune,
    load_head,
    split_stop_subjects,
    subject_folds,
    train_head,
)
from training.models import load_backbone
from training.settings import DEFAULT_REPRESENTATIONS, parse_pairs


def test_parse_pairs():
    assert parse_pairs("eda:scalogram, BVP:waveform", MODALITIES) == (("Eda", "scalogram"), ("Bvp", "waveform"))
    assert parse_pairs("Resp:*", MODALITIES) == tuple(("Resp", r) for r in DEFAULT_REPRESENTATIONS)
    for bad in ("Eda:sonogram", "Ecg:waveform", "Eda", "Eda:waveform,Eda:waveform", ""):
        with pytest.raises(ValueError, match="pair"):
            parse_pairs(bad, MODALITIES)


def test_folds_and_stop_split_are_subject_wise():
    subjects = np.repeat(np.array(["1", "2", "3", "4", "5"]), 4)
    loso = subject_folds(subjects, "loso")
    assert [fold.tolist() for fold in loso] == [["1"], ["2"], ["3"], ["4"], ["5"]]
    folds = subject_folds(subjects, "k-fold", 2, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == ["1", "2", "3", "4", "5"] and len(folds) == 2
    with pytest.raises(ValueError, match="folds"):
        subject_folds(subjects, "k-fold", 6)
    fit, stop = split_stop_subjects(subjects, 0.4, seed=0)
    assert not set(subjects[fit]) & set(subjects[stop]) and len(set(subjects[stop])) == 2
    assert (fit | stop).all()


def test_train_head_learns_separable_classes():
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(3), 60)
    centres = rng.normal(size=(3, 2, 192)).astype(np.float32)
    features = centres[labels] + 0.5 * rng.normal(size=(180, 2, 192)).astype(np.float32)
    config = FinetuneConfig(max_epochs=30, patience=10)
    head, info = train_head(features[:120], labels[:120], features[120:], labels[120:], config)
    assert info["stop_macro_f1"] > 0.95 and 1 <= info["best_epoch"] <= info["epochs"] <= 30
    torch.manual_seed(123)  # the global RNG state must not matter (dropout masks are seeded)
    again, _ = train_head(features[:120], labels[:120], features[120:], labels[120:], config)
    for a, b in zip(head.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_config_errors():
    with pytest.raises(ValueError, match="pair"):
        FinetuneConfig(pairs=("Eda:sonogram",))
    with pytest.raises(ValueError, match="--mode frozen"):
        FinetuneConfig(mode="full", cv="loso")
    with pytest.raises(ValueError, match="normalise"):
        FinetuneConfig(normalise="global")


def test_frozen_run_with_cross_validation_and_resume(tiny_cohort, feature_cache_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["finetune", "--data", str(tiny_cohort), "--out", str(out), "--pairs", "Eda:waveform",
            "--backbone", "random:0", "--cv", "loso", "--cache", str(feature_cache_dir), "--device", "cpu"]
    assert main(argv) == 0
    assert "loso CV macro-F1" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["pairs"] == ["Eda:waveform"] and config["cv"] == "loso"
    assert config["backbone"] == "random:0" and "representation_spec" in config and config["data"] == str(tiny_cohort)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_windows"] == 30 and metrics["n_subjects"] == 3
    assert metrics["cross_validation"]["pooled"]["n_windows"] == 30
    assert len(list((out / "cv").glob("fold_*.json"))) == 3
    head, saved = load_head(out)
    assert saved["pairs"] == ["Eda:waveform"] and head.num_embeddings == 1

    assert main(argv) == 1  # the folder holds a run: refuse without --resume
    assert "--resume" in capsys.readouterr().err
    before = (out / "metrics.json").stat().st_mtime_ns
    assert main(argv + ["--resume"]) == 0  # finished: nothing is redone
    assert (out / "metrics.json").stat().st_mtime_ns == before
    (out / "metrics.json").unlink()
    fold_time = (out / "cv" / "fold_0.json").stat().st_mtime_ns
    assert main(argv + ["--resume"]) == 0  # unfinished: finished folds are kept
    assert (out / "cv" / "fold_0.json").stat().st_mtime_ns == fold_time
    assert json.loads((out / "metrics.json").read_text())["cross_validation"] == metrics["cross_validation"]


def test_full_fine_tuning_a_few_steps_saves_a_release_backbone_and_resumes(tiny_cohort, feature_cache_dir, tmp_path):
    config = FinetuneConfig(pairs=("Eda:waveform",), backbone="random:0", mode="full", inputs="embeddings", normalise="none", full_epochs=1,
                            full_batch_size=2, full_max_steps=1)
    metrics = finetune(config, tiny_cohort, tmp_path, cache_dir=feature_cache_dir, device="cpu")
    assert metrics["training"]["epochs"] == 1 and len(metrics["training"]["history"]) == 1
    tuned = dict(load_backbone(tmp_path / "backbone.pth").named_parameters())
    untouched = load_backbone_from_random(0)
    changed = [name for name, value in tuned.items() if not torch.equal(value, untouched[name])]
    assert changed and all(name.startswith(("enc1.", "enc2.", "fcn.", "ln_")) for name in changed)
    assert not any(name.startswith("enc1.patch_embed1.") for name in changed)  # trainable="late"
    (tmp_path / "metrics.json").unlink()
    resumed = finetune(config, tiny_cohort, tmp_path, cache_dir=feature_cache_dir, device="cpu", resume=True)
    assert resumed["training"]["history"] == metrics["training"]["history"]  # epoch 1 is not repeated


def load_backbone_from_random(seed):
    from training.cache import open_backbone

    return open_backbone(f"random:{seed}").model.state_dict()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--pairs", "Eda:sonogram"], "REPRESENTATION in"),
        (["--pairs", "Eda:waveform", "--cv", "k-fold"], "k-fold N"),
    ],
)
def test_cli_rejects_bad_options(tiny_cohort, tmp_path, capsys, extra, message):
    assert main(["finetune", "--data", str(tiny_cohort), "--out", str(tmp_path / "run"), *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_errors_for_missing_data_and_foreign_checkpoint(tiny_cohort, tmp_path, capsys):
    assert main(["finetune", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a"),
                 "--pairs", "Eda:waveform", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "biomoe finetune: error:" in err and "nowhere" in err
    assert not (tmp_path / "a").exists()  # a refused run writes nothing
    foreign = tmp_path / "vit.pth"
    torch.save({"model_state_dict": {"patch_embed.proj.weight": torch.zeros(4, 3, 16, 16)}}, foreign)
    assert main(["finetune", "--data", str(tiny_cohort), "--out", str(tmp_path / "b"), "--pairs", "Eda:waveform",
                 "--backbone", str(foreign), "--device", "cpu", "--cache", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err
    assert "not a Tiny-BioMoE checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


def test_a_refused_run_leaves_out_as_it_was_and_the_retry_runs(tiny_cohort, feature_cache_dir, tmp_path, capsys,
                                                               monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    argv = ["finetune", "--data", str(tiny_cohort), "--out", str(out), "--pairs", "Eda:waveform",
            "--backbone", "random:0", "--cache", str(feature_cache_dir)]
    with monkeypatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: False)
        assert main(argv + ["--device", "cuda"]) == 1
    assert "sees no GPU" in capsys.readouterr().err
    assert list(out.iterdir()) == []
    assert main(argv + ["--device", "cpu"]) == 0  # the retry is not taken for another run
    assert (out / "config.json").is_file() and (out / "metrics.json").is_file()


def test_rest_windows_add_the_minutes_after_pain_as_no_pain_and_are_recorded(tmp_path, capsys):
    from training.synth import synthesize_cohort

    synthesize_cohort(tmp_path / "data", "train", 3, protocol="sustained")
    counts = {}
    for flags in ([], ["--rest-windows"]):
        out = tmp_path / f"run{len(flags)}"
        assert main(["finetune", "--data", str(tmp_path / "data"), "--out", str(out), "--inputs", "scalars",
                     "--device", "cpu", *flags]) == 0
        assert json.loads((out / "config.json").read_text())["rest_windows"] is bool(flags)
        counts[bool(flags)] = json.loads((out / "metrics.json").read_text())["n_windows"]
    # A sustained session: 6 baseline and 36 pain windows; 5 rests of 35-45 s add 3 or 4 No Pain windows each.
    assert counts[False] == 3 * 42
    assert 3 * 15 <= counts[True] - counts[False] <= 3 * 20
