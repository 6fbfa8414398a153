"""Classifier over several Tiny-BioMoE embeddings (one per modality x representation)."""

from __future__ import annotations

import os
from dataclasses import dataclass
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
    ):
        super().__init__()
        counts = {"num_embeddings": num_embeddings, "num_classes": num_classes, "embedding_dim": embedding_dim}
        for name, value in counts.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if hidden is not None and (not isinstance(hidden, int) or hidden < 1):
            raise ValueError(f"hidden must be None (linear head) or an int >= 1, got {hidden!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.num_embeddings = num_embeddings
        self.num_classes = num_classes
        self.hidden = hidden
        self.embedding_dim = embedding_dim
        in_features = num_embeddings * embedding_dim
        if hidden is None:
            layers = [nn.ELU(), nn.Dropout(dropout), nn.Linear(in_features, num_classes)]
        else:
            layers = [
                nn.ELU(),
                nn.Linear(in_features, hidden),
                nn.ELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            ]
        self.classifier = nn.Sequential(*layers)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, k, embedding_dim) or (B, k * embedding_dim) -> (B, num_classes) logits."""
        width = self.num_embeddings * self.embedding_dim
        if embeddings.ndim == 3 and tuple(embeddings.shape[1:]) == (self.num_embeddings, self.embedding_dim):
            embeddings = embeddings.flatten(1)
        elif embeddings.ndim != 2 or embeddings.shape[1] != width:
            raise ValueError(
                f"embeddings must have shape (B, {self.num_embeddings}, {self.embedding_dim}) or (B, {width}), "
                f"got {tuple(embeddings.shape)}; stack one backbone embedding per fused input along dim 1"
            )
        return self.classifier(embeddings)


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
    """

    head: FusionHead
    fusion: tuple
    labels: tuple
    representation_spec: dict | None
    sampling_rate: float
    window_seconds: float


def save_head(
    head: FusionHead,
    path,
    *,
    fusion,
    labels=("No Pain", "Low Pain", "High Pain"),
    representation_spec: dict | None = None,
    sampling_rate: float = 100.0,
    window_seconds: float = 10.0,
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
    )


def _from_finetune_layout(path: Path, payload: dict) -> dict:
    """The head file of ``biomoe finetune`` (``pairs`` as ``"Modality:representation"``) in save_head's layout.

    That file has no representation spec (it is in the run's
    ``finetune_config.json``, read by ``biomoe export --run-config``).
    """
    if payload.get("normalise", "none") != "none":
        raise CheckpointError(
            f"{path}: the head was trained on per-subject normalised embeddings (normalise="
            f"{payload['normalise']!r}), which the device cannot reproduce; train it with normalise 'none'"
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
