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
