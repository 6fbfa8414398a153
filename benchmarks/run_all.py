"""The full benchmark report: ``python -m benchmarks.run_all``.

Runs, in one process and one sitting:

1. ``biomoe bench`` on the bundle (default: the shipped one), against every
   target in the budgets file, with the PyTorch reference alongside;
2. when that bundle is a placeholder or quantized, the same on a
   *release-size float32 bundle* built here (Tiny-BioMoE export form + fusion
   head, random weights, exported to ONNX), so the report always carries the
   float model's cost, beside an int8 bundle's;
3. the per-area benchmarks through their ``collect()`` functions:
   representations vs matplotlib (:mod:`benchmarks.bench_representations`),
   bridge decoding (:mod:`benchmarks.bench_bridge`), model forms: eager vs
   export form vs ONNX Runtime (:mod:`benchmarks.bench_model`), and
   :mod:`benchmarks.bench_quantize` (int8 vs float) when it is in this build;

and writes ``benchmarks/RESULTS.md``, the latency plot and a JSON of everything::

    python -m benchmarks.run_all --report benchmarks/RESULTS.md --plot benchmarks/latency.png
    python -m benchmarks.run_all --quick --report /tmp/R.md     # a smoke run of the whole report
    python -m benchmarks.run_all --from-json all.json           # re-render a saved run (--json all.json)

Needs the train and export extras (torch, onnx) and matplotlib.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.bench import measure, run_child
from benchmarks.budgets import load_targets
from benchmarks.report import REGENERATE, text_table, write_report
from edge.bundle import Bundle, default_bundle_path, load_bundle, save_bundle
from edge.errors import EdgeError

__all__ = ["build_float_bundle", "collect_sections", "main"]


def build_float_bundle(base: Bundle, directory: str | Path, seed: int = 0) -> Bundle:
    """A release-size float32 bundle with ``base``'s inputs and outputs (random weights: timing only).

    One ``end_to_end`` ONNX graph: the k images of a window through the
    Tiny-BioMoE backbone in its export form, a :class:`~training.models.FusionHead`
    over the k embeddings, softmax. Marked ``placeholder`` (its predictions
    mean nothing); its size and speed are the float model's.
    """
    import torch

    from training.models import FusionHead, tiny_biomoe, to_export_form

    torch.manual_seed(seed)
    k, size, n_classes = base.n_images, base.image_size, len(base.labels)

    class WindowModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = to_export_form(tiny_biomoe().eval())
            self.head = FusionHead(num_embeddings=k, num_classes=n_classes).eval()

        def forward(self, images):
            return torch.softmax(self.head(self.backbone(images).unsqueeze(0)), dim=-1).reshape(-1)

    with tempfile.TemporaryDirectory() as folder:
        graph = Path(folder) / "model.onnx"
        with contextlib.redirect_stdout(io.StringIO()), torch.inference_mode(False):
            torch.onnx.export(WindowModel().eval(), (torch.rand(k, 3, size, size),), str(graph), dynamo=True,
                              input_names=["images"], output_names=["probabilities"], external_data=False)
        manifest = {key: value for key, value in base.manifest.items() if key not in ("files", "graphs")}
        manifest.update(
            name="release-size-float32",
            description="Tiny-BioMoE export form + fusion head, float32, random weights, built by "
                        "benchmarks.run_all for timing: its predictions are meaningless.",
            placeholder=True, backend="onnxruntime", pipeline="end_to_end", quantization=None, parity=None,
            graphs={"model": {"file": "model.onnx",
                              "inputs": [{"name": "images", "shape": [k, 3, size, size], "dtype": "float32"}],
                              "outputs": [{"name": "probabilities", "shape": [n_classes]}],
                              "produces": "probabilities"}},
        )
        return save_bundle(directory, manifest, {"model.onnx": graph})


def collect_sections(quick: bool, threads: int, progress=lambda line: None) -> list[dict]:
    """The per-area benchmarks' tables (see :mod:`benchmarks.report`)."""
    from benchmarks import bench_bridge, bench_model, bench_representations

    progress("run_all: representations vs matplotlib")
    sections = bench_representations.collect(repeats=3 if quick else 20)
    progress("run_all: bridge decoding")
    sections += bench_bridge.collect(seconds=60 if quick else 3600, repeat=1 if quick else 3)
    progress("run_all: model forms")
    sections += bench_model.collect(batch_sizes=(1, 5), threads=threads, warmup=1 if quick else 3,
                                    repeats=2 if quick else 15, onnx=not quick)
    progress("run_all: quantization")
    result = run_child("benchmarks.bench_quantize", [], timeout_s=3600)
    if result["returncode"] != 0:
        raise EdgeError(f"benchmarks.bench_quantize failed: {result['stderr'].strip()[-300:]}")
    sections.append({"title": "Quantization: int8 vs float", "command": "python -m benchmarks.bench_quantize",
                     "text": result["stdout"], "notes": []})
    return sections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, help="bundle folder (default: the bundle shipped with biomoe)")
    parser.add_argument("--budgets", type=Path, help="budgets TOML file (default: benchmarks/budgets.toml)")
    parser.add_argument("--threads", type=int, default=2, help="inference threads (default: 2)")
    parser.add_argument("--quick", action="store_true", help="few repetitions: checks the report, not the numbers")
    parser.add_argument("--no-float-bundle", action="store_true",
                        help="do not build the release-size float32 bundle (built when the bundle is a placeholder "
                             "or quantized)")
    parser.add_argument("--report", type=Path, default=Path("benchmarks/RESULTS.md"), help="markdown report")
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/latency.png"), help="latency plot (PNG)")
    parser.add_argument("--json", type=Path, help="also write every record and table as JSON")
    parser.add_argument("--from-json", type=Path,
                        help="measure nothing: write the report and plot from a JSON an earlier --json run wrote")
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        write_report(saved["records"], load_targets(args.budgets), report=args.report, plot=args.plot,
                     sections=saved["sections"], command=saved.get("command", REGENERATE))
        print(f"wrote {args.report} and {args.plot} from {args.from_json}")
        return 0

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        targets = load_targets(args.budgets)
        bundle = load_bundle(args.bundle or default_bundle_path())
        repetition = {"warmup": 1, "repeats": 3, "processes": 2} if args.quick else {
            "warmup": 3, "repeats": 20, "processes": 5}
        records = [measure(bundle, threads=args.threads, progress=progress, **repetition)]
        with tempfile.TemporaryDirectory() as folder:
            if (bundle.placeholder or bundle.quantization) and not args.no_float_bundle:
                progress("run_all: building a release-size float32 bundle (ONNX export)")
                float_bundle = build_float_bundle(bundle, Path(folder) / "release-size-float32")
                record = measure(float_bundle, threads=args.threads, progress=progress, **repetition)
                record["bundle"]["note"] = ("Built by `benchmarks.run_all` (random weights, same inputs as the bundle "
                                            "above): the float32 model's real size and speed, for comparison.")
                records.append(record)
        sections = collect_sections(args.quick, args.threads, progress)
    except (EdgeError, ValueError, OSError) as exc:
        print(f"run_all: error: {exc}", file=sys.stderr)
        return 1
    command = REGENERATE if not args.quick else "python -m benchmarks.run_all --quick"
    write_report(records, targets, report=args.report, plot=args.plot, sections=sections, command=command)
    for section in sections:
        print(text_table(section) + "\n")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "records": records, "sections": sections}, indent=1)
                             + "\n", encoding="utf-8")
    print(f"wrote {args.report} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
