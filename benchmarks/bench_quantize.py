"""Latency and file size of the deployable variants of the backbone, one image per call.

Measures, in one run and one process, at batch 1 with ``--threads`` threads:

- ``PyTorch eager``: the release-equivalent model as loaded (FFT spectral gating);
- ``ONNX float32``, ``ONNX int8`` and ``ONNX int8 weight-only``: the
  bundle's backbone graphs in ONNX Runtime (int8 as ``biomoe export --int8``
  makes it, without the sensitivity pass; weight-only as
  ``--int8-scheme weight-only``, run with the session config its bundle carries,
  and without it, which shows what folding the weights at load saves);
- ``TFLite float32`` and ``TFLite int8``: the litert-torch graphs in LiteRT
  (XNNPACK), unless ``--no-tflite``.

Calibration images come from a small generated cohort (``training.synth``).
Variants run in interleaved rounds (order reversed every other round) so a
load change hits them alike; the median is reported. The output is a
markdown table plus the int8 ONNX / eager ratio and the machine's load
average (colleagues' jobs skew absolute numbers; ratios from one run hold).
Then ONNX Runtime's profiler splits the float32 graph's time by operator:
the time outside ``Conv``/``MatMul``/``Gemm`` (and their layout reorders) is
a floor for any int8 model that keeps those operators float. Last, the
backbone's four largest convolutions run alone as float ``Conv`` and as
``QLinearConv`` (uint8 in and out, no quantize/dequantize around it; each
lone node converts its own layout): the speed-up int8 kernels give on this
CPU, which bounds what an int8 graph in ONNX Runtime can reach.

Usage::

    python -m benchmarks.bench_quantize [--checkpoint B.pth] [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.bench import script_main, time_interleaved

__all__ = ["configure_parser", "main", "run"]

_GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tiny_biomoe" / "golden_checkpoint.pth"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path,
                        help="backbone checkpoint (default: the golden checkpoint if present, else random weights)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every runtime (default: 2)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per variant first (default: 3)")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds (default: 20)")
    parser.add_argument("--no-tflite", action="store_true", help="skip the TFLite variants")
    parser.add_argument("--pipelines", action="store_true",
                        help="instead: one window of 5 images, end_to_end graph vs backbone_head bundle (float ONNX)")


def _calibration_images(count: int) -> np.ndarray:
    """Representation images of a generated two-subject cohort (every representation of every channel)."""
    from edge.representations import REPRESENTATIONS, RepresentationSpec
    from quantize.images import window_images
    from training.ai4pain import load_split
    from training.synth import synthesize_cohort

    spec = RepresentationSpec()
    with tempfile.TemporaryDirectory() as root:
        synthesize_cohort(root, "train", 2, seed=0)
        windows = load_split(root, "train")
    fusion = [{"modality": m, "representation": r} for m in windows.modalities for r in REPRESENTATIONS]
    chosen = windows.signals[np.linspace(0, len(windows) - 1, 4).astype(int)]
    images = window_images(chosen, windows.modalities, fusion, spec, windows.sampling_rate).reshape(-1, 3, 224, 224)
    return images[np.random.default_rng(0).choice(len(images), size=min(count, len(images)), replace=False)]


def _build(model, folder: Path, with_tflite: bool) -> dict[str, tuple[Path, str, dict]]:
    """Write every variant's file; name -> (path, runtime, ONNX Runtime session config)."""
    from quantize.graphs import export_backbone_onnx
    from quantize.onnx_int8 import WEIGHT_ONLY_SESSION_CONFIG, quantize_backbone_int8, quantize_backbone_weight_only

    images = _calibration_images(128)
    with contextlib.redirect_stdout(io.StringIO()):
        export_backbone_onnx(model, folder / "backbone.onnx", keep_metadata=True)
        quantize_backbone_int8(folder / "backbone.onnx", folder / "backbone.int8.onnx", images, sensitivity=False)
        quantize_backbone_weight_only(folder / "backbone.onnx", folder / "backbone.wo.onnx")
    variants = {
        "ONNX float32": (folder / "backbone.onnx", "onnx", {}),
        "ONNX int8": (folder / "backbone.int8.onnx", "onnx", {}),
        "ONNX int8 weight-only": (folder / "backbone.wo.onnx", "onnx", WEIGHT_ONLY_SESSION_CONFIG),
        "ONNX int8 weight-only, dequantized per call": (folder / "backbone.wo.onnx", "onnx", {}),
    }
    if with_tflite:
        from quantize.tflite import convert_backbone_tflite, quantize_tflite_int8

        convert_backbone_tflite(model, folder / "backbone.tflite")
        quantize_tflite_int8(folder / "backbone.tflite", folder / "backbone.int8.tflite", images[:32])
        variants["TFLite float32"] = (folder / "backbone.tflite", "tflite", {})
        variants["TFLite int8"] = (folder / "backbone.int8.tflite", "tflite", {})
    return variants


def _runner(path: Path, runtime: str, config: dict, image: np.ndarray, threads: int):
    if runtime == "onnx":
        from quantize.onnx_int8 import onnx_session

        session = onnx_session(path, threads, config)
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: image})
    from quantize.tflite import tflite_interpreter

    interpreter = tflite_interpreter(path, threads)
    index = interpreter.get_input_details()[0]["index"]

    def invoke():
        interpreter.set_tensor(index, image)
        interpreter.invoke()

    return invoke


def _compare_pipelines(model, args) -> None:
    """ms per window (5 images) of one end_to_end graph vs backbone + head graphs, float ONNX."""
    import torch

    from quantize.graphs import ProbabilityHead, export_backbone_onnx, export_form_backbone, export_head_onnx, export_onnx
    from quantize.onnx_int8 import onnx_session
    from training.models import FusionHead

    k = 5
    head = FusionHead(k).eval()

    class EndToEnd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = export_form_backbone(model), ProbabilityHead(head)

        def forward(self, images):
            return self.head(self.backbone(images).reshape(1, k, -1))[0]

    window = np.random.default_rng(0).random((k, 3, 224, 224), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()):
        folder = Path(folder)
        export_onnx(EndToEnd().eval(), torch.from_numpy(window), folder / "model.onnx", "images", "probabilities")
        export_backbone_onnx(model, folder / "backbone.onnx")
        export_head_onnx(head, folder / "head.onnx")
        end_to_end = onnx_session(folder / "model.onnx", args.threads)
        backbone, head_session = onnx_session(folder / "backbone.onnx", args.threads), onnx_session(folder / "head.onnx", args.threads)
        runners = {
            "end_to_end (1 graph)": lambda: end_to_end.run(None, {"images": window}),
            "backbone_head (2 graphs)": lambda: head_session.run(
                None, {"embeddings": backbone.run(None, {"images": window})[0].reshape(1, k, -1)}),
        }
        times_ms = time_interleaved(runners, args.warmup, args.repeats)
    print(f"One window of {k} images, float ONNX, {args.threads} threads, median of {args.repeats} rounds; "
          f"load average {os.getloadavg()[0]:.2f}")
    print()
    print("| pipeline | ms/window |")
    print("| --- | ---: |")
    for name, values in times_ms.items():
        print(f"| {name} | {statistics.median(values):.1f} |")


def run(args: argparse.Namespace) -> int:
    """Build the variants, time them, print the markdown table."""
    for name in ("threads", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    import torch

    from training.models import load_backbone, tiny_biomoe

    checkpoint = args.checkpoint or (_GOLDEN if _GOLDEN.is_file() else None)
    model = load_backbone(checkpoint) if checkpoint else tiny_biomoe().eval()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    if args.pipelines:
        try:
            _compare_pipelines(model, args)
        finally:
            torch.set_num_threads(previous_threads)
        return 0
    try:
        with tempfile.TemporaryDirectory() as folder:
            variants = _build(model, Path(folder), not args.no_tflite)
            image = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
            tensor = torch.from_numpy(image)
            runners = {"PyTorch eager (FFT)": lambda: model(tensor)}
            runners.update({name: _runner(path, runtime, config, image, args.threads)
                            for name, (path, runtime, config) in variants.items()})
            sizes = {name: path.stat().st_size for name, (path, _, _) in variants.items()}
            sizes["PyTorch eager (FFT)"] = sum(t.numel() * t.element_size() for t in model.state_dict().values())
            with torch.inference_mode():
                times_ms = time_interleaved(runners, args.warmup, args.repeats)
            operator_ms = _operator_times(variants["ONNX float32"][0], image, args.threads, args.repeats)
            kernel_ms = _kernel_times(args.threads, args.warmup, args.repeats)
    finally:
        torch.set_num_threads(previous_threads)
    ms = {name: statistics.median(values) for name, values in times_ms.items()}
    eager = ms["PyTorch eager (FFT)"]
    print(f"Backbone latency, batch 1, {args.threads} threads, median of {args.repeats} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; torch {torch.__version__}")
    print()
    print("| variant | ms/image | x eager | file MB |")
    print("| --- | ---: | ---: | ---: |")
    for name in runners:
        print(f"| {name} | {ms[name]:.1f} | {ms[name] / eager:.2f} | {sizes[name] / 1e6:.2f} |")
    print()
    print(f"int8 ONNX / eager: {ms['ONNX int8'] / eager:.2f} (goal <= 0.25); "
          f"int8 ONNX file {sizes['ONNX int8'] / 1e6:.2f} MB (goal <= 8)")
    gemm = sum(operator_ms.get(op, 0.0) for op in _INT8_CAPABLE)
    rest = sum(operator_ms.values()) - gemm
    print()
    print(f"ONNX float32 by operator (ONNX Runtime profiler, {args.repeats} runs): "
          f"{', '.join(f'{op} {operator_ms.get(op, 0.0):.1f}' for op in _INT8_CAPABLE)} ms; everything else {rest:.1f} ms = {rest / eager:.2f} x eager, the floor of an int8 model that "
          f"keeps those operators float")
    float_ms, int8_ms = (sum(statistics.median(kernel_ms[(shape, kind)]) for shape in _LARGEST_CONVS)
                         for kind in ("float", "int8"))
    speedup = float_ms / int8_ms
    bound = rest + gemm / speedup
    print()
    print(f"int8 kernels alone, the {len(_LARGEST_CONVS)} largest convolutions (QLinearConv vs Conv, median of "
          f"{args.repeats}): {float_ms:.2f} -> {int8_ms:.2f} ms, {speedup:.1f}x. At that speed-up for every "
          f"Conv/MatMul and no quantize/dequantize cost, an int8 graph would take {bound:.1f} ms = "
          f"{bound / eager:.2f} x eager")
    return 0


#: (input channels, output channels, kernel, groups, map size) of the backbone's largest convolutions:
#: SpectFormer's stem 3x3, stage-1 MLP fc1 / depthwise / fc2 (GridMlp).
_LARGEST_CONVS = ((32, 32, 3, 1, 112), (64, 512, 1, 1, 56), (512, 512, 3, 512, 56), (512, 64, 1, 1, 56))


def _kernel_times(threads: int, warmup: int, runs: int) -> dict[tuple, list[float]]:
    """ms per call of single-node float ``Conv`` and ``QLinearConv`` models, per shape in :data:`_LARGEST_CONVS`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from quantize.onnx_int8 import onnx_session

    rng = np.random.default_rng(0)
    runners = {}
    for shape in _LARGEST_CONVS:
        channels_in, channels_out, kernel, groups, size = shape
        weight = rng.standard_normal((channels_out, channels_in // groups, kernel, kernel)).astype(np.float32)
        attributes = {"kernel_shape": [kernel, kernel], "pads": [kernel // 2] * 4, "group": groups}
        scale, zero = numpy_helper.from_array(np.float32(0.02), "scale"), numpy_helper.from_array(np.uint8(128), "zero")
        graphs = {
            "float": (helper.make_node("Conv", ["x", "w"], ["y"], **attributes), TensorProto.FLOAT,
                      [numpy_helper.from_array(weight, "w")], np.float32),
            "int8": (helper.make_node("QLinearConv", ["x", "scale", "zero", "w", "scale", "wzero", "scale", "zero"],
                                      ["y"], **attributes), TensorProto.UINT8,
                     [numpy_helper.from_array(np.clip(weight * 40, -127, 127).astype(np.int8), "w"), scale, zero,
                      numpy_helper.from_array(np.int8(0), "wzero")], np.uint8),
        }
        for kind, (node, element, initializers, dtype) in graphs.items():
            graph = helper.make_graph([node], "kernel", [helper.make_tensor_value_info("x", element, [1, channels_in, size, size])],
                                      [helper.make_tensor_value_info("y", element, None)], initializers)
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
            with tempfile.NamedTemporaryFile(suffix=".onnx") as file:
                onnx.save(model, file.name)
                session = onnx_session(file.name, threads)
            feed = {"x": (rng.random((1, channels_in, size, size)) * (1 if dtype == np.float32 else 255)).astype(dtype)}
            runners[(shape, kind)] = lambda session=session, feed=feed: session.run(None, feed)
    return time_interleaved(runners, warmup, runs)


#: Operators int8 can speed up, and the NCHWc layout reorders around float convolutions.
_INT8_CAPABLE = ("Conv", "MatMul", "FusedMatMul", "Gemm", "ReorderInput", "ReorderOutput")


def _operator_times(path: Path, image: np.ndarray, threads: int, runs: int) -> dict[str, float]:
    """ms per run spent in each operator type of an ONNX model (ONNX Runtime's profiler)."""
    import json

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(runs):
            session.run(None, {name: image})
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + event["dur"] / 1000 / runs
    return totals


def main(argv: list[str] | None = None) -> int:
    return script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
