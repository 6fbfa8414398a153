"""``biomoe export``: a trained backbone and fusion head -> a verified deployable bundle.

::

    biomoe export --checkpoint backbone.pth --head head.pt --out bundles/mine/ \\
        [--format onnx|tflite] [--int8 [--int8-scheme static|weight-only] --calibration DATA]
        [--validation DATA] [--run-config run.json]

Steps: load the backbone (release format) and the head file
(:func:`training.models.load_head`); export both graphs in float32
(``backbone_head`` pipeline, see ``quantize/README.md``); with ``--int8``,
quantize the backbone (static: calibrated with images of real windows;
weight-only: int8 storage, float computation); measure parity
(float vs PyTorch; int8 vs float on a validation set) and write everything with
:func:`edge.bundle.save_bundle`, which publishes the folder only when complete
and verified. Nothing is written to ``--out`` if any step fails.

Data for ``--calibration`` / ``--validation``: an AI4PAIN-layout folder (the
``train`` split calibrates, the ``validation`` split validates) or a ``.npz``
(:func:`quantize.images.load_window_images`). Without ``--validation`` an
AI4PAIN calibration folder's ``validation`` split is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.bundle import MANIFEST_NAME, Bundle, file_sha256, save_bundle
from edge.representations import RepresentationSpec

from .errors import ExportError, ParityError
from .images import WindowImages, device_channel, load_window_images
from .manifest import build_manifest, graph_entry

__all__ = ["FORMATS", "INT8_SCHEMES", "ExportOptions", "ExportResult", "export_bundle", "configure_parser", "run"]

FORMATS = ("onnx", "tflite")
INT8_SCHEMES = ("static", "weight-only")
_DEFAULT_LABELS = ("No Pain", "Low Pain", "High Pain")
_TFLITE_CALIBRATION_IMAGES = 32  # ai-edge-quantizer calibrates one image at a time, keeping every tensor


@dataclass(frozen=True)
class ExportResult:
    """The written bundle and its parity report (also in the manifest)."""

    bundle: Bundle
    parity: dict


@dataclass(frozen=True)
class ExportOptions:
    """How :func:`export_bundle` exports: format, int8 scheme, data, parity and naming.

    Attributes
    ----------
    fmt : {"onnx", "tflite"}
    int8 : bool
        Quantize the backbone (the head stays float: 3 x 960 weights).
    int8_scheme : {"static", "weight-only"}
        ONNX int8: static int8 (int8 weights and activations, calibrated) or
        weight-only int8 (int8 file, float32 computation; parity-safe).
    calibration : str or Path, optional
        Images of real windows for the int8 ranges (required with the static scheme).
    validation : str or Path, optional
        Labelled windows for the parity report (default: an AI4PAIN
        calibration folder's validation split).
    run_config : str or Path, optional
        JSON with ``representation_spec`` (``biomoe finetune``'s ``config.json``)
        for a head file that lacks it (the head file's own value wins).
    calibration_images : int
        Images drawn from the calibration windows.
    validation_windows : int
        Windows drawn from the validation set.
    sensitivity : bool
        Run the per-group sensitivity pass of the ONNX int8 quantization.
    size_budget_bytes : int
        Largest int8 ONNX backbone: the static sensitivity pass keeps groups
        float within it; the weight-only scheme keeps fewer small constants float to fit.
    activation_bits : {8, 16}
        ONNX int8 activations: 8 bits, or 16 (int8 weights, finer activations).
    name : str, optional
        Bundle name (default: the folder name).
    description : str, optional
        Manifest description (default: what was exported from which files).
    allow_parity_miss : bool
        Write an int8 bundle that misses :data:`quantize.parity.INT8_THRESHOLDS`
        (its manifest says ``"passed": false``); by default that is an error.
    threads : int
        Runtime threads for the parity runs.
    """

    fmt: str = "onnx"
    int8: bool = False
    int8_scheme: str = "static"
    calibration: str | Path | None = None
    validation: str | Path | None = None
    run_config: str | Path | None = None
    calibration_images: int = 128
    validation_windows: int = 64
    sensitivity: bool = True
    size_budget_bytes: int = 8_000_000
    activation_bits: int = 8
    name: str | None = None
    description: str | None = None
    allow_parity_miss: bool = False
    threads: int = 2


def export_bundle(checkpoint, head, out, options: ExportOptions = ExportOptions(), *, log=None,
                  progress: bool = False) -> ExportResult:
    """Export a backbone checkpoint and a head file to a bundle folder.

    Parameters
    ----------
    checkpoint : str or Path
        Backbone in the release format (:func:`training.models.load_backbone`).
    head : str or Path
        Head file (:func:`training.models.save_head`).
    out : str or Path
        Bundle folder: new, empty, or an existing bundle (replaced).
    options : ExportOptions
    log : callable, optional
        ``log(message)`` for progress lines (default: silent).
    progress : bool
        Show a progress bar during the sensitivity pass.

    Returns
    -------
    ExportResult

    Raises
    ------
    ExportError, CheckpointError
        Bad checkpoint, head file, data or output folder; nothing is written.
    """
    from training.models import load_backbone, load_head

    log = log or (lambda message: None)
    if options.fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {options.fmt!r}")
    if options.int8_scheme not in INT8_SCHEMES:
        raise ExportError(f"int8 scheme must be one of {', '.join(INT8_SCHEMES)}, got {options.int8_scheme!r}")
    scheme = options.int8_scheme if options.int8 else None
    if scheme not in (None, "static") and options.fmt != "onnx":
        raise ExportError(f"--int8-scheme {scheme} exists for --format onnx only; TFLite int8 is static")
    if scheme == "static" and options.calibration is None:
        raise ExportError("--int8 needs --calibration DATA (an AI4PAIN-layout folder or a .npz of images); "
                          "--int8-scheme weight-only needs none")
    out = Path(out)
    _check_output_folder(out)
    model = load_backbone(checkpoint)
    loaded = load_head(head)
    if loaded.head.num_scalars or loaded.calibration["method"] != "none":
        raise ExportError(
            f"{head} reads physiological scalars or calibrated features, which biomoe export does not write into a "
            "bundle; export a head trained with --inputs embeddings --normalise none, then put a calibrated head on "
            "that bundle's backbone: python -m quantize.calibrated_head --bundle BUNDLE --data DATA --out OUT"
        )
    spec, fusion, labels = _input_description(loaded, options.run_config)
    k = len(fusion)

    calibration_set = validation_set = None
    if options.calibration is not None:
        calibration_set = load_window_images(options.calibration, fusion, spec, split="train", what="calibration",
                                             max_windows=options.calibration_images)
        log(f"calibration: {len(calibration_set)} windows from {calibration_set.source}")
    validation = options.validation
    if validation is None and options.calibration is not None and Path(options.calibration).is_dir():
        validation = options.calibration
    if validation is not None:
        validation_set = load_window_images(validation, fusion, spec, split="validation", what="validation",
                                            max_windows=options.validation_windows, seed=1)
        log(f"validation: {len(validation_set)} windows from {validation_set.source}")
    elif options.int8:
        raise ExportError("an int8 export needs labelled windows for its parity report: pass --validation DATA")

    with tempfile.TemporaryDirectory(prefix="biomoe-export-") as workdir:
        workdir = Path(workdir)
        parity_windows = _parity_windows(validation_set, calibration_set, k, spec.image_size)
        if options.fmt == "onnx":
            files, graphs, parity, quantization = _export_onnx(
                model, loaded.head, workdir, scheme, calibration_set, validation_set, parity_windows, options, log,
                progress,
            )
        else:
            files, graphs, parity, quantization = _export_tflite(
                model, loaded.head, workdir, options.int8, calibration_set, validation_set, parity_windows,
                options.threads, log,
            )
        parity["format"] = options.fmt
        missed = options.int8 and not parity["int8_vs_float"]["passed"]
        if missed and not options.allow_parity_miss:
            from .parity import format_parity

            raise ParityError(
                "the int8 model misses the parity thresholds, so no bundle was written:\n" + format_parity(parity)
                + "\nexport float32 or --int8-scheme weight-only instead, or pass --allow-parity-miss to write it "
                "anyway (marked in the manifest)"
            )
        manifest = build_manifest(
            name=options.name or out.name,
            description=options.description or (
                f"Tiny-BioMoE backbone + fusion head, {options.fmt} {_precision(scheme, options.fmt)}; "
                f"exported by biomoe export from {Path(checkpoint).name} and {Path(head).name}"
            ),
            backend="onnxruntime" if options.fmt == "onnx" else "litert",
            pipeline="backbone_head",
            graphs=graphs,
            spec=spec,
            fusion=[(device_channel(entry["modality"]), entry["representation"]) for entry in fusion],
            labels=labels,
            quantization=quantization,
            parity=parity,
            source={"checkpoint_sha256": file_sha256(Path(checkpoint)), "head_sha256": file_sha256(Path(head))},
        )
        bundle = save_bundle(out, manifest, files)
    from .parity import format_parity

    log(format_parity(parity))
    if missed:
        log("WARNING: written although the int8 model misses the parity thresholds (--allow-parity-miss)")
    return ExportResult(bundle, parity)


def _check_output_folder(out: Path) -> None:
    """Refuse an output folder that cannot become a bundle, before any long work."""
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"--out {out} is a file; pass a folder for the bundle")
        if any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
            raise ExportError(f"--out {out} is a non-empty folder that is not a bundle; choose a new or empty folder")
    existing = next(parent for parent in (out, *out.parents) if parent.exists())
    target = existing if existing != out else out.parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write the bundle {out}: {target} is not writable; choose another --out")


def _input_description(loaded, run_config) -> tuple[RepresentationSpec, tuple, tuple]:
    """Representation spec, fusion and labels: the head file's, else the run config's, else defaults."""
    config = {}
    if run_config is not None:
        try:
            config = json.loads(Path(run_config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ExportError(f"run config {run_config} is not a readable JSON file ({error})") from None
        if not isinstance(config, dict):
            raise ExportError(f"run config {run_config} must hold a JSON object")
    settings = loaded.representation_spec or config.get("representation_spec") or {}
    try:
        spec = RepresentationSpec.from_dict(dict(settings))
    except ValueError as error:
        raise ExportError(f"representation spec of the head/run config is invalid: {error}") from None
    for key, value in (("sampling_rate", loaded.sampling_rate), ("window_seconds", loaded.window_seconds)):
        if abs(getattr(spec, key) - value) > 1e-9:
            raise ExportError(f"the head was trained on {key} {value} but its representation spec says {getattr(spec, key)}")
    fusion = loaded.fusion or tuple(config.get("fusion", ()))  # a head file always has its fusion
    labels = loaded.labels or tuple(config.get("labels", _DEFAULT_LABELS))
    return spec, fusion, labels


def _parity_windows(validation: WindowImages | None, calibration: WindowImages | None, k: int, size: int) -> np.ndarray:
    """Windows for float-vs-PyTorch parity: 8 validation (or calibration) windows, else 4 random ones."""
    for source in (validation, calibration):
        if source is not None and source.images.shape[1] == k:
            return source.images[:8]
    return np.random.default_rng(0).random((4, k, 3, size, size), dtype=np.float32)


def _precision(scheme: str | None, fmt: str) -> str:
    if scheme is None:
        return "float32"
    return "int8 weight-only" if scheme == "weight-only" and fmt == "onnx" else "int8"


def _export_onnx(model, head, workdir, scheme, calibration, validation, parity_windows, options: ExportOptions,
                 log, progress):
    """Float graphs, and with an int8 ``scheme`` ("static" or "weight-only") the quantized backbone and its parity."""
    from .graphs import BACKBONE_INPUT, BACKBONE_OUTPUT, HEAD_INPUT, HEAD_OUTPUT, export_backbone_onnx, export_head_onnx
    from .onnx_int8 import quantize_backbone_int8, quantize_backbone_weight_only
    from .parity import float_parity, int8_parity, onnx_runner, torch_runner

    log("exporting the float32 ONNX backbone and head")
    backbone_path = export_backbone_onnx(model, workdir / "backbone.onnx", keep_metadata=scheme == "static")
    head_path = export_head_onnx(head, workdir / "head.onnx")
    threads = options.threads
    float_graphs = onnx_runner(backbone_path, head_path, threads)
    parity = {"float_vs_pytorch": float_parity(torch_runner(model, head), float_graphs, parity_windows)}
    quantization = None
    if scheme == "static":
        log(f"quantizing the backbone to int8 ({options.calibration_images} calibration images"
            + (", sensitivity pass" if options.sensitivity else "") + ")")
        bar = _progress_bar if progress else None
        result = quantize_backbone_int8(
            backbone_path, workdir / "backbone.int8.onnx", calibration.flat(options.calibration_images),
            sensitivity=options.sensitivity, size_budget_bytes=options.size_budget_bytes,
            activation_bits=options.activation_bits,
            progress=bar,
        )
    elif scheme == "weight-only":
        log("storing the backbone's weights as int8 (weight-only)")
        result = quantize_backbone_weight_only(backbone_path, workdir / "backbone.int8.onnx", options.size_budget_bytes)
    backbone_config = {}
    if scheme is not None:
        quantization = result.settings
        backbone_config = quantization.get("onnxruntime_config", {})
        parity["int8_vs_float"] = int8_parity(
            float_graphs, onnx_runner(result.path, head_path, threads, backbone_config), validation, head.num_classes
        )
        backbone_path = result.path
    k, dim = head.num_embeddings, head.embedding_dim
    size = model.img_size
    graphs = {
        "backbone": graph_entry("backbone.onnx", BACKBONE_INPUT, ["n", 3, size, size], BACKBONE_OUTPUT, ["n", dim],
                           "embeddings", backbone_config),
        "head": graph_entry("head.onnx", HEAD_INPUT, ["n", k, dim], HEAD_OUTPUT, ["n", head.num_classes], "probabilities"),
    }
    return {"backbone.onnx": backbone_path, "head.onnx": head_path}, graphs, parity, quantization


def _export_tflite(model, head, workdir, int8, calibration, validation, parity_windows, threads, log):
    from .parity import float_parity, int8_parity, tflite_runner, torch_runner
    from .tflite import (
        INT8_TFLITE_FLOAT_SCOPES, INT8_TFLITE_OPS, convert_backbone_tflite, convert_head_tflite, quantize_tflite_int8,
    )

    log("converting the float32 TFLite backbone and head (litert-torch)")
    backbone = convert_backbone_tflite(model, workdir / "backbone.tflite")
    head_graph = convert_head_tflite(head, workdir / "head.tflite")
    backbone_path, head_path = workdir / "backbone.tflite", workdir / "head.tflite"
    float_graphs = tflite_runner(backbone_path, head_path, threads)
    parity = {"float_vs_pytorch": float_parity(torch_runner(model, head), float_graphs, parity_windows)}
    quantization = None
    if int8:
        images = calibration.flat(_TFLITE_CALIBRATION_IMAGES)
        log(f"quantizing the TFLite backbone (static int8 on {', '.join(INT8_TFLITE_OPS)}; {len(images)} images)")
        backbone = quantize_tflite_int8(backbone_path, workdir / "backbone.int8.tflite", images)
        backbone_path = workdir / "backbone.int8.tflite"
        quantization = {
            "scheme": "ai-edge-quantizer static int8",
            "quantized_ops": list(INT8_TFLITE_OPS),
            "weights": "int8 symmetric, per channel",
            "activations": "int8, per tensor (MinMax)",
            "calibration_images": int(len(images)),
            "kept_float": "every other op (LayerNorm, softmax, GELU, the DFT matrix products) and the ops of "
                          + ", ".join(INT8_TFLITE_FLOAT_SCOPES),
        }
        parity["int8_vs_float"] = int8_parity(float_graphs, tflite_runner(backbone_path, head_path, threads),
                                              validation, head.num_classes)
    graphs = {
        "backbone": graph_entry("backbone.tflite", backbone["input"], backbone["input_shape"], backbone["output"],
                           backbone["output_shape"], "embeddings"),
        "head": graph_entry("head.tflite", head_graph["input"], head_graph["input_shape"], head_graph["output"],
                       head_graph["output_shape"], "probabilities"),
    }
    return {"backbone.tflite": backbone_path, "head.tflite": head_path}, graphs, parity, quantization


def _progress_bar(iterable, description):
    from tqdm import tqdm

    return tqdm(iterable, desc=description, unit="group", file=sys.stderr)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``biomoe export``."""
    parser.add_argument("--checkpoint", required=True, type=Path, help="backbone checkpoint (release format)")
    parser.add_argument("--head", required=True, type=Path, help="fusion head file (training.models.save_head)")
    parser.add_argument("--out", required=True, type=Path, help="bundle folder to write (new, empty or a bundle)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="graph format (default: %(default)s)")
    parser.add_argument("--int8", action="store_true", help="quantize the backbone to int8")
    parser.add_argument("--int8-scheme", choices=INT8_SCHEMES, default="static",
                        help="ONNX int8: static (int8 compute, needs --calibration) or weight-only (int8 file, "
                             "float compute, parity-safe) (default: %(default)s)")
    parser.add_argument("--calibration", type=Path,
                        help="AI4PAIN-layout folder (train split) or .npz of images for the int8 ranges")
    parser.add_argument("--validation", type=Path,
                        help="AI4PAIN-layout folder (validation split) or .npz of labelled windows for the parity report")
    parser.add_argument("--run-config", type=Path, help="JSON with representation_spec/fusion/labels the head file lacks")
    parser.add_argument("--calibration-images", type=int, default=128, help="calibration images (default: %(default)s)")
    parser.add_argument("--validation-windows", type=int, default=64, help="validation windows (default: %(default)s)")
    parser.add_argument("--no-sensitivity", action="store_true", help="skip the ONNX per-layer sensitivity pass")
    parser.add_argument("--size-budget-mb", type=float, default=8.0,
                        help="largest int8 ONNX backbone in MB (10^6 bytes) (default: %(default)s)")
    parser.add_argument("--activation-bits", type=int, choices=(8, 16), default=8,
                        help="ONNX int8: activation bits, 16 = int8 weights with finer activations (default: %(default)s)")
    parser.add_argument("--allow-parity-miss", action="store_true",
                        help="write an int8 bundle even if it misses the parity thresholds (recorded in the manifest)")
    parser.add_argument("--name", help="bundle name (default: the folder name)")
    parser.add_argument("--threads", type=int, default=2, help="runtime threads for the parity runs (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Run ``biomoe export``; user errors raise (the CLI prints them on one line)."""
    for option in ("calibration_images", "validation_windows", "threads"):
        if getattr(args, option) < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    options = ExportOptions(
        fmt=args.format, int8=args.int8, int8_scheme=args.int8_scheme, calibration=args.calibration,
        validation=args.validation, run_config=args.run_config, calibration_images=args.calibration_images,
        validation_windows=args.validation_windows, sensitivity=not args.no_sensitivity,
        size_budget_bytes=int(args.size_budget_mb * 1e6), activation_bits=args.activation_bits, name=args.name,
        allow_parity_miss=args.allow_parity_miss, threads=args.threads,
    )
    result = export_bundle(args.checkpoint, args.head, args.out, options, log=print, progress=sys.stderr.isatty())
    print(f"wrote {result.bundle.path}: {result.bundle.describe()}")
    return 0
