"""``biomoe evaluate``: metrics of a trained run, and the fusion table.

Three jobs:

- ``biomoe evaluate --run RUN --data ROOT --split validation`` scores a run
  of :mod:`training.finetune` on a split's windows: accuracy, macro-F1,
  per-class recall, the confusion matrix, written to
  ``RUN/evaluation/<split>/report.json`` and ``confusion.png`` (with the
  settings used in ``config.json``).
- ``biomoe evaluate --bundle DIR --data ROOT`` scores a deployable bundle
  through the device's own code (:mod:`training.evaluate_bundle`), with
  ``--out`` for its ``report.json`` and ``confusion.png``.
- ``biomoe evaluate --fusion-table --data ROOT --backbone CKPT --out DIR`` 
  compares, like the paper's tables, frozen-backbone heads on every single
  (modality, representation), every fusion of representations within a
  modality, and the multimodal fusion of all of them: a head is trained on
  the training split (early stopping on carved-out training subjects) for
  each combination and several head seeds, and scored on the evaluation
  split, of the same data set or of another one (``--eval-data``: another
  device, generator setting or site, the held-out setting of the transfer
  table). Writes ``fusion_table.md``, ``fusion_table.json`` and
  ``config.json``. The embeddings come from the feature cache, so a second
  table with the same backbone costs only the heads.

The default table uses :data:`FUSION_TABLE_REPRESENTATIONS` (scalogram and
waveform) for the four modalities: 8 embeddings per window, 12,720 for the
default synthetic cohort, 5-13 min per backbone at 25-60 ms per image on two
CPU cores (``--pairs`` chooses others).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.ai4pain import LABELS, MODALITIES
from training.cache import FeatureCache, open_backbone
from training.errors import TrainingError
from training.evaluate_bundle import evaluate_bundle
from training.features import Features, calibrate
from training.finetune import (
    FinetuneConfig,
    add_common_options,
    default_cache_dir,
    fused_embeddings,
    head_features,
    load_head,
    load_windows,
    predict,
    split_stop_subjects,
    train_head,
)
from training.metrics import classification_metrics, label_metrics
from training.settings import CONFIG_NAME, merge_settings, read_config_file, resolve_device, write_json

__all__ = [
    "FUSION_TABLE_REPRESENTATIONS",
    "configure_parser",
    "evaluate_run",
    "fusion_combinations",
    "fusion_table",
    "plot_confusion_matrix",
    "run",
]

#: Representations of the default fusion table (see the module docstring for the cost).
FUSION_TABLE_REPRESENTATIONS: tuple[str, ...] = ("scalogram", "waveform")


def plot_confusion_matrix(matrix, class_names, path: str | Path, title: str = "") -> Path:
    """Write a confusion-matrix PNG: counts in the cells, colour by row share (recall)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    figure, axes = plt.subplots(figsize=(4.6, 4.0), dpi=120)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, f"{count}\n{shares[row, column]:.0%}", ha="center", va="center",
                  color="white" if shares[row, column] > 0.6 else "black", fontsize=9)
    axes.set_xticks(range(len(class_names)), class_names)
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path


def _run_config(run_dir: Path) -> tuple[FinetuneConfig, dict[str, Any]]:
    config_path = run_dir / CONFIG_NAME
    if not config_path.is_file():
        raise TrainingError(f"{run_dir} is not a finetune run (no {CONFIG_NAME}); pass the --out of biomoe finetune")
    settings = json.loads(config_path.read_text())
    known = {field.name for field in dataclasses.fields(FinetuneConfig)}
    return FinetuneConfig(**{k: v for k, v in settings.items() if k in known}), settings


def evaluate_run(run_dir, data, split: str = "validation", *, cache_dir=None, device: str = "auto") -> dict[str, Any]:
    """Score a finetune run on one split; writes ``RUN/evaluation/<split>/`` and returns the report."""
    run_dir = Path(run_dir)
    config, _ = _run_config(run_dir)
    head, saved = load_head(run_dir)
    started = time.perf_counter()
    torch_device = resolve_device(device)
    windows = load_windows(data, split, config)
    backbone_source = str(run_dir / "backbone.pth") if config.mode == "full" else config.backbone
    backbone = open_backbone(backbone_source, torch_device) if config.inputs != "scalars" else None
    cache = FeatureCache(cache_dir if cache_dir is not None else default_cache_dir())
    features, _ = head_features(cache, windows, config, backbone)
    classes = [LABELS.index(name) for name in saved["labels"]]
    predicted = np.asarray(classes)[predict(head, features).argmax(1)]
    report = label_metrics(windows.labels, predicted, classes, LABELS)  # a two-class data set: two-class metrics
    per_subject = {
        str(subject): float(np.mean(predicted[windows.subjects == subject] == windows.labels[windows.subjects == subject]))
        for subject in np.unique(windows.subjects)
    }
    report.update(run=str(run_dir), data=str(data), split=split, pairs=list(config.pairs),
                  inputs=config.inputs, normalise=config.normalise, backbone=backbone.identity if backbone else None, accuracy_per_subject=per_subject,
                  wall_seconds=round(time.perf_counter() - started, 1))
    folder = run_dir / "evaluation" / split
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / CONFIG_NAME, {"run": str(run_dir), "data": str(data), "split": split,
                                      "device": str(torch_device), "cache": str(cache.root)})
    write_json(folder / "report.json", report)
    plot_confusion_matrix(report["confusion_matrix"], report["class_names"], folder / "confusion.png",
                          title=f"{split}: accuracy {report['accuracy']:.1%}, macro-F1 {report['macro_f1']:.3f}")
    return report


def fusion_combinations(pairs) -> list[tuple[str, tuple[str, ...]]]:
    """(group, pairs) rows of the table: each pair alone, every fusion of two or more pairs of one
    modality, then all pairs together (when they span several modalities)."""
    pairs = tuple(pairs)
    rows = [("single", (pair,)) for pair in pairs]
    modalities = list(dict.fromkeys(pair.split(":")[0] for pair in pairs))
    for modality in modalities:
        own = [pair for pair in pairs if pair.split(":")[0] == modality]
        for size in range(2, len(own) + 1):
            rows.extend(("intra-modality", combo) for combo in itertools.combinations(own, size))
    if len(modalities) > 1:
        rows.append(("multimodal", pairs))
    return rows


def fusion_table(
    data,
    backbone_source: str,
    out,
    *,
    pairs=None,
    base: FinetuneConfig | None = None,
    head_seeds: int = 3,
    train_split: str = "train",
    eval_split: str = "validation",
    eval_data=None,
    cache_dir=None,
    device: str = "auto",
) -> dict[str, Any]:
    """Train and score a frozen-backbone head per combination; see the module docstring.

    ``pairs`` are ``"Modality:representation"`` items (default: the four
    modalities x :data:`FUSION_TABLE_REPRESENTATIONS`); head settings come
    from ``base``. The heads learn from ``data``'s ``train_split`` and are
    scored on ``eval_data``'s (default ``data``) ``eval_split``.

    Returns
    -------
    dict
        ``rows`` (group, pairs, accuracy / macro-F1 mean and std over head
        seeds, per-class recall), ``best_single_modality`` and
        ``multimodal_minus_best_single_modality``, also written as JSON.
    """
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if pairs is None:
        pairs = tuple(f"{m}:{r}" for m in MODALITIES for r in FUSION_TABLE_REPRESENTATIONS)
    base = base or FinetuneConfig()
    config = dataclasses.replace(base, pairs=tuple(pairs), backbone=backbone_source, mode="frozen", cv=None)
    all_pairs = config.pairs
    eval_data = data if eval_data is None else eval_data
    write_json(out / CONFIG_NAME, dict(dataclasses.asdict(config), data=str(data), train_split=train_split,
                                       eval_data=str(eval_data), eval_split=eval_split, head_seeds=head_seeds))
    torch_device = resolve_device(device)
    train = load_windows(data, train_split, config)
    held_out = load_windows(eval_data, eval_split, config)
    cache = FeatureCache(cache_dir if cache_dir is not None else default_cache_dir())
    backbone = open_backbone(backbone_source, torch_device)
    train_features, eval_features = (
        calibrate(Features(embeddings, embeddings[:, 0, :0]), windows, config.normalise, config.baseline_windows).embeddings
        for embeddings, windows in ((fused_embeddings(cache, train, config, backbone), train),
                                    (fused_embeddings(cache, held_out, config, backbone), held_out))
    )
    fit, stop = split_stop_subjects(train.subjects, config.stop_fraction, config.seed)

    from tqdm import tqdm

    rows = []
    for group, combination in tqdm(fusion_combinations(all_pairs), desc="fusion table", unit="row"):
        columns = [all_pairs.index(pair) for pair in combination]
        scores = []
        for seed in range(head_seeds):
            head, _ = train_head(train_features[fit][:, columns], train.labels[fit], train_features[stop][:, columns],
                                 train.labels[stop], config, seed=config.seed + seed)
            predictions = predict(head, np.ascontiguousarray(eval_features[:, columns])).argmax(1)
            scores.append(classification_metrics(held_out.labels, predictions, LABELS))
        rows.append({
            "group": group,
            "pairs": list(combination),
            "modalities": sorted({pair.split(":")[0] for pair in combination}),
            "accuracy_mean": float(np.mean([s["accuracy"] for s in scores])),
            "accuracy_std": float(np.std([s["accuracy"] for s in scores])),
            "macro_f1_mean": float(np.mean([s["macro_f1"] for s in scores])),
            "macro_f1_std": float(np.std([s["macro_f1"] for s in scores])),
            "per_class_recall_mean": {name: float(np.mean([s["per_class_recall"][name] for s in scores]))
                                      for name in LABELS},
        })
    single_modality = [row for row in rows if len(row["modalities"]) == 1]
    best_single = max(single_modality, key=lambda row: row["macro_f1_mean"])
    multimodal = next((row for row in rows if row["group"] == "multimodal"), None)
    table = {
        "backbone": backbone_source,
        "backbone_identity": backbone.identity,
        "train_split": train_split,
        "eval_data": str(eval_data),
        "eval_split": eval_split,
        "n_train_windows": len(train),
        "n_eval_windows": len(held_out),
        "head_seeds": head_seeds,
        "rows": rows,
        "best_single_modality": best_single,
        "multimodal_minus_best_single_modality": (
            multimodal["macro_f1_mean"] - best_single["macro_f1_mean"] if multimodal else None
        ),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out / "fusion_table.json", table)
    (out / "fusion_table.md").write_text(_markdown(table))
    return table


def _markdown(table: dict[str, Any]) -> str:
    lines = [
        f"Fusion table: backbone `{table['backbone']}`, frozen; heads trained on `{table['train_split']}` "
        f"({table['n_train_windows']} windows), scored on `{table['eval_split']}` of `{table['eval_data']}` "
        f"({table['n_eval_windows']} windows); mean +- std over {table['head_seeds']} head seeds.",
        "",
        "| group | pairs | accuracy | macro-F1 | recall No / Low / High |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in table["rows"]:
        recall = " / ".join(f"{row['per_class_recall_mean'][name]:.2f}" for name in LABELS)
        lines.append(
            f"| {row['group']} | {', '.join(row['pairs'])} | {row['accuracy_mean']:.3f} +- {row['accuracy_std']:.3f} "
            f"| {row['macro_f1_mean']:.3f} +- {row['macro_f1_std']:.3f} | {recall} |"
        )
    best = table["best_single_modality"]
    lines += ["", f"Best single modality: {', '.join(best['pairs'])} (macro-F1 {best['macro_f1_mean']:.3f})."]
    if table["multimodal_minus_best_single_modality"] is not None:
        lines.append(f"Multimodal minus best single modality: {table['multimodal_minus_best_single_modality']:+.3f} macro-F1.")
    return "\n".join(lines) + "\n"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``biomoe evaluate``."""
    parser.add_argument("--data", required=True, type=Path, help="AI4PAIN-layout data set folder")
    parser.add_argument("--run", type=Path, help="finetune run folder to evaluate")
    parser.add_argument("--bundle", type=Path, help="deployable bundle folder to evaluate, through the device's code "
                        "(its calibration windows are not scored, as on the device)")
    parser.add_argument("--rest-windows", action="store_true",
                        help="bundle: also score the data's REST segments as No Pain (the minutes after pain ends)")
    parser.add_argument("--split", default="validation", help="split to score (default validation)")
    parser.add_argument("--fusion-table", action="store_true", help="build the fusion table instead of scoring a run")
    parser.add_argument("--backbone", help="fusion table: backbone checkpoint or random[:SEED]")
    parser.add_argument("--out", type=Path, help="fusion table or bundle: output folder")
    parser.add_argument("--pairs", help="fusion table: comma-separated MODALITY:REPRESENTATION (default: the four "
                        "modalities x " + ",".join(FUSION_TABLE_REPRESENTATIONS) + ")")
    parser.add_argument("--config", type=Path, help="fusion table: TOML/JSON FinetuneConfig settings for the heads")
    parser.add_argument("--head-seeds", type=int, default=3, help="fusion table: heads per row (default 3)")
    parser.add_argument("--train-split", default="train", help="fusion table: split the heads learn from")
    parser.add_argument("--eval-data", type=Path, metavar="ROOT",
                        help="fusion table: score on --split of this data set instead of --data's (another device, "
                             "generator setting or site)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the report (or the fusion table) to this JSON file; the last line printed "
                             "is the path of what was written")
    add_common_options(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``biomoe evaluate``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fusion_table:
        if not args.backbone or not args.out:
            raise ValueError("--fusion-table needs --backbone (checkpoint or random[:SEED]) and --out DIR")
        pairs = tuple(args.pairs.split(",")) if args.pairs else None
        base = merge_settings(FinetuneConfig(), read_config_file(args.config), {})
        table = fusion_table(args.data, args.backbone, args.out, pairs=pairs, base=base, head_seeds=args.head_seeds,
                             train_split=args.train_split, eval_split=args.split, eval_data=args.eval_data,
                             cache_dir=args.cache,
                             device=args.device)
        print((args.out / "fusion_table.md").read_text(), end="")
        print(f"({table['wall_seconds']:.0f} s)")
        written = _write_json_copy(args.json, table) or args.out / "fusion_table.json"
        print(f"wrote {written}")
        return 0
    if args.bundle:
        report = evaluate_bundle(args.bundle, args.data, args.split, rest_windows=args.rest_windows)
        where = args.out or args.bundle
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            write_json(args.out / "report.json", report)
            plot_confusion_matrix(report["confusion_matrix"], report["class_names"], args.out / "confusion.png",
                                  title=f"{args.split}: accuracy {report['accuracy']:.1%}, "
                                        f"macro-F1 {report['macro_f1']:.3f}")
        _print_scores(where, report, f"{report['windows_scored']} windows ")
        written = _write_json_copy(args.json, report) or (args.out / "report.json" if args.out else None)
        if written:
            print(f"wrote {written}")
        return 0
    if not args.run:
        raise ValueError("pass --run RUN_DIR (a biomoe finetune --out), --bundle DIR or --fusion-table")
    report = evaluate_run(args.run, args.data, args.split, cache_dir=args.cache, device=args.device)
    _print_scores(args.run / "evaluation" / args.split, report)
    written = _write_json_copy(args.json, report) or args.run / "evaluation" / args.split / "report.json"
    print(f"wrote {written}")
    return 0


def _print_scores(where, report: dict[str, Any], counted: str = "") -> None:
    recall = ", ".join(f"{name} {value:.2f}" for name, value in report["per_class_recall"].items())
    print(f"{where}: {counted}accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}, recall {recall}")


def _write_json_copy(path: Path | None, content: dict[str, Any]) -> Path | None:
    """``--json FILE``: the report there as well (its folder made); None without the flag."""
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json(path, content)
