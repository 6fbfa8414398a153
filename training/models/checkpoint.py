"""Save and load the backbone in the authors' release format.

The release (``Tiny-BioMoE.pth``) is ``torch.save({"model_state_dict": state_dict})``
with the names of :class:`~training.models.TinyBioMoE`. :func:`save_backbone`
writes exactly that, so our checkpoints and the release are interchangeable;
:func:`load_backbone` reads it (or a plain state dict) strictly and explains
any mismatch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError
from .tiny_biomoe import RELEASE_STATE_DICT_KEY, TinyBioMoE, checkpoint_filter_fn, tiny_biomoe

__all__ = ["load_backbone", "save_backbone"]

_SHOWN_NAMES = 5


def _first(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN_NAMES])
    return shown + (f", ... ({len(names) - _SHOWN_NAMES} more)" if len(names) > _SHOWN_NAMES else "")


def _mismatch_report(model: torch.nn.Module, state_dict: Mapping[str, object]) -> str:
    """Missing, unexpected and wrongly shaped names, first few of each; empty if none."""
    expected = model.state_dict()
    missing = [name for name in expected if name not in state_dict]
    unexpected = [name for name in state_dict if name not in expected]
    wrong_shape = [
        f"{name} {tuple(value.shape)} (model: {tuple(expected[name].shape)})"
        for name, value in state_dict.items()
        if name in expected and (not isinstance(value, torch.Tensor) or value.shape != expected[name].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: {_first(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {_first(unexpected)}")
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} with another shape: {_first(wrong_shape)}")
    return "; ".join(parts)


def load_backbone(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> TinyBioMoE:
    """Load a Tiny-BioMoE backbone checkpoint (the release's or ours) into a fresh model.

    Parameters
    ----------
    path : str or os.PathLike
        A ``torch.save`` file holding ``{"model_state_dict": state_dict}`` (the
        release layout) or the state dict itself.
    map_location : str or torch.device
        Where to put the tensors, as in ``torch.load``; default "cpu".

    Returns
    -------
    TinyBioMoE
        The loaded backbone (no classifier head), in eval mode.

    Raises
    ------
    CheckpointError
        The file is missing, is not a torch file, does not hold a state dict,
        or its names/shapes differ from Tiny-BioMoE's (the first ones are listed).

    Examples
    --------
    >>> from training.models import load_backbone
    >>> model = load_backbone("Tiny-BioMoE.pth")  # doctest: +SKIP
    >>> embeddings = model(images)  # (B, 3, 224, 224) float32 in [0, 1] -> (B, 192)  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; pass the path of Tiny-BioMoE.pth or of a saved backbone"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as error:  # torch.load fails in many ways on a file that is not its own
        detail = str(error).strip().splitlines()
        reason = type(error).__name__ + (f": {detail[0]}" if detail else "")
        raise CheckpointError(
            f"{path} is not a Tiny-BioMoE checkpoint: torch.load cannot read it ({reason}); "
            "expected a file written by torch.save"
        ) from None
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"{path} is not a Tiny-BioMoE checkpoint: it holds a {type(checkpoint).__name__}, expected "
            f'{{"{RELEASE_STATE_DICT_KEY}": state_dict}} or a state dict'
        )
    model = tiny_biomoe()
    state_dict = checkpoint_filter_fn(checkpoint, model)
    mismatch = _mismatch_report(model, state_dict)
    if mismatch:
        raise CheckpointError(f"{path} is not a Tiny-BioMoE checkpoint: {mismatch}")
    model.load_state_dict(state_dict, strict=True)
    return model.to(map_location).eval()


def save_backbone(model: TinyBioMoE, path: str | os.PathLike) -> Path:
    """Write the backbone as the release does: ``{"model_state_dict": state_dict}``.

    A classifier head, if the model has one, is not saved: the release format
    is the backbone only. The file is written next to ``path`` and renamed, so
    an interrupted save never leaves a truncated checkpoint.

    Parameters
    ----------
    model : TinyBioMoE
        The trained model (not its export form).
    path : str or os.PathLike
        Destination file, conventionally ``*.pth``.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    if not isinstance(model, TinyBioMoE):
        raise TypeError(f"save_backbone needs a TinyBioMoE model, got {type(model).__name__}")
    if model.is_export_form:
        raise ValueError(
            "save_backbone got an export form (folded BatchNorms, no FFT weights); save the model it was made from"
        )
    head_names = {f"head.{name}" for name in model.head.state_dict()}
    state_dict = {name: value for name, value in model.state_dict().items() if name not in head_names}
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    torch.save({RELEASE_STATE_DICT_KEY: state_dict}, partial)
    os.replace(partial, path)
    return path
