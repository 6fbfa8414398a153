"""Classifier over several Tiny-BioMoE embeddings (one per modality x representation)."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["FusionHead"]


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
