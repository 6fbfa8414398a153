"""``biomoe pretrain``: multi-task pretraining of the backbone on generated biosignal images.

The backbone learns from the streaming corpus of
:mod:`training.pretrain_corpus`: the signal type and the representation
(cross-entropy), the generating rate scaled to [0, 1] (mean squared error,
weighted by ``parameter_weight``) and the planted events (skin-conductance
responses, heart-rate steps, pulse-amplitude falls, breathing pauses):
presence (binary cross-entropy, on the windows whose signal type carries the
event), onset and amplitude (mean squared error where present, weighted by
``event_weight``). AdamW, linear warm-up then cosine decay. The result is a
backbone checkpoint in the release's format (``backbone.pth``, loadable with
:func:`training.models.load_backbone`) and, separately, the task heads
(``heads.pt``), with the training state for resuming.

The same command runs in one process or as every rank of a ``torchrun``
launch (:mod:`training.distributed`): DistributedDataParallel, each rank
training on its own share of every step's images
(:mod:`training.pretrain_sampler`), the forward passes of ``--batch-size``
images accumulated to the ``global_batch`` of a step, bf16 autocast on CUDA,
losses and held-out metrics summed over the ranks, files and the progress
bar on rank 0 only. The state holds the step, weights and optimiser, nothing
per rank, so a run resumes on any number of processes.

Run folder::

    OUT/config.json       every setting (image spec included), world size and batch per rank
    OUT/state.pt          last training state (resume with --resume)
    OUT/backbone.pth      the pretrained backbone, release format
    OUT/heads.pt          the task heads
    OUT/metrics.json      losses and held-out accuracy / error per task

Examples
--------
``biomoe pretrain --out runs/pretrain`` then, after an interruption,
``biomoe pretrain --out runs/pretrain --resume``; on 8 GPUs,
``torchrun --nproc-per-node 8 --no-python biomoe pretrain --out runs/big
--corpus-size 4000000 --global-batch 1024 --trainable all``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from edge.representations import RepresentationSpec
from training.distributed import Ranks, distributed
from training.errors import TrainingError
from training.models import load_backbone, save_backbone, tiny_biomoe
from training.pretrain_corpus import EVENTS, SIGNAL_TYPES, StreamingCorpus
from training.pretrain_real import RealViews, nt_xent
from training.pretrain_sampler import StepSampler
from training.settings import (
    CONFIG_NAME,
    DEFAULT_REPRESENTATIONS,
    DEFAULT_SPEC,
    TRAINABLE_PREFIXES,
    merge_settings,
    read_config_file,
    set_trainable,
    write_json,
)

__all__ = ["PretrainConfig", "PretrainHeads", "configure_parser", "pretrain", "run"]

_LOSSES = ("loss", "signal_type", "representation", "parameter", "event_presence", "event_onset", "event_amplitude",
           "contrastive")
_PROJECTION_DIM = 128  # the contrastive objective's projection of the embedding


@dataclass(frozen=True)
class PretrainConfig:
    """Every setting of a pretraining run (saved as ``config.json``).

    Parameters
    ----------
    representations : tuple of str
        Representations of the corpus images (the representation head's classes).
    corpus_size : int
        Training images of the streaming corpus (made on demand, never held in
        memory: thousands to millions).
    holdout_size : int
        Images after the training ones (no window shared) that measure the tasks.
    steps : int
        Optimiser steps.
    global_batch : int
        Images per optimiser step, over all ranks and accumulated forward passes.
    learning_rate, weight_decay : float
        AdamW settings; the rate warms up linearly over ``warmup_steps``, then
        decays along a cosine to 5 % of its peak.
    parameter_weight : float
        Weight of the rate regression loss against the two cross-entropies.
    event_weight : float
        Weight of the event onset and amplitude regression losses.
    checkpoint_every : int
        Steps between saves of ``state.pt``.
    real : tuple of str
        AI4PAIN-layout folders of unlabelled real recordings for the
        contrastive objective (:mod:`training.pretrain_real`); empty: none.
    real_batch : int
        Real windows per optimiser step (each in two views), over all ranks.
    real_weight : float
        Weight of the contrastive loss against the generated corpus's tasks.
    seed : int
        Seeds the corpus, the initial weights and the image order.
    init : str or None
        Backbone checkpoint to start from; None for random initial weights.
    trainable : {"late", "all"}
        "late" trains only the last stage of each expert, the gate and the
        output norm (the earlier layers keep their initial weights): the
        backward pass through the high-resolution early stages costs most of
        a CPU step, so this is the default that fits a CPU budget. "all"
        trains every layer (use it on a GPU).
    representation_spec : dict
        :class:`~edge.representations.RepresentationSpec` settings (the key
        bundle manifests and head files use too).
    """

    representations: tuple[str, ...] = DEFAULT_REPRESENTATIONS
    corpus_size: int = 2880
    holdout_size: int = 288
    steps: int = 200
    global_batch: int = 16
    learning_rate: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 30
    parameter_weight: float = 10.0
    event_weight: float = 10.0
    checkpoint_every: int = 50
    real: tuple[str, ...] = ()
    real_batch: int = 16
    real_weight: float = 1.0
    seed: int = 0
    init: str | None = None
    trainable: str = "late"
    representation_spec: dict[str, Any] = field(default_factory=DEFAULT_SPEC.to_dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "real", tuple(str(root) for root in self.real))
        for name in ("corpus_size", "holdout_size", "steps", "global_batch", "checkpoint_every", "real_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
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

    def corpora(self) -> tuple[StreamingCorpus, StreamingCorpus]:
        """The training corpus and the hold-out one, which starts at the next window after it."""
        n_reps = len(self.representations)
        train = StreamingCorpus(self.corpus_size, self.representations, self.spec, self.seed)
        first = -(-self.corpus_size // n_reps) * n_reps
        return train, StreamingCorpus(self.holdout_size, self.representations, self.spec, self.seed, first=first)


class PretrainHeads(nn.Module):
    """Heads on the 192-D embedding: signal type, representation, rate, and per event
    of :data:`~training.pretrain_corpus.EVENTS` presence (logit), onset and amplitude."""

    def __init__(self, embedding_dim: int, n_signal_types: int, n_representations: int, n_events: int = len(EVENTS),
                 projection_dim: int = 0):
        super().__init__()
        self.n_events = n_events
        self.projection = None  # the contrastive objective's head, when it is trained
        if projection_dim:
            self.projection = nn.Sequential(nn.Linear(embedding_dim, embedding_dim), nn.ReLU(),
                                            nn.Linear(embedding_dim, projection_dim))
        self.signal_type = nn.Sequential(nn.ELU(), nn.Linear(embedding_dim, n_signal_types))
        self.representation = nn.Sequential(nn.ELU(), nn.Linear(embedding_dim, n_representations))
        self.parameter = nn.Sequential(nn.ELU(), nn.Linear(embedding_dim, 1))
        self.event = nn.Sequential(nn.ELU(), nn.Linear(embedding_dim, 3 * n_events))

    def forward(self, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        event = self.event(embeddings).view(-1, 3, self.n_events)
        projection = {} if self.projection is None else {"projection": self.projection(embeddings)}
        return {
            **projection,
            "signal_type": self.signal_type(embeddings),
            "representation": self.representation(embeddings),
            "parameter": self.parameter(embeddings)[:, 0],
            "event_presence": event[:, 0],
            "event_onset": event[:, 1],
            "event_amplitude": event[:, 2],
        }


class _Pretrainer(nn.Module):
    """Backbone and heads as one module (what DistributedDataParallel wraps)."""

    def __init__(self, backbone: nn.Module, heads: PretrainHeads):
        super().__init__()
        self.backbone, self.heads = backbone, heads

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.backbone(images))


def _images(batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """uint8 (B, S, S, 3) -> float32 (B, 3, S, S) in [0, 1] on ``device`` (as ``to_model_input``)."""
    images = batch["image"].to(device, non_blocking=True)
    return images.permute(0, 3, 1, 2).float().mul_(1 / 255)


def _masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries where ``mask`` is 1 (0 when there are none)."""
    return ((prediction - target) ** 2 * mask).sum() / mask.sum().clamp(min=1)


def _losses(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], config: PretrainConfig):
    """Every task's loss of one forward pass, and their weighted sum (``loss``)."""
    outputs = {name: value.float() for name, value in outputs.items()}
    applicable, present = batch["event_applicable"], batch["event_present"]
    presence = F.binary_cross_entropy_with_logits(outputs["event_presence"], present, reduction="none")
    losses = {
        "signal_type": F.cross_entropy(outputs["signal_type"], batch["signal_type"]),
        "representation": F.cross_entropy(outputs["representation"], batch["representation"]),
        "parameter": F.mse_loss(outputs["parameter"], batch["parameter"]),
        "event_presence": (presence * applicable).sum() / applicable.sum().clamp(min=1),
        "event_onset": _masked_mse(outputs["event_onset"], batch["event_onset"], present),
        "event_amplitude": _masked_mse(outputs["event_amplitude"], batch["event_amplitude"], present),
    }
    losses["loss"] = (
        losses["signal_type"] + losses["representation"] + config.parameter_weight * losses["parameter"]
        + losses["event_presence"] + config.event_weight * (losses["event_onset"] + losses["event_amplitude"])
    )
    return losses


def _learning_rate_factor(config: PretrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _loader(corpus: StreamingCorpus, batches, workers: int, device: torch.device) -> DataLoader:
    return DataLoader(corpus, batch_sampler=batches, num_workers=workers, pin_memory=device.type == "cuda")


@torch.no_grad()
def _evaluate(model: _Pretrainer, corpus: StreamingCorpus, batch_size: int, ranks: Ranks,
              workers: int) -> dict[str, Any]:
    """Held-out accuracy and errors per task, this rank's share summed over the ranks."""
    model.eval()
    share = np.arange(ranks.rank, len(corpus), ranks.world_size)
    batches = [share[start : start + batch_size].tolist() for start in range(0, len(share), batch_size)]
    n_events = len(EVENTS)
    # images, type hits, representation hits, sum |rate error|, sum rate error^2, sum rate, sum rate^2
    totals = torch.zeros(7, dtype=torch.float64)
    # per event: applicable, presence hits, present, sum |onset error|, sum |amplitude error|
    events = torch.zeros(5, n_events, dtype=torch.float64)
    for batch in _loader(corpus, batches, workers, ranks.device):
        with _autocast(ranks.device):
            outputs = model(_images(batch, ranks.device))
        outputs = {name: value.float().cpu() for name, value in outputs.items()}
        error = outputs["parameter"] - batch["parameter"]
        totals += torch.tensor([
            len(error),
            (outputs["signal_type"].argmax(1) == batch["signal_type"]).sum(),
            (outputs["representation"].argmax(1) == batch["representation"]).sum(),
            error.abs().sum(), (error**2).sum(), batch["parameter"].sum(), (batch["parameter"] ** 2).sum(),
        ], dtype=torch.float64)
        applicable, present = batch["event_applicable"], batch["event_present"]
        hits = ((outputs["event_presence"] > 0).float() == present).float() * applicable
        events += torch.stack([
            applicable.sum(0), hits.sum(0), present.sum(0),
            ((outputs["event_onset"] - batch["event_onset"]).abs() * present).sum(0),
            ((outputs["event_amplitude"] - batch["event_amplitude"]).abs() * present).sum(0),
        ]).double()
    packed = ranks.all_reduce_sum(torch.cat([totals, events.ravel()]).to(ranks.device)).cpu()
    totals, events = packed[:7].tolist(), packed[7:].view(5, n_events).tolist()
    n, type_hits, rep_hits, abs_error, squared_error, rate_sum, rate_squares = totals
    variance = rate_squares / n - (rate_sum / n) ** 2
    duration_s = corpus.spec.n_samples / corpus.spec.sampling_rate
    ratio = lambda a, b: a / b if b else None  # noqa: E731
    return {
        "images": int(n),
        "signal_type_accuracy": type_hits / n,
        "representation_accuracy": rep_hits / n,
        "parameter_mae": abs_error / n,
        "parameter_r2": 1 - squared_error / n / variance if variance > 0 else None,
        "events": {
            name: {
                "windows": int(events[0][k]),
                "present": int(events[2][k]),
                "presence_accuracy": ratio(events[1][k], events[0][k]),
                "onset_mae_s": ratio(events[3][k] * duration_s, events[2][k]),
                "amplitude_mae": ratio(events[4][k], events[2][k]),
            }
            for k, name in enumerate(EVENTS)
        },
    }


def _check_run_folder(out: Path, settings: dict[str, Any], resume: bool) -> None:
    """Refuse to overwrite a run, or to resume it with other settings (only ``steps`` may grow)."""
    config_path = out / CONFIG_NAME
    if not config_path.is_file():
        return
    if not resume:
        raise TrainingError(f"{out} already holds a pretraining run; pass --resume to continue it or choose another --out")
    saved = json.loads(config_path.read_text())
    changed = sorted(key for key in settings if saved.get(key) != settings[key])
    if changed and changed != ["steps"]:
        raise TrainingError(
            f"--resume with other settings than {config_path} ({changed}); only --steps may change "
            "(to extend a run); use a new --out"
        )


def pretrain(config: PretrainConfig, out: str | Path, *, device: str = "auto", resume: bool = False,
             batch_size: int | None = None, workers: int = 0) -> dict[str, Any]:
    """Run (or resume) multi-task pretraining, alone or as a rank of a torchrun launch.

    Parameters
    ----------
    config : PretrainConfig
    out : path-like
        Run folder (see the module docstring).
    device : str, default "auto"
        "auto" (CUDA if available), "cpu" or "cuda[:N]" (under torchrun, GPU
        ``LOCAL_RANK``).
    resume : bool, default False
        Continue from ``out/state.pt``, on any number of processes. The saved
        config must equal ``config`` except for ``steps``, which may grow to
        extend a finished run (the cosine schedule is then stretched to the
        new length, a warm restart). Without it an existing run in ``out`` is
        an error.
    batch_size : int, optional
        Images per forward pass on each rank; default ``global_batch`` divided
        by the number of processes (no accumulation).
    workers : int, default 0
        DataLoader worker processes per rank making the images (0: in the
        training process).

    Returns
    -------
    dict
        The metrics written to ``metrics.json`` (on every rank).
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {batch_size}")
    if workers < 0:
        raise ValueError(f"--workers must be >= 0; got {workers}")
    with distributed(device) as ranks:
        return _pretrain(config, Path(out), ranks, resume, batch_size, workers)


def _pretrain(config: PretrainConfig, out: Path, ranks: Ranks, resume: bool, batch_size: int | None,
              workers: int) -> dict[str, Any]:
    settings = json.loads(json.dumps(dataclasses.asdict(config)))
    _check_run_folder(out, settings, resume)
    if batch_size is None:
        batch_size = max(1, config.global_batch // ranks.world_size)
    state_path = out / "state.pt"
    step, history = 0, []
    state = torch.load(state_path, map_location="cpu", weights_only=False) if resume and state_path.is_file() else None
    if state is not None:
        step, history = state["step"], state["history"]
    sampler = StepSampler(config.corpus_size, global_batch=config.global_batch, batch_size=batch_size,
                          rank=ranks.rank, world_size=ranks.world_size, seed=config.seed, start_step=step,
                          steps=config.steps)
    ranks.barrier()  # every rank has read the folder before rank 0 writes to it
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / CONFIG_NAME, {**settings, "world_size": ranks.world_size, "batch_size_per_rank": batch_size,
                                       "accumulation_steps": sampler.accumulation})
    print(f"pretrain: rank {ranks.rank} of {ranks.world_size} on {ranks.device}, {batch_size} images per forward "
          f"x {sampler.accumulation} accumulated, from step {step}", file=sys.stderr)
    started = time.perf_counter()

    torch.manual_seed(config.seed)
    backbone = load_backbone(config.init) if config.init else tiny_biomoe()
    set_trainable(backbone, config.trainable)
    heads = PretrainHeads(backbone.num_features, len(SIGNAL_TYPES), len(config.representations),
                          projection_dim=_PROJECTION_DIM if config.real else 0)
    model = _Pretrainer(backbone, heads).to(ranks.device)
    no_decay = backbone.no_weight_decay()
    trained = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
    decayed = [p for n, p in trained if n not in no_decay and p.ndim > 1] + list(heads.parameters())
    others = [p for n, p in trained if n in no_decay or p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": config.weight_decay}, {"params": others, "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _learning_rate_factor(config))
    if state is not None:
        backbone.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    wrapped = model
    if ranks.joined:
        wrapped = DistributedDataParallel(model, device_ids=[ranks.device] if ranks.device.type == "cuda" else None)
    clipped = [p for _, p in trained] + list(heads.parameters())

    def save_state() -> None:
        partial = state_path.with_name(state_path.name + ".partial")
        torch.save({"model": backbone.state_dict(), "heads": heads.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step, "history": history}, partial)
        partial.replace(state_path)

    from tqdm import tqdm

    train_corpus, holdout_corpus = config.corpora()
    batches = iter(_loader(train_corpus, sampler, workers, ranks.device))
    real_pairs = _real_pairs(config, ranks, step, workers) if config.real else None
    bar = tqdm(total=config.steps, initial=step, desc="pretrain", unit="step", disable=not ranks.main)
    while step < config.steps:
        wrapped.train()
        optimizer.zero_grad(set_to_none=True)
        totals = torch.zeros(len(_LOSSES), device=ranks.device)
        for micro in range(sampler.accumulation):
            batch = {name: value.to(ranks.device, non_blocking=True) for name, value in next(batches).items()}
            last = micro == sampler.accumulation - 1
            images = _images(batch, ranks.device)
            pairs = next(real_pairs) if last and real_pairs is not None else None
            if pairs is not None:  # one forward pass for both objectives: what DistributedDataParallel expects
                images = torch.cat([images, _images({"image": pairs["view_a"]}, ranks.device),
                                    _images({"image": pairs["view_b"]}, ranks.device)])
            with nullcontext() if last or not ranks.joined else wrapped.no_sync():
                with _autocast(ranks.device):
                    outputs = wrapped(images)
                n = len(batch["image"])
                losses = _losses({name: value[:n] for name, value in outputs.items()}, batch, config)
                loss = losses["loss"] / sampler.accumulation
                if pairs is not None:
                    losses["contrastive"] = nt_xent(*outputs["projection"][n:].chunk(2))
                    loss = loss + config.real_weight * losses["contrastive"]
                loss.backward()
            totals += torch.stack([losses.get(name, torch.zeros((), device=ranks.device)).detach()
                                   * (1 if name == "contrastive" else 1 / sampler.accumulation) for name in _LOSSES])
        torch.nn.utils.clip_grad_norm_(clipped, 5.0)
        optimizer.step()
        scheduler.step()
        step += 1
        means = (ranks.all_reduce_sum(totals) / ranks.world_size).tolist()
        history.append({"step": step, **dict(zip(_LOSSES, means))})
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", rate_mse=f"{history[-1]['parameter']:.4f}")
        if ranks.main and (step % config.checkpoint_every == 0 or step == config.steps):
            save_state()
    bar.close()

    if ranks.main:
        save_backbone(copy.deepcopy(backbone).cpu(), out / "backbone.pth")
        torch.save({"heads": heads.state_dict(), "signal_types": SIGNAL_TYPES, "events": EVENTS,
                    "representations": config.representations}, out / "heads.pt")
    ranks.broadcast_from_main(list(model.buffers()))  # rank 0's BatchNorm statistics, the ones saved
    last = history[-min(len(history), 20):] if history else []
    metrics = {
        "steps": step,
        "device": str(ranks.device),
        "world_size": ranks.world_size,
        "global_batch": config.global_batch,
        "wall_seconds_this_session": round(time.perf_counter() - started, 1),
        "final_train_loss_mean_last_20": float(np.mean([h["loss"] for h in last])) if last else None,
        "holdout": _evaluate(model, holdout_corpus, batch_size, ranks, workers),
        "history": history,
    }
    if ranks.main:
        write_json(out / "metrics.json", metrics)
    return metrics


def _real_pairs(config: PretrainConfig, ranks: Ranks, step: int, workers: int):
    """Batches of view pairs of the real recordings, this rank's share of ``real_batch`` per step, from ``step`` on."""
    real = RealViews(config.real, config.representations, config.spec, config.seed)
    if config.real_batch % ranks.world_size or config.real_batch // ranks.world_size < 2:
        raise TrainingError(f"real_batch ({config.real_batch}) must be a multiple of the {ranks.world_size} "
                            "processes with at least 2 windows on each (the contrastive loss compares them)")
    sampler = StepSampler(len(real), global_batch=config.real_batch, batch_size=config.real_batch // ranks.world_size,
                          rank=ranks.rank, world_size=ranks.world_size, seed=config.seed, start_step=step,
                          steps=config.steps)
    return iter(_loader(real, sampler, workers, ranks.device))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``biomoe pretrain``."""
    parser.add_argument("--out", required=True, type=Path, help="run folder (backbone.pth, heads.pt, config.json, ...)")
    parser.add_argument("--config", type=Path, help="TOML or JSON file of PretrainConfig settings")
    parser.add_argument("--steps", type=int, help=f"optimiser steps (default {PretrainConfig.steps})")
    parser.add_argument("--global-batch", type=int,
                        help=f"images per optimiser step over all processes (default {PretrainConfig.global_batch})")
    parser.add_argument("--batch-size", type=int, help="images per forward pass on each process; smaller than "
                        "--global-batch / processes accumulates gradients (default: --global-batch / processes)")
    parser.add_argument("--corpus-size", type=int,
                        help=f"training images of the streaming corpus (default {PretrainConfig.corpus_size})")
    parser.add_argument("--holdout-size", type=int,
                        help=f"held-out images measuring the tasks (default {PretrainConfig.holdout_size})")
    parser.add_argument("--representations", help="comma-separated representations (default: "
                        + ",".join(DEFAULT_REPRESENTATIONS) + ")")
    parser.add_argument("--learning-rate", type=float, help=f"peak AdamW rate (default {PretrainConfig.learning_rate})")
    parser.add_argument("--trainable", choices=tuple(TRAINABLE_PREFIXES),
                        help=f"layers to train: late (CPU) or all (GPU) (default {PretrainConfig.trainable})")
    parser.add_argument("--init", help="start from this backbone checkpoint instead of random weights")
    parser.add_argument("--real", action="append", metavar="ROOT",
                        help="AI4PAIN-layout folder of unlabelled real recordings for a contrastive objective "
                             "(repeatable; labels are ignored)")
    parser.add_argument("--real-batch", type=int,
                        help=f"real windows per step, each in two views (default {PretrainConfig.real_batch})")
    parser.add_argument("--real-weight", type=float,
                        help=f"weight of the contrastive loss (default {PretrainConfig.real_weight})")
    parser.add_argument("--seed", type=int, help="seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N] (default auto)")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader processes per rank making the images (default 0: the training process)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out (on any number of processes)")


def run(args: argparse.Namespace) -> int:
    """Run ``biomoe pretrain``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {
        "steps": args.steps, "global_batch": args.global_batch, "corpus_size": args.corpus_size,
        "holdout_size": args.holdout_size, "learning_rate": args.learning_rate, "trainable": args.trainable,
        "init": args.init, "seed": args.seed, "real": tuple(args.real) if args.real else None,
        "real_batch": args.real_batch, "real_weight": args.real_weight,
        "representations": tuple(args.representations.split(",")) if args.representations else None,
    }
    config = merge_settings(PretrainConfig(), read_config_file(args.config), overrides)
    metrics = pretrain(config, args.out, device=args.device, resume=args.resume, batch_size=args.batch_size,
                       workers=args.workers)
    holdout = metrics["holdout"]
    if os.environ.get("RANK", "0") == "0":
        scr = holdout["events"]["scr"]["presence_accuracy"]
        print(
            f"{args.out / 'backbone.pth'}: {metrics['steps']} steps on {metrics['world_size']} x {metrics['device']}; "
            f"held-out signal type {holdout['signal_type_accuracy']:.1%}, representation "
            f"{holdout['representation_accuracy']:.1%}, rate MAE {holdout['parameter_mae']:.3f} (scaled to [0, 1]), "
            f"SCR presence {'-' if scr is None else f'{scr:.1%}'}"
        )
    return 0
