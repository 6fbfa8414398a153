"""FusionHead: k embeddings -> class logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.models import FusionHead


def test_linear_head_is_elu_then_linear():
    head = FusionHead(num_embeddings=2)
    embeddings = torch.randn(4, 2, 192)
    linear = head.classifier[-1]
    assert (linear.in_features, linear.out_features) == (384, 3)
    expected = F.linear(F.elu(embeddings.flatten(1)), linear.weight, linear.bias)
    torch.testing.assert_close(head(embeddings), expected)
    torch.testing.assert_close(head(embeddings.flatten(1)), expected)


def test_mlp_option():
    head = FusionHead(num_embeddings=4, num_classes=3, hidden=64, dropout=0.1)
    linears = [layer for layer in head.classifier if isinstance(layer, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(768, 64), (64, 3)]
    assert head.eval()(torch.randn(5, 4, 192)).shape == (5, 3)


def test_head_learns_a_separable_problem():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(60, 2, 192, generator=generator)
    labels = (embeddings[:, 0, 0] > 0).long() + (embeddings[:, 1, 0] > 0).long()
    head = FusionHead(num_embeddings=2)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        F.cross_entropy(head(embeddings), labels).backward()
        optimizer.step()
    assert (head(embeddings).argmax(1) == labels).float().mean() > 0.95


def test_wrong_embedding_shape():
    head = FusionHead(num_embeddings=2)
    with pytest.raises(ValueError, match=r"\(B, 2, 192\) or \(B, 384\), got \(4, 3, 192\)"):
        head(torch.randn(4, 3, 192))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_embeddings=0), "num_embeddings"),
        (dict(num_embeddings=2, num_classes=0), "num_classes"),
        (dict(num_embeddings=2, hidden=0), "hidden"),
        (dict(num_embeddings=2, dropout=1.0), "dropout"),
    ],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        FusionHead(**kwargs)


def test_save_head_load_head_round_trip(tmp_path):
    from training.models import load_head, save_head

    torch.manual_seed(0)
    head = FusionHead(num_embeddings=2, hidden=8).eval()
    fusion = [("Eda", "scalogram"), {"modality": "Bvp", "representation": "recurrence"}]
    path = save_head(head, tmp_path / "head.pt", fusion=fusion, representation_spec={"image_size": 224})
    loaded = load_head(path)
    assert loaded.fusion == ({"modality": "Eda", "representation": "scalogram"},
                             {"modality": "Bvp", "representation": "recurrence"})
    assert loaded.labels == ("No Pain", "Low Pain", "High Pain")
    assert loaded.representation_spec == {"image_size": 224}
    assert (loaded.sampling_rate, loaded.window_seconds, loaded.head.hidden) == (100.0, 10.0, 8)
    embeddings = torch.randn(3, 2, 192)
    torch.testing.assert_close(loaded.head(embeddings), head(embeddings))
    assert not list(tmp_path.glob("*.partial"))


def test_save_head_refuses_fusion_of_another_length(tmp_path):
    from training.models import save_head

    with pytest.raises(ValueError, match="fusion lists 1 inputs but the head fuses 2"):
        save_head(FusionHead(2), tmp_path / "head.pt", fusion=[("Eda", "scalogram")])


@pytest.mark.parametrize("content", [b"not a torch file", None])
def test_load_head_refuses_other_files(tmp_path, content):
    from training.errors import CheckpointError
    from training.models import load_head

    path = tmp_path / "head.pt"
    if content is None:
        torch.save({"state_dict": {}}, path)  # a torch file, but not a head file
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="is not a head file"):
        load_head(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_head(tmp_path / "missing.pt")
