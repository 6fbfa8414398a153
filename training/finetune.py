"""``biomoe finetune``: pain classifiers on Tiny-BioMoE embeddings, frozen or fine-tuned.

A model reads any set of (modality, representation) pairs, e.g.
``Eda:scalogram,Bvp:waveform``: each pair's image goes through the one shared
backbone, and the :class:`~training.models.FusionHead` classifies the
concatenated embeddings (No / Low / High pain).

Two modes:

- ``frozen`` (default, fast on CPU): the embeddings of every window are
  computed once and cached (:class:`~training.cache.FeatureCache`), then only
  the head is trained on them.
- ``full``: backbone and head are trained end to end on the cached images
  (slow on CPU; ``trainable="late"`` limits training to the backbone's last
  stages), and the fine-tuned backbone is saved in the release format.

Everything is subject-wise: early stopping uses subjects carved out of the
training split (``stop_fraction``), never windows of a training subject;
``--cv loso`` / ``--cv k-fold --folds N`` rotate held-out subjects through
the training split and pool the held-out predictions.

Run folder::

    OUT/config.json    every setting (image spec and backbone source included)
    OUT/head.pt        the fusion head and what it needs (pairs, normalisation)
    OUT/backbone.pth   full mode only: the fine-tuned backbone (release format)
    OUT/metrics.json   early-stopping split metrics, cross-validation metrics
    OUT/state.pt       full mode: last finished epoch (for --resume)
    OUT/cv/fold_N.json per fold, so --resume skips finished folds

Examples
--------
``biomoe finetune --data data/synth --backbone runs/pretrain/backbone.pth
--pairs Eda:scalogram,Bvp:scalogram --out runs/eda_bvp`` then
``biomoe evaluate --run runs/eda_bvp --data data/synth --split validation``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edge.representations import RepresentationSpec, to_model_input
from training.ai4pain import LABELS, MODALITIES, WindowSet, load_split
from training.cache import Backbone, FeatureCache, open_backbone
from training.errors import TrainingError
from training.features import Features, calibrate, window_scalar_features
from training.metrics import classification_metrics, macro_f1
from training.models import FusionHead, save_backbone
from training.settings import (
    CONFIG_NAME,
    DEFAULT_SPEC,
    TRAINABLE_PREFIXES,
    merge_settings,
    parse_pairs,
    read_config_file,
    resolve_device,
    set_trainable,
    write_json,
)

__all__ = [
    "FinetuneConfig",
    "add_common_options",
    "configure_parser",
    "default_cache_dir",
    "finetune",
    "fused_embeddings",
    "load_head",
    "load_windows",
    "predict",
    "run",
    "split_stop_subjects",
    "subject_folds",
    "train_head",
]

logger = logging.getLogger(__name__)

_MODES = ("frozen", "full")
_NORMALISATIONS = ("none", "baseline", "baseline-scalars", "subject")
_INPUTS = ("embeddings", "scalars", "both")
_CV = (None, "loso", "k-fold")

DEFAULT_PAIRS = ("Eda:scalogram", "Eda:waveform", "Bvp:scalogram", "Resp:scalogram", "SpO2:waveform")
"""The five images of the multimodal row of the fusion table (training/README.md); the default,
restricted to the modalities a data set has."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Every setting of a fine-tuning run (saved as ``config.json``).

    Parameters
    ----------
    pairs : tuple of str
        ``"Modality:representation"`` items fused by the head.
    backbone : str
        Backbone checkpoint path, ``"pretrained"`` (the project's own, built
        once on first use: :func:`training.cache.project_pretrained_backbone`),
        or ``"random[:SEED]"``.
    mode : {"frozen", "full"}
    inputs : {"embeddings", "scalars", "both"}
        What the head reads: the pairs' backbone embeddings, the windows'
        physiological scalars (:mod:`edge.scalars`, of the data's channels),
        or both.
    normalise : {"none", "baseline", "baseline-scalars", "subject"}
        Calibration (:mod:`training.features`): "baseline" subtracts each
        subject's first ``baseline_windows`` No Pain windows, as the monitor
        does after attaching ("baseline-scalars": from the scalars only); "subject" z-scores over all of a subject's
        windows (an upper bound, not deployable); "none" uses features as they are.
    baseline_windows : int
        Rest windows a baseline averages (0: all of a subject's No Pain windows).
    hidden : int or None
        Hidden width of the head (None: ELU + Linear, the release's head).
    dropout, learning_rate, weight_decay : float
        Head training settings (AdamW).
    batch_size, max_epochs, patience : int
        Head training: windows per step, epoch limit, epochs without a better
        early-stopping macro-F1 before stopping.
    stop_fraction : float
        Share of the training subjects held out for early stopping.
    cv : {None, "loso", "k-fold"}
        Cross-validation over the training split's subjects (frozen mode).
    folds : int
        Number of folds for ``cv="k-fold"``.
    trainable : {"late", "all"}
        Full mode: backbone layers trained (as in pretraining).
    full_epochs, full_batch_size, full_max_steps : int
        Full mode: epochs, windows per step, and a cap on steps per epoch (0:
        none).
    backbone_learning_rate : float
        Full mode: AdamW rate of the backbone (the head uses ``learning_rate``).
    seed : int
    window_seconds, trial_offset_seconds : float
        Loader settings (:func:`training.ai4pain.load_split`).
    rest_windows : bool
        Loader setting: the data's ``REST`` segments become No Pain windows
        (``rest_as_no_pain``), so a head for continuous monitoring also
        learns the minutes after pain ends; AI4PAIN leaves them out.
    representation_spec : dict
        :class:`~edge.representations.RepresentationSpec` settings (the key
        bundle manifests and head files use too).
    """

    pairs: tuple[str, ...] = DEFAULT_PAIRS
    backbone: str = "pretrained"
    mode: str = "frozen"
    inputs: str = "both"
    normalise: str = "baseline"
    baseline_windows: int = 6
    hidden: int | None = 32
    dropout: float = 0.3
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 30
    stop_fraction: float = 0.2
    cv: str | None = None
    folds: int = 5
    trainable: str = "late"
    full_epochs: int = 3
    full_batch_size: int = 8
    full_max_steps: int = 0
    backbone_learning_rate: float = 1e-4
    seed: int = 0
    window_seconds: float = 10.0
    trial_offset_seconds: float = 0.0
    rest_windows: bool = False
    representation_spec: dict[str, Any] = field(default_factory=DEFAULT_SPEC.to_dict)

    def __post_init__(self) -> None:
        choices = (("mode", _MODES), ("normalise", _NORMALISATIONS), ("inputs", _INPUTS), ("cv", _CV),
                   ("trainable", tuple(TRAINABLE_PREFIXES)))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}")
        for name in ("batch_size", "max_epochs", "patience", "folds", "full_epochs", "full_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if not 0 < self.stop_fraction < 1:
            raise ValueError(f"stop_fraction must be in (0, 1); got {self.stop_fraction!r}")
        if isinstance(self.baseline_windows, bool) or not isinstance(self.baseline_windows, int) or self.baseline_windows < 0:
            raise ValueError(f"baseline_windows must be an integer >= 0 (0: all rest windows); got {self.baseline_windows!r}")
        if self.cv is not None and self.mode != "frozen":
            raise ValueError("cross-validation (--cv) trains one model per fold and needs --mode frozen")
        if self.inputs == "scalars":
            object.__setattr__(self, "pairs", ())
        else:
            pairs = parse_pairs(list(self.pairs), MODALITIES)
            object.__setattr__(self, "pairs", tuple(f"{m}:{r}" for m, r in pairs))
        object.__setattr__(self, "representation_spec",
                           RepresentationSpec.from_dict(dict(self.representation_spec)).to_dict())

    @property
    def pair_tuples(self) -> tuple[tuple[str, str], ...]:
        return tuple(tuple(pair.split(":")) for pair in self.pairs)

    @property
    def spec(self) -> RepresentationSpec:
        """The image settings as a :class:`~edge.representations.RepresentationSpec`."""
        return RepresentationSpec.from_dict(self.representation_spec)


def default_cache_dir() -> Path:
    """``$BIOMOE_CACHE`` or ``~/.cache/biomoe``."""
    return Path(os.environ.get("BIOMOE_CACHE", Path.home() / ".cache" / "biomoe"))


def available_modalities(root: str | os.PathLike, split: str) -> tuple[str, ...]:
    """The signal folders of :data:`MODALITIES` that a split has (matched case-insensitively)."""
    folder = Path(root) / split
    present = {p.name.lower() for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
    found = tuple(m for m in MODALITIES if m.lower() in present)
    if not found:
        raise TrainingError(f"{folder} has none of the signal folders {', '.join(MODALITIES)}; is it an AI4PAIN-layout split?")
    return found


def for_data(config: FinetuneConfig, root: str | os.PathLike, split: str) -> FinetuneConfig:
    """``config`` with its pairs restricted to the modalities the data has.

    Pairs of absent modalities are dropped when they are the defaults and refused when given.
    """
    modalities = available_modalities(root, split)
    kept = tuple(pair for pair in config.pairs if pair.split(":")[0] in modalities)
    if config.pairs != DEFAULT_PAIRS and kept != config.pairs:
        missing = sorted({pair.split(":")[0] for pair in config.pairs} - set(modalities))
        raise TrainingError(f"{root}/{split} has no {'/'.join(missing)} folder; choose --pairs of {', '.join(modalities)}")
    if not kept and config.inputs != "scalars":
        raise TrainingError(f"no default pair fits the modalities of {root}/{split}; pass --pairs")
    return dataclasses.replace(config, pairs=kept or config.pairs[:0])


def load_windows(root: str | os.PathLike, split: str, config: FinetuneConfig) -> WindowSet:
    """The modalities of one split that it has, windowed with the config's loader settings."""
    return load_split(
        root, split, available_modalities(root, split), window_seconds=config.window_seconds,
        sampling_rate=config.spec.sampling_rate, trial_offset_seconds=config.trial_offset_seconds,
        rest_as_no_pain=config.rest_windows,
    )


def subject_folds(subjects: np.ndarray, scheme: str, n_folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Held-out subject ids per fold: one subject each (``"loso"``) or ``n_folds`` shuffled groups."""
    unique = np.unique(subjects)
    if scheme == "loso":
        return [unique[i : i + 1] for i in range(len(unique))]
    if not 2 <= n_folds <= len(unique):
        raise ValueError(f"folds must be between 2 and the {len(unique)} training subjects; got {n_folds}")
    shuffled = np.random.default_rng(seed).permutation(unique)
    return [np.sort(group) for group in np.array_split(shuffled, n_folds)]


def split_stop_subjects(subjects: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (fit, stop) over windows: a seeded share of the subjects for early stopping."""
    unique = np.unique(subjects)
    if len(unique) < 2:
        raise TrainingError(
            f"subject-wise early stopping needs at least 2 training subjects; the data has {len(unique)}"
        )
    n_stop = min(len(unique) - 1, max(1, int(round(fraction * len(unique)))))
    stop = np.random.default_rng(seed).permutation(unique)[:n_stop]
    stop_mask = np.isin(subjects, stop)
    return ~stop_mask, stop_mask


def fused_embeddings(cache: FeatureCache, windows: WindowSet, config: FinetuneConfig, backbone: Backbone) -> np.ndarray:
    """float32 (n, k, D): the embedding of each of the k pairs, from the cache."""
    spec = config.spec
    return np.stack(
        [np.asarray(cache.embeddings(windows, m, r, spec, backbone)) for m, r in config.pair_tuples], axis=1
    )


def _class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float32)
    weights = np.divide(counts.sum(), n_classes * counts, out=np.zeros_like(counts), where=counts > 0)
    return torch.from_numpy(weights)


def data_classes(labels: np.ndarray) -> np.ndarray:
    """The classes (indices into :data:`LABELS`) a data set has: a head learns only those."""
    return np.unique(labels)


def _new_head(config: FinetuneConfig, num_embeddings: int, embedding_dim: int = 192, num_scalars: int = 0,
              num_classes: int = len(LABELS)) -> FusionHead:
    return FusionHead(num_embeddings, num_classes, hidden=config.hidden, dropout=config.dropout,
                      embedding_dim=embedding_dim, num_scalars=num_scalars)


def _as_features(features) -> Features:
    if isinstance(features, Features):
        return features
    return Features(np.asarray(features), np.zeros((len(features), 0), dtype=np.float32))


def predict(head: FusionHead, features, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (n, classes) of a head on :class:`Features` (or bare (n, k, D) embeddings)."""
    features = _as_features(features)
    head.eval()
    chunks = []
    with torch.no_grad():
        for i in range(0, len(features), batch_size):
            part = features.take(slice(i, i + batch_size))
            scalars = torch.from_numpy(part.scalars) if head.num_scalars else None
            chunks.append(torch.softmax(head(torch.from_numpy(part.embeddings), scalars), dim=1))
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, head.num_classes), dtype=np.float32)


def train_head(
    features: np.ndarray,
    labels: np.ndarray,
    stop_features: np.ndarray,
    stop_labels: np.ndarray,
    config: FinetuneConfig,
    seed: int | None = None,
    num_classes: int | None = None,
) -> tuple[FusionHead, dict[str, Any]]:
    """Train a fusion head on fixed features, keeping the epoch with the best early-stopping macro-F1.

    Parameters
    ----------
    features : Features or ndarray
        Of the fitting windows (bare (n, k, D) embeddings: no scalars).
    labels : ndarray
        (n,) class indices in [0, classes), classes = the larger of 3 and what the labels hold.
    stop_features, stop_labels : ndarray
        The same for the early-stopping subjects.
    config : FinetuneConfig
    seed : int, optional
        Seed of the head's initial weights and batch order; default ``config.seed``.

    Returns
    -------
    head : FusionHead
        With the best epoch's weights, in eval mode.
    info : dict
        ``best_epoch``, ``epochs`` run and ``stop_macro_f1``.
    """
    seed = config.seed if seed is None else seed
    with torch.random.fork_rng(devices=[]):  # initial weights and dropout masks: seeded, caller's RNG untouched
        torch.manual_seed(seed)
        return _train_head(features, labels, stop_features, stop_labels, config, seed, num_classes)


def _train_head(features, labels, stop_features, stop_labels, config: FinetuneConfig, seed: int,
                num_classes: int | None = None):
    features, stop_features = _as_features(features), _as_features(stop_features)
    num_classes = num_classes or len(LABELS)
    generator = torch.Generator().manual_seed(seed)
    embeddings = features.embeddings
    head = _new_head(config, embeddings.shape[1], embeddings.shape[2] if embeddings.shape[1] else 192,
                     features.scalars.shape[1], num_classes)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    x = torch.from_numpy(np.ascontiguousarray(embeddings))
    z = torch.from_numpy(np.ascontiguousarray(features.scalars))
    if head.num_scalars:
        head.set_scalar_scaling(z)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    weights = _class_weights(np.asarray(labels), num_classes)
    best = (-1.0, 0, copy.deepcopy(head.state_dict()))
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        head.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            batch = order[start : start + config.batch_size]
            loss = F.cross_entropy(head(x[batch], z[batch] if head.num_scalars else None), y[batch], weight=weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        score = macro_f1(stop_labels, predict(head, stop_features).argmax(1), num_classes)
        if score > best[0]:
            best = (score, epoch, copy.deepcopy(head.state_dict()))
        elif epoch - best[1] >= config.patience:
            break
    head.load_state_dict(best[2])
    head.eval()
    return head, {"best_epoch": best[1], "epochs": epoch, "stop_macro_f1": best[0]}


def load_head(run_dir: str | os.PathLike) -> tuple[FusionHead, dict[str, Any]]:
    """The head saved by :func:`finetune` in ``run_dir`` and its saved description."""
    path = Path(run_dir) / "head.pt"
    if not path.is_file():
        raise TrainingError(f"{run_dir} holds no head.pt; run biomoe finetune --out {run_dir} first")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    head = FusionHead(saved["num_embeddings"], len(saved["labels"]), hidden=saved["hidden"], dropout=saved["dropout"],
                      embedding_dim=saved["embedding_dim"], num_scalars=saved.get("num_scalars", 0))
    head.load_state_dict(saved["state_dict"])
    return head.eval(), saved


def _save_head(head: FusionHead, config: FinetuneConfig, path: Path, labels, scalars) -> None:
    calibration = {"method": "baseline" if config.normalise.startswith("baseline") else config.normalise,
                   "windows": config.baseline_windows if config.normalise.startswith("baseline") else 0,
                   "embeddings": config.normalise == "baseline"}
    partial = path.with_name(path.name + ".partial")
    torch.save({"state_dict": head.state_dict(), "num_embeddings": head.num_embeddings,
                "embedding_dim": head.embedding_dim, "hidden": config.hidden, "dropout": config.dropout,
                "pairs": list(config.pairs), "normalise": config.normalise, "labels": list(labels),
                "num_classes": head.num_classes, "num_scalars": head.num_scalars, "scalars": list(scalars),
                "calibration": calibration}, partial)
    os.replace(partial, path)


def _check_run_folder(out: Path, settings: dict, resume: bool) -> bool:
    """True when ``out`` already holds this finished run (resume); refuse another run's folder. Writes nothing."""
    config_path = out / CONFIG_NAME
    if config_path.is_file():
        if not resume:
            raise TrainingError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        saved = json.loads(config_path.read_text())
        if saved != settings:
            changed = sorted(key for key in settings if saved.get(key) != settings.get(key))
            raise TrainingError(f"--resume with other settings than {config_path} ({changed}); use a new --out")
        return (out / "metrics.json").is_file()
    return False


def head_features(cache, windows: WindowSet, config: FinetuneConfig, backbone: Backbone | None) -> tuple[Features, tuple]:
    """The calibrated :class:`Features` the config's head reads, and the names of its scalars."""
    n = len(windows)
    if config.inputs == "scalars":
        embeddings = np.zeros((n, 0, 192), dtype=np.float32)
    else:
        embeddings = fused_embeddings(cache, windows, config, backbone)
    scalars, names = window_scalar_features(windows)
    if config.inputs == "embeddings":
        scalars, names = scalars[:, :0], ()
    return calibrate(Features(embeddings, scalars), windows, config.normalise, config.baseline_windows), names


def _run_frozen(config, train, cache, backbone, out: Path) -> dict[str, Any]:
    features, scalar_names = head_features(cache, train, config, backbone)
    classes = data_classes(train.labels)
    labels, names = np.searchsorted(classes, train.labels), [LABELS[c] for c in classes]
    fit, stop = split_stop_subjects(train.subjects, config.stop_fraction, config.seed)
    head, info = train_head(features.take(fit), labels[fit], features.take(stop), labels[stop], config,
                            num_classes=len(classes))
    _save_head(head, config, out / "head.pt", names, scalar_names)
    metrics: dict[str, Any] = {
        "training": info,
        "classes": names,
        "scalars": list(scalar_names),
        "stop_subjects": sorted(np.unique(train.subjects[stop]).tolist()),
        "stop_split": classification_metrics(labels[stop], predict(head, features.take(stop)).argmax(1), names),
    }
    if config.cv is not None:
        metrics["cross_validation"] = _cross_validate(config, train, features, labels, names, out / "cv")
    return metrics


def _cross_validate(config, train: WindowSet, features: Features, labels, names, folder: Path) -> dict[str, Any]:
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    folds = subject_folds(train.subjects, config.cv, config.folds, config.seed)
    predictions = np.empty(len(train), dtype=np.int64)
    per_fold = []
    for index, held_out in enumerate(tqdm(folds, desc=f"cross-validation ({config.cv})", unit="fold")):
        test = np.isin(train.subjects, held_out)
        fold_path = folder / f"fold_{index}.json"
        if fold_path.is_file():
            saved = json.loads(fold_path.read_text())
        else:
            rest = np.flatnonzero(~test)
            fit, stop = split_stop_subjects(train.subjects[rest], config.stop_fraction, config.seed + index)
            head, info = train_head(features.take(rest[fit]), labels[rest[fit]], features.take(rest[stop]),
                                    labels[rest[stop]], config, num_classes=len(names))
            saved = {"held_out_subjects": held_out.tolist(), "training": info,
                     "predictions": predict(head, features.take(test)).argmax(1).tolist()}
            write_json(fold_path, saved)
        predictions[test] = saved["predictions"]
        per_fold.append(classification_metrics(labels[test], np.asarray(saved["predictions"]), names))
    return {
        "scheme": config.cv,
        "folds": len(folds),
        "pooled": classification_metrics(labels, predictions, names),
        "macro_f1_per_fold": [fold["macro_f1"] for fold in per_fold],
        "macro_f1_mean": float(np.mean([fold["macro_f1"] for fold in per_fold])),
        "macro_f1_std": float(np.std([fold["macro_f1"] for fold in per_fold])),
    }


class _EndToEnd(torch.nn.Module):
    """Backbone on each pair's image, then the fusion head on the stacked embeddings."""

    def __init__(self, backbone: torch.nn.Module, head: FusionHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, k, 3, S, S)
        batch, k = images.shape[:2]
        return self.head(self.backbone(images.flatten(0, 1)).view(batch, k, -1))


def _pair_images(cache: FeatureCache, windows: WindowSet, config: FinetuneConfig) -> list[np.ndarray]:
    return [cache.images(windows, m, r, config.spec) for m, r in config.pair_tuples]


def _image_batch(images: list[np.ndarray], rows: np.ndarray, device) -> torch.Tensor:
    stacked = np.stack([np.asarray(pair[rows]) for pair in images], axis=1)  # (B, k, S, S, 3)
    return torch.from_numpy(to_model_input(stacked)).to(device)


def _predict_end_to_end(model: _EndToEnd, images, rows: np.ndarray, batch_size: int, device) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        outputs = [model(_image_batch(images, rows[i : i + batch_size], device)).argmax(1).cpu()
                   for i in range(0, len(rows), batch_size)]
    return torch.cat(outputs).numpy()


def _run_full(config, train, cache, backbone: Backbone, out: Path, device) -> dict[str, Any]:
    from tqdm import tqdm

    if config.normalise != "none" or config.inputs != "embeddings":
        raise TrainingError("--mode full trains on images: it needs --normalise none --inputs embeddings")
    images = _pair_images(cache, train, config)
    fit, stop = split_stop_subjects(train.subjects, config.stop_fraction, config.seed)
    fit_rows, stop_rows = np.flatnonzero(fit), np.flatnonzero(stop)
    torch.manual_seed(config.seed)
    model = _EndToEnd(backbone.model, _new_head(config, len(config.pairs), backbone.model.num_features)).to(device)
    set_trainable(model.backbone, config.trainable)
    optimizer = torch.optim.AdamW([
        {"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": config.backbone_learning_rate},
        {"params": model.head.parameters(), "lr": config.learning_rate},
    ], weight_decay=config.weight_decay)
    weights = _class_weights(train.labels[fit], len(LABELS)).to(device)
    state_path = out / "state.pt"
    epoch, history, best = 0, [], {"stop_macro_f1": -1.0, "epoch": 0}
    if state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, history, best = state["epoch"], state["history"], state["best"]
        logger.info("resuming full fine-tuning after epoch %d", epoch)
    per_epoch = -(-len(fit_rows) // config.full_batch_size)
    if config.full_max_steps:
        per_epoch = min(per_epoch, config.full_max_steps)
    while epoch < config.full_epochs:
        model.train()
        order = np.random.default_rng([config.seed, epoch]).permutation(fit_rows)
        for step in tqdm(range(per_epoch), desc=f"fine-tune epoch {epoch + 1}/{config.full_epochs}", unit="step"):
            rows = np.sort(order[step * config.full_batch_size : (step + 1) * config.full_batch_size])
            labels = torch.from_numpy(train.labels[rows]).to(device)
            loss = F.cross_entropy(model(_image_batch(images, rows, device)), labels, weight=weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        epoch += 1
        predictions = _predict_end_to_end(model, images, stop_rows, config.full_batch_size, device)
        score = macro_f1(train.labels[stop_rows], predictions, len(LABELS))
        history.append({"epoch": epoch, "stop_macro_f1": score})
        if score > best["stop_macro_f1"]:
            best = {"stop_macro_f1": score, "epoch": epoch}
            save_backbone(copy.deepcopy(model.backbone).cpu(), out / "backbone.pth")
            _save_head(model.head, config, out / "head.pt", LABELS, ())
        partial = state_path.with_name(state_path.name + ".partial")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                    "history": history, "best": best}, partial)
        os.replace(partial, state_path)
    return {"training": {"best_epoch": best["epoch"], "epochs": epoch, "stop_macro_f1": best["stop_macro_f1"],
                         "history": history},
            "stop_subjects": sorted(np.unique(train.subjects[stop]).tolist())}


def finetune(
    config: FinetuneConfig,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    resume: bool = False,
    split: str = "train",
) -> dict[str, Any]:
    """Train a fusion head (and, in full mode, the backbone) on one split; see the module docstring.

    Returns
    -------
    dict
        The metrics written to ``out/metrics.json``.
    """
    out = Path(out)
    config = for_data(config, data, split)
    settings = json.loads(json.dumps(dict(dataclasses.asdict(config), data=str(data), split=split)))
    if _check_run_folder(out, settings, resume):
        logger.info("%s is finished; nothing to do", out)
        return json.loads((out / "metrics.json").read_text())
    started = time.perf_counter()
    torch_device = resolve_device(device)
    train = load_windows(data, split, config)
    cache = FeatureCache(cache_dir if cache_dir is not None else default_cache_dir())
    backbone = open_backbone(config.backbone, torch_device) if config.inputs != "scalars" else None
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves --out as it was
    write_json(out / CONFIG_NAME, settings)
    if config.mode == "frozen":
        metrics = _run_frozen(config, train, cache, backbone, out)
    else:
        metrics = _run_full(config, train, cache, backbone, out, torch_device)
    metrics.update(pairs=list(config.pairs), backbone=backbone.identity if backbone else None, device=str(torch_device), n_windows=len(train),
                   n_subjects=int(len(np.unique(train.subjects))),
                   wall_seconds=round(time.perf_counter() - started, 1))
    write_json(out / "metrics.json", metrics)
    return metrics


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options shared with ``biomoe evaluate``: cache folder and device."""
    parser.add_argument("--cache", type=Path, help="feature cache folder (default $BIOMOE_CACHE or ~/.cache/biomoe)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N] (default auto)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``biomoe finetune``."""
    parser.add_argument("--data", required=True, type=Path, help="AI4PAIN-layout data set folder")
    parser.add_argument("--out", required=True, type=Path, help="run folder (config.json, head.pt, metrics.json)")
    parser.add_argument("--config", type=Path, help="TOML or JSON file of FinetuneConfig settings")
    parser.add_argument("--backbone", help="backbone checkpoint, pretrained (the project's own; default) or random[:SEED]")
    parser.add_argument("--pairs", help="comma-separated MODALITY:REPRESENTATION, e.g. Eda:scalogram,Bvp:waveform")
    parser.add_argument("--mode", choices=_MODES, help="frozen (default): head on cached embeddings; full: end to end")
    parser.add_argument("--inputs", choices=_INPUTS, help="what the head reads: embeddings, scalars or both (default both)")
    parser.add_argument("--normalise", choices=_NORMALISATIONS,
                        help="calibration: baseline (each subject's first rest minute; default, deployable), "
                             "baseline-scalars (the same, for the scalars only), "
                             "subject (all windows z-scored; an upper bound, not deployable) or none")
    parser.add_argument("--cv", nargs="+", metavar=("SCHEME", "N"),
                        help="cross-validation on the training subjects: 'loso' or 'k-fold N'")
    parser.add_argument("--rest-windows", action="store_true", default=None,
                        help="also train on the data's REST segments as No Pain windows (the minutes after pain "
                             "ends: what a bedside monitor must call No Pain; AI4PAIN leaves them out)")
    parser.add_argument("--split", default="train", help="split to train on (default train)")
    parser.add_argument("--seed", type=int, help="seed (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out (finished stages are skipped)")
    add_common_options(parser)


def _cv_options(values: list[str] | None) -> dict[str, Any]:
    if not values:
        return {}
    if values[0] == "loso" and len(values) == 1:
        return {"cv": "loso"}
    if values[0] == "k-fold" and len(values) == 2 and values[1].isdigit():
        return {"cv": "k-fold", "folds": int(values[1])}
    raise ValueError(f"--cv must be 'loso' or 'k-fold N' (N folds, e.g. k-fold 5); got {' '.join(values)!r}")


def run(args: argparse.Namespace) -> int:
    """Run ``biomoe finetune``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"backbone": args.backbone, "mode": args.mode, "normalise": args.normalise, "seed": args.seed,
                 "inputs": args.inputs, "rest_windows": args.rest_windows,
                 "pairs": tuple(args.pairs.split(",")) if args.pairs else None, **_cv_options(args.cv)}
    config = merge_settings(FinetuneConfig(), read_config_file(args.config), overrides)
    metrics = finetune(config, args.data, args.out, cache_dir=args.cache, device=args.device, resume=args.resume,
                       split=args.split)
    line = (f"{args.out}: {metrics['n_windows']} windows of {metrics['n_subjects']} subjects, classes "
            f"{', '.join(metrics.get('classes', LABELS))}; inputs {config.inputs} ({len(metrics['pairs'])} pair(s) "
            f"{','.join(metrics['pairs']) or '-'}; {len(metrics.get('scalars', ()))} scalars), calibration {config.normalise}, "
            f"{config.mode} backbone {metrics['backbone']}; ")
    line += f"early-stopping subjects macro-F1 {metrics['training']['stop_macro_f1']:.3f}"
    if "cross_validation" in metrics:
        cv = metrics["cross_validation"]
        line += f"; {cv['scheme']} CV macro-F1 {cv['macro_f1_mean']:.3f} +- {cv['macro_f1_std']:.3f} ({cv['folds']} folds)"
    print(line)
    return 0
