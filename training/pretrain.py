"""``biomoe pretrain``: multi-task pretraining of the backbone on generated biosignal images.

The backbone learns three things at once from the corpus of
:mod:`training.pretrain_corpus`: the signal type (cross-entropy), the
representation (cross-entropy) and the generating rate, scaled to [0, 1]
(mean squared error, weighted by ``parameter_weight``). AdamW, linear warm-up
then cosine decay, no mixed precision. The result is a backbone checkpoint in
the release's format (``backbone.pth``, loadable with
:func:`training.models.load_backbone`) and, separately, the three heads
(``heads.pt``) with the optimiser state for resuming.

Run folder::

    OUT/config.json       every setting (image spec included)
    OUT/corpus/           images.npy (uint8, memory-mapped) + targets.npz
    OUT/state.pt          last training state (resume with --resume)
    OUT/backbone.pth      the pretrained backbone, release format
    OUT/heads.pt          the three task heads
    OUT/metrics.json      losses and held-out accuracy / error per task

Runs on CPU for small corpora and on the GPU when there is one (``--device
auto``). The defaults take about 20 min on two CPU cores.

Examples
--------
``biomoe pretrain --out runs/pretrain`` then, after an interruption,
``biomoe pretrain --out runs/pretrain --resume``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.representations import RepresentationSpec, to_model_input
from training.errors import TrainingError
from training.models import load_backbone, save_backbone, tiny_biomoe
from training.pretrain_corpus import SIGNAL_TYPES, Corpus, generate_corpus
from training.settings import (
    CONFIG_NAME,
    DEFAULT_REPRESENTATIONS,
    DEFAULT_SPEC,
    TRAINABLE_PREFIXES,
    merge_settings,
    read_config_file,
    resolve_device,
    write_json,
)

__all__ = ["PretrainConfig", "PretrainHeads", "configure_parser", "pretrain", "run"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """Every setting of a pretraining run (saved as ``config.json``).

    Parameters
    ----------
    representations : tuple of str
        Representations of the corpus images (the representation head's classes).
    n_per_type : int
        Windows per signal type; each gives one image per representation.
    holdout_fraction : float
        Share of the corpus windows kept out of training to measure the tasks.
    steps, batch_size : int
        Optimiser steps and images per step.
    learning_rate, weight_decay : float
        AdamW settings; the rate warms up linearly over ``warmup_steps``, then
        decays along a cosine to 5 % of its peak.
    parameter_weight : float
        Weight of the rate regression loss against the two cross-entropies.
    checkpoint_every : int
        Steps between saves of ``state.pt``.
    seed : int
        Seeds the corpus, the initial weights and the batch order.
    init : str or None
        Backbone checkpoint to start from; None for random initial weights.
    trainable : {"late", "all"}
        "late" trains only the last stage of each expert, the gate and the
        output norm (the earlier layers keep their initial weights): the
        backward pass through the high-resolution early stages costs most of
        a CPU step, so this is the default that fits a 20 min CPU budget.
        "all" trains every layer (use it on a GPU).
    representation_spec : dict
        :class:`~edge.representations.RepresentationSpec` settings (the key
        bundle manifests and head files use too).
    """

    representations: tuple[str, ...] = DEFAULT_REPRESENTATIONS
    n_per_type: int = 160
    holdout_fraction: float = 0.1
    steps: int = 200
    batch_size: int = 16
    learning_rate: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 30
    parameter_weight: float = 10.0
    checkpoint_every: int = 50
    seed: int = 0
    init: str | None = None
    trainable: str = "late"
    representation_spec: dict[str, Any] = field(default_factory=DEFAULT_SPEC.to_dict)

    def __post_init__(self) -> None:
        for name in ("n_per_type", "steps", "batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if not 0 < self.holdout_fraction < 0.5:
            raise ValueError(f"holdout_fraction must be in (0, 0.5); got {self.holdout_fraction!r}")
        if self.trainable not in TRAINABLE_PREFIXES:
            raise ValueError(f"trainable must be one of {tuple(TRAINABLE_PREFIXES)}; got {self.trainable!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate!r}")
        object.__setattr__(self, "representation_spec",
                           RepresentationSpec.from_dict(dict(self.representation_spec)).to_dict())

    @property
    def spec(self) -> RepresentationSpec:
        """The image settings as a :class:`~edge.representations.RepresentationSpec`."""
        return RepresentationSpec.from_dict(self.representation_spec)


class PretrainHeads(nn.Module):
    """Three heads on the 192-D embedding: signal type, representation, rate."""

    def __init__(self, embedding_dim: int, n_signal_types: int, n_representations: int):
        super().__init__()
        self.signal_type = nn.Sequential(nn.ELU(), nn.Linear(embedding_dim, n_signal_types))
        self.representation = nn.Sequential(nn.ELU(), nn.Linear(embedding_dim, n_representations))
        self.parameter = nn.Sequential(nn.ELU(), nn.Linear(embedding_dim, 1))

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.signal_type(embeddings), self.representation(embeddings), self.parameter(embeddings)[:, 0]


def _split_windows(corpus: Corpus, n_reps: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Image indices for training and hold-out, split by window (all its representations together)."""
    n_windows = len(corpus) // n_reps
    order = np.random.default_rng(seed + 1).permutation(n_windows)
    n_holdout = max(1, int(round(fraction * n_windows)))
    expand = lambda windows: (np.sort(windows)[:, None] * n_reps + np.arange(n_reps)).ravel()  # noqa: E731
    return expand(order[n_holdout:]), expand(order[:n_holdout])


def _batch_indices(train: np.ndarray, step: int, batch_size: int, seed: int) -> np.ndarray:
    """Images of one step: epochs of seeded permutations, a pure function of the step (resumable)."""
    per_epoch = max(1, len(train) // batch_size)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(len(train))
    return np.sort(train[order[position * batch_size : (position + 1) * batch_size]])


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(to_model_input(np.asarray(images))).to(device)


def _load_corpus(folder: Path, config: PretrainConfig) -> Corpus:
    """The corpus in ``folder``, generated first if absent (or interrupted)."""
    images_path, targets_path = folder / "images.npy", folder / "targets.npz"
    if not (images_path.is_file() and targets_path.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        corpus = generate_corpus(
            config.n_per_type, config.representations, config.spec, config.seed,
            path=images_path, progress=True,
        )
        np.savez(targets_path, signal_types=corpus.signal_types, representations=corpus.representations,
                 parameters=corpus.parameters)
        return corpus
    targets = np.load(targets_path)
    return Corpus(np.load(images_path, mmap_mode="r"), targets["signal_types"], targets["representations"],
                  targets["parameters"])


def _learning_rate_factor(config: PretrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@torch.no_grad()
def _evaluate(model, heads, corpus: Corpus, indices: np.ndarray, batch_size: int, device) -> dict[str, float]:
    model.eval()
    heads.eval()
    type_hits = rep_hits = 0
    errors = []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        type_logits, rep_logits, parameter = heads(model(_to_tensor(corpus.images[chunk], device)))
        type_hits += int((type_logits.argmax(1).cpu().numpy() == corpus.signal_types[chunk]).sum())
        rep_hits += int((rep_logits.argmax(1).cpu().numpy() == corpus.representations[chunk]).sum())
        errors.append(parameter.cpu().numpy() - corpus.parameters[chunk])
    errors = np.concatenate(errors)
    spread = float(np.std(corpus.parameters[indices]))
    return {
        "images": int(len(indices)),
        "signal_type_accuracy": type_hits / len(indices),
        "representation_accuracy": rep_hits / len(indices),
        "parameter_mae": float(np.mean(np.abs(errors))),
        "parameter_r2": float(1 - np.mean(errors**2) / spread**2) if spread > 0 else None,
    }


def pretrain(config: PretrainConfig, out: str | Path, *, device: str = "auto", resume: bool = False) -> dict[str, Any]:
    """Run (or resume) multi-task pretraining; see the module docstring for the outputs.

    Parameters
    ----------
    config : PretrainConfig
    out : path-like
        Run folder.
    device : str, default "auto"
        "auto" (CUDA if available), "cpu" or "cuda[:N]".
    resume : bool, default False
        Continue from ``out/state.pt``. The saved config must equal
        ``config`` except for ``steps``, which may grow to extend a finished
        run (the cosine schedule is then stretched to the new length, a warm
        restart). Without it an existing run in ``out`` is an error.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    out = Path(out)
    config_path = out / CONFIG_NAME
    settings = json.loads(json.dumps(dataclasses.asdict(config)))
    if config_path.is_file():
        if not resume:
            raise TrainingError(f"{out} already holds a pretraining run; pass --resume to continue it or choose another --out")
        saved = json.loads(config_path.read_text())
        changed = sorted(key for key in settings if saved.get(key) != settings[key])
        if changed and changed != ["steps"]:
            raise TrainingError(
                f"--resume with other settings than {config_path} ({changed}); only --steps may change "
                "(to extend a run); use a new --out"
            )
        if changed:
            logger.info("extending the run from %d to %d steps", saved["steps"], settings["steps"])
    out.mkdir(parents=True, exist_ok=True)
    write_json(config_path, settings)
    torch_device = resolve_device(device)
    started = time.perf_counter()

    corpus = _load_corpus(out / "corpus", config)
    n_reps = len(config.representations)
    train, holdout = _split_windows(corpus, n_reps, config.holdout_fraction, config.seed)

    torch.manual_seed(config.seed)
    model = load_backbone(config.init) if config.init else tiny_biomoe()
    prefixes = TRAINABLE_PREFIXES[config.trainable]
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(prefixes is None or name.startswith(prefixes))
    heads = PretrainHeads(model.num_features, len(SIGNAL_TYPES), n_reps)
    model.to(torch_device)
    heads.to(torch_device)
    no_decay = model.no_weight_decay()
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decayed = [p for n, p in trained if n not in no_decay and p.ndim > 1] + list(heads.parameters())
    others = [p for n, p in trained if n in no_decay or p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": config.weight_decay}, {"params": others, "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _learning_rate_factor(config))
    history: list[dict[str, float]] = []
    step = 0
    state_path = out / "state.pt"
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location=torch_device, weights_only=False)
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, history = state["step"], state["history"]
        logger.info("resuming pretraining at step %d of %d", step, config.steps)

    def save_state() -> None:
        partial = state_path.with_name(state_path.name + ".partial")
        torch.save({"model": model.state_dict(), "heads": heads.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step, "history": history}, partial)
        partial.replace(state_path)

    from tqdm import tqdm

    bar = tqdm(total=config.steps, initial=step, desc="pretrain", unit="step")
    while step < config.steps:
        model.train()
        heads.train()
        batch = _batch_indices(train, step, config.batch_size, config.seed)
        images = _to_tensor(corpus.images[batch], torch_device)
        type_logits, rep_logits, parameter = heads(model(images))
        losses = {
            "signal_type": F.cross_entropy(type_logits, torch.from_numpy(corpus.signal_types[batch]).to(torch_device)),
            "representation": F.cross_entropy(rep_logits, torch.from_numpy(corpus.representations[batch]).to(torch_device)),
            "parameter": F.mse_loss(parameter, torch.from_numpy(corpus.parameters[batch]).to(torch_device)),
        }
        loss = losses["signal_type"] + losses["representation"] + config.parameter_weight * losses["parameter"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trained] + list(heads.parameters()), 5.0)
        optimizer.step()
        scheduler.step()
        step += 1
        history.append({"step": step, "loss": loss.item(), **{k: v.item() for k, v in losses.items()}})
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", rate_mse=f"{history[-1]['parameter']:.4f}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_state()
    bar.close()

    save_backbone(model.cpu(), out / "backbone.pth")
    torch.save({"heads": heads.state_dict(), "signal_types": SIGNAL_TYPES,
                "representations": config.representations}, out / "heads.pt")
    model.to(torch_device)
    last = history[-min(len(history), 20):] if history else []
    metrics = {
        "steps": step,
        "device": str(torch_device),
        "wall_seconds_this_session": round(time.perf_counter() - started, 1),
        "final_train_loss_mean_last_20": float(np.mean([h["loss"] for h in last])) if last else None,
        "holdout": _evaluate(model, heads, corpus, holdout, config.batch_size, torch_device),
        "history": history,
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``biomoe pretrain``."""
    parser.add_argument("--out", required=True, type=Path, help="run folder (backbone.pth, heads.pt, config.json, ...)")
    parser.add_argument("--config", type=Path, help="TOML or JSON file of PretrainConfig settings")
    parser.add_argument("--steps", type=int, help=f"optimiser steps (default {PretrainConfig.steps})")
    parser.add_argument("--batch-size", type=int, help=f"images per step (default {PretrainConfig.batch_size})")
    parser.add_argument("--per-type", dest="n_per_type", type=int,
                        help=f"corpus windows per signal type (default {PretrainConfig.n_per_type})")
    parser.add_argument("--representations", help="comma-separated representations (default: "
                        + ",".join(DEFAULT_REPRESENTATIONS) + ")")
    parser.add_argument("--learning-rate", type=float, help=f"peak AdamW rate (default {PretrainConfig.learning_rate})")
    parser.add_argument("--init", help="start from this backbone checkpoint instead of random weights")
    parser.add_argument("--seed", type=int, help="seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N] (default auto)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")


def run(args: argparse.Namespace) -> int:
    """Run ``biomoe pretrain``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {
        "steps": args.steps, "batch_size": args.batch_size, "n_per_type": args.n_per_type,
        "learning_rate": args.learning_rate, "init": args.init, "seed": args.seed,
        "representations": tuple(args.representations.split(",")) if args.representations else None,
    }
    config = merge_settings(PretrainConfig(), read_config_file(args.config), overrides)
    metrics = pretrain(config, args.out, device=args.device, resume=args.resume)
    holdout = metrics["holdout"]
    print(
        f"{args.out / 'backbone.pth'}: {metrics['steps']} steps on {metrics['device']}; held-out signal type "
        f"{holdout['signal_type_accuracy']:.1%}, representation {holdout['representation_accuracy']:.1%}, "
        f"rate MAE {holdout['parameter_mae']:.3f} (scaled to [0, 1])"
    )
    return 0
