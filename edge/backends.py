"""Inference backends: run a bundle's graph(s) on the images of a window.

:func:`create_backend` picks the runtime the bundle names: ONNX Runtime for
``.onnx`` graphs, LiteRT (the TensorFlow Lite interpreter) for ``.tflite``.
Both run either pipeline of ``edge/BUNDLE.md``:

- ``end_to_end``: images ``(k, 3, S, S)`` -> class scores;
- ``backbone_head``: images -> embeddings ``(k, D)``, reshaped to the head's
  input ``(1, k, D)`` or ``(1, k*D)`` -> class scores.

Scores a graph declares as ``logits`` go through a softmax; declared
``probabilities`` are only renormalised (float32 rounding). Every backend
returns float64 probabilities that sum to 1.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Mapping

import numpy as np

from edge.bundle import PIPELINE_GRAPHS, Bundle, GraphSpec
from edge.errors import EdgeError
from edge.memory import large_blocks_unmapped

__all__ = ["Backend", "OnnxRuntimeBackend", "LiteRTBackend", "create_backend", "onnx_session", "softmax"]


SCALARS_INPUT = "scalars"
"""Name of a head graph's second input: the window's calibrated physiological scalars."""


def softmax(logits, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis`` (float64)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


class Backend:
    """Runs a bundle's pipeline; subclasses supply :meth:`_run` for one graph.

    Parameters
    ----------
    bundle : Bundle
        A loaded bundle (:func:`edge.bundle.load_bundle`).
    """

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.labels = bundle.labels

    def predict(self, images, scalars=None) -> np.ndarray:
        """Class probabilities of one window.

        Parameters
        ----------
        images : array_like, shape (k, 3, S, S)
            The window's images in the bundle's fusion order, float32 in [0, 1]
            (``edge.representations.to_model_input``).
        scalars : array_like, shape (d,), optional
            The window's physiological scalars in the bundle's order
            (``bundle.scalars``), already calibrated; required when the bundle has any.

        Returns
        -------
        numpy.ndarray, shape (n_classes,)
            float64 probabilities in label order, summing to 1.
        """
        images = np.asarray(images)
        expected = (self.bundle.n_images, 3, self.bundle.image_size, self.bundle.image_size)
        if images.shape != expected:
            raise ValueError(
                f"images of one window must have shape {expected} for bundle {self.bundle.name}, "
                f"got {images.shape}; build them with the bundle's fusion list"
            )
        return self.predict_batch(images[np.newaxis], None if scalars is None else np.asarray(scalars)[np.newaxis])[0]

    def predict_batch(self, images, scalars=None) -> np.ndarray:
        """Class probabilities of several windows: :meth:`embed` then :meth:`classify`.

        Parameters
        ----------
        images : array_like, shape (n, k, 3, S, S)
        scalars : array_like, shape (n, d), optional

        Returns
        -------
        numpy.ndarray, shape (n, n_classes)
        """
        images = self._check_images(images)
        if self.bundle.pipeline == "end_to_end":
            graph = self.bundle.graphs["model"]
            return self._probabilities(np.stack([self._run(graph, window).reshape(-1) for window in images]))
        return self.classify(self.embed(images), scalars)

    def embed(self, images) -> np.ndarray:
        """Backbone embeddings ``(n, k, D)`` of ``(n, k, 3, S, S)`` images (``backbone_head`` bundles).

        A backbone with a dynamic batch dimension sees one image per call (a
        fixed-batch one, its batch): then the activations of one image, not
        of a window, set the peak memory (the monitor's peak RSS fell from 244
        to 157 MB; :mod:`edge.memory` takes it to 143), and on this machine a
        call per image was no slower per image than a batch of five (ONNX
        Runtime 23.1 vs 24.3 ms, ``python -m benchmarks.bench_model
        --batch-sizes 1 5``). Any k is accepted.
        """
        images = self._check_images(images, any_count=True)
        if self.bundle.pipeline != "backbone_head":
            raise EdgeError(f"bundle {self.bundle.name} is one end-to-end graph: it has no separate embeddings")
        n_windows, k = images.shape[:2]
        backbone = self.bundle.graphs["backbone"]
        flat = images.reshape((n_windows * k,) + images.shape[2:])
        step = 1 if backbone.batch_is_dynamic else int(backbone.input_shape[0])
        embeddings = np.concatenate([self._run(backbone, flat[i:i + step]) for i in range(0, len(flat), step)])
        return embeddings.reshape(n_windows, k, -1)

    def classify(self, embeddings, scalars=None) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` from embeddings ``(n, k, D)`` and, if the bundle has them, scalars ``(n, d)``."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        n_windows = len(embeddings)
        head = self.bundle.graphs["head"]
        layout = tuple(int(d) for d in head.input_shape[1:])  # (k, D) or (k*D,)
        if embeddings.size != n_windows * int(np.prod(layout)):
            raise EdgeError(
                f"bundle {self.bundle.name}: the backbone returned embeddings of shape {embeddings.shape} "
                f"but the head expects {list(head.input_shape)}; re-export the bundle"
            )
        head_inputs = embeddings.reshape((n_windows,) + layout)
        n_scalars = len(self.bundle.scalars)
        if n_scalars:
            if scalars is None or np.shape(scalars) != (n_windows, n_scalars):
                raise ValueError(
                    f"bundle {self.bundle.name} also reads {n_scalars} physiological scalars per window "
                    f"({', '.join(self.bundle.scalars)}); got {None if scalars is None else np.shape(scalars)}"
                )
            scalars = np.asarray(scalars, dtype=np.float32)
        if head.batch_is_dynamic:
            scores = self._run_head(head, head_inputs, scalars).reshape(n_windows, -1)
        else:
            scores = np.stack([
                self._run_head(head, head_inputs[i:i + 1], None if scalars is None else scalars[i:i + 1]).reshape(-1)
                for i in range(n_windows)
            ])
        return self._probabilities(scores)

    def _probabilities(self, scores: np.ndarray) -> np.ndarray:
        n_classes = len(self.labels)
        if scores.shape[1] != n_classes:
            raise EdgeError(
                f"bundle {self.bundle.name}: the model returned {scores.shape[1]} scores per window but the "
                f"bundle has {n_classes} labels; re-export the bundle"
            )
        final = self.bundle.graphs[PIPELINE_GRAPHS[self.bundle.pipeline][-1]]
        if final.produces == "logits":
            probabilities = softmax(scores, axis=1)
        else:
            scores = np.clip(scores.astype(np.float64), 0.0, None)
            probabilities = scores / scores.sum(axis=1, keepdims=True)
        if not np.isfinite(probabilities).all():
            raise EdgeError(
                f"bundle {self.bundle.name}: the model returned non-finite or all-zero scores {scores.tolist()}; "
                "check the input images, or re-export the bundle"
            )
        return probabilities

    def close(self) -> None:
        """Release the runtime's resources."""

    def _check_images(self, images, any_count: bool = False) -> np.ndarray:
        images = np.asarray(images)
        size = self.bundle.image_size
        k = images.shape[1] if any_count and images.ndim == 5 else self.bundle.n_images
        expected = (k, 3, size, size)
        if images.ndim != 5 or images.shape[1:] != expected:
            raise ValueError(
                f"images must have shape (n_windows, {k}, 3, {size}, {size}) for bundle {self.bundle.name}, "
                f"got {images.shape}; build them with the bundle's fusion list"
            )
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"images must be floats in [0, 1], got dtype {images.dtype}")
        return images.astype(np.float32, copy=False)

    def _run(self, graph: GraphSpec, inputs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _run_head(self, graph: GraphSpec, embeddings: np.ndarray, scalars: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def onnx_session(path, threads: int = 2, config: Mapping[str, str] | None = None):
    """An ONNX Runtime CPU session as the device runs it.

    ``threads`` intra-op threads, every graph optimisation, sequential
    execution (the device has few cores and runs one window at a time), and
    the graph's own session ``config`` entries from the bundle manifest.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No pre-planned activation block per input shape: for a 5-image window of
    # the default bundle a bare process peaked at 259 MB instead of 379 MB, for
    # ~5 % more inference time (one-off measurement, interleaved in one process);
    # `biomoe bench` reports the monitor's peak (benchmarks/RESULTS.md).
    options.enable_mem_pattern = False
    options.log_severity_level = 3  # errors only: warnings would flood the device's journal
    # Idle worker threads sleep instead of spinning: one window every few seconds
    # gains nothing from spinning, which burns the battery and, on a loaded
    # 2-core machine, slowed inference by about 30 % (benchmarks/bench.py).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on the CPU, one :func:`onnx_session` per graph.

    Every graph is checked against the manifest when loaded (tensor names
    and shapes), and the graphs against each other and the bundle (embedding
    width, class count), so a mismatched bundle is refused before the
    monitor stores anything.
    """

    def __init__(self, bundle: Bundle, threads: int = 2):
        super().__init__(bundle)
        self._sessions = {}
        shapes = {}
        for role, graph in bundle.graphs.items():
            path = bundle.graph_path(role)
            try:
                session = onnx_session(path, threads, graph.onnxruntime_config)
            except Exception as exc:  # onnxruntime raises its own untyped errors for bad models
                raise EdgeError(
                    f"bundle {bundle.name}: ONNX Runtime cannot load {graph.file} "
                    f"({str(exc).splitlines()[0][:200]}); re-export the bundle or upgrade onnxruntime"
                ) from None
            inputs, outputs = session.get_inputs(), session.get_outputs()
            _check_names(bundle, graph, [i.name for i in inputs], [o.name for o in outputs])
            shapes[role] = (next(i.shape for i in inputs if i.name == graph.input_name),
                            next(o.shape for o in outputs if o.name == graph.output_name))
            _check_shape(bundle, graph, "input", graph.input_shape, shapes[role][0])
            if graph.output_shape is not None:
                _check_shape(bundle, graph, "output", graph.output_shape, shapes[role][1])
            if role == "head":
                _check_scalars_input(bundle, graph, {i.name: i.shape for i in inputs})
            self._sessions[role] = session
        _check_pipeline(bundle, shapes)

    def _run(self, graph: GraphSpec, inputs: np.ndarray) -> np.ndarray:
        session = self._sessions[graph.role]
        return session.run([graph.output_name], {graph.input_name: inputs})[0]

    def _run_head(self, graph: GraphSpec, embeddings: np.ndarray, scalars: np.ndarray | None) -> np.ndarray:
        feeds = {graph.input_name: embeddings}
        if scalars is not None:
            feeds[SCALARS_INPUT] = scalars
        return self._sessions[graph.role].run([graph.output_name], feeds)[0]

    def close(self) -> None:
        self._sessions.clear()


class LiteRTBackend(Backend):
    """LiteRT (TensorFlow Lite) interpreter with ``threads`` threads.

    Imports ``ai_edge_litert.interpreter`` when created (a base requirement;
    a broken install gets a one-line error). Fully quantized graphs with integer
    inputs/outputs are fed and read through their scale and zero point. A
    head with scalars has two inputs: the one the manifest names (or the
    first) takes the embeddings, the other the scalars (LiteRT names inputs
    after the converter's arguments, not after the model's).
    """

    def __init__(self, bundle: Bundle, threads: int = 2):
        super().__init__(bundle)
        interpreter_class = _litert_interpreter_class()
        self._graphs = {}
        shapes = {}
        for role, graph in bundle.graphs.items():
            try:
                with _native_stderr_silenced():
                    interpreter = interpreter_class(model_path=str(bundle.graph_path(role)), num_threads=int(threads))
                    interpreter.allocate_tensors()  # applies the XNNPACK delegate, which announces itself
            except (ValueError, RuntimeError) as exc:
                raise EdgeError(
                    f"bundle {bundle.name}: LiteRT cannot load {graph.file} ({str(exc).splitlines()[0][:200]}); "
                    "re-export the bundle or upgrade ai-edge-litert"
                ) from None
            inputs = sorted(interpreter.get_input_details(), key=lambda detail: detail["index"])
            outputs = interpreter.get_output_details()
            main = _pick(inputs, graph.input_name)
            others = [detail for detail in inputs if detail is not main]
            output = _pick(outputs, graph.output_name)
            _check_names(
                bundle, graph, [main["name"]], [d["name"] for d in outputs], allow_single=True
            )
            shapes[role] = (_litert_shape(main), _litert_shape(output))
            _check_shape(bundle, graph, "input", graph.input_shape, shapes[role][0])
            if graph.output_shape is not None:
                _check_shape(bundle, graph, "output", graph.output_shape, shapes[role][1])
            if role == "head":
                _check_scalars_input(bundle, graph, {SCALARS_INPUT: others[0]["shape"]} if others else {})
            self._graphs[role] = _LiteRTGraph(interpreter, [main, *others[:1]], output)
        _check_pipeline(bundle, shapes)

    def _run(self, graph: GraphSpec, inputs: np.ndarray) -> np.ndarray:
        return self._graphs[graph.role].run(inputs)

    def _run_head(self, graph: GraphSpec, embeddings: np.ndarray, scalars: np.ndarray | None) -> np.ndarray:
        return self._graphs[graph.role].run(embeddings, *(() if scalars is None else (scalars,)))

    def close(self) -> None:
        self._graphs.clear()


class _LiteRTGraph:
    """One interpreter, its input details in feeding order and its output; re-sized when a batch's shapes change."""

    def __init__(self, interpreter, inputs: list[dict], output: dict):
        self.interpreter, self.inputs, self.output = interpreter, inputs, output
        self.allocated = tuple(tuple(int(d) for d in detail["shape"]) for detail in inputs)  # as loaded

    def run(self, *arrays: np.ndarray) -> np.ndarray:
        shapes = tuple(array.shape for array in arrays)
        if shapes != self.allocated:
            for detail, shape in zip(self.inputs, shapes):
                self.interpreter.resize_tensor_input(detail["index"], list(shape))
            self.interpreter.allocate_tensors()
            self.allocated = shapes
        for detail, array in zip(self.inputs, arrays):
            self.interpreter.set_tensor(detail["index"], _quantize(array, detail))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)


def _litert_shape(detail: dict) -> list:
    """A LiteRT tensor's shape with the batch free (the backend resizes it to each call's), and any size the
    graph's signature leaves free (-1)."""
    shape = [None if size < 0 else int(size) for size in detail.get("shape_signature", detail["shape"])]
    return [None, *shape[1:]]


@contextlib.contextmanager
def _native_stderr_silenced():
    """File descriptor 2 pointed at /dev/null: LiteRT's C++ core prints INFO lines there (the XNNPACK
    delegate's creation) with no switch to turn them off, and a user's stderr is for errors."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _litert_interpreter_class():
    try:
        return importlib.import_module("ai_edge_litert.interpreter").Interpreter
    except ImportError:
        raise EdgeError(
            "this bundle runs on LiteRT, which is not installed; pip install ai-edge-litert "
            "(or use an ONNX bundle, backend onnxruntime)"
        ) from None


def _pick(details: list[dict], name: str) -> dict:
    """The tensor named ``name``, or the only one."""
    for detail in details:
        if detail["name"] == name:
            return detail
    return details[0]


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer):
        return values.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    if not np.issubdtype(values.dtype, np.integer):
        return values
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float64) - zero_point) * scale


def _check_names(bundle: Bundle, graph: GraphSpec, inputs: list[str], outputs: list[str], allow_single=False):
    """Refuse a graph whose tensors differ from the manifest's (a mixed-up export)."""
    for kind, declared, actual in (("input", graph.input_name, inputs), ("output", graph.output_name, outputs)):
        if declared in actual or (allow_single and len(actual) == 1):
            continue
        raise EdgeError(
            f"bundle {bundle.name}: {graph.file} has {kind}s {actual} but the manifest says {declared!r}; "
            "re-export the bundle"
        )


def _check_scalars_input(bundle: Bundle, graph: GraphSpec, inputs: dict[str, list]) -> None:
    """Refuse a head whose ``scalars`` input disagrees with the manifest's ``scalars`` list."""
    shape = inputs.get(SCALARS_INPUT)
    expected = len(bundle.scalars)
    if (shape is None) != (expected == 0) or (shape is not None and shape[-1] != expected):
        has = "no scalars input" if shape is None else f"a scalars input of shape {_shape_text(shape)}"
        raise EdgeError(
            f"bundle {bundle.name}: {graph.file} has {has} but the manifest lists {expected} scalars; "
            "re-export the bundle"
        )


def _check_shape(bundle: Bundle, graph: GraphSpec, kind: str, declared: tuple, actual: list) -> None:
    """Refuse a graph whose tensor shape differs from the manifest's.

    A fixed size must match; a size the manifest leaves free (a name) must be
    free in the graph too, as the runtime may feed any size there.
    """
    if len(declared) != len(actual) or not all(map(_size_fits, declared, actual)):
        raise EdgeError(
            f"bundle {bundle.name}: {graph.file} has {kind} shape {_shape_text(actual)} but the manifest says "
            f"{_shape_text(declared)}; re-export the bundle"
        )


def _size_fits(declared, actual) -> bool:
    if isinstance(declared, int):
        return actual == declared or not isinstance(actual, int)  # a free size in the graph takes any
    return not isinstance(actual, int)


def _check_pipeline(bundle: Bundle, shapes: dict[str, tuple[list, list]]) -> None:
    """Refuse graphs that do not fit together: embedding width into the head, class scores against labels."""
    roles = PIPELINE_GRAPHS[bundle.pipeline]
    final = bundle.graphs[roles[-1]]
    width = shapes[roles[-1]][1][-1]
    if isinstance(width, int) and width != len(bundle.labels):
        raise EdgeError(
            f"bundle {bundle.name}: {final.file} outputs {width} class scores but the manifest has "
            f"{len(bundle.labels)} labels {list(bundle.labels)}; re-export the bundle"
        )
    if bundle.pipeline == "backbone_head":
        embedding = shapes["backbone"][1][-1]
        head = shapes["head"][0]
        takes = head[-1]
        if len(head) == 2 and isinstance(takes, int):  # [1, k*D]: the k embeddings side by side
            takes //= bundle.n_images
        if isinstance(embedding, int) and isinstance(takes, int) and embedding != takes:
            raise EdgeError(
                f"bundle {bundle.name}: {bundle.graphs['backbone'].file} makes embeddings of {embedding} values but "
                f"{bundle.graphs['head'].file} takes {_shape_text(head)} for {bundle.n_images} images; "
                "re-export the bundle"
            )


def _shape_text(shape) -> str:
    return "[" + ", ".join("?" if size is None else str(size) for size in shape) + "]"


_BACKEND_CLASSES = {"onnxruntime": OnnxRuntimeBackend, "litert": LiteRTBackend}


def create_backend(bundle: Bundle, threads: int = 2) -> Backend:
    """The backend the bundle names, ready to :meth:`~Backend.predict`.

    Parameters
    ----------
    bundle : Bundle
        A loaded bundle.
    threads : int
        Threads for the runtime's operators (a Raspberry Pi 4/5 has 4 cores;
        leave one for the serial reader and the representations).

    Raises
    ------
    EdgeError
        When the runtime is not installed or cannot load a graph.
    """
    if not (isinstance(threads, int) and threads >= 1):
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    with large_blocks_unmapped():  # the load's temporary buffers must not stay resident (edge/memory.py)
        return _BACKEND_CLASSES[bundle.backend](bundle, threads=threads)
