"""Build the shipped default bundle, ``edge/bundles/default`` (backbone + head).

With a trained backbone and head (``--checkpoint``, ``--head``, ``--data``)
every variant of :data:`CANDIDATES` is exported (ONNX static and
weight-only int8, TFLite int8 convolutions and fully connected layers except the
scopes kept float (:data:`quantize.tflite.INT8_TFLITE_FLOAT_SCOPES`),
TFLite and ONNX float32), each int8 one with its parity against float on the
data's validation split; each is timed per window through the device's own
backend (:mod:`edge.backends`, the variants interleaved round by round), and
the fastest that meets :data:`~quantize.parity.INT8_THRESHOLDS` becomes the
default (an int8 model that changes the answers is worse than a slower
one). Its manifest's ``selection`` records every variant: parity, whether
it passed, milliseconds per window. Without them it
builds the *demonstration* bundle committed until the trained artefacts
exist: the golden-checkpoint backbone (random but realistic weights) and a
linear :class:`~training.models.FusionHead` fitted in a few hundred steps on
its frozen embeddings of a synthetic cohort (``training.synth``); its
manifest says so in ``description``. Its pain levels follow the synthetic
responses, not patients: it exercises the real int8 model end to end.

::

    python -m quantize.build_default_bundle \\
        [--checkpoint B.pth --head H.pt --run-config finetune_config.json --data AI4PAIN_ROOT] \\
        [--candidates onnx-int8-weight-only,tflite-float32,...] [--out edge/bundles/default]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edge.backends import create_backend
from edge.bundle import Bundle, default_bundle_path, file_sha256, load_bundle, save_bundle
from edge.errors import EdgeError
from edge.representations import RepresentationSpec

from .errors import ExportError, ParityError
from .export import ExportOptions, ExportResult, export_bundle
from .images import load_window_images
from .parity import INT8_THRESHOLDS
from .placeholder import LABELS, PLACEHOLDER_FUSION

__all__ = ["CANDIDATES", "DEMO_FUSION", "build_default_bundle", "choose_fastest", "fit_head", "fit_demo_head",
           "main", "window_milliseconds"]

#: Variants a trained default is chosen from: name -> (format, int8, int8 scheme).
CANDIDATES: dict[str, tuple[str, bool, str]] = {
    "onnx-int8-static": ("onnx", True, "static"),
    "onnx-int8-weight-only": ("onnx", True, "weight-only"),
    "tflite-int8-selective": ("tflite", True, "static"),
    "tflite-float32": ("tflite", False, "static"),
    "onnx-float32": ("onnx", False, "static"),
}

#: Fusion of the demonstration bundle: the placeholder's (AI4PAIN folder names).
DEMO_FUSION = tuple({"modality": {"EDA": "Eda", "BVP": "Bvp", "RESP": "Resp"}.get(m, m), "representation": r}
                    for m, r in PLACEHOLDER_FUSION)
DEMO_DESCRIPTION = (
    "DEMONSTRATION: golden-checkpoint backbone (random, realistic weights) + a linear head fitted on its "
    "embeddings of a synthetic cohort; int8 ONNX. Not trained on patients. Rebuild with a trained model: "
    "python -m quantize.build_default_bundle --checkpoint B.pth --head H.pt --data AI4PAIN_ROOT."
)
_GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tiny_biomoe" / "golden_checkpoint.pth"


def fit_head(embeddings: np.ndarray, labels: np.ndarray, num_classes: int = 3, steps: int = 300, seed: int = 0):
    """A linear :class:`FusionHead` fitted on frozen embeddings (n, k, D) with Adam and cross-entropy.

    Features are fixed, so a few hundred full-batch steps converge; enough
    for class predictions that mean something in parity tests and demos.
    """
    from training.models import FusionHead

    torch.manual_seed(seed)
    n, k, dim = embeddings.shape
    head = FusionHead(k, num_classes=num_classes, embedding_dim=dim)
    inputs, targets = torch.from_numpy(np.ascontiguousarray(embeddings, np.float32)), torch.from_numpy(labels)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(inputs), targets)
        loss.backward()
        optimizer.step()
    return head.eval()


def fit_demo_head(checkpoint, data_root, head_path, fusion=DEMO_FUSION, windows: int = 96) -> Path:
    """Fit :func:`fit_head` on the backbone's embeddings of ``data_root``'s train split and save it."""
    from training.models import load_backbone, save_head

    spec = RepresentationSpec()
    train = load_window_images(data_root, fusion, spec, split="train", max_windows=windows, what="training")
    model = load_backbone(checkpoint)
    flat = torch.from_numpy(train.images.reshape((-1,) + train.images.shape[2:]))
    with torch.no_grad():
        embeddings = torch.cat([model(flat[i:i + 32]) for i in range(0, len(flat), 32)]).numpy()
    head = fit_head(embeddings.reshape(len(train), len(fusion), -1), train.labels, len(LABELS))
    return save_head(head, head_path, fusion=fusion, labels=LABELS, representation_spec=spec.to_dict(),
                     sampling_rate=spec.sampling_rate, window_seconds=spec.window_seconds)


#: Validation windows the parity report of a trained default bundle is measured on (at most).
VALIDATION_WINDOWS = 1000
#: Validation windows each variant is timed on, per round; rounds; runtime threads.
TIMING_WINDOWS, TIMING_ROUNDS, TIMING_THREADS = 4, 5, 2


def window_milliseconds(bundles: dict[str, Bundle], images: np.ndarray, rounds: int = TIMING_ROUNDS,
                        threads: int = TIMING_THREADS):
    """Median milliseconds per window of each bundle through the device backend.

    ``images`` (n, k, 3, S, S) are the windows; every round runs each bundle
    on all of them, the bundles one after another, so a machine that slows
    down slows every variant alike.
    """
    backends = {name: create_backend(bundle, threads=threads) for name, bundle in bundles.items()}
    times = {name: [] for name in bundles}
    try:
        for backend in backends.values():
            backend.predict(images[0])  # warm-up: allocations, XNNPACK packing
        for _ in range(rounds):
            for name, backend in backends.items():
                started = time.perf_counter()
                for window in images:
                    backend.predict(window)
                times[name].append((time.perf_counter() - started) * 1000 / len(images))
    finally:
        for backend in backends.values():
            backend.close()
    return {name: float(np.median(values)) for name, values in times.items()}


def choose_fastest(variants: list[dict]) -> dict:
    """The variant with the fewest ``ms_per_window`` among those that ``passed`` their parity."""
    passed = [variant for variant in variants if variant["passed"]]
    if not passed:
        raise ParityError("no variant meets the parity thresholds: " + ", ".join(v["name"] for v in variants))
    return min(passed, key=lambda variant: variant["ms_per_window"])


def _parity_summary(parity: dict) -> dict:
    """The figures a variant is judged by: int8 against float, or float against PyTorch."""
    if "int8_vs_float" in parity:
        report = parity["int8_vs_float"]
        keys = ("mean_cosine", "min_cosine", "class_agreement", "macro_f1_drop", "windows", "passed")
        return {key: report[key] for key in keys if key in report}
    return {key: value for key, value in parity.get("float_vs_pytorch", {}).items() if not isinstance(value, dict)}


def _kept_variant(folder: Path, source: dict) -> Bundle | None:
    """The bundle in ``folder`` if it was exported from ``source``'s checkpoint and head, else None."""
    try:
        bundle = load_bundle(folder)
    except EdgeError:
        return None
    return bundle if bundle.manifest.get("source") == source else None


def _select(checkpoint, head, data, run_config, out: Path, workdir: Path, names, log) -> ExportResult:
    """Export every variant in ``names`` (reusing one already in ``workdir`` from the same checkpoint and head),
    time those that passed, and save the fastest as ``out``."""
    variants, bundles = {}, {}
    source = {"checkpoint_sha256": file_sha256(checkpoint), "head_sha256": file_sha256(head)}
    for name in names:
        kept = _kept_variant(workdir / name, source)
        if kept is not None:
            log(f"variant {name}: reusing {kept.path} (same checkpoint and head)")
            summary = _parity_summary(kept.parity or {})
            variants[name] = {"name": name, "passed": bool(summary.get("passed", True)), "parity": summary}
            bundles[name] = kept
            continue
        fmt, int8, scheme = CANDIDATES[name]
        options = ExportOptions(fmt=fmt, int8=int8, int8_scheme=scheme, calibration=data if int8 else None,
                                run_config=run_config, validation=data, validation_windows=VALIDATION_WINDOWS,
                                name=f"tiny-biomoe-{name}", allow_parity_miss=True)
        log(f"variant {name}: exporting")
        try:
            result = export_bundle(checkpoint, head, workdir / name, options, log=log, progress=True)
        except ExportError as error:
            log(f"variant {name}: {error}")
            variants[name] = {"name": name, "passed": False, "error": str(error)}
            continue
        summary = _parity_summary(result.parity)
        variants[name] = {"name": name, "passed": bool(summary.get("passed", True)), "parity": summary}
        bundles[name] = result.bundle
    timed = {name: bundle for name, bundle in bundles.items() if variants[name]["passed"]}
    if not timed:
        raise ParityError("no variant meets the parity thresholds: " + ", ".join(variants))
    first = next(iter(timed.values()))
    fusion = [{"modality": entry.modality, "representation": entry.representation} for entry in first.fusion]
    images = load_window_images(data, fusion, RepresentationSpec.from_dict(first.representation_spec),
                                split="validation", max_windows=TIMING_WINDOWS, what="timing").images
    log(f"timing {', '.join(timed)} on {len(images)} validation windows, interleaved")
    for name, milliseconds in window_milliseconds(timed, images).items():
        variants[name]["ms_per_window"] = round(milliseconds, 2)
    chosen = choose_fastest([variant for variant in variants.values() if "ms_per_window" in variant])
    for variant in variants.values():
        log(f"  {variant['name']}: {'passed' if variant['passed'] else 'missed'}"
            + (f", {variant['ms_per_window']:.1f} ms per window" if "ms_per_window" in variant else ""))
    log(f"the default is {chosen['name']}: the fastest variant that meets the parity thresholds")
    bundle = bundles[chosen["name"]]
    manifest = {key: value for key, value in bundle.manifest.items() if key != "files"}
    manifest["selection"] = {
        "chosen": chosen["name"],
        "rule": "fastest per window through edge.backends among the variants that meet the parity thresholds",
        "thresholds": dict(INT8_THRESHOLDS),
        "timing": {"windows": len(images), "rounds": TIMING_ROUNDS, "threads": TIMING_THREADS,
                   "machine": platform.machine(),
                   "processor": platform.processor() or platform.machine()},
        "variants": list(variants.values()),
    }
    saved = save_bundle(out, manifest, {name: bundle.path / name for name in bundle.files})
    return ExportResult(saved, saved.parity or {})


def build_default_bundle(out=None, checkpoint=None, head=None, data=None, run_config=None, log=print,
                         candidates=tuple(CANDIDATES), variants_dir=None) -> ExportResult:
    """Write the default bundle: the fastest of ``candidates`` that meets the parity thresholds.

    A demonstration bundle (static int8 ONNX) when no trained head is given.
    Every exported variant is kept in ``variants_dir`` when given (for
    benchmarks, and to be reused by the next build from the same checkpoint
    and head), else in a temporary folder.
    """
    from training.synth import synthesize_cohort

    out = Path(out) if out is not None else default_bundle_path()
    with tempfile.TemporaryDirectory(prefix="biomoe-default-") as workdir:
        workdir = Path(workdir)
        if data is None:
            data = workdir / "synth"
            log("generating a synthetic cohort (8 train, 4 validation subjects)")
            synthesize_cohort(data, "train", 8, seed=0)
            synthesize_cohort(data, "validation", 4, seed=0)
        if head is None:
            checkpoint = checkpoint or _GOLDEN
            log(f"fitting a demonstration head on {Path(checkpoint).name} embeddings")
            head = fit_demo_head(checkpoint, data, workdir / "head.pt")
            options = ExportOptions(int8=True, calibration=data, run_config=run_config, name="demo-golden-int8",
                                    description=DEMO_DESCRIPTION, allow_parity_miss=True)
            return export_bundle(checkpoint, head, out, options, log=log, progress=True)
        return _select(checkpoint, head, data, run_config, out, Path(variants_dir or workdir), candidates, log)


def main(argv: list[str] | None = None) -> int:
    """``python -m quantize.build_default_bundle``."""
    parser = argparse.ArgumentParser(prog="python -m quantize.build_default_bundle", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="trained backbone (default: the golden checkpoint, demo head)")
    parser.add_argument("--head", type=Path, help="trained head file (default: fit a demonstration head)")
    parser.add_argument("--data", type=Path, help="AI4PAIN-layout data (default: a generated synthetic cohort)")
    parser.add_argument("--run-config", type=Path, help="the head's run config (finetune_config.json) with its image spec")
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help="comma-separated variants to choose from (default: all of them: %(default)s)")
    parser.add_argument("--out", type=Path, default=default_bundle_path(), help="bundle folder (default: %(default)s)")
    parser.add_argument("--variants-dir", type=Path,
                        help="keep every exported variant here, and reuse those already there from the same "
                             "checkpoint and head (default: not kept)")
    args = parser.parse_args(argv)
    if (args.head is None) != (args.checkpoint is None) and args.head is not None:
        parser.error("--head needs --checkpoint (the backbone it was trained on)")
    candidates = tuple(name.strip() for name in args.candidates.split(",") if name.strip())
    unknown = [name for name in candidates if name not in CANDIDATES]
    if unknown or not candidates:
        parser.error(f"--candidates must name variants from {', '.join(CANDIDATES)}; got {args.candidates!r}")
    if args.head is not None and args.data is None:
        parser.error("--head needs --data (the variants' parity and timing use its validation split)")
    result = build_default_bundle(args.out, args.checkpoint, args.head, args.data, args.run_config,
                                  candidates=candidates, variants_dir=args.variants_dir)
    print(f"wrote {result.bundle.path}: {result.bundle.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
