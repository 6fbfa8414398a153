"""Feature cache: images and embeddings computed once, keyed by what they depend on; backbone sources."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from edge.representations import represent, to_model_input
from training.ai4pain import load_split
from training.cache import FeatureCache, file_sha256, open_backbone
from training.errors import CheckpointError
from training.models import save_backbone, tiny_biomoe
from training.settings import DEFAULT_SPEC


@pytest.fixture(scope="module")
def windows(tiny_cohort):
    return load_split(tiny_cohort, "validation").take(np.arange(4))


def test_images_are_rendered_once_and_read_back_memory_mapped(windows, tmp_path):
    cache = FeatureCache(tmp_path, progress=False)
    first = cache.images(windows, "Bvp", "waveform", DEFAULT_SPEC)
    again = FeatureCache(tmp_path, progress=False)
    second = again.images(windows, "Bvp", "waveform", DEFAULT_SPEC)
    assert len(cache.computed) == 1 and again.computed == []
    assert isinstance(second, np.memmap) and not second.flags.writeable
    expected = represent(windows.signals[:, windows.modalities.index("Bvp")], DEFAULT_SPEC, ("waveform",),
                         sampling_rate=100.0)[:, 0]
    np.testing.assert_array_equal(second, expected)
    np.testing.assert_array_equal(first, second)
    assert not list(tmp_path.rglob("*.partial"))


def test_the_key_covers_spec_modality_representation_and_data(windows, tmp_path):
    cache = FeatureCache(tmp_path, progress=False)
    cache.images(windows, "Eda", "waveform", DEFAULT_SPEC)
    cache.images(windows, "Eda", "waveform", dataclasses.replace(DEFAULT_SPEC, waveform_line_width=3.0))
    cache.images(windows, "Resp", "waveform", DEFAULT_SPEC)
    cache.images(windows, "Eda", "recurrence", DEFAULT_SPEC)
    cache.images(windows.take(np.arange(3)), "Eda", "waveform", DEFAULT_SPEC)
    cache.images(windows, "Eda", "waveform", DEFAULT_SPEC)  # the first one again: read back
    assert len(cache.computed) == 5 == len(set(cache.computed))


def test_embeddings_are_computed_once_per_backbone(windows, tmp_path):
    cache = FeatureCache(tmp_path, progress=False)
    backbone = open_backbone("random:3")
    embeddings = cache.embeddings(windows, "Eda", "waveform", DEFAULT_SPEC, backbone)
    assert embeddings.shape == (4, 192) and embeddings.dtype == np.float32
    with torch.no_grad():
        direct = backbone.model(torch.from_numpy(to_model_input(cache.images(windows, "Eda", "waveform", DEFAULT_SPEC))))
    np.testing.assert_allclose(embeddings, direct.numpy(), atol=1e-4)
    cache.embeddings(windows, "Eda", "waveform", DEFAULT_SPEC, open_backbone("random:3"))
    cache.embeddings(windows, "Eda", "waveform", DEFAULT_SPEC, open_backbone("random:4"))
    kinds = [entry.split(":")[0] for entry in cache.computed]
    assert kinds == ["images", "embeddings", "embeddings"]


def test_open_backbone_identities(tmp_path):
    assert open_backbone("random").identity == "random:0"
    first, second = open_backbone("random:7"), open_backbone("random:7")
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    path = save_backbone(tiny_biomoe(), tmp_path / "backbone.pth")
    assert open_backbone(str(path)).identity == f"sha256:{file_sha256(path)}"


def test_open_backbone_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        open_backbone(str(tmp_path / "missing.pth"))
    other = tmp_path / "resnet.pth"
    torch.save({"model_state_dict": {"conv1.weight": torch.zeros(8, 3, 7, 7)}}, other)
    with pytest.raises(CheckpointError, match="not a Tiny-BioMoE checkpoint"):
        open_backbone(str(other))
    with pytest.raises(ValueError, match="random:0"):
        open_backbone("random:abc")


def _render_images_slowly(root, windows, started, release) -> None:
    """Compute one image array in a fresh cache, holding inside ``fill`` until ``release`` is set."""
    import training.cache as cache_module

    original = cache_module.represent

    def slow_represent(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return original(*args, **kwargs)

    cache_module.represent = slow_represent
    FeatureCache(root, progress=False).images(windows, "Eda", "waveform", DEFAULT_SPEC)


def test_two_processes_computing_the_same_array_both_succeed(windows, tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    started, release = context.Event(), context.Event()
    other = context.Process(target=_render_images_slowly, args=(tmp_path, windows, started, release))
    other.start()
    assert started.wait(30)  # the other process is inside its fill, its partial file open
    try:
        mine = FeatureCache(tmp_path, progress=False).images(windows, "Eda", "waveform", DEFAULT_SPEC)
    finally:
        release.set()
        other.join(30)
    assert other.exitcode == 0
    expected = represent(windows.signals[:, windows.modalities.index("Eda")], DEFAULT_SPEC, ("waveform",),
                         sampling_rate=100.0)[:, 0]
    np.testing.assert_array_equal(mine, expected)
    np.testing.assert_array_equal(FeatureCache(tmp_path, progress=False).images(windows, "Eda", "waveform",
                                                                                  DEFAULT_SPEC), expected)
    assert not list(tmp_path.rglob("*.partial"))
