"""Tiny-BioMoE: a SpectFormer and an EfficientViT expert fused by a shared gate.

Paper: *Tiny-BioMoE: a Lightweight Embedding Model for Biosignal Analysis*,
S. Gkikas, I. Kyprakis, M. Tsiknakis, 2025.

Parameter and buffer names are those of the authors' release (``Tiny-BioMoE.pth``,
``{"model_state_dict": ...}``), so the released checkpoint loads with
``strict=True`` and the checkpoints we save are in the release's format.
Encoder-2 is EfficientViT (MSRA); timm has it (``timm.models.efficientvit_msra``)
but with other module names (``conv`` for ``c``, ``stages.N.downsample`` for
``blocksN``) and a non-persistent ``attention_bias_idxs``, so it is written here
with the release's layout rather than renamed in both directions on every
load and save. Encoder-1 (SpectFormer) is not in timm.

The facts the implementation matches (widths, eps values, exact GELU, class
attention, mean-token class token) are listed in
``shared/reference/tiny_biomoe/ARCHITECTURE.md``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, SqueezeExcite, to_2tuple, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._helpers import clean_state_dict

from .layers import cascaded_group_attention, fuse_conv_bn

__all__ = ["TinyBioMoE"]

RELEASE_STATE_DICT_KEY = "model_state_dict"


def _down(size: int) -> int:
    """Side length after a 3x3 stride-2 pad-1 convolution."""
    return (size - 1) // 2 + 1


def _drop_path(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0.0 else nn.Identity()


# --------------------------------------------------------------------------- #
# Encoder-1: SpectFormer ("w" size)
# --------------------------------------------------------------------------- #


class SpectralGatingNetwork(nn.Module):
    """Global filter in the 2-D Fourier domain of the token grid.

    ``irfft2(rfft2(x) * W)`` per channel, orthonormal FFTs, computed in float32.

    Parameters
    ----------
    dim : int
        Channels.
    grid : tuple of int
        Token grid (H, W); the weight is stored as (H, W // 2 + 1, dim, 2) =
        real and imaginary parts.
    """

    def __init__(self, dim: int, grid: tuple[int, int]):
        super().__init__()
        height, width = grid
        self.grid = grid
        self.complex_weight = nn.Parameter(torch.randn(height, width // 2 + 1, dim, 2) * 0.02)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, tokens, channels = x.shape
        dtype = x.dtype
        x = x.view(batch, height, width, channels).to(torch.float32)
        x = torch.fft.rfft2(x, dim=(1, 2), norm="ortho")
        x = x * torch.view_as_complex(self.complex_weight.float())
        x = torch.fft.irfft2(x, s=(height, width), dim=(1, 2), norm="ortho")
        return x.reshape(batch, tokens, channels).to(dtype)


class Attention(nn.Module):
    """Multi-head self-attention with separate ``q`` and ``kv`` projections."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, tokens, channels = x.shape
        head_dim = channels // self.num_heads
        q = self.q(x).reshape(batch, tokens, self.num_heads, head_dim).transpose(1, 2)
        k, v = self.kv(x).reshape(batch, tokens, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, channels))


class DWConv(nn.Module):
    """Depthwise 3x3 convolution (with bias) applied to tokens on their grid.

    The tokens are viewed as a channels-last feature map, which avoids two
    transposing copies (measured: they cost more than the convolution).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, tokens, channels = x.shape
        x = self.dwconv(x.view(batch, height, width, channels).permute(0, 3, 1, 2))
        return x.permute(0, 2, 3, 1).reshape(batch, tokens, channels)


class DWConvMlp(nn.Module):
    """``fc1`` -> depthwise conv on the grid -> exact GELU -> ``fc2``."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = DWConv(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), height, width)))


class SpectFormerBlock(nn.Module):
    """Pre-norm block: spectral gating (given a grid) or attention, then the MLP."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        spectral_grid: tuple[int, int] | None = None,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        if spectral_grid is not None:
            self.attn = SpectralGatingNetwork(dim, spectral_grid)
        else:
            self.attn = Attention(dim, num_heads)
        self.mlp = DWConvMlp(dim, int(dim * mlp_ratio))
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        return x + self.drop_path(self.mlp(self.norm2(x), height, width))


class ClassAttention(nn.Module):
    """Attention of the class token (query) over all tokens (keys, values)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.kv = nn.Linear(dim, dim * 2)
        self.q = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        head_dim = channels // self.num_heads
        k, v = self.kv(x).reshape(batch, tokens, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q = self.q(x[:, :1]).reshape(batch, 1, self.num_heads, head_dim).transpose(1, 2)
        cls = F.scaled_dot_product_attention(q, k, v)
        return self.proj(cls.transpose(1, 2).reshape(batch, 1, channels))


class ClassBlock(nn.Module):
    """Updates the class token only: attention over all tokens, then an MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = ClassAttention(dim, num_heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = x[:, :1]
        cls = cls + self.attn(self.norm1(x))
        cls = cls + self.mlp(self.norm2(cls))
        return torch.cat([cls, x[:, 1:]], dim=1)


class ConvStem(nn.Module):
    """Three conv-BN-ReLU layers (stride 2 first), then a stride-2 projection to tokens."""

    def __init__(self, in_chans: int, embed_dim: int, hidden_dim: int = 32):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_chans, hidden_dim, 7, 2, 3, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, 3, 1, 1, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, 3, 1, 1, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU(inplace=True),
        )
        self.proj = nn.Conv2d(hidden_dim, embed_dim, 3, 2, 1)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(self.conv(x))
        height, width = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class DownSample(nn.Module):
    """Stride-2 3x3 convolution to the next width, then tokens and LayerNorm."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_dim, out_dim, 3, 2, 1)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class SpectFormer(nn.Module):
    """Encoder-1: a four-stage SpectFormer with a class-attention head -> ``embed_dims[-1]``.

    Stages ``< spectral_stages`` mix tokens by spectral gating, the others by
    attention. Module names (``patch_embedK``, ``blockK``, ``normK``,
    ``post_network``) are the release's.
    """

    def __init__(
        self,
        img_size: int = 224,
        in_chans: int = 3,
        embed_dims: tuple[int, ...] = (64, 128, 320, 96),
        num_heads: tuple[int, ...] = (2, 4, 10, 16),
        mlp_ratios: tuple[float, ...] = (8, 8, 4, 4),
        depths: tuple[int, ...] = (1, 1, 1, 1),
        spectral_stages: int = 2,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.num_stages = len(embed_dims)
        self.num_features = embed_dims[-1]
        drop_rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        size = _down(_down(img_size))
        self.feature_info = []
        for stage in range(self.num_stages):
            dim = embed_dims[stage]
            if stage == 0:
                patch_embed = ConvStem(in_chans, dim)
            else:
                patch_embed = DownSample(embed_dims[stage - 1], dim)
                size = _down(size)
            grid = (size, size) if stage < spectral_stages else None
            first = sum(depths[:stage])
            blocks = nn.ModuleList(
                SpectFormerBlock(dim, num_heads[stage], mlp_ratios[stage], grid, drop_rates[first + j])
                for j in range(depths[stage])
            )
            setattr(self, f"patch_embed{stage + 1}", patch_embed)
            setattr(self, f"block{stage + 1}", blocks)
            # norm1..3 close stages 1-3; the last one normalises the class token
            setattr(self, f"norm{stage + 1}", nn.LayerNorm(dim, eps=1e-6))
            self.feature_info.append(dict(num_chs=dim, reduction=img_size // size, module=f"block{stage + 1}"))
        self.post_network = nn.ModuleList([ClassBlock(embed_dims[-1], num_heads[-1], mlp_ratios[-1])])
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            nn.init.normal_(module.weight, 0.0, (2.0 / fan_out) ** 0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) image -> (B, embed_dims[-1]) class-token features."""
        batch = x.shape[0]
        for stage in range(1, self.num_stages + 1):
            x, height, width = getattr(self, f"patch_embed{stage}")(x)
            for block in getattr(self, f"block{stage}"):
                x = block(x, height, width)
            if stage < self.num_stages:
                x = getattr(self, f"norm{stage}")(x)
                x = x.reshape(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
        for block in self.post_network:
            x = block(x)
        return getattr(self, f"norm{self.num_stages}")(x[:, 0])


# --------------------------------------------------------------------------- #
# Encoder-2: EfficientViT, MSRA ("w" size)
# --------------------------------------------------------------------------- #


class Conv2dBN(nn.Module):
    """Convolution without bias (``c``) + BatchNorm (``bn``); the release's ``Conv2d_BN``."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ):
        super().__init__()
        self.c = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.c(x))

    def fuse(self) -> nn.Conv2d:
        """One convolution equal to this block in eval mode."""
        return fuse_conv_bn(self.c, self.bn)


class Residual(nn.Module):
    """``x + m(x)``, with per-sample stochastic depth in training."""

    def __init__(self, m: nn.Module, drop: float = 0.0):
        super().__init__()
        self.m = m
        self.drop_path = _drop_path(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.m(x))


class FFN(nn.Module):
    """Pointwise Conv2dBN -> ReLU -> pointwise Conv2dBN."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.pw1 = Conv2dBN(dim, hidden_dim)
        self.act = nn.ReLU()
        self.pw2 = Conv2dBN(hidden_dim, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


class PatchMerging(nn.Module):
    """Expand x4, depthwise stride-2 conv, squeeze-excite, project to ``out_dim``."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        hidden_dim = dim * 4
        self.conv1 = Conv2dBN(dim, hidden_dim)
        self.act = nn.ReLU()
        self.conv2 = Conv2dBN(hidden_dim, hidden_dim, 3, 2, 1, groups=hidden_dim)
        self.se = SqueezeExcite(hidden_dim, 0.25)
        self.conv3 = Conv2dBN(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.se(self.act(self.conv2(self.act(self.conv1(x))))))


def attention_bias_index(resolution: int) -> torch.Tensor:
    """Index of the relative offset (|dr|, |dc|) of every pair of points.

    Points are walked in row-major order; each new offset gets the next number.

    Returns
    -------
    torch.Tensor
        int64, shape (resolution**2, resolution**2).
    """
    points = list(itertools.product(range(resolution), range(resolution)))
    offsets: dict[tuple[int, int], int] = {}
    index = [
        offsets.setdefault((abs(r1 - r2), abs(c1 - c2)), len(offsets))
        for (r1, c1) in points
        for (r2, c2) in points
    ]
    return torch.tensor(index, dtype=torch.long).view(len(points), len(points))


class CascadedGroupAttention(nn.Module):
    """Cascaded group attention with a learned relative-position bias.

    Parameters
    ----------
    dim : int
        Channels.
    key_dim : int
        Query/key channels per head.
    num_heads : int
        Heads; each reads ``dim // num_heads`` input channels.
    attn_ratio : float
        Value channels per head = ``attn_ratio * key_dim``.
    resolution : int
        Side of the (square) window it attends over.
    kernels : tuple of int
        Kernel of the depthwise query conv of each head.
    """

    def __init__(
        self,
        dim: int,
        key_dim: int,
        num_heads: int,
        attn_ratio: float,
        resolution: int,
        kernels: tuple[int, ...],
    ):
        super().__init__()
        self.key_dim = key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.scale = key_dim**-0.5
        self.qkvs = nn.ModuleList(
            Conv2dBN(dim // num_heads, key_dim * 2 + self.val_dim) for _ in range(num_heads)
        )
        self.dws = nn.ModuleList(
            Conv2dBN(key_dim, key_dim, kernels[i], 1, kernels[i] // 2, groups=key_dim) for i in range(num_heads)
        )
        self.proj = nn.Sequential(nn.ReLU(), Conv2dBN(self.val_dim * num_heads, dim, bn_weight_init=0.0))
        index = attention_bias_index(resolution)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, int(index.max()) + 1))
        self.register_buffer("attention_bias_idxs", index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.attention_biases[:, self.attention_bias_idxs]
        return cascaded_group_attention(x, self.qkvs, self.dws, self.proj, bias, self.key_dim, self.val_dim, self.scale)


class LocalWindowAttention(nn.Module):
    """Attention inside non-overlapping windows (the whole map when it fits one).

    Shapes decide the path, never values, so the module traces to one static graph.
    """

    def __init__(
        self,
        dim: int,
        key_dim: int,
        num_heads: int,
        attn_ratio: float,
        resolution: int,
        window_resolution: int,
        kernels: tuple[int, ...],
    ):
        super().__init__()
        self.window_resolution = window_resolution
        self.attn = CascadedGroupAttention(
            dim, key_dim, num_heads, attn_ratio, min(window_resolution, resolution), kernels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        window = self.window_resolution
        if height <= window and width <= window:
            return self.attn(x)
        pad_b = (window - height % window) % window
        pad_r = (window - width % window) % window
        x = x.permute(0, 2, 3, 1)
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        rows, cols = (height + pad_b) // window, (width + pad_r) // window
        x = x.reshape(batch, rows, window, cols, window, channels).transpose(2, 3)
        x = x.reshape(batch * rows * cols, window, window, channels).permute(0, 3, 1, 2)
        x = self.attn(x)
        x = x.permute(0, 2, 3, 1).reshape(batch, rows, cols, window, window, channels)
        x = x.transpose(2, 3).reshape(batch, rows * window, cols * window, channels)
        if pad_b or pad_r:
            x = x[:, :height, :width]
        return x.permute(0, 3, 1, 2)


class EfficientViTBlock(nn.Module):
    """Depthwise conv, FFN, window attention, depthwise conv, FFN; each residual."""

    def __init__(
        self,
        dim: int,
        key_dim: int,
        num_heads: int,
        attn_ratio: float,
        resolution: int,
        window_resolution: int,
        kernels: tuple[int, ...],
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.dw0 = Residual(Conv2dBN(dim, dim, 3, 1, 1, groups=dim, bn_weight_init=0.0), drop_path)
        self.ffn0 = Residual(FFN(dim, dim * 2), drop_path)
        self.mixer = Residual(
            LocalWindowAttention(dim, key_dim, num_heads, attn_ratio, resolution, window_resolution, kernels),
            drop_path,
        )
        self.dw1 = Residual(Conv2dBN(dim, dim, 3, 1, 1, groups=dim, bn_weight_init=0.0), drop_path)
        self.ffn1 = Residual(FFN(dim, dim * 2), drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn1(self.dw1(self.mixer(self.ffn0(self.dw0(x)))))


def _conv_ffn_pair(dim: int, drop_path: float) -> nn.Sequential:
    """Residual depthwise Conv2dBN then residual FFN, around each PatchMerging."""
    return nn.Sequential(
        Residual(Conv2dBN(dim, dim, 3, 1, 1, groups=dim), drop_path),
        Residual(FFN(dim, dim * 2), drop_path),
    )


class EfficientViT(nn.Module):
    """Encoder-2: EfficientViT (MSRA layout) with global average pooling -> ``embed_dims[-1]``.

    Stage ``i > 0`` (``blocks{i+1}``) opens with a conv/FFN pair, a PatchMerging
    and another conv/FFN pair, as in the MSRA release's ``down_ops``.
    """

    def __init__(
        self,
        img_size: int = 224,
        in_chans: int = 3,
        embed_dims: tuple[int, ...] = (192, 288, 96),
        key_dim: int = 16,
        depths: tuple[int, ...] = (1, 1, 1),
        num_heads: tuple[int, ...] = (3, 3, 4),
        window_size: int = 7,
        kernels: tuple[int, ...] = (7, 5, 3, 3),
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.num_features = embed_dims[-1]
        width = embed_dims[0]
        self.patch_embed = nn.Sequential(
            Conv2dBN(in_chans, width // 8, 3, 2, 1),
            nn.ReLU(),
            Conv2dBN(width // 8, width // 4, 3, 2, 1),
            nn.ReLU(),
            Conv2dBN(width // 4, width // 2, 3, 2, 1),
            nn.ReLU(),
            Conv2dBN(width // 2, width, 3, 2, 1),
        )
        resolution = img_size // 16
        drop_rates = iter(torch.linspace(0, drop_path_rate, sum(depths) + 2 * (len(depths) - 1)).tolist())
        self.feature_info = []
        for stage, dim in enumerate(embed_dims):
            blocks = nn.Sequential()
            if stage > 0:
                rate = next(drop_rates)
                blocks.append(_conv_ffn_pair(embed_dims[stage - 1], rate))
                blocks.append(PatchMerging(embed_dims[stage - 1], dim))
                resolution = _down(resolution)
                blocks.append(_conv_ffn_pair(dim, next(drop_rates)))
            attn_ratio = dim / (key_dim * num_heads[stage])
            for _ in range(depths[stage]):
                blocks.append(
                    EfficientViTBlock(
                        dim, key_dim, num_heads[stage], attn_ratio, resolution, window_size, kernels, next(drop_rates)
                    )
                )
            setattr(self, f"blocks{stage + 1}", blocks)
            self.feature_info.append(dict(num_chs=dim, reduction=img_size // resolution, module=f"blocks{stage + 1}"))
        self.num_stages = len(embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) image -> (B, embed_dims[-1]) pooled features."""
        x = self.patch_embed(x)
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"blocks{stage}")(x)
        return x.mean(dim=(2, 3))


# --------------------------------------------------------------------------- #
# Tiny-BioMoE
# --------------------------------------------------------------------------- #


def _release_layout_hook(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """Let ``load_state_dict`` take the release's ``{"model_state_dict": ...}`` as well."""
    nested = state_dict.get(prefix + RELEASE_STATE_DICT_KEY)
    if isinstance(nested, Mapping):
        del state_dict[prefix + RELEASE_STATE_DICT_KEY]
        for key, value in clean_state_dict(dict(nested)).items():
            state_dict[prefix + key] = value


class TinyBioMoE(nn.Module):
    """Tiny-BioMoE backbone: two experts on one normalised image, fused by a shared gate.

    ``ln_img`` normalises the whole image; Encoder-1 (SpectFormer) and
    Encoder-2 (EfficientViT) each give ``expert_dim`` features ``z``; the gate
    ``ln_e(z) * fcn(z)`` (``fcn`` = ELU, Linear, Hardtanh(0, 1)) is shared by
    both; ``ln_out`` normalises their concatenation: the ``2 * expert_dim``-D
    embedding. With ``num_classes > 0`` a head ELU -> Linear (the release's
    suggestion) follows.

    Parameters
    ----------
    img_size : int
        Side of the square input image (224 for the release).
    in_chans : int
        Image channels (3, RGB).
    num_classes : int
        Classes of the optional head; 0 (default) returns the embedding.
    spectformer_args, efficientvit_args : dict, optional
        Size of each encoder (keyword arguments of :class:`SpectFormer` and
        :class:`EfficientViT`); the defaults are the release's "w" sizes.
    drop_rate : float
        Dropout before the head.
    drop_path_rate : float
        Stochastic depth of both encoders (0 in eval).

    Examples
    --------
    >>> import timm, torch, training.models  # registers tiny_biomoe
    >>> model = timm.create_model("tiny_biomoe").eval()
    >>> model(torch.rand(2, 3, 224, 224)).shape
    torch.Size([2, 192])
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        in_chans: int = 3,
        num_classes: int = 0,
        spectformer_args: dict[str, Any] | None = None,
        efficientvit_args: dict[str, Any] | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        height, width = to_2tuple(img_size)
        if height != width:
            raise ValueError(f"img_size must be square for Tiny-BioMoE, got {img_size}; use e.g. img_size=224")
        self.img_size = height
        self.in_chans = in_chans
        self.enc1 = SpectFormer(height, in_chans, drop_path_rate=drop_path_rate, **(spectformer_args or {}))
        self.enc2 = EfficientViT(height, in_chans, drop_path_rate=drop_path_rate, **(efficientvit_args or {}))
        expert_dim = self.enc1.num_features
        if self.enc2.num_features != expert_dim:
            raise ValueError(
                f"both encoders must give the same width for the shared gate, got "
                f"{expert_dim} (SpectFormer) and {self.enc2.num_features} (EfficientViT)"
            )
        self.ln_img = nn.LayerNorm((in_chans, height, width))
        self.ln_e = nn.LayerNorm(expert_dim)
        self.ln_out = nn.LayerNorm(2 * expert_dim)
        self.fcn = nn.Sequential(nn.ELU(), nn.Linear(expert_dim, expert_dim), nn.Hardtanh(0.0, 1.0))
        self.num_features = self.head_hidden_size = 2 * expert_dim
        self.drop_rate = drop_rate
        self.feature_info = [
            dict(info, module=f"enc1.{info['module']}") for info in self.enc1.feature_info
        ] + [dict(info, module=f"enc2.{info['module']}") for info in self.enc2.feature_info]
        self.reset_classifier(num_classes)
        self.register_load_state_dict_pre_hook(_release_layout_hook)
        # set by training.models.export_form.to_export_form on its frozen copy
        self.is_export_form = False

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {name for name, _ in self.named_parameters() if "attention_biases" in name}

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head: ELU -> Linear(embedding, num_classes), or none for 0."""
        self.num_classes = num_classes
        self.head_drop = nn.Dropout(self.drop_rate)
        self.head_act = nn.ELU() if num_classes > 0 else nn.Identity()
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def check_images(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is a (B, C, H, W) batch of the model's size and dtype.

        Only shapes and dtypes are read, so the check costs nothing and traces
        to no graph node.
        """
        shape = f"(B, {self.in_chans}, {self.img_size}, {self.img_size})"
        dtype = self.ln_img.weight.dtype
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"images must be a torch.Tensor of shape {shape}, got {type(x).__name__}")
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_chans, self.img_size, self.img_size):
            raise ValueError(
                f"images must have shape {shape}, got {tuple(x.shape)}; resize to {self.img_size}x{self.img_size} "
                "RGB and add a batch dimension (images[None] for one image)"
            )
        if x.dtype != dtype:
            wanted, got = str(dtype).removeprefix("torch."), str(x.dtype).removeprefix("torch.")
            scaling = "" if x.dtype.is_floating_point else " / 255"
            raise ValueError(
                f"images must be {wanted} in [0, 1], got {got}; convert with images.to(torch.{wanted}){scaling}"
            )

    def forward_experts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two experts' raw outputs on ``ln_img(x)``: ((B, 96), (B, 96))."""
        self.check_images(x)
        x = self.ln_img(x)
        return self.enc1(x), self.enc2(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) float32 images in [0, 1] -> (B, 192) embeddings."""
        experts = self.forward_experts(x)
        gated = [self.ln_e(z) * self.fcn(z) for z in experts]
        return self.ln_out(torch.cat(gated, dim=1))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(x)
        return x if pre_logits else self.head(self.head_act(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    """Map a release checkpoint to this model's state dict.

    The release stores ``{"model_state_dict": state_dict}`` with this file's
    names; DataParallel / ``torch.compile`` prefixes are removed.
    """
    if RELEASE_STATE_DICT_KEY in state_dict and isinstance(state_dict[RELEASE_STATE_DICT_KEY], Mapping):
        state_dict = state_dict[RELEASE_STATE_DICT_KEY]
    return clean_state_dict(dict(state_dict))


def _create_tiny_biomoe(variant: str, pretrained: bool = False, **kwargs: Any) -> TinyBioMoE:
    return build_model_with_cfg(
        TinyBioMoE,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        **kwargs,
    )


def _cfg(url: str = "", **kwargs: Any) -> dict[str, Any]:
    return {
        "url": url,
        "num_classes": 0,
        "input_size": (3, 224, 224),
        "pool_size": None,
        "fixed_input_size": True,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
        "first_conv": ("enc1.patch_embed1.conv.0", "enc2.patch_embed.0.c"),
        "classifier": "head",
        "license": "mit",
        "paper_name": "Tiny-BioMoE: a Lightweight Embedding Model for Biosignal Analysis",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        # The authors' Tiny-BioMoE.pth: not downloadable here; pass it with
        # pretrained_cfg_overlay=dict(file="Tiny-BioMoE.pth") or checkpoint_path=.
        "tiny_biomoe.release": _cfg(),
    }
)


@register_model
def tiny_biomoe(pretrained: bool = False, **kwargs: Any) -> TinyBioMoE:
    """Tiny-BioMoE as released: SpectFormer-w + EfficientViT-w, 192-D, 7,337,278 parameters."""
    model_args = dict(
        spectformer_args=dict(
            embed_dims=(64, 128, 320, 96), num_heads=(2, 4, 10, 16), mlp_ratios=(8, 8, 4, 4), depths=(1, 1, 1, 1)
        ),
        efficientvit_args=dict(
            embed_dims=(192, 288, 96), key_dim=16, depths=(1, 1, 1), num_heads=(3, 3, 4), kernels=(7, 5, 3, 3)
        ),
    )
    return _create_tiny_biomoe("tiny_biomoe", pretrained=pretrained, **dict(model_args, **kwargs))
