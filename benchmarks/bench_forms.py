"""The backbone in every form the project ships, against the authors' release code, on the same images.

One process, interleaved rounds (each form once per round, order reversed
every other round), ``--threads`` threads everywhere; the medians and their
ratios to the authors' code come from the same rounds. Per image at batch 1,
and per window: the ``k`` images of the bundle's fusion (PyTorch takes them as
one batch; the device runtimes one image per call, as :mod:`edge.backends` does).

Forms:

- ``authors``: the authors' release code, PyTorch eager: their
  ``architecture/`` files and the ``MoE`` class of their README's quick
  start, both read from their repository's folder at run time (``--authors
  DIR`` or ``BIOMOE_AUTHORS_CODE``; it needs ``timm`` and ``pytorch_wavelets``).
  Without it that column is left out and the table says so.
- ``eager``: :class:`training.models.TinyBioMoE`, the project's reimplementation;
- ``onnx``: float32 ONNX of the export form (ONNX Runtime, as the device runs it);
- ``onnx-int8-wo``: the same with int8 weights, float32 arithmetic (the
  weight-only scheme the default bundle ships);
- ``tflite``: float32 TFLite (LiteRT with XNNPACK);
- ``tflite-int8``: ai-edge-quantizer static int8 on the convolutions and fully
  connected layers, the rest float (:func:`quantize.tflite.quantize_tflite_int8`).

All forms carry the same weights (``--checkpoint``, default the golden
checkpoint of ``../shared/reference``). The last lines give this machine's
measured float32 and int8 GEMM peaks and the fraction of them the fastest
form reaches (model FLOPs counted by :class:`torch.utils.flop_counter.FlopCounterMode`).

Usage::

    python -m benchmarks.bench_forms --authors ~/src/Tiny-BioMoE [--repeats 20] [--json forms.json]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.bench import script_main, time_interleaved

__all__ = ["configure_parser", "run", "main", "authors_backbone", "gemm_peaks"]

AUTHORS_ENV = "BIOMOE_AUTHORS_CODE"
GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tiny_biomoe" / "golden_checkpoint.pth"
#: Statements of the authors' quick start that build the backbone (the rest loads a picture).
_README_NAMES = {"emb_size", "num_experts", "final_emb_size", "MoE", "enc1", "enc2"}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--authors", type=Path, default=os.environ.get(AUTHORS_ENV),
                        help=f"folder of the authors' Tiny-BioMoE repository (default: ${AUTHORS_ENV})")
    parser.add_argument("--checkpoint", type=Path, default=GOLDEN,
                        help="release-format checkpoint every form loads (default: the golden checkpoint)")
    parser.add_argument("--images-per-window", type=int, default=5, help="k, the bundle's fusion images (default: 5)")
    parser.add_argument("--threads", type=int, default=2, help="threads of every runtime (default: 2)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per form first (default: 3)")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (default: 15)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")


def authors_backbone(folder: Path, checkpoint: Path):
    """The authors' backbone, built as their README's quick start builds it, with ``checkpoint`` loaded strictly."""
    import torch
    import torch.nn as nn
    from timm.models import model_entrypoint

    readme = folder / "README.md"
    if not (folder / "architecture").is_dir() or not readme.is_file():
        raise ValueError(f"{folder} is not the authors' Tiny-BioMoE repository (no README.md and architecture/)")
    sys.path.insert(0, str(folder))
    try:
        from architecture import efficientvit, spectformer  # noqa: F401  (registers their timm models)
    except ModuleNotFoundError as error:
        raise ValueError(f"the authors' code needs the Python module {error.name} (their README lists what to install)") from None
    finally:
        sys.path.remove(str(folder))
    text = readme.read_text(encoding="utf-8")
    block = next((b.split("\n", 1)[1] for b in text.split("```python")[1:] if "class MoE" in b), None)
    if block is None:
        raise ValueError(f"{readme} has no quick start with the MoE class")
    tree = ast.parse(block.split("```")[0])
    kept = [node for node in tree.body if _defines(node) & _README_NAMES]
    # Their model functions take the keyword arguments of the timm they were written for, not today's
    # create_model extras (pretrained_cfg_overlay, ...): call the registered function itself.
    namespace = {"torch": torch, "nn": nn, "create_model": lambda name: model_entrypoint(name)()}
    exec(compile(ast.Module(body=kept, type_ignores=[]), str(readme), "exec"), namespace)  # their code, as released
    model = namespace["MoE"](namespace["enc1"], namespace["enc2"]).eval()
    model.load_state_dict(torch.load(checkpoint, map_location="cpu")["model_state_dict"], strict=True)
    return model


def _defines(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign):
        names = set()
        for target in node.targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name):
                    names.add(leaf.id)
        return names
    return set()


def gemm_peaks(threads: int, size: int = 1024, repeats: int = 5) -> dict[str, float]:
    """This machine's measured GEMM throughput in GOP/s: float32 (ONNX Runtime MatMul) and int8 (MatMulInteger)."""
    import onnx
    from onnx import TensorProto, helper

    from edge.backends import onnx_session

    peaks = {}
    rng = np.random.default_rng(0)
    for kind, (op, a_type, b_type, out_type) in {
        "float32": ("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT),
        "int8": ("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32),
    }.items():
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["c"])], "gemm",
            [helper.make_tensor_value_info("a", a_type, [size, size]), helper.make_tensor_value_info("b", b_type, [size, size])],
            [helper.make_tensor_value_info("c", out_type, [size, size])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "gemm.onnx"
            onnx.save(model, str(path))
            session = onnx_session(path, threads)
        dtype_a, dtype_b = (np.float32, np.float32) if kind == "float32" else (np.uint8, np.int8)
        feeds = {"a": rng.integers(0, 100, (size, size)).astype(dtype_a),
                 "b": rng.integers(-100, 100, (size, size)).astype(dtype_b)}
        session.run(None, feeds)
        best = min(_seconds(lambda: session.run(None, feeds)) for _ in range(repeats))
        peaks[kind] = 2 * size**3 / best / 1e9
    return peaks


def _seconds(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def model_gflops(model) -> float:
    """GFLOPs (2 per multiply-add) of one 224x224 image through ``model``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.rand(1, 3, 224, 224))
    return counter.get_total_flops() / 1e9


def _forms(args, folder: Path) -> tuple[dict, dict[str, str], float]:
    """``name -> (per-image runner, per-window runner)``, the precision of each, and the model's GFLOPs."""
    import torch

    from edge.backends import onnx_session
    from quantize.graphs import export_backbone_onnx
    from quantize.onnx_int8 import quantize_backbone_weight_only
    from quantize.tflite import convert_backbone_tflite, quantize_tflite_int8, tflite_interpreter, tflite_run
    from training.models import load_backbone

    k = args.images_per_window
    images = torch.rand(k, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    array = images.numpy()
    forms, precision = {}, {}
    if args.authors is not None:
        authors = authors_backbone(Path(args.authors), args.checkpoint)
        forms["authors"] = (lambda: authors(images[:1]), lambda: authors(images))
        precision["authors"] = "float32"
    eager = load_backbone(args.checkpoint)
    forms["eager"] = (lambda: eager(images[:1]), lambda: eager(images))
    precision["eager"] = "float32"
    gflops = model_gflops(eager)

    float_onnx = export_backbone_onnx(eager, folder / "backbone.onnx")
    int8_onnx = quantize_backbone_weight_only(float_onnx, folder / "backbone.int8.onnx", 8_000_000)
    for name, path, config in (("onnx", float_onnx, {}),
                               ("onnx-int8-wo", int8_onnx.path, int8_onnx.settings.get("onnxruntime_config", {}))):
        session = onnx_session(path, args.threads, config)
        input_name = session.get_inputs()[0].name
        forms[name] = (lambda s=session, n=input_name: s.run(None, {n: array[:1]}),
                       lambda s=session, n=input_name: [s.run(None, {n: array[i:i + 1]}) for i in range(k)])
        precision[name] = "float32"  # weight-only: int8 in the file, float32 arithmetic

    convert_backbone_tflite(eager, folder / "backbone.tflite")
    calibration = np.random.default_rng(1).random((8, 3, 224, 224), dtype=np.float32)
    quantize_tflite_int8(folder / "backbone.tflite", folder / "backbone.int8.tflite", calibration)
    for name, file in (("tflite", "backbone.tflite"), ("tflite-int8", "backbone.int8.tflite")):
        interpreter = tflite_interpreter(folder / file, args.threads)
        forms[name] = (lambda i=interpreter: tflite_run(i, array[:1]), lambda i=interpreter: tflite_run(i, array))
        precision[name] = "int8" if "int8" in name else "float32"
    return forms, precision, gflops


def measure(args: argparse.Namespace) -> dict:
    """Time every form per image and per window; ratios to the authors' code (or to ``eager`` without it)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with tempfile.TemporaryDirectory(prefix="biomoe-forms-") as folder, torch.inference_mode():
            forms, precision, gflops = _forms(args, Path(folder))
            per_image = time_interleaved({name: pair[0] for name, pair in forms.items()}, args.warmup, args.repeats)
            per_window = time_interleaved({name: pair[1] for name, pair in forms.items()}, args.warmup, args.repeats)
    finally:
        torch.set_num_threads(previous)
    reference = "authors" if "authors" in forms else "eager"
    image_ms = {name: statistics.median(values) for name, values in per_image.items()}
    window_ms = {name: statistics.median(values) for name, values in per_window.items()}
    peaks = gemm_peaks(args.threads)
    fastest = min(window_ms, key=window_ms.get)
    achieved = gflops * args.images_per_window / (window_ms[fastest] / 1000)
    return {
        "threads": args.threads, "images_per_window": args.images_per_window, "repeats": args.repeats,
        "load_average": os.getloadavg()[0], "torch": torch.__version__, "reference": reference,
        "authors_code": str(args.authors) if args.authors else None,
        "rows": [{"form": name, "precision": precision[name], "ms_per_image": image_ms[name],
                  "ms_per_window": window_ms[name], "image_ratio": image_ms[name] / image_ms[reference],
                  "window_ratio": window_ms[name] / window_ms[reference]} for name in forms],
        "model_gflops_per_image": gflops,
        "gemm_peak_gops": peaks,
        "fastest": {"form": fastest, "gops": achieved, "fraction_of_peak": achieved / peaks[precision[fastest]]},
    }


def format_results(results: dict) -> str:
    reference = results["reference"]
    lines = [f"Tiny-BioMoE backbone forms, {results['threads']} threads, median of {results['repeats']} interleaved "
             f"rounds, {results['images_per_window']} images per window, torch {results['torch']}, load average "
             f"{results['load_average']:.2f}; ratios to {reference}"]
    if results["authors_code"] is None:
        lines.append(f"(the authors' code was not given: --authors DIR or ${AUTHORS_ENV}; ratios are to eager)")
    lines.append(f"{'form':14s} {'compute':>9s} {'ms/image':>9s} {'ratio':>6s} {'ms/window':>10s} {'ratio':>6s}")
    for row in results["rows"]:
        lines.append(f"{row['form']:14s} {row['precision']:>9s} {row['ms_per_image']:9.1f} {row['image_ratio']:6.2f} "
                     f"{row['ms_per_window']:10.1f} {row['window_ratio']:6.2f}")
    peaks, fastest = results["gemm_peak_gops"], results["fastest"]
    lines.append(f"model: {results['model_gflops_per_image']:.2f} GFLOPs per image; GEMM peak here: float32 "
                 f"{peaks['float32']:.0f} GOP/s, int8 {peaks['int8']:.0f} GOP/s")
    lines.append(f"fastest per window: {fastest['form']}, {fastest['gops']:.1f} GOP/s = "
                 f"{100 * fastest['fraction_of_peak']:.1f} % of this machine's peak for its precision")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    for name in ("threads", "repeats", "images_per_window"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if not Path(args.checkpoint).is_file():
        raise ValueError(f"checkpoint {args.checkpoint} does not exist")
    results = measure(args)
    print(format_results(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    return script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
