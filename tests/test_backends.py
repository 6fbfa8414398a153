import sys
import types

import numpy as np
import pytest
from conftest import require_module

onnx = require_module("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edge.backends import LiteRTBackend, OnnxRuntimeBackend, create_backend, onnx_session, softmax  # noqa: E402
from edge.bundle import save_bundle  # noqa: E402
from edge.errors import EdgeError  # noqa: E402

K, S, D, C = 2, 16, 8, 3
LABELS = ["No Pain", "Low Pain", "High Pain"]
RNG = np.random.default_rng(7)
W_IMAGE = RNG.normal(size=(3, D)).astype(np.float32)  # backbone: channel means -> embedding
W_HEAD = RNG.normal(size=(K * D, C)).astype(np.float32)  # head: k embeddings -> logits
W_E2E = RNG.normal(size=(K * 3, C)).astype(np.float32)


def _model(nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, "test", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _e2e_model(softmax_inside: bool):
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        helper.make_node("Reshape", ["pooled", "row_shape"], ["row"]),
        helper.make_node("MatMul", ["row", "w"], ["logits"]),
    ]
    out = "logits"
    if softmax_inside:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1))
        out = "probabilities"
    return _model(
        nodes,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [K, 3, S, S])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, C])],
        {"row_shape": np.array([1, K * 3], np.int64), "w": W_E2E},
    )


def _backbone_model(batch):
    return _model(
        [
            helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["means"], axis=1),
            helper.make_node("MatMul", ["means", "w"], ["embeddings"]),
        ],
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, S, S])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [batch, D])],
        {"w": W_IMAGE},
    )


def _head_model(shape, width=K * D):
    """A head taking ``width`` embedding values per window (other widths than K * D: weights of ones)."""
    return _model(
        [
            helper.make_node("Reshape", ["embeddings", "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [shape[0], C])],
        {"flat_shape": np.array([-1, width], np.int64),
         "w": W_HEAD if width == K * D else np.ones((width, C), np.float32)},
    )


def _graph(file, input_name, shape, output_name, produces):
    return {"file": file, "inputs": [{"name": input_name, "shape": list(shape), "dtype": "float32"}],
            "outputs": [{"name": output_name}], "produces": produces}


def _manifest(pipeline, graphs, backend="onnxruntime"):
    return {
        "placeholder": False, "backend": backend, "pipeline": pipeline, "graphs": graphs,
        "representation_spec": {}, "fusion": [{"modality": "EDA", "representation": "scalogram"},
                                              {"modality": "BVP", "representation": "scalogram"}],
        "labels": LABELS, "sampling_rate": 100, "window_seconds": 10, "channels": ["EDA", "BVP"],
        "quantization": None, "parity": None,
    }


def _e2e_bundle(tmp_path, softmax_inside=False, input_name="images"):
    produces = "probabilities" if softmax_inside else "logits"
    output = "probabilities" if softmax_inside else "logits"
    graphs = {"model": _graph("model.onnx", input_name, [K, 3, S, S], output, produces)}
    return save_bundle(tmp_path / "e2e", _manifest("end_to_end", graphs), {"model.onnx": _e2e_model(softmax_inside)})


def _two_graph_bundle(tmp_path, backbone_batch="n", head_shape=("batch", K, D)):
    graphs = {
        "backbone": _graph("backbone.onnx", "images", [backbone_batch, 3, S, S], "embeddings", "embeddings"),
        "head": _graph("head.onnx", "embeddings", head_shape, "logits", "logits"),
    }
    files = {"backbone.onnx": _backbone_model(backbone_batch), "head.onnx": _head_model(list(head_shape))}
    name = f"two-{backbone_batch}-{len(head_shape)}-{head_shape[0]}"
    return save_bundle(tmp_path / name, _manifest("backbone_head", graphs), files)


def _images(n):
    return np.random.default_rng(n).random((n, K, 3, S, S), dtype=np.float32)


def _expected_e2e(images):
    means = images.mean(axis=(-1, -2)).reshape(len(images), K * 3)
    return softmax(means @ W_E2E)


def _expected_two_graph(images):
    embeddings = images.mean(axis=(-1, -2)) @ W_IMAGE  # (n, k, D)
    return softmax(embeddings.reshape(len(images), K * D) @ W_HEAD)


@pytest.mark.parametrize("softmax_inside", [True, False])
def test_end_to_end_graph(tmp_path, softmax_inside):
    images = _images(3)
    with create_backend(_e2e_bundle(tmp_path, softmax_inside), threads=1) as backend:
        assert isinstance(backend, OnnxRuntimeBackend)
        batch = backend.predict_batch(images)
        single = backend.predict(images[0])
    np.testing.assert_allclose(batch, _expected_e2e(images), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single, batch[0], rtol=1e-6)
    assert single.dtype == np.float64 and single.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "backbone_batch, head_shape",
    [("n", ("batch", K, D)), ("n", (1, K * D)), (1, (1, K, D)), (K, ("batch", K * D))],
)
def test_backbone_and_head(tmp_path, backbone_batch, head_shape):
    images = _images(4)
    backend = create_backend(_two_graph_bundle(tmp_path, backbone_batch, head_shape))
    probabilities = backend.predict_batch(images)
    np.testing.assert_allclose(probabilities, _expected_two_graph(images), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(backend.predict(images[2]), probabilities[2], rtol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_placeholder_bundle_runs_and_matches_its_weights(tmp_path):
    from quantize.placeholder import build_placeholder_bundle

    bundle = build_placeholder_bundle(tmp_path / "placeholder")
    model = onnx.load(str(bundle.graph_path("model")))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    images = np.random.default_rng(3).random((2, bundle.n_images, 3, 224, 224), dtype=np.float32)
    probabilities = create_backend(bundle).predict_batch(images)
    means = images.mean(axis=(-1, -2)).reshape(2, -1)
    np.testing.assert_allclose(probabilities, softmax(means @ weights["weight"] + weights["bias"]), rtol=1e-4)


def test_wrong_images_are_refused(tmp_path):
    backend = create_backend(_e2e_bundle(tmp_path))
    with pytest.raises(ValueError, match=r"images of one window must have shape \(2, 3, 16, 16\)"):
        backend.predict(np.zeros((3, 3, S, S), np.float32))
    with pytest.raises(ValueError, match=r"images must have shape \(n_windows, 2, 3, 16, 16\)"):
        backend.predict_batch(np.zeros((2, K, 3, S, S + 1), np.float32))
    with pytest.raises(ValueError, match="floats"):
        backend.predict(np.zeros((K, 3, S, S), np.uint8))


def test_graph_names_must_match_the_manifest(tmp_path):
    bundle = _e2e_bundle(tmp_path, input_name="pixels")
    with pytest.raises(EdgeError, match=r"has inputs \['images'\] but the manifest says 'pixels'; re-export"):
        create_backend(bundle)


def _mismatched_e2e_bundle(tmp_path):
    """The manifest says 3 images; the graph takes 2."""
    manifest = _manifest("end_to_end", {"model": _graph("model.onnx", "images", [K + 1, 3, S, S], "logits", "logits")})
    manifest["fusion"] = manifest["fusion"] + [{"modality": "EDA", "representation": "waveform"}]
    return save_bundle(tmp_path / "images", manifest, {"model.onnx": _e2e_model(False)})


def _four_label_bundle(tmp_path):
    manifest = _manifest("end_to_end", {"model": _graph("model.onnx", "images", [K, 3, S, S], "logits", "logits")})
    manifest["labels"] = LABELS + ["Unbearable"]
    return save_bundle(tmp_path / "labels", manifest, {"model.onnx": _e2e_model(False)})


def _head_for_three_images_bundle(tmp_path):
    graphs = {"backbone": _graph("backbone.onnx", "images", ["n", 3, S, S], "embeddings", "embeddings"),
              "head": _graph("head.onnx", "embeddings", [1, K, D], "logits", "logits")}
    files = {"backbone.onnx": _backbone_model("n"), "head.onnx": _head_model([1, K + 1, D], (K + 1) * D)}
    return save_bundle(tmp_path / "head", _manifest("backbone_head", graphs), files)


def _narrow_head_bundle(tmp_path):
    """The backbone makes embeddings of D values; the head (and its manifest) take D - 2."""
    graphs = {"backbone": _graph("backbone.onnx", "images", ["n", 3, S, S], "embeddings", "embeddings"),
              "head": _graph("head.onnx", "embeddings", [1, K * (D - 2)], "logits", "logits")}
    files = {"backbone.onnx": _backbone_model("n"), "head.onnx": _head_model([1, K * (D - 2)], K * (D - 2))}
    return save_bundle(tmp_path / "narrow", _manifest("backbone_head", graphs), files)


@pytest.mark.parametrize("make, message", [
    (_mismatched_e2e_bundle, r"model.onnx has input shape \[2, 3, 16, 16\] but the manifest says \[3, 3, 16, 16\]"),
    (_four_label_bundle, r"model.onnx outputs 3 class scores but the manifest has 4 labels"),
    (_head_for_three_images_bundle, r"head.onnx has input shape \[1, 3, 8\] but the manifest says \[1, 2, 8\]"),
    (_narrow_head_bundle, r"backbone.onnx makes embeddings of 8 values but head.onnx takes \[1, 12\] for 2 images"),
], ids=["images", "labels", "head images", "embedding width"])
def test_graphs_that_do_not_fit_the_manifest_are_refused_when_loaded(tmp_path, make, message):
    with pytest.raises(EdgeError, match=message) as error:
        create_backend(make(tmp_path))
    assert str(error.value).endswith("re-export the bundle")


def test_corrupt_model_with_a_matching_checksum_is_a_clear_error(tmp_path):
    graphs = {"model": _graph("model.onnx", "images", [K, 3, S, S], "logits", "logits")}
    bundle = save_bundle(tmp_path / "bad", _manifest("end_to_end", graphs), {"model.onnx": b"\x08garbage"})
    with pytest.raises(EdgeError, match="ONNX Runtime cannot load model.onnx"):
        create_backend(bundle)


def test_graph_session_config_reaches_onnxruntime(tmp_path):
    graphs = {"model": _graph("model.onnx", "images", [K, 3, S, S], "logits", "logits")}
    graphs["model"]["onnxruntime_config"] = {"session.disable_quant_qdq": "1"}
    bundle = save_bundle(tmp_path / "configured", _manifest("end_to_end", graphs), {"model.onnx": _e2e_model(False)})
    assert bundle.graphs["model"].onnxruntime_config == {"session.disable_quant_qdq": "1"}
    session = onnx_session(bundle.graph_path("model"), 1, bundle.graphs["model"].onnxruntime_config)
    assert session.get_session_options().get_session_config_entry("session.disable_quant_qdq") == "1"
    assert create_backend(bundle).predict(np.zeros((K, 3, S, S), np.float32)).shape == (C,)


def test_bad_thread_count(tmp_path):
    with pytest.raises(ValueError, match="threads"):
        create_backend(_e2e_bundle(tmp_path), threads=0)


def _litert_bundle(tmp_path, name="litert"):
    graphs = {"model": _graph("model.tflite", "images", [K, 3, S, S], "logits", "logits")}
    np.savez(tmp_path / "weights.npz", w=W_E2E)
    payload = (tmp_path / "weights.npz").read_bytes()
    return save_bundle(tmp_path / name, _manifest("end_to_end", graphs, backend="litert"), {"model.tflite": payload})


def test_litert_missing_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(EdgeError, match="pip install ai-edge-litert"):
        create_backend(_litert_bundle(tmp_path))


class _FakeInterpreter:
    """Stands in for the LiteRT interpreter API (same calls) with an int8 input and output.

    The "model file" holds the end-to-end weights; invoke() dequantizes the
    input, computes channel means @ w, and quantizes the logits, like a fully
    quantized TFLite graph.
    """

    instances = []

    def __init__(self, model_path, num_threads=None):
        self.weights = np.load(model_path)["w"]
        self.num_threads = num_threads
        self.input_quant, self.output_quant = (1 / 127, 0), (0.05, 3)
        self.shape = [1, 3, S, S]
        self.allocations = 0
        self.tensors = {}
        _FakeInterpreter.instances.append(self)

    def get_input_details(self):
        return [{"name": "serving_default_images:0", "index": 0, "shape": np.array(self.shape),
                 "dtype": np.int8, "quantization": self.input_quant}]

    def get_output_details(self):
        return [{"name": "StatefulPartitionedCall:0", "index": 1, "shape": np.array([1, C]),
                 "dtype": np.int8, "quantization": self.output_quant}]

    def resize_tensor_input(self, index, shape):
        self.shape = list(shape)

    def allocate_tensors(self):
        self.allocations += 1

    def set_tensor(self, index, value):
        assert value.dtype == np.int8 and list(value.shape) == self.shape
        self.tensors[index] = value

    def invoke(self):
        scale, zero = self.input_quant
        images = (self.tensors[0].astype(np.float64) - zero) * scale
        logits = images.mean(axis=(-1, -2)).reshape(1, -1) @ self.weights
        out_scale, out_zero = self.output_quant
        self.tensors[1] = np.clip(np.round(logits / out_scale + out_zero), -128, 127).astype(np.int8)

    def get_tensor(self, index):
        return self.tensors[index]


def test_litert_backend_quantizes_resizes_and_dequantizes(tmp_path, monkeypatch):
    package = types.ModuleType("ai_edge_litert")
    module = types.ModuleType("ai_edge_litert.interpreter")
    module.Interpreter = _FakeInterpreter
    monkeypatch.setitem(sys.modules, "ai_edge_litert", package)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", module)
    _FakeInterpreter.instances.clear()
    images = _images(3)
    backend = create_backend(_litert_bundle(tmp_path), threads=3)
    assert isinstance(backend, LiteRTBackend)
    probabilities = backend.predict_batch(images)
    (interpreter,) = _FakeInterpreter.instances
    assert interpreter.num_threads == 3
    assert interpreter.shape == [K, 3, S, S] and interpreter.allocations == 2  # at load, resized once, reused
    # int8 rounding of inputs (1/127) and logits (0.05) bounds the error.
    np.testing.assert_allclose(probabilities, _expected_e2e(images), atol=0.03)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def _tflite_end_to_end(weights):
    """A real .tflite flatbuffer: MEAN over H, W -> RESHAPE (1, k*3) -> FULLY_CONNECTED -> logits.

    Built with the schema module that ships inside ai-edge-litert (no TensorFlow needed).
    """
    schema = require_module("ai_edge_litert.schema_py_generated")
    flatbuffers = require_module("flatbuffers")
    buffers, tensors, codes, operators = [schema.BufferT()], [], [], []

    def tensor(name, shape, dtype=schema.TensorType.FLOAT32, data=None):
        if data is not None:
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            buffers.append(buffer)
        t = schema.TensorT()
        t.name, t.shape, t.type = name, np.array(shape, np.int32), dtype
        t.buffer = len(buffers) - 1 if data is not None else 0
        tensors.append(t)
        return len(tensors) - 1

    def operator(code, inputs, outputs, options_type, options):
        if code not in [c.builtinCode for c in codes]:
            entry = schema.OperatorCodeT()
            entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, min(code, 127), 1
            codes.append(entry)
        op = schema.OperatorT()
        op.opcodeIndex = [c.builtinCode for c in codes].index(code)
        op.inputs, op.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
        op.builtinOptionsType, op.builtinOptions = options_type, options
        operators.append(op)

    int32 = schema.TensorType.INT32
    images = tensor("images", [K, 3, S, S])
    means, row, logits = tensor("means", [K, 3]), tensor("row", [1, K * 3]), tensor("logits", [1, C])
    reducer = schema.ReducerOptionsT()
    reducer.keepDims = False
    operator(schema.BuiltinOperator.MEAN, [images, tensor("axes", [2], int32, np.array([2, 3], np.int32))], [means],
             schema.BuiltinOptions.ReducerOptions, reducer)
    reshape = schema.ReshapeOptionsT()
    reshape.newShape = np.array([1, K * 3], np.int32)
    operator(schema.BuiltinOperator.RESHAPE, [means, tensor("shape", [2], int32, np.array([1, K * 3], np.int32))],
             [row], schema.BuiltinOptions.ReshapeOptions, reshape)
    operator(schema.BuiltinOperator.FULLY_CONNECTED,
             [row, tensor("w", [C, K * 3], data=weights.T.copy()), tensor("b", [C], data=np.zeros(C, np.float32))],
             [logits], schema.BuiltinOptions.FullyConnectedOptions, schema.FullyConnectedOptionsT())
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.operators, subgraph.name = tensors, operators, "main"
    subgraph.inputs, subgraph.outputs = np.array([images], np.int32), np.array([logits], np.int32)
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, codes, [subgraph], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_real_litert_runtime(tmp_path):
    require_module("ai_edge_litert.interpreter")
    graphs = {"model": _graph("model.tflite", "images", [K, 3, S, S], "logits", "logits")}
    manifest = _manifest("end_to_end", graphs, backend="litert")
    bundle = save_bundle(tmp_path / "tflite", manifest, {"model.tflite": _tflite_end_to_end(W_E2E)})
    images = _images(3)
    with create_backend(bundle, threads=2) as backend:
        assert isinstance(backend, LiteRTBackend)
        probabilities = backend.predict_batch(images)
    np.testing.assert_allclose(probabilities, _expected_e2e(images), rtol=1e-5, atol=1e-6)


def test_a_head_whose_scalars_input_disagrees_with_the_manifest_is_refused(tmp_path):
    """The shipped head reads 10 scalars: a manifest listing 9 (or none) does not load."""
    import json
    import shutil

    from edge.bundle import default_bundle_path, load_bundle

    for scalars in (["EDA.level"] * 0, ["EDA.level", "EDA.rise"]):
        folder = tmp_path / f"b{len(scalars)}"
        shutil.copytree(default_bundle_path(), folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["scalars"] = scalars
        if not scalars:
            del manifest["scalars"]
        (folder / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(EdgeError, match="scalars"):
            create_backend(load_bundle(folder))
