"""save_backbone / load_backbone: the release format both ways, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from edge.errors import EdgeError
from training.errors import CheckpointError, TrainingError
from training.models import load_backbone, save_backbone, to_export_form


def test_release_checkpoint_loads_in_eval_mode(golden_checkpoint):
    model = load_backbone(golden_checkpoint)
    assert not model.training
    released = torch.load(golden_checkpoint, weights_only=True)["model_state_dict"]
    assert all(torch.equal(value, released[name]) for name, value in model.state_dict().items())


def test_plain_state_dict_loads(golden_checkpoint, tmp_path):
    released = torch.load(golden_checkpoint, weights_only=True)["model_state_dict"]
    torch.save(released, tmp_path / "plain.pth")
    model = load_backbone(tmp_path / "plain.pth")
    assert all(torch.equal(value, released[name]) for name, value in model.state_dict().items())


def test_saved_checkpoint_is_release_format_and_reloads(golden_checkpoint, golden_io, tmp_path):
    trained = timm.create_model("tiny_biomoe", num_classes=3)  # a fine-tuned model: its head is not saved
    trained.load_state_dict(torch.load(golden_checkpoint, weights_only=True), strict=False)
    path = save_backbone(trained, tmp_path / "ours.pth")
    saved = torch.load(path, weights_only=True)
    released = torch.load(golden_checkpoint, weights_only=True)
    assert list(saved) == ["model_state_dict"]
    assert list(saved["model_state_dict"]) == list(released["model_state_dict"])
    assert not list(tmp_path.glob("*.partial"))

    golden = np.load(golden_io)
    images = torch.from_numpy(golden["images"])
    reloaded = load_backbone(path)
    with torch.no_grad():
        np.testing.assert_allclose(reloaded(images).numpy(), golden["embedding"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(to_export_form(reloaded)(images).numpy(), golden["embedding"], rtol=0, atol=1e-5)


def test_export_form_is_not_saved(golden_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="export form"):
        save_backbone(to_export_form(load_backbone(golden_checkpoint)), tmp_path / "export.pth")


def test_other_architecture_lists_first_mismatched_names(tmp_path):
    path = tmp_path / "efficientvit_m0.pth"
    torch.save({"model_state_dict": timm.create_model("efficientvit_m0").state_dict()}, path)
    with pytest.raises(CheckpointError) as error:
        load_backbone(path)
    message = str(error.value)
    assert "not a Tiny-BioMoE checkpoint" in message
    assert "510 missing: enc1.patch_embed1.conv.0.weight" in message
    assert "unexpected: patch_embed.conv1.conv.weight" in message


def test_shape_and_name_mismatches_are_named(golden_checkpoint, tmp_path):
    state_dict = torch.load(golden_checkpoint, weights_only=True)["model_state_dict"]
    state_dict["fcn.1.weight"] = torch.zeros(96, 48)
    del state_dict["ln_out.bias"]
    state_dict["head.weight"] = torch.zeros(3, 192)
    torch.save({"model_state_dict": state_dict}, tmp_path / "edited.pth")
    with pytest.raises(CheckpointError) as error:
        load_backbone(tmp_path / "edited.pth")
    message = str(error.value)
    assert "1 missing: ln_out.bias" in message
    assert "1 unexpected: head.weight" in message
    assert "fcn.1.weight (96, 48) (model: (96, 96))" in message


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"hello, not a checkpoint", "torch.load cannot read it"),
        (b"", "torch.load cannot read it"),
        (None, "holds a list"),
    ],
)
def test_not_a_checkpoint(tmp_path, content, fragment):
    path = tmp_path / "file.pth"
    if content is None:
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a Tiny-BioMoE checkpoint") as error:
        load_backbone(path)
    assert fragment in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_backbone(tmp_path / "absent.pth")


def test_checkpoint_error_is_a_user_error():
    assert issubclass(CheckpointError, TrainingError) and issubclass(TrainingError, EdgeError)
