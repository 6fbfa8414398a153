"""Shared blocks: BatchNorm folding and cascaded group attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from training.models.layers import cascaded_group_attention, fuse_conv_bn


@pytest.mark.parametrize("bias, groups", [(False, 1), (True, 1), (False, 8)])
def test_fuse_conv_bn_equals_conv_then_bn(bias, groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=groups, bias=bias)
    bn = nn.BatchNorm2d(16).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 3.0)
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(fuse_conv_bn(conv, bn)(x), bn(conv(x)), rtol=0, atol=1e-5)


def test_cascaded_group_attention_feeds_each_head_the_previous_output():
    """With identity projections and no bias, head 1 sees chunk 1 + head 0's output."""
    torch.manual_seed(0)
    heads, key_dim, val_dim = 2, 2, 2
    x = torch.randn(1, heads * val_dim, 2, 2)

    def qkv(feat):  # q = k = v = the chunk itself
        return torch.cat([feat, feat, feat], dim=1)

    out = cascaded_group_attention(
        x, [qkv] * heads, [nn.Identity()] * heads, nn.Identity(), torch.zeros(heads, 4, 4), key_dim, val_dim, 1.0
    )

    def attend(feat):
        tokens = feat.flatten(2)
        attn = (tokens.transpose(-2, -1) @ tokens).softmax(-1)
        return (tokens @ attn.transpose(-2, -1)).view_as(feat)

    first = attend(x[:, :2])
    second = attend(x[:, 2:] + first)
    torch.testing.assert_close(out, torch.cat([first, second], dim=1))
