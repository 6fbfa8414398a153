"""A calibrated head on a bundle's own backbone: ``python -m quantize.calibrated_head``.

Trains a fusion head that reads the bundle's embeddings *and* the windows'
physiological scalars (:mod:`edge.scalars`), both relative to each subject's
rest baseline (:mod:`edge.calibration`), and writes a new bundle with the
same (already quantized, already parity-checked) backbone graph and the new
head graph. The embeddings come from the bundle's own backbone through
:mod:`edge.backends`, the images from the monitor's :class:`~edge.bundle_images.FusionImages`,
so the head is trained on exactly what the device computes::

    python -m quantize.calibrated_head --bundle edge/bundles/default --data COHORT --out bundles/calibrated

The training split trains the head (early stopping on a share of its
subjects), the validation split is scored and its macro-F1 recorded in the
manifest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from edge.backends import SCALARS_INPUT, create_backend
from edge.bundle import load_bundle, save_bundle
from quantize.graphs import HEAD_INPUT, HEAD_OUTPUT, ProbabilityHead, export_onnx
from quantize.tflite import convert_head_tflite
from training.ai4pain import LABELS, load_split
from training.features import DEVICE_CHANNELS, Features, bundle_embeddings, calibrate, window_scalar_features
from training.finetune import FinetuneConfig, data_classes, predict, split_stop_subjects, train_head
from training.metrics import classification_metrics

__all__ = ["train_calibrated_head", "main"]

logger = logging.getLogger(__name__)


def train_calibrated_head(bundle_path, data, *, config: FinetuneConfig | None = None, cache: Path | None = None):
    """Head, its metrics and scalar names, trained on ``data/train`` and scored on ``data/validation``."""
    config = config or FinetuneConfig()
    bundle = load_bundle(bundle_path)
    backend = create_backend(bundle)
    modalities = tuple(m for m, channel in DEVICE_CHANNELS.items() if channel in bundle.channel_names)
    splits = {}
    for split in ("train", "validation"):
        windows = load_split(data, split, modalities, rest_as_no_pain=config.rest_windows)
        embeddings = bundle_embeddings(bundle, backend, windows, None if cache is None else cache / f"{split}_embeddings.npy")
        scalars, names = window_scalar_features(windows)
        if config.inputs == "embeddings":
            scalars, names = scalars[:, :0], ()
        if config.inputs == "scalars":
            embeddings = embeddings[:, :0]
        splits[split] = (windows, calibrate(Features(embeddings, scalars), windows, config.normalise, config.baseline_windows))
    train, features = splits["train"]
    classes = data_classes(train.labels)
    labels = np.searchsorted(classes, train.labels)
    fit, stop = split_stop_subjects(train.subjects, config.stop_fraction, config.seed)
    head, info = train_head(features.take(fit), labels[fit], features.take(stop), labels[stop], config,
                            num_classes=len(classes))
    validation, validation_features = splits["validation"]
    predicted = classes[predict(head, validation_features).argmax(1)]
    metrics = classification_metrics(validation.labels, predicted, LABELS)
    metrics["training"] = info
    return head, metrics, names, [LABELS[c] for c in classes], bundle, validation_features


def head_parity(head, bundle_path: Path, features: Features) -> dict:
    """The bundle's exported head, run by the device's backend, against PyTorch on the same calibrated features."""
    with create_backend(load_bundle(bundle_path)) as backend:
        exported = backend.classify(features.embeddings, features.scalars if features.scalars.shape[1] else None)
    reference = predict(head, features)
    return {"windows": len(features), "max_abs_diff_probability": float(np.abs(exported - reference).max()),
            "class_agreement": float(np.mean(exported.argmax(1) == reference.argmax(1)))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantize.calibrated_head", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, type=Path, help="bundle whose backbone the head reads")
    parser.add_argument("--data", required=True, type=Path, help="AI4PAIN-layout data set with train/ and validation/")
    parser.add_argument("--out", required=True, type=Path, help="folder of the new bundle")
    parser.add_argument("--inputs", default="both", choices=("embeddings", "scalars", "both"))
    parser.add_argument("--normalise", default="baseline", choices=("none", "baseline", "baseline-scalars"),
                        help="baseline (default): scalars and embeddings minus the patient's first rest minute; "
                             "baseline-scalars: the scalars only")
    parser.add_argument("--rest-windows", action="store_true",
                        help="also train (and score) on the data's REST segments as No Pain windows: the minutes "
                             "after pain ends, which a bedside monitor must call No Pain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, help="folder to keep the computed embeddings in (reused when present)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(args.seed)
    config = dataclasses.replace(FinetuneConfig(), inputs=args.inputs, normalise=args.normalise, seed=args.seed,
                                 rest_windows=args.rest_windows)
    head, metrics, names, labels, bundle, validation = train_calibrated_head(args.bundle, args.data, config=config,
                                                                             cache=args.cache)
    with tempfile.TemporaryDirectory() as workdir:
        head_file = bundle.graphs["head"].file
        head_path = Path(workdir) / head_file
        manifest = json.loads(json.dumps(bundle.manifest))
        manifest.pop("files", None)
        if head_file.endswith(".tflite"):  # one window per call, the converter's tensor names
            graph = convert_head_tflite(head, head_path)
            manifest["graphs"]["head"]["inputs"][0].update(name=graph["input"], shape=graph["input_shape"])
            manifest["graphs"]["head"]["outputs"][0].update(name=graph["output"], shape=graph["output_shape"])
        else:
            example = (torch.zeros(2, head.num_embeddings, head.embedding_dim), torch.zeros(2, head.num_scalars))
            export_onnx(ProbabilityHead(head), example, head_path, [HEAD_INPUT, SCALARS_INPUT], HEAD_OUTPUT)
            manifest["graphs"]["head"]["outputs"][0]["shape"] = ["n", len(labels)]
        manifest["labels"] = labels
        manifest["scalars"] = list(names)
        calibrated = args.normalise.startswith("baseline")
        manifest["calibration"] = {"method": "baseline" if calibrated else "none",
                                   "windows": config.baseline_windows if calibrated else 0,
                                   "embeddings": args.normalise == "baseline"}
        retrained = "; head retrained by quantize.calibrated_head"  # said once, however often a head is retrained
        manifest["name"] = bundle.name.removesuffix("-calibrated") + "-calibrated"
        manifest["description"] = (f"{bundle.manifest.get('description', '').split(retrained)[0]}{retrained} "
                                   f"on {args.inputs}, calibration {args.normalise}"
                                   + (", REST windows as No Pain" if args.rest_windows else ""))
        files = {name: bundle.path / name for name in bundle.files if name != head_file}
        files[head_file] = head_path
        staged = save_bundle(Path(workdir) / "staged", manifest, files)
        parity = dict(manifest.get("parity") or {})
        parity[f"head_{head_path.suffix[1:]}_vs_pytorch"] = head_parity(head, staged.path, validation)
        if "int8_vs_float" in parity:
            parity["int8_vs_float"]["note"] = ("measured when the backbone was exported, with the head it was exported "
                                               "with; the backbone graph is unchanged")
        manifest["parity"] = parity
        manifest["head_training"] = {"data": args.data.name, "inputs": args.inputs, "normalise": args.normalise,
                                     "rest_windows": args.rest_windows,
                                     "validation_macro_f1": round(metrics["macro_f1"], 4),
                                     "validation_accuracy": round(metrics["accuracy"], 4)}
        final = Path(workdir) / "bundle"
        save_bundle(final, manifest, {name: staged.path / name for name in staged.files})
        if args.out.resolve() == bundle.path.resolve():
            shutil.rmtree(args.out)
        shutil.copytree(final, args.out, dirs_exist_ok=False)
    print(f"{args.out}: head on {args.inputs}, calibration {args.normalise}; validation macro-F1 "
          f"{metrics['macro_f1']:.3f}, accuracy {metrics['accuracy']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
