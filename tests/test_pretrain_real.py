"""Unlabelled real recordings in pretraining: augmented views, the contrastive loss, a run that uses them."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from training.errors import DataError
from training.models import load_backbone
from training.pretrain import PretrainConfig, pretrain
from training.pretrain_real import RealViews, augment, nt_xent
from training.settings import DEFAULT_SPEC


def test_a_view_keeps_the_window_but_is_not_the_window():
    t = np.arange(1000) / 100
    signal = np.sin(2 * np.pi * 1.2 * t) + 0.1 * t
    view = augment(signal, np.random.default_rng(0), 100.0)
    assert view.shape == signal.shape and np.isfinite(view).all()
    assert not np.allclose(view, signal)
    np.testing.assert_array_equal(view, augment(signal, np.random.default_rng(0), 100.0))
    standardised = [(x - x.mean()) / x.std() for x in (signal, view)]
    assert np.corrcoef(*standardised)[0, 1] > 0.5  # still the same rhythm and drift, slightly stretched


def test_nt_xent_is_low_when_partners_match_and_chance_when_they_do_not():
    basis = torch.eye(8)[:4] * 3
    assert nt_xent(basis, basis).item() < 1e-3  # each view's partner is the only one it resembles
    shuffled = nt_xent(basis, basis[[1, 2, 3, 0]]).item()
    assert shuffled > 2.0
    same = nt_xent(torch.ones(4, 8), torch.ones(4, 8)).item()
    assert same == pytest.approx(math.log(7))  # all alike: 1 of 7 candidates


def test_real_views_of_every_window_and_modality(tiny_cohort):
    views = RealViews([tiny_cohort], ("waveform", "recurrence"), DEFAULT_SPEC, seed=3)
    windows = (30 + 20) * 4  # train and validation windows x four modalities
    assert 0.9 * windows <= len(views.signals) <= windows  # less the flat ones (SpO2 steady for 10 s)
    assert (np.ptp(views.signals, axis=1) > 0).all()
    assert len(views) == 2 * len(views.signals)
    pair = views[5]
    assert pair["view_a"].shape == (224, 224, 3) and pair["view_a"].dtype == np.uint8
    assert not np.array_equal(pair["view_a"], pair["view_b"])
    again = RealViews([tiny_cohort], ("waveform", "recurrence"), DEFAULT_SPEC, seed=3)[5]
    np.testing.assert_array_equal(again["view_b"], pair["view_b"])


def test_real_views_refuse_a_folder_without_recordings(tmp_path):
    with pytest.raises(DataError, match="no split folders"):
        RealViews([tmp_path], ("waveform",), DEFAULT_SPEC)


def test_pretraining_with_real_recordings_trains_the_contrastive_head(tiny_cohort, tmp_path):
    config = PretrainConfig(representations=("waveform",), corpus_size=10, holdout_size=2, steps=2, global_batch=2,
                            warmup_steps=1, real=(str(tiny_cohort),), real_batch=4)
    metrics = pretrain(config, tmp_path, device="cpu")
    contrastive = [step["contrastive"] for step in metrics["history"]]
    assert all(math.log(2) < value < 2 * math.log(7) for value in contrastive)  # 8 views: chance is log 7
    heads = torch.load(tmp_path / "heads.pt", weights_only=False)["heads"]
    assert any(name.startswith("projection.") for name in heads)
    load_backbone(tmp_path / "backbone.pth")
    plain = pretrain(dataclasses.replace(config, real=()), tmp_path / "plain", device="cpu")
    assert all(step["contrastive"] == 0 for step in plain["history"])
    with pytest.raises(Exception, match="real_batch"):
        pretrain(dataclasses.replace(config, real_batch=1), tmp_path / "odd", device="cpu")
