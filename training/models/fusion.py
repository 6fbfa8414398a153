"""Classifier over several Tiny-BioMoE embeddings (one per modality x representation)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import CheckpointError

__all__ = ["FusionHead", "HeadCheckpoint", "load_head", "save_head"]


class FusionHead(nn.Module):
    """Concatenate k embeddings, then ELU -> Linear(k * 192, classes), or a small MLP.

    The linear form is the release's suggestion for fine-tuning (ELU + Linear
    on the embedding); with several embeddings they are concatenated first,
    as in the paper's fusion experiments.

    Parameters
    ----------
    num_embeddings : int
        k, the number of embeddings fused (e.g. 2 for EDA scalogram +
        EDA recurrence plot).
    num_classes : int
        Output classes; 3 (no / low / high pain) by default.
    hidden : int, optional
        None (default): ELU -> Dropout -> Linear(k * embedding_dim, classes).
        An int: ELU -> Linear(k * embedding_dim, hidden) -> ELU -> Dropout ->
        Linear(hidden, classes).
    dropout : float
        Dropout probability before the last Linear, in [0, 1).
    embedding_dim : int
        Width of one embedding (192 for Tiny-BioMoE).

    Examples
    --------
    >>> import torch
    >>> head = FusionHead(num_embeddings=2)
    >>> head(torch.randn(4, 2, 192)).shape
    torch.Size([4, 3])
    """

    def __init__(
        self,
        num_embeddings: int,
        num_classes: int = 3,
        hidden: int | None = None,
        dropout: float = 0.0,
        embedding_dim: int = 192,
        num_scalars: int = 0,
    ):
        super().__init__()
        counts = {"num_classes": num_classes, "embedding_dim": embedding_dim}
        for name, value in counts.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name, value in (("num_embeddings", num_embeddings), ("num_scalars", num_scalars)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if num_embeddings + num_scalars == 0:
            raise ValueError("a head needs embeddings or scalars: num_embeddings and num_scalars are both 0")
        if hidden is not None and (not isinstance(hidden, int) or hidden < 1):
            raise ValueError(f"hidden must be None (linear head) or an int >= 1, got {hidden!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.num_embeddings = num_embeddings
        self.num_classes = num_classes
        self.hidden = hidden
        self.embedding_dim = embedding_dim
        self.num_scalars = num_scalars
        # Scalars come in physiological units (bpm, log uS); the head standardises them with
        # statistics of its training set (set_scalar_scaling), stored with its weights.
        self.register_buffer("scalar_mean", torch.zeros(num_scalars))
        self.register_buffer("scalar_scale", torch.ones(num_scalars))
        in_features = num_embeddings * embedding_dim + num_scalars
        if hidden is None:
            layers = [nn.Dropout(dropout), nn.Linear(in_features, num_classes)]
        else:
            layers = [nn.Linear(in_features, hidden), nn.ELU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)]
        self.classifier = nn.Sequential(*layers)

    def set_scalar_scaling(self, scalars: torch.Tensor) -> None:
        """Standardise future scalar inputs with the mean and spread of these (n, num_scalars) training rows."""
        self.scalar_mean.copy_(scalars.mean(0))
        self.scalar_scale.copy_(scalars.std(0).clamp_min(1e-6))

    def forward(self, embeddings: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        """(B, k, embedding_dim) or (B, k * embedding_dim) embeddings [+ (B, num_scalars)] -> (B, num_classes) logits.

        The embeddings pass an ELU (the release's head); the scalars are standardised.
        """
        width = self.num_embeddings * self.embedding_dim
        if embeddings.ndim == 3 and tuple(embeddings.shape[1:]) == (self.num_embeddings, self.embedding_dim):
            embeddings = embeddings.flatten(1)
        elif embeddings.ndim != 2 or embeddings.shape[1] != width:
            raise ValueError(
                f"embeddings must have shape (B, {self.num_embeddings}, {self.embedding_dim}) or (B, {width}), "
                f"got {tuple(embeddings.shape)}; stack one backbone embedding per fused input along dim 1"
            )
        parts = [nn.functional.elu(embeddings)]
        if self.num_scalars:
            if scalars is None or scalars.ndim != 2 or scalars.shape[1] != self.num_scalars:  # the batch stays symbolic
                got = None if scalars is None else tuple(scalars.shape)
                raise ValueError(f"this head also reads scalars of shape (B, {self.num_scalars}), got {got}")
            parts.append((scalars - self.scalar_mean) / self.scalar_scale)
        return self.classifier(torch.cat(parts, dim=1))


HEAD_FORMAT = "tiny-biomoe-head"
HEAD_FORMAT_VERSION = 1


@dataclass(frozen=True)
class HeadCheckpoint:
    """A fusion head with what the export needs to feed it (see :func:`save_head`).

    Attributes
    ----------
    head : FusionHead
        The loaded head, in eval mode.
    fusion : tuple of dict
        ``{"modality", "representation"}`` per embedding, in input order;
        ``modality`` as the data set names it (``"Eda"``) or as the device
        sends it (``"EDA"``).
    labels : tuple of str
        Class names in output order.
    representation_spec : dict or None
        ``edge.representations.RepresentationSpec.to_dict()`` of the training
        images; None when the file does not say (take it from the run config).
    sampling_rate, window_seconds : float
        Window the head was trained on.
    scalars : tuple of str
        ``edge.scalars`` names of the head's scalar inputs, in order (empty: none).
    calibration : dict
        ``{"method": "none"|"baseline", "windows": N}``: what the features
        must be relative to (:mod:`edge.calibration`).
    """

    head: FusionHead
    fusion: tuple
    labels: tuple
    representation_spec: dict | None
    sampling_rate: float
    window_seconds: float
    scalars: tuple = ()
    calibration: dict = field(default_factory=lambda: {"method": "none", "windows": 0})


def save_head(
    head: FusionHead,
    path,
    *,
    fusion,
    labels=("No Pain", "Low Pain", "High Pain"),
    representation_spec: dict | None = None,
    sampling_rate: float = 100.0,
    window_seconds: float = 10.0,
    scalars=(),
    calibration: dict | None = None,
) -> Path:
    """Write a fusion head and its input description in one ``torch.save`` file.

    The file is a dict ``{"format": "tiny-biomoe-head", "format_version": 1,
    "state_dict", "num_embeddings", "num_classes", "hidden", "embedding_dim",
    "fusion": [{"modality", "representation"}], "labels", "representation_spec",
    "sampling_rate", "window_seconds"}``: everything ``biomoe export`` needs
    besides the backbone checkpoint. It is written next to ``path`` and
    renamed, so an interrupted save never leaves a truncated file.

    Parameters
    ----------
    head : FusionHead
    path : str or os.PathLike
    fusion : sequence of (modality, representation) pairs or dicts
        One per embedding, in the head's input order.
    labels : sequence of str
        Class names in output order (``head``'s number of classes).
    representation_spec : dict, optional
        ``RepresentationSpec.to_dict()`` of the training images.
    sampling_rate, window_seconds : float
        Window the head was trained on.
    scalars : sequence of str
        Names of the scalar inputs (``head.num_scalars`` of them).
    calibration : dict, optional
        ``{"method", "windows"}`` (default: no calibration).

    Returns
    -------
    Path
    """
    entries = [_fusion_entry(item) for item in fusion]
    if len(entries) != head.num_embeddings:
        raise ValueError(
            f"fusion lists {len(entries)} inputs but the head fuses {head.num_embeddings} embeddings; "
            "pass one (modality, representation) pair per embedding"
        )
    scalars = [str(name) for name in scalars]
    if len(scalars) != head.num_scalars:
        raise ValueError(f"scalars names {len(scalars)} inputs but the head reads {head.num_scalars}")
    labels = [str(label) for label in labels]
    if len(labels) != head.num_classes:
        raise ValueError(f"labels has {len(labels)} names but the head has {head.num_classes} classes")
    path = Path(path)
    payload = {
        "format": HEAD_FORMAT,
        "format_version": HEAD_FORMAT_VERSION,
        "state_dict": {name: value.detach().cpu() for name, value in head.state_dict().items()},
        "num_embeddings": head.num_embeddings,
        "num_classes": head.num_classes,
        "hidden": head.hidden,
        "embedding_dim": head.embedding_dim,
        "fusion": entries,
        "labels": labels,
        "representation_spec": None if representation_spec is None else dict(representation_spec),
        "sampling_rate": float(sampling_rate),
        "window_seconds": float(window_seconds),
        "num_scalars": head.num_scalars,
        "scalars": scalars,
        "calibration": dict(calibration or {"method": "none", "windows": 0}),
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)
    return path


def load_head(path) -> HeadCheckpoint:
    """Read a file written by :func:`save_head`.

    Raises
    ------
    CheckpointError
        The file is missing, unreadable, of another format, or its weights do
        not fit the head it describes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"head file {path} does not exist; pass the file written by save_head / biomoe finetune")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load fails in many ways on a file that is not its own
        raise CheckpointError(f"{path} is not a head file: torch.load cannot read it ({type(error).__name__})") from None
    if isinstance(payload, dict) and "format" not in payload and "pairs" in payload and "state_dict" in payload:
        payload = _from_finetune_layout(path, payload)
    if not isinstance(payload, dict) or payload.get("format") != HEAD_FORMAT:
        raise CheckpointError(
            f"{path} is not a head file: expected a dict with format {HEAD_FORMAT!r} (written by save_head) "
            "or a biomoe finetune head.pt"
        )
    if payload.get("format_version", 0) > HEAD_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is head format version {payload['format_version']}, newer than {HEAD_FORMAT_VERSION}; upgrade biomoe"
        )
    try:
        head = FusionHead(
            int(payload["num_embeddings"]),
            num_classes=int(payload["num_classes"]),
            hidden=payload.get("hidden"),
            embedding_dim=int(payload.get("embedding_dim", 192)),
            num_scalars=int(payload.get("num_scalars", 0)),
        )
        head.load_state_dict(payload["state_dict"], strict=True)
        fusion = tuple(_fusion_entry(item) for item in payload["fusion"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a valid head file: {detail}") from None
    if len(fusion) != head.num_embeddings:
        raise CheckpointError(f"{path}: 'fusion' lists {len(fusion)} inputs but the head fuses {head.num_embeddings}")
    labels = tuple(str(label) for label in payload.get("labels", ()))
    if len(labels) != head.num_classes:
        raise CheckpointError(f"{path}: 'labels' has {len(labels)} names but the head has {head.num_classes} classes")
    return HeadCheckpoint(
        head=head.eval(),
        fusion=fusion,
        labels=labels,
        representation_spec=payload.get("representation_spec"),
        sampling_rate=float(payload.get("sampling_rate", 100.0)),
        window_seconds=float(payload.get("window_seconds", 10.0)),
        scalars=tuple(payload.get("scalars", ())),
        calibration=dict(payload.get("calibration") or {"method": "none", "windows": 0}),
    )


def _from_finetune_layout(path: Path, payload: dict) -> dict:
    """The head file of ``biomoe finetune`` (``pairs`` as ``"Modality:representation"``) in save_head's layout.

    That file has no representation spec (it is in the run's
    ``finetune_config.json``, read by ``biomoe export --run-config``).
    """
    if payload.get("normalise", "none") == "subject":
        raise CheckpointError(
            f"{path}: the head was trained on per-subject normalised embeddings (normalise='subject', "
            "an upper bound that uses every window of a patient), which the device cannot reproduce; "
            "train it with normalise 'baseline' or 'none'"
        )
    pairs = [str(pair).split(":") for pair in payload["pairs"]]
    if not all(len(pair) == 2 for pair in pairs):
        raise CheckpointError(f"{path}: 'pairs' must be 'Modality:representation' strings, got {payload['pairs']}")
    labels = list(payload.get("labels", ()))
    return {
        **payload,
        "format": HEAD_FORMAT,
        "format_version": 1,
        "num_classes": payload.get("num_classes", len(labels)),
        "fusion": [{"modality": m, "representation": r} for m, r in pairs],
        "representation_spec": payload.get("representation_spec"),
    }


def _fusion_entry(item) -> dict:
    """``{"modality", "representation"}`` from a dict or a (modality, representation) pair."""
    if isinstance(item, dict):
        modality, representation = item.get("modality"), item.get("representation")
    else:
        modality, representation = tuple(item) if len(item) == 2 else (None, None)
    if not isinstance(modality, str) or not isinstance(representation, str):
        raise ValueError(f"a fusion entry must be (modality, representation) or a dict of both, got {item!r}")
    return {"modality": modality, "representation": representation}
