"""Blocks shared by the Tiny-BioMoE model and its export form.

One flat namespace, as in ``timm.layers``: the eager model and the export form
import the same functions, so the two can never drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

__all__ = ["cascaded_group_attention", "fuse_conv_bn"]


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold an eval-mode BatchNorm into the convolution before it.

    Parameters
    ----------
    conv : torch.nn.Conv2d
        The convolution (with or without bias).
    bn : torch.nn.BatchNorm2d
        The BatchNorm that follows it; its running statistics are used.

    Returns
    -------
    torch.nn.Conv2d
        One convolution with bias that computes ``bn(conv(x))`` in eval mode.
        The folding is done in float64, then cast back, so it adds no more than
        float32 rounding.
    """
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    conv_bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    fused.weight.copy_(conv.weight.double() * scale[:, None, None, None])
    fused.bias.copy_(bn.bias.double() + (conv_bias - bn.running_mean.double()) * scale)
    return fused


def cascaded_group_attention(
    x: torch.Tensor,
    qkvs: Sequence[nn.Module],
    dws: Sequence[nn.Module],
    proj: nn.Module,
    attention_bias: torch.Tensor,
    key_dim: int,
    val_dim: int,
    scale: float,
) -> torch.Tensor:
    """Cascaded group attention of EfficientViT (MSRA), on one window.

    The channels are split into one chunk per head; head ``i`` reads chunk
    ``i`` plus the output of head ``i - 1``, which is what makes it "cascaded".

    Parameters
    ----------
    x : torch.Tensor
        Feature map, shape (B, C, H, W).
    qkvs : sequence of nn.Module
        Per head: C / heads -> key_dim + key_dim + val_dim channels (1x1 conv).
    dws : sequence of nn.Module
        Per head: the depthwise conv applied to the queries.
    proj : nn.Module
        Output projection, heads * val_dim -> C channels.
    attention_bias : torch.Tensor
        Relative-position bias, shape (heads, H * W, H * W).
    key_dim, val_dim : int
        Query/key and value channels per head.
    scale : float
        Factor on the logits; 1.0 when it is already folded into ``dws``.

    Returns
    -------
    torch.Tensor
        Shape (B, C, H, W).
    """
    batch, _, height, width = x.shape
    chunks = x.chunk(len(qkvs), dim=1)
    outputs = []
    feat = chunks[0]
    for head, (qkv, dw) in enumerate(zip(qkvs, dws)):
        if head > 0:
            feat = feat + chunks[head]
        q, k, v = qkv(feat).view(batch, -1, height, width).split([key_dim, key_dim, val_dim], dim=1)
        q = dw(q)
        q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)
        logits = q.transpose(-2, -1) @ k
        if scale != 1.0:
            logits = logits * scale
        attn = (logits + attention_bias[head]).softmax(dim=-1)
        feat = (v @ attn.transpose(-2, -1)).view(batch, val_dim, height, width)
        outputs.append(feat)
    return proj(torch.cat(outputs, dim=1))
