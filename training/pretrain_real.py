"""Unlabelled real recordings for pretraining: two augmented views of each window, and their contrastive loss.

Labels are not needed to learn what real signals look like: two views of the
same real window (each resampled by a few percent in time, with a short span
masked out, a little noise added and a gain and offset applied) should embed
close to each other and far from the other windows of the batch (SimCLR's
NT-Xent loss, Chen et al. 2020). ``biomoe pretrain --real ROOT`` adds this
objective on every split of an AI4PAIN-layout folder (what ``biomoe import``
and ``biomoe import-e4`` write) to the generated corpus's tasks; the labels
in the folder are ignored.

Each window of each modality is one signal; image ``i`` is signal
``i // R`` in representation ``i % R``, and its two views are drawn from
``numpy.random.default_rng([seed, i])``, so any worker on any rank makes the
same pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F

from edge.representations import REPRESENTATIONS, RepresentationSpec, represent
from training.ai4pain import load_split
from training.errors import DataError
from training.finetune import available_modalities

__all__ = ["RealViews", "augment", "nt_xent"]

_STRETCH = (0.92, 1.08)  # time resampling factor of a view
_MASK_S = (0.3, 1.5)  # span replaced by a straight line
_NOISE = 0.03  # Gaussian noise, as a fraction of the window's standard deviation
_GAIN = (0.8, 1.25)


def augment(signal: np.ndarray, rng: np.random.Generator, sampling_rate: float) -> np.ndarray:
    """One view of a window: stretched in time, a span masked by a straight line, noise, gain and offset.

    The length stays; the stretch keeps the window's start (cropping the end
    or padding it with the last value).
    """
    n = len(signal)
    stretch = rng.uniform(*_STRETCH)
    resampled = scipy.signal.resample(signal, max(2, int(round(n * stretch))))
    view = np.concatenate([resampled, np.full(max(0, n - len(resampled)), resampled[-1])])[:n]
    start = int(rng.integers(0, n - 1))
    stop = min(n - 1, start + int(rng.uniform(*_MASK_S) * sampling_rate))
    view[start : stop + 1] = np.linspace(view[start], view[stop], stop + 1 - start)
    scale = float(np.std(signal)) or 1.0
    view = view + _NOISE * scale * rng.standard_normal(n)
    return view * rng.uniform(*_GAIN) + rng.normal(0.0, scale)


class RealViews:
    """Pairs of views of the windows of unlabelled real recordings (a map-style dataset).

    Parameters
    ----------
    roots : sequence of str or Path
        AI4PAIN-layout folders; every split and modality found is used.
    representations : sequence of str
        Names from :data:`edge.representations.REPRESENTATIONS`.
    spec : RepresentationSpec
        Image settings (window length and rate included).
    seed : int, default 0

    Notes
    -----
    ``views[i]`` is ``{"view_a", "view_b"}``: two uint8 images (S, S, 3) of
    the same window in the same representation.
    """

    def __init__(self, roots: Sequence[str | Path], representations: Sequence[str], spec: RepresentationSpec,
                 seed: int = 0):
        self.representations, self.spec, self.seed = tuple(representations), spec, seed
        unknown = [name for name in self.representations if name not in REPRESENTATIONS]
        if unknown or not self.representations:
            raise ValueError(f"representations must be names from {REPRESENTATIONS}; got {list(representations)}")
        signals = []
        for root in roots:
            root = Path(root)
            splits = sorted(path.name for path in root.iterdir() if path.is_dir()) if root.is_dir() else []
            for split in splits:
                modalities = available_modalities(root, split)
                windows = load_split(root, split, modalities, window_seconds=spec.window_seconds,
                                     sampling_rate=spec.sampling_rate)
                signals.append(windows.signals.reshape(-1, windows.signals.shape[-1]))
            if not splits:
                raise DataError(f"--real {root}: no split folders (train/, validation/, ...) of recordings there")
        stacked = np.concatenate(signals).astype(np.float64)
        varying = np.isfinite(stacked).all(axis=1) & (np.ptp(stacked, axis=1) > 0)
        if not varying.any():
            raise DataError(f"--real {', '.join(map(str, roots))}: no window with a varying, finite signal")
        self.signals = stacked[varying]

    def __len__(self) -> int:
        return len(self.signals) * len(self.representations)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"pair {index} of {len(self)}")
        signal, representation = divmod(int(index), len(self.representations))
        rng = np.random.default_rng([self.seed, int(index)])
        rate = self.spec.sampling_rate
        views = np.stack([augment(self.signals[signal], rng, rate) for _ in range(2)])
        images = represent(views, self.spec, (self.representations[representation],), sampling_rate=rate)[:, 0]
        return {"view_a": images[0], "view_b": images[1]}


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent: each of the 2N projections must pick its partner among the other 2N - 1 by cosine similarity."""
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    n = len(a)
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(similarity, partners)
