"""Latency of the Tiny-BioMoE backbone: release-equivalent eager model vs its export form.

Measures, in one run and one process, ms per image at each batch size for

- ``eager``: :class:`training.models.TinyBioMoE` as loaded (FFT spectral
  gating, BatchNorm, per-call bias gather): what the authors' code computes;
- ``export``: :func:`training.models.to_export_form` of the same model, in
  eager PyTorch;
- ``ort``: the export form exported with the dynamo ONNX exporter and run by
  ONNX Runtime (float32, CPU), unless ``--no-onnx``;
- ``ort-dft``: the eager model exported the same way (its spectral gating
  becomes ONNX ``DFT`` ops), unless ``--no-onnx``.

The variants are timed in interleaved rounds (each runs once per round, the
order reversed every other round), so a load change on the machine hits them
alike; the median over rounds is reported, and the ratios eager / export and
ort-dft / ort come from the same rounds.

Usage::

    python -m benchmarks.bench_model                       # batch 1 and 8, 2 threads
    python -m benchmarks.bench_model --checkpoint Tiny-BioMoE.pth --repeats 30
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.bench import script_main, time_interleaved

__all__ = ["configure_parser", "collect", "main", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path, help="backbone checkpoint (default: random weights; the timing is the same)"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="batch sizes (default: 1 8)")
    parser.add_argument(
        "--threads", type=int, default=2, help="intra-op threads for torch and ONNX Runtime (default: 2)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per variant first (default: 3)")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per batch size (default: 15)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX export and the ONNX Runtime timing")


def _check_args(args: argparse.Namespace) -> None:
    for name in ("threads", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if any(size < 1 for size in args.batch_sizes):
        raise ValueError(f"--batch-sizes must all be >= 1, got {args.batch_sizes}")


def _onnx_runner(model, batch_size: int, threads: int, folder: Path) -> Callable[[np.ndarray], object]:
    """Export ``model`` for a fixed batch and return a function that runs it in ONNX Runtime."""
    import onnxruntime
    import torch

    folder.mkdir(exist_ok=True)
    path = folder / f"tiny_biomoe_b{batch_size}.onnx"
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        torch.onnx.export(model, (torch.rand(batch_size, 3, 224, 224),), str(path), dynamo=True, verbose=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # idle ORT threads would otherwise spin and slow the torch call timed next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})


def run(args: argparse.Namespace) -> int:
    """Time the variants and print one table row per batch size."""
    _check_args(args)
    import torch

    print(
        f"Tiny-BioMoE latency, ms/image (median of {args.repeats} interleaved rounds), "
        f"{args.threads} threads, torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    columns = _columns(args)
    print(" ".join(f"{column:>12}" for column in columns))
    for row in _rows(args):
        print(f"{row[0]:>12d} " + " ".join(f"{value:>12.2f}" for value in row[1:]), flush=True)
    return 0


def collect(batch_sizes=(1, 8), threads: int = 2, warmup: int = 3, repeats: int = 15, onnx: bool = True,
            checkpoint: Path | None = None) -> list[dict]:
    """The same measurements as one section ``{"title", "command", "columns", "rows", "notes"}``."""
    args = argparse.Namespace(batch_sizes=list(batch_sizes), threads=threads, warmup=warmup, repeats=repeats,
                              no_onnx=not onnx, checkpoint=checkpoint)
    _check_args(args)
    import torch

    columns = [column + (" ms/image" if column in ("eager", "export", "ort-dft", "ort") else "")
               for column in _columns(args)]
    return [{
        "title": "Tiny-BioMoE backbone: release-equivalent eager model vs export form vs ONNX Runtime (float32)",
        "command": "python -m benchmarks.bench_model",
        "columns": columns,
        "rows": list(_rows(args)),
        "notes": [f"ms per image, median of {repeats} interleaved rounds, {threads} threads, "
                  f"torch {torch.__version__}"],
    }]


def _columns(args: argparse.Namespace) -> list[str]:
    columns = ["batch", "eager", "export", "eager/export"]
    if not args.no_onnx:
        columns += ["ort-dft", "ort", "ort-dft/ort"]
    return columns


def _rows(args: argparse.Namespace):
    """Build the model and its export form, then time each batch size: one row per batch size."""
    import torch

    from training.models import load_backbone, tiny_biomoe, to_export_form

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        model = load_backbone(args.checkpoint) if args.checkpoint else tiny_biomoe().eval()
        export_model = to_export_form(model)
        with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
            for batch_size in args.batch_sizes:
                images = torch.rand(batch_size, 3, 224, 224, generator=torch.Generator().manual_seed(batch_size))
                runners: dict[str, Callable[[], object]] = {
                    "eager": lambda: model(images),
                    "export": lambda: export_model(images),
                }
                if not args.no_onnx:
                    with torch.inference_mode(False):
                        dft_run = _onnx_runner(model, batch_size, args.threads, Path(folder) / "dft")
                        ort_run = _onnx_runner(export_model, batch_size, args.threads, Path(folder) / "export")
                    array = images.numpy()
                    runners["ort-dft"] = lambda: dft_run(array)
                    runners["ort"] = lambda: ort_run(array)
                times_ms = time_interleaved(runners, args.warmup, args.repeats)
                ms = {name: statistics.median(values) / batch_size for name, values in times_ms.items()}
                row = [batch_size, ms["eager"], ms["export"], ms["eager"] / ms["export"]]
                if not args.no_onnx:
                    row += [ms["ort-dft"], ms["ort"], ms["ort-dft"] / ms["ort"]]
                yield row
    finally:
        torch.set_num_threads(previous_threads)


def main(argv: list[str] | None = None) -> int:
    return script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
