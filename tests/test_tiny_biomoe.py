"""Tiny-BioMoE backbone: release names, golden embeddings, timm integration, input checks."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import training.models  # noqa: F401  (registers tiny_biomoe)
from training.models import TinyBioMoE, load_backbone
from training.models.tiny_biomoe import attention_bias_index

RELEASE_PARAMETERS = 7_337_278
TOLERANCE = 1e-5


@functools.lru_cache(maxsize=1)
def _golden_model(path: Path) -> TinyBioMoE:
    return load_backbone(path)


def _release_table(golden_checkpoint: Path) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) rows of state_dict_keys.tsv, which sits beside the golden checkpoint."""
    rows = golden_checkpoint.with_name("state_dict_keys.tsv").read_text().splitlines()[1:]
    table = []
    for row in rows:
        name, shape, dtype = row.split("\t")
        table.append((name, tuple(int(size) for size in shape.strip("()").split(",") if size.strip()), dtype))
    return table


def test_state_dict_is_the_release_layout(golden_checkpoint):
    model = timm.create_model("tiny_biomoe")
    ours = [
        (name, tuple(value.shape), str(value.dtype).removeprefix("torch."))
        for name, value in model.state_dict().items()
    ]
    assert ours == _release_table(golden_checkpoint)


def test_parameter_count_matches_release():
    model = timm.create_model("tiny_biomoe")
    assert sum(parameter.numel() for parameter in model.parameters()) == RELEASE_PARAMETERS
    assert model.num_features == 192


def test_feature_info_names_each_stage():
    model = timm.create_model("tiny_biomoe")
    assert [info["module"] for info in model.feature_info] == [
        "enc1.block1", "enc1.block2", "enc1.block3", "enc1.block4", "enc2.blocks1", "enc2.blocks2", "enc2.blocks3"
    ]
    assert [info["num_chs"] for info in model.feature_info] == [64, 128, 320, 96, 192, 288, 96]
    assert [info["reduction"] for info in model.feature_info] == [4, 8, 16, 32, 16, 32, 56]
    for info in model.feature_info:
        model.get_submodule(info["module"])


def test_attention_bias_index_matches_release(golden_checkpoint):
    released = torch.load(golden_checkpoint, weights_only=True)["model_state_dict"]
    fresh = timm.create_model("tiny_biomoe").state_dict()
    names = [name for name in fresh if name.endswith("attention_bias_idxs")]
    assert len(names) == 3
    for name in names:
        assert torch.equal(fresh[name], released[name]), name
    assert attention_bias_index(2).tolist() == [[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1], [3, 2, 1, 0]]


def test_golden_embeddings_batch(golden_checkpoint, golden_io):
    model = _golden_model(golden_checkpoint)
    golden = np.load(golden_io)
    images = torch.from_numpy(golden["images"])
    with torch.no_grad():
        enc1, enc2 = model.forward_experts(images)
        embedding = model(images)
    np.testing.assert_allclose(enc1.numpy(), golden["enc1"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(enc2.numpy(), golden["enc2"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(embedding.numpy(), golden["embedding"], rtol=0, atol=TOLERANCE)


def test_golden_embeddings_one_image_at_a_time(golden_checkpoint, golden_io):
    model = _golden_model(golden_checkpoint)
    golden = np.load(golden_io)
    with torch.no_grad():
        for index, image in enumerate(torch.from_numpy(golden["images"])):
            enc1, enc2 = model.forward_experts(image[None])
            embedding = model(image[None])
            np.testing.assert_allclose(enc1[0].numpy(), golden["enc1"][index], rtol=0, atol=TOLERANCE)
            np.testing.assert_allclose(enc2[0].numpy(), golden["enc2"][index], rtol=0, atol=TOLERANCE)
            np.testing.assert_allclose(embedding[0].numpy(), golden["embedding"][index], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("how", ["checkpoint_path", "pretrained_file"])
def test_timm_loads_the_release_file(golden_checkpoint, golden_io, how):
    if how == "checkpoint_path":
        model = timm.create_model("tiny_biomoe", checkpoint_path=str(golden_checkpoint))
    else:
        model = timm.create_model(
            "tiny_biomoe", pretrained=True, pretrained_cfg_overlay=dict(file=str(golden_checkpoint))
        )
    golden = np.load(golden_io)
    with torch.no_grad():
        embedding = model.eval()(torch.from_numpy(golden["images"][:1]))
    np.testing.assert_allclose(embedding.numpy(), golden["embedding"][:1], rtol=0, atol=TOLERANCE)


def test_classifier_head_follows_the_release_suggestion(golden_checkpoint):
    model = timm.create_model(
        "tiny_biomoe", pretrained=True, pretrained_cfg_overlay=dict(file=str(golden_checkpoint)), num_classes=3
    ).eval()
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        embedding = model.forward_features(images)
        logits = model(images)
        assert torch.equal(model.forward_head(embedding, pre_logits=True), embedding)
    expected = torch.nn.functional.linear(torch.nn.functional.elu(embedding), model.head.weight, model.head.bias)
    torch.testing.assert_close(logits, expected)
    model.reset_classifier(0)
    with torch.no_grad():
        torch.testing.assert_close(model(images), embedding)


def test_gradients_reach_every_parameter(golden_checkpoint):
    model = timm.create_model(
        "tiny_biomoe", pretrained=True, pretrained_cfg_overlay=dict(file=str(golden_checkpoint)), num_classes=3
    ).train()
    logits = model(torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    without = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert without == []
    zero = [name for name, parameter in model.named_parameters() if not parameter.grad.any()]
    assert zero == []
    assert all(torch.isfinite(parameter.grad).all() for parameter in model.parameters())


def test_drop_path_is_active_only_in_training():
    model = timm.create_model("tiny_biomoe", drop_path_rate=0.5)
    images = torch.rand(2, 3, 224, 224)
    torch.manual_seed(0)
    with torch.no_grad():
        first, second = model.train()(images), model(images)
        assert not torch.allclose(first, second)
        torch.testing.assert_close(model.eval()(images), model(images))


@pytest.mark.parametrize(
    "images, fragment",
    [
        (torch.rand(3, 224, 224), "(B, 3, 224, 224), got (3, 224, 224)"),
        (torch.rand(1, 3, 112, 112), "(B, 3, 224, 224), got (1, 3, 112, 112)"),
        (torch.rand(1, 224, 224, 3), "(B, 3, 224, 224), got (1, 224, 224, 3)"),
        (torch.zeros(1, 3, 224, 224, dtype=torch.uint8), "float32 in [0, 1], got uint8"),
        (torch.rand(1, 3, 224, 224, dtype=torch.float64), "float32 in [0, 1], got float64"),
        (np.zeros((1, 3, 224, 224), dtype=np.float32), "torch.Tensor"),
    ],
)
def test_bad_images_get_a_clear_error(images, fragment):
    model = timm.create_model("tiny_biomoe").eval()
    with pytest.raises(ValueError) as error:
        model(images)
    assert fragment in str(error.value)


def test_non_square_size_is_refused():
    with pytest.raises(ValueError, match="img_size must be square"):
        TinyBioMoE(img_size=(224, 192))
