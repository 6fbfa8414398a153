"""Export form of Tiny-BioMoE: the same function, in ops every exporter and int8 quantizer takes.

:func:`to_export_form` copies a loaded :class:`~training.models.TinyBioMoE` and

- replaces spectral gating (``rfft2 -> * W -> irfft2``) by real matrix products
  (:class:`SpectralGatingMatmul`): no DFT op is left in the graph;
- folds every BatchNorm into the convolution before it (EfficientViT's
  ``Conv2d_BN`` and SpectFormer's stem);
- gathers each relative-position bias table once (a constant buffer) and
  folds the attention scale into the query convolution;
- runs SpectFormer's MLPs on the token grid (:class:`GridMlp`: ``fc1`` and
  ``fc2`` as 1x1 convolutions), so the depthwise convolution between them
  needs no layout change;
- removes stochastic depth and dropout.

The result computes the same embeddings in eval mode (within float32
rounding), has no data-dependent control flow, traces with
``torch.export.export`` and exports with ``torch.onnx.export(..., dynamo=True)``.
There is no Linear+BatchNorm pair in the backbone (the encoders' heads are
removed), so there is none to fold.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
from timm.layers import DropPath

from .layers import cascaded_group_attention, fuse_conv_bn
from .tiny_biomoe import CascadedGroupAttention, Conv2dBN, DWConvMlp, SpectralGatingNetwork, TinyBioMoE

__all__ = ["GridMlp", "SpectralGatingMatmul", "to_export_form"]


def _rfft_matrix(size: int) -> torch.Tensor:
    """Orthonormal real DFT as a (2 * (size // 2 + 1), size) float64 matrix.

    Rows ``0..F-1`` give the real parts of ``rfft(x, norm="ortho")``, rows
    ``F..2F-1`` the imaginary parts (F = size // 2 + 1).
    """
    angle = 2 * math.pi * torch.outer(torch.arange(size // 2 + 1), torch.arange(size)).double() / size
    return torch.cat([torch.cos(angle), -torch.sin(angle)]) / math.sqrt(size)


def _irfft_matrix(size: int) -> torch.Tensor:
    """``irfft(X, n=size, norm="ortho")`` as a (size, 2 * (size // 2 + 1)) float64 matrix.

    Columns take the real parts then the imaginary parts of the F bins. As in
    ``torch.fft.irfft``, the imaginary parts of the DC bin (and of the Nyquist
    bin when ``size`` is even) are ignored: their columns are exactly zero.
    """
    bins = size // 2 + 1
    angle = 2 * math.pi * torch.outer(torch.arange(size), torch.arange(bins)).double() / size
    weight = torch.full((bins,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if size % 2 == 0:
        weight[-1] = 1.0
    real = torch.cos(angle) * weight
    imag = -torch.sin(angle) * weight
    imag[:, 0] = 0.0
    if size % 2 == 0:
        imag[:, -1] = 0.0
    return torch.cat([real, imag], dim=1) / math.sqrt(size)


def _complex_dft_matrix(size: int, inverse: bool) -> torch.Tensor:
    """Orthonormal complex DFT on interleaved (real, imag) rows: (2 * size, 2 * size) float64.

    Row and column index ``2 * k + part`` (part 0 = real, 1 = imag), the
    layout of a (..., size, 2, ...) tensor viewed as (..., 2 * size, ...).
    """
    angle = 2 * math.pi * torch.outer(torch.arange(size), torch.arange(size)).double() / size
    cos, sin = torch.cos(angle) / math.sqrt(size), torch.sin(angle) / math.sqrt(size)
    if inverse:
        sin = -sin
    # forward: Yr = cos Xr + sin Xi, Yi = -sin Xr + cos Xi (exp(-i angle)); inverse flips sin
    blocks = torch.stack([torch.stack([cos, sin], dim=-1), torch.stack([-sin, cos], dim=-1)], dim=1)
    return blocks.reshape(2 * size, 2 * size)


class SpectralGatingMatmul(nn.Module):
    """Spectral gating as four real matrix products and one complex multiply.

    For tokens (B, H, W, C), with F = W // 2 + 1:

    1. rfft over W: (2F, W) @ x -> (B, H, [re, im] x F, C);
    2. complex DFT over H: (2H, 2H) @ (B, [H x (re, im)], F * C);
    3. complex multiply by the filter, elementwise;
    4. inverse complex DFT over H: (2H, 2H) @ ...;
    5. irfft over W: (W, 2F) @ (B, H, [re, im] x F, C) -> (B, H, W, C).

    The constant is always the left operand and no transpose is needed
    between the steps. A dense per-channel operator would need
    (H * W)^2 * C floats (2.5 GB for the 56x56x64 stage), so the map is kept
    separable.

    Parameters
    ----------
    complex_weight : torch.Tensor
        (H, F, C, 2) filter of :class:`SpectralGatingNetwork`.
    grid : tuple of int
        Token grid (H, W).
    """

    def __init__(self, complex_weight: torch.Tensor, grid: tuple[int, int]):
        super().__init__()
        height, width = grid
        weight = complex_weight.detach().float()
        self.grid = grid
        self.register_buffer("rfft_w", _rfft_matrix(width).to(weight))
        self.register_buffer("dft_h", _complex_dft_matrix(height, inverse=False).to(weight))
        self.register_buffer("idft_h", _complex_dft_matrix(height, inverse=True).to(weight))
        self.register_buffer("irfft_w", _irfft_matrix(width).to(weight))
        self.register_buffer("weight_real", weight[..., 0].clone())
        self.register_buffer("weight_imag", weight[..., 1].clone())

    @classmethod
    def from_module(cls, module: SpectralGatingNetwork) -> SpectralGatingMatmul:
        return cls(module.complex_weight, module.grid)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, tokens, channels = x.shape
        bins = width // 2 + 1
        x = self.rfft_w @ x.view(batch, height, width, channels)
        x = self.dft_h @ x.reshape(batch, 2 * height, bins * channels)
        x = x.view(batch, height, 2, bins, channels)
        real, imag = x[:, :, 0], x[:, :, 1]
        x = torch.stack(
            [real * self.weight_real - imag * self.weight_imag, real * self.weight_imag + imag * self.weight_real],
            dim=2,
        )
        x = self.idft_h @ x.reshape(batch, 2 * height, bins * channels)
        x = self.irfft_w @ x.view(batch, height, 2 * bins, channels)
        return x.reshape(batch, tokens, channels)


class GridMlp(nn.Module):
    """:class:`DWConvMlp` computed on the (B, C, H, W) grid: 1x1 conv -> depthwise conv -> GELU -> 1x1 conv.

    The same function as ``fc2(gelu(dwconv(fc1(tokens))))`` (within float32
    rounding). Token-wise linears around a depthwise convolution make ONNX
    Runtime reorder the widest tensor of the block (B, 4-8 C, H, W) into its
    blocked convolution layout and back; as convolutions the whole block
    stays in that layout and only the narrow input and output are
    transposed. ``python -m benchmarks.bench_quantize`` (ONNX Runtime 1.31,
    2 threads, batch 1): the float graph went from 0.70x to 0.65-0.68x of the
    eager model's time.
    """

    def __init__(self, module: DWConvMlp):
        super().__init__()
        self.fc1 = _linear_as_conv(module.fc1)
        self.dwconv = module.dwconv.dwconv
        self.act = module.act
        self.fc2 = _linear_as_conv(module.fc2)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, tokens, channels = x.shape
        x = x.transpose(1, 2).reshape(batch, channels, height, width)
        x = self.fc2(self.act(self.dwconv(self.fc1(x))))
        return x.flatten(2).transpose(1, 2)


@torch.no_grad()
def _linear_as_conv(linear: nn.Linear) -> nn.Conv2d:
    """A 1x1 convolution computing ``linear`` at every grid point."""
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1).to(linear.weight)
    conv.weight.copy_(linear.weight[:, :, None, None])
    conv.bias.copy_(linear.bias)
    return conv


class FrozenCascadedGroupAttention(nn.Module):
    """Cascaded group attention with BatchNorms folded and the bias table gathered once."""

    def __init__(self, module: CascadedGroupAttention):
        super().__init__()
        self.key_dim = module.key_dim
        self.val_dim = module.val_dim
        self.qkvs = nn.ModuleList(qkv.fuse() for qkv in module.qkvs)
        self.dws = nn.ModuleList(_fuse_scaled(dw, module.scale) for dw in module.dws)
        self.proj = nn.Sequential(module.proj[0], module.proj[1].fuse())
        with torch.no_grad():
            bias = module.attention_biases[:, module.attention_bias_idxs].clone()
        self.register_buffer("attention_bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cascaded_group_attention(
            x, self.qkvs, self.dws, self.proj, self.attention_bias, self.key_dim, self.val_dim, scale=1.0
        )


@torch.no_grad()
def _fuse_scaled(block: Conv2dBN, scale: float) -> nn.Conv2d:
    """Fold BatchNorm, then a constant factor, into one convolution."""
    conv = block.fuse()
    conv.weight.mul_(scale)
    conv.bias.mul_(scale)
    return conv


def _fuse_sequential(sequential: nn.Sequential) -> nn.Sequential | None:
    """The Sequential with each Conv2d -> BatchNorm2d pair folded, or None if it has none."""
    layers = list(sequential)
    fused: list[nn.Module] = []
    found = False
    index = 0
    while index < len(layers):
        layer = layers[index]
        following = layers[index + 1] if index + 1 < len(layers) else None
        if isinstance(layer, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
            fused.append(fuse_conv_bn(layer, following))
            found = True
            index += 2
        else:
            fused.append(layer)
            index += 1
    return nn.Sequential(*fused) if found else None


def _export_replacement(module: nn.Module) -> nn.Module | None:
    """The export-form module that replaces ``module``, or None to keep it (and convert inside)."""
    if isinstance(module, Conv2dBN):
        return module.fuse()
    if isinstance(module, SpectralGatingNetwork):
        return SpectralGatingMatmul.from_module(module)
    if isinstance(module, CascadedGroupAttention):
        return FrozenCascadedGroupAttention(module)
    if isinstance(module, DWConvMlp):
        return GridMlp(module)
    if isinstance(module, (DropPath, nn.Dropout)):
        return nn.Identity()
    if isinstance(module, nn.Sequential):
        return _fuse_sequential(module)
    return None


def _convert(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        replacement = _export_replacement(child)
        if replacement is None:
            _convert(child)
        else:
            setattr(module, name, replacement)
            _convert(replacement)


@torch.no_grad()
def to_export_form(model: TinyBioMoE) -> TinyBioMoE:
    """A frozen copy of ``model`` for export: no FFT, no BatchNorm, constant bias tables.

    Parameters
    ----------
    model : TinyBioMoE
        A loaded model (left untouched; its eval-mode function is copied).

    Returns
    -------
    TinyBioMoE
        Same class and ``forward`` contract ((B, 3, 224, 224) float32 ->
        (B, 192)), in eval mode with gradients off. Its state dict has export
        names (``rfft_w``, fused ``weight``/``bias``...), so save the original
        model, not this one (:func:`training.models.save_backbone` refuses it).

    Examples
    --------
    >>> import torch
    >>> from training.models import load_backbone, to_export_form
    >>> model = load_backbone("Tiny-BioMoE.pth")  # doctest: +SKIP
    >>> export_model = to_export_form(model)  # doctest: +SKIP
    >>> program = torch.export.export(export_model, (torch.rand(1, 3, 224, 224),))  # doctest: +SKIP
    """
    if not isinstance(model, TinyBioMoE):
        raise TypeError(f"to_export_form needs a TinyBioMoE model, got {type(model).__name__}")
    export_model = copy.deepcopy(model).eval()
    _convert(export_model)
    export_model.is_export_form = True
    return export_model.requires_grad_(False)
