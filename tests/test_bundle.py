import copy
import dataclasses
import hashlib
import json
import os
import shutil
import tracemalloc
from pathlib import Path

import pytest

from edge import bundle as bundle_module
from edge.bundle import (
    FORMAT_NAME,
    FORMAT_VERSION,
    PLACEHOLDER_NOTICE,
    default_bundle_path,
    file_sha256,
    load_bundle,
    save_bundle,
)
from edge.errors import EdgeError

MODEL_BYTES = b"not parsed by the loader, only checksummed"


def _manifest(**changes):
    manifest = {
        "name": "test-bundle",
        "placeholder": False,
        "backend": "onnxruntime",
        "pipeline": "end_to_end",
        "graphs": {
            "model": {
                "file": "model.onnx",
                "inputs": [{"name": "images", "shape": [2, 3, 32, 32], "dtype": "float32"}],
                "outputs": [{"name": "probabilities", "shape": [3]}],
                "produces": "probabilities",
            }
        },
        "representation_spec": {"image_size": 32, "scalogram": {"wavelet": "morl"}},
        "fusion": [{"modality": "EDA", "representation": "scalogram"}, {"modality": "BVP", "representation": "recurrence"}],
        "labels": ["No Pain", "Low Pain", "High Pain"],
        "sampling_rate": 100,
        "window_seconds": 10,
        "channels": ["EDA", {"name": "BVP", "unit": "a.u.", "adc_range": [-2.0, 2.0]}],
        "quantization": {"scheme": "int8-qdq", "calibration_windows": 128},
        "parity": {"max_abs_diff": 0.003},
    }
    manifest.update(changes)
    return manifest


def _two_graph_manifest(head_shape=(1, 2, 192)):
    return _manifest(
        pipeline="backbone_head",
        graphs={
            "backbone": {
                "file": "backbone.onnx",
                "inputs": [{"name": "images", "shape": ["n", 3, 32, 32], "dtype": "float32"}],
                "outputs": [{"name": "embeddings", "shape": ["n", 192]}],
                "produces": "embeddings",
            },
            "head": {
                "file": "head.onnx",
                "inputs": [{"name": "embeddings", "shape": list(head_shape), "dtype": "float32"}],
                "outputs": [{"name": "logits"}],
                "produces": "logits",
            },
        },
    )


def _save(tmp_path, manifest=None, files=None, name="bundle"):
    return save_bundle(tmp_path / name, manifest or _manifest(), files or {"model.onnx": MODEL_BYTES})


def _rewrite_manifest(path, edit):
    manifest_path = path / "manifest.json"
    data = json.loads(manifest_path.read_text())
    edit(data)
    manifest_path.write_text(json.dumps(data))


def test_saved_bundle_loads_with_every_field(tmp_path):
    bundle = _save(tmp_path)
    assert bundle.manifest["format"] == FORMAT_NAME and bundle.manifest["format_version"] == FORMAT_VERSION
    assert bundle.files == {"model.onnx": file_sha256(bundle.path / "model.onnx")}
    assert bundle.backend == "onnxruntime" and bundle.pipeline == "end_to_end"
    assert bundle.labels == ("No Pain", "Low Pain", "High Pain")
    assert bundle.sampling_rate == 100.0 and bundle.window_seconds == 10.0 and bundle.window_samples == 1000
    assert bundle.n_images == 2 and bundle.image_size == 32
    assert [(e.modality, e.representation) for e in bundle.fusion] == [("EDA", "scalogram"), ("BVP", "recurrence")]
    assert bundle.channel_names == ("EDA", "BVP")
    assert bundle.channels[0].unit == "uS"  # defaults by name
    assert bundle.channels[1].adc_range == (-2.0, 2.0) and bundle.channels[1].unit == "a.u."
    assert bundle.representation_spec == {"image_size": 32, "scalogram": {"wavelet": "morl"}}
    assert bundle.quantization["scheme"] == "int8-qdq" and bundle.parity == {"max_abs_diff": 0.003}
    graph = bundle.graphs["model"]
    assert (graph.input_name, graph.input_shape, graph.output_name) == ("images", (2, 3, 32, 32), "probabilities")
    assert not bundle.placeholder and len(bundle.bundle_id) == 12
    assert load_bundle(bundle.path).bundle_id == bundle.bundle_id
    assert "test-bundle" in bundle.describe() and "EDA/scalogram" in bundle.describe()


def test_two_graph_bundle(tmp_path):
    files = {"backbone.onnx": b"backbone", "head.onnx": b"head"}
    bundle = save_bundle(tmp_path / "b", _two_graph_manifest(), files)
    assert set(bundle.graphs) == {"backbone", "head"}
    assert bundle.graphs["backbone"].batch_is_dynamic and not bundle.graphs["head"].batch_is_dynamic
    assert bundle.graphs["head"].produces == "logits"
    flat = save_bundle(tmp_path / "flat", _two_graph_manifest(head_shape=("batch", 384)), files)
    assert flat.graphs["head"].input_shape == ("batch", 384)


def test_placeholder_bundle_is_labelled(tmp_path):
    from quantize.placeholder import build_placeholder_bundle

    bundle = build_placeholder_bundle(tmp_path / "placeholder")
    assert bundle.placeholder is True
    assert "PLACEHOLDER" in bundle.describe() and "meaningless" in bundle.manifest["description"]
    assert "PLACEHOLDER MODEL" in PLACEHOLDER_NOTICE
    assert bundle.channel_names == ("EDA", "BVP", "RESP", "SpO2")
    assert bundle.n_images == 5 and bundle.image_size == 224
    assert bundle.labels == ("No Pain", "Low Pain", "High Pain")


def test_default_bundle_is_the_fastest_variant_that_keeps_its_answers():
    """build_default_bundle's choice, as its manifest records it: every int8 variant judged on 300+ windows."""
    from quantize.parity import INT8_THRESHOLDS

    bundle = load_bundle(default_bundle_path())
    assert bundle.placeholder is False and bundle.pipeline == "backbone_head"
    assert bundle.channel_names == ("EDA", "BVP", "RESP", "SpO2")
    assert bundle.n_images == 5 and bundle.image_size == 224
    assert bundle.labels == ("No Pain", "Low Pain", "High Pain")
    assert bundle.parity["float_vs_pytorch"]["max_abs_diff_probability"] < 1e-3
    selection = bundle.manifest["selection"]
    variants = {variant["name"]: variant for variant in selection["variants"]}
    assert set(variants) == {"onnx-int8-static", "onnx-int8-weight-only", "tflite-int8-selective", "tflite-float32",
                             "onnx-float32"}
    for name, variant in variants.items():
        if "int8" in name:
            parity = variant["parity"]
            meets = (parity["mean_cosine"] >= INT8_THRESHOLDS["mean_cosine"]
                     and parity["class_agreement"] >= INT8_THRESHOLDS["class_agreement"]
                     and parity["macro_f1_drop"] <= INT8_THRESHOLDS["macro_f1_drop"])
            assert parity["windows"] >= 300 and variant["passed"] == meets, name
    timed = [variant for variant in variants.values() if variant["passed"]]
    assert all("ms_per_window" in variant for variant in timed)
    assert selection["chosen"] == min(timed, key=lambda variant: variant["ms_per_window"])["name"]
    assert bundle.manifest["name"].startswith(f"tiny-biomoe-{selection['chosen']}")
    size = sum(bundle.path.joinpath(name).stat().st_size for name in bundle.files) / 2**20
    assert size <= 31  # rpi-zero-2w's bundle budget (benchmarks/budgets.toml)


def test_tampered_file_is_refused(tmp_path):
    bundle = _save(tmp_path)
    (bundle.path / "model.onnx").write_bytes(MODEL_BYTES + b"!")
    with pytest.raises(EdgeError, match=r"checksum mismatch for model.onnx .*re-export the bundle"):
        load_bundle(bundle.path)


@pytest.mark.parametrize("tampered", ["backbone.onnx", "head.onnx"])
def test_every_file_of_the_bundle_is_checksummed(tmp_path, tampered):
    bundle = save_bundle(tmp_path / "b", _two_graph_manifest(), {"backbone.onnx": b"backbone", "head.onnx": b"head"})
    assert list(bundle.files) == ["backbone.onnx", "head.onnx"]
    (bundle.path / tampered).write_bytes(b"modified")
    with pytest.raises(EdgeError, match=f"checksum mismatch for {tampered} "):
        load_bundle(bundle.path)
    (bundle.path / tampered).unlink()
    with pytest.raises(EdgeError, match=f"file {tampered} listed in the manifest is missing"):
        load_bundle(bundle.path)


def test_missing_file_is_refused(tmp_path):
    bundle = _save(tmp_path)
    (bundle.path / "model.onnx").unlink()
    with pytest.raises(EdgeError, match="file model.onnx listed in the manifest is missing"):
        load_bundle(bundle.path)


def test_missing_folder_and_manifest(tmp_path):
    with pytest.raises(EdgeError, match="bundle folder .* not found"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeError, match="manifest.json is missing"):
        load_bundle(tmp_path / "empty")


def test_bad_json_is_refused(tmp_path):
    bundle = _save(tmp_path)
    (bundle.path / "manifest.json").write_text('{"format": "tiny-biomoe-bundle",')
    with pytest.raises(EdgeError, match="not valid JSON .*re-export"):
        load_bundle(bundle.path)


def test_newer_format_version_is_refused(tmp_path):
    bundle = _save(tmp_path)
    _rewrite_manifest(bundle.path, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(EdgeError, match="newer than this runtime reads .*upgrade biomoe"):
        load_bundle(bundle.path)


def test_other_format_is_refused(tmp_path):
    bundle = _save(tmp_path)
    _rewrite_manifest(bundle.path, lambda m: m.update(format="keras-model"))
    with pytest.raises(EdgeError, match="'format' is 'keras-model'"):
        load_bundle(bundle.path)


@pytest.mark.parametrize("key", bundle_module._REQUIRED_KEYS)
def test_each_missing_field_is_named(tmp_path, key):
    bundle = _save(tmp_path)
    _rewrite_manifest(bundle.path, lambda m: m.pop(key))
    with pytest.raises(EdgeError, match=f"no '{key}' field"):
        load_bundle(bundle.path)


def _set(path, value):
    def edit(manifest):
        target = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


@pytest.mark.parametrize(
    "edit, match",
    [
        (_set(["backend"], "tensorrt"), "'backend' must be one of"),
        (_set(["pipeline"], "ensemble"), "'pipeline' must be one of"),
        (_set(["placeholder"], "no"), "'placeholder' must be true or false"),
        (_set(["labels"], ["No Pain", "No Pain", "High Pain"]), "distinct"),
        (_set(["labels"], ["Pain"]), "at least 2 classes"),
        (_set(["sampling_rate"], -100), "'sampling_rate' must be a number > 0"),
        (_set(["window_seconds"], 10.005), "whole number of samples"),
        (_set(["fusion"], []), "at least one image"),
        (_set(["fusion", 1, "modality"], "ECG"), "modality ECG which 'channels' does not list"),
        (_set(["channels", 1, "color"], "red"), "unknown key"),
        (_set(["channels", 1, "adc_range"], [5, 1]), "adc_range"),
        (_set(["graphs", "model", "file"], "other.onnx"), "not listed in 'files'"),
        (_set(["graphs", "model", "produces"], "embeddings"), "'graphs.model.produces' must be one of"),
        (_set(["graphs", "model", "inputs", 0, "shape"], [2, 3, 32]), r"shape \[k, 3, S, S\]"),
        (_set(["graphs", "model", "inputs", 0, "shape"], [4, 3, 32, 32]), "batch is 4 but 'fusion' lists 2"),
        (_set(["graphs", "model", "inputs", 0, "shape"], [2, 3, 0, 32]), "positive integers"),
        (_set(["graphs", "model", "inputs", 0, "dtype"], "float64"), "dtype"),
        (_set(["graphs", "model", "outputs", 0, "shape"], [4]), "outputs 4 classes but 'labels' has 3"),
        (_set(["graphs", "model", "outputs"], []), "exactly one input and one output"),
        (_set(["files", "model.onnx"], "ABC"), "lowercase hex SHA-256"),
        (_set(["files", "../escape.onnx"], "0" * 64), "bad file name"),
        (_set(["quantization"], "int8"), "'quantization' must be an object or null"),
        (_set(["graphs", "model", "onnxruntime_config"], {"session.disable_quant_qdq": 1}), "string values"),
        (_set(["graphs", "model", "onnxruntime_config"], ["session.disable_quant_qdq"]), "onnxruntime_config"),
        (_set(["window_seconds"], 1e308), "'window_seconds' must be a number > 0 and at most 600, got 1e"),
        (_set(["sampling_rate"], 1e300), "'sampling_rate' must be a number > 0 and at most 10000, got 1e"),
        (_set(["graphs", "model", "inputs", 0, "shape"], [2, 3, 10**9, 10**9]), "fixed S of at most 1024"),
        (_set(["graphs", "model", "inputs", 0, "shape"], [2, 3, 32, 32, 1]), r"shape \[k, 3, S, S\]"),
        (_set(["sampling_rate"], 0), "'sampling_rate' must be a number > 0"),
        (_set(["channels", 1, "adc_range"], [1, 2, 3]), r"'channels\[1\].adc_range' must be \[low, high\] or null"),
        (_set(["channels", 1, "valid_range"], ["low", "high"]), r"'channels\[1\].valid_range' must be \[low, high\]"),
        (_set(["scalars"], ["EDA.mean"]), "'scalars' must name scalars of the bundle's channels for a backbone_head"),
        (_set(["calibration"], {"method": "baseline", "windows": 6}), "baseline calibrates the head's scalars"),
    ],
)
def test_invalid_fields_are_named(tmp_path, edit, match):
    bundle = _save(tmp_path)
    _rewrite_manifest(bundle.path, edit)
    with pytest.raises(EdgeError, match=match) as error:
        load_bundle(bundle.path)
    assert "re-export the bundle" in str(error.value)


def _one_line_refusal(path, match):
    with pytest.raises(EdgeError, match=match) as error:
        load_bundle(path)
    assert "\n" not in str(error.value)


def test_a_manifest_nested_200000_deep_is_one_line(tmp_path):
    bundle = _save(tmp_path)
    (bundle.path / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    _one_line_refusal(bundle.path, "manifest.json is nested too deeply to be a manifest; re-export the bundle")


def test_a_huge_manifest_is_refused_unread(tmp_path):
    bundle = _save(tmp_path)
    _rewrite_manifest(bundle.path, _set(["description"], "x" * (2 << 20)))  # valid JSON, but 2 MiB
    _one_line_refusal(bundle.path, r"manifest.json is larger than \d+ bytes, far more than a manifest needs")


@pytest.mark.parametrize("linked", ["file", "folder", "manifest"])
def test_files_that_lead_outside_the_bundle_are_refused(tmp_path, linked):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    name = {"file": "model.onnx", "folder": "graphs/model.onnx", "manifest": "model.onnx"}[linked]
    bundle = _save(tmp_path, _manifest(graphs={"model": {**_manifest()["graphs"]["model"], "file": name}}),
                   {name: MODEL_BYTES})
    moved = {"file": "model.onnx", "folder": "graphs", "manifest": "manifest.json"}[linked]
    shutil.move(bundle.path / moved, elsewhere / moved)
    (bundle.path / moved).symlink_to(elsewhere / moved)
    leading = "manifest.json" if linked == "manifest" else name
    with pytest.raises(EdgeError) as error:
        load_bundle(bundle.path)
    assert str(error.value) == (
        f"bundle {bundle.path}: {leading} leads outside the bundle (to {(elsewhere / leading).resolve()}) through a "
        "symlink; copy the files into the bundle folder or re-export it"
    )


def test_a_bundle_reached_through_a_symlinked_folder_loads(tmp_path):
    bundle = _save(tmp_path)
    (tmp_path / "current").symlink_to(bundle.path)
    assert load_bundle(tmp_path / "current").files == bundle.files


@pytest.mark.parametrize("head_shape", [(1, 3, 192), (1, 2, 192, 1), (2, 2, 192), (1, 385)])
def test_head_shape_must_fit_the_fusion(tmp_path, head_shape):
    with pytest.raises(EdgeError, match="graph 'head' input must have shape"):
        save_bundle(tmp_path / "b", _two_graph_manifest(head_shape), {"backbone.onnx": b"b", "head.onnx": b"h"})


def test_pipeline_graphs_must_match(tmp_path):
    manifest = _manifest(pipeline="backbone_head")
    with pytest.raises(EdgeError, match=r"needs graphs \['backbone', 'head'\]"):
        _save(tmp_path, manifest)
    backbone_only = _two_graph_manifest()
    del backbone_only["graphs"]["head"]
    with pytest.raises(EdgeError, match=r"needs graphs \['backbone', 'head'\], got \['backbone'\]"):
        save_bundle(tmp_path / "b", backbone_only, {"backbone.onnx": b"backbone"})


def test_shapes_at_the_edge_of_what_is_allowed_load(tmp_path):
    one_image_at_a_time = _two_graph_manifest()
    one_image_at_a_time["graphs"]["backbone"]["inputs"][0]["shape"] = [1, 3, 32, 32]
    files = {"backbone.onnx": b"backbone", "head.onnx": b"head"}
    assert save_bundle(tmp_path / "b1", one_image_at_a_time, files).graphs["backbone"].input_shape == (1, 3, 32, 32)
    batched_output = _manifest()
    batched_output["graphs"]["model"]["outputs"][0]["shape"] = [1, 3]
    assert _save(tmp_path, batched_output).graphs["model"].output_shape == (1, 3)


def test_the_fusion_of_a_loaded_bundle_cannot_be_changed(tmp_path):
    with pytest.raises(dataclasses.FrozenInstanceError):
        _save(tmp_path).fusion[0].modality = "ECG"


def test_a_folder_of_another_format_is_not_overwritten(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"format": "zzz-model"}))
    with pytest.raises(EdgeError, match="exists and is not a bundle"):
        save_bundle(other, _manifest(), {"model.onnx": MODEL_BYTES})


def test_save_replaces_an_existing_bundle_atomically(tmp_path):
    first = _save(tmp_path)
    second = _save(tmp_path, _manifest(name="v2"), {"model.onnx": b"new model"})
    assert second.path == first.path and second.name == "v2"
    assert (second.path / "model.onnx").read_bytes() == b"new model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging or retired folders left


def test_save_copies_files_from_paths_and_into_an_empty_folder(tmp_path):
    source = tmp_path / "exported.onnx"
    source.write_bytes(MODEL_BYTES)
    (tmp_path / "target").mkdir()
    bundle = save_bundle(tmp_path / "target", _manifest(), {"model.onnx": source})
    assert (bundle.path / "model.onnx").read_bytes() == MODEL_BYTES
    assert oct((bundle.path).stat().st_mode & 0o777) == oct(0o755)


def test_save_refuses_to_overwrite_other_folders(tmp_path):
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(EdgeError, match="exists and is not a bundle"):
        save_bundle(precious, _manifest(), {"model.onnx": MODEL_BYTES})
    assert (precious / "cat.jpg").read_bytes() == b"meow"


def test_invalid_manifest_is_never_published(tmp_path):
    with pytest.raises(EdgeError, match=f"bundle {tmp_path / 'bundle'}: 'backend' must be one of"):
        _save(tmp_path, _manifest(backend="tensorrt"))
    assert list(tmp_path.iterdir()) == []


def test_interrupted_save_leaves_the_old_bundle_intact(tmp_path, monkeypatch):
    old = _save(tmp_path)
    calls = []

    def failing_copy(source, target):
        calls.append(source)
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfile", failing_copy)
    source = tmp_path.parent / "new.onnx"
    source.write_bytes(b"new")
    with pytest.raises(OSError, match="disk full"):
        save_bundle(old.path, _manifest(), {"model.onnx": source})
    assert calls and load_bundle(old.path).bundle_id == old.bundle_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_bad_file_names_are_refused_when_saving(tmp_path):
    with pytest.raises(EdgeError) as error:
        save_bundle(tmp_path / "b", _manifest(), {"model.onnx": MODEL_BYTES, "/etc/passwd": b"x"})
    assert str(error.value) == (
        f"bundle {tmp_path / 'b'}: bad file name '/etc/passwd'; files are relative paths inside the bundle "
        "(no '..', not manifest.json); re-export the bundle"
    )


def test_require_channels_names_what_the_device_lacks(tmp_path):
    bundle = _save(tmp_path)
    bundle.require_channels(["EDA", "BVP", "RESP"])
    with pytest.raises(EdgeError, match=r"needs channel\(s\) BVP, which the device does not send \(it sends EDA, RESP\)"):
        bundle.require_channels(["EDA", "RESP"])


def test_require_representations(tmp_path):
    bundle = _save(tmp_path)
    bundle.require_representations(["scalogram", "recurrence", "waveform"])
    with pytest.raises(EdgeError, match="representation.*recurrence.*upgrade biomoe"):
        bundle.require_representations(["scalogram"])


def test_manifest_given_to_save_is_not_modified(tmp_path):
    manifest = _manifest()
    before = copy.deepcopy(manifest)
    _save(tmp_path, manifest)
    assert manifest == before


def _refusal(path) -> str:
    """The one-line refusal of the bundle at ``path``, its ``bundle <path>: `` prefix and ``; re-export`` tail cut."""
    with pytest.raises(EdgeError) as error:
        load_bundle(path)
    message = str(error.value)
    prefix, suffix = f"bundle {path}: ", "; re-export the bundle"
    assert message.startswith(prefix) and message.endswith(suffix), message
    return message[len(prefix):-len(suffix)]


@pytest.mark.parametrize(
    "edit, problem",
    [
        (_set(["graphs", "model"], []), "'graphs.model' must be an object"),
        (_set(["graphs", "model", "file"], 3), "'graphs.model.file' must be a file name, got 3"),
        (_set(["graphs", "model", "inputs"], {}), "'graphs.model.inputs' must be a list with one input, got {}"),
        (_set(["graphs", "model", "outputs"], None), "'graphs.model.outputs' must be a list with one output, got None"),
        (_set(["graphs", "model", "outputs"], [3]),
         "'graphs.model' must have exactly one input and one output object (format version 1)"),
        (_set(["graphs", "model", "inputs"], ["images"]),
         "'graphs.model' must have exactly one input and one output object (format version 1)"),
        (_set(["graphs", "model", "inputs", 0, "name"], 7), "'graphs.model.inputs[0].name' must be a tensor name, got 7"),
        (_set(["graphs", "model", "inputs", 0, "dtype"], 32), "'graphs.model.inputs[0].dtype' must be a dtype name, got 32"),
        (_set(["graphs", "model", "inputs", 0, "shape"], [2, 3, "", 32]),
         "'graphs.model.inputs[0].shape' must be a list of positive integers or dimension names, got [2, 3, '', 32]"),
        (_set(["graphs", "model", "inputs", 0, "shape"], [2, 3, 32, -32]),
         "'graphs.model.inputs[0].shape' must be a list of positive integers or dimension names, got [2, 3, 32, -32]"),
        (_set(["graphs", "model", "outputs", 0, "name"], None),
         "'graphs.model.outputs[0].name' must be a tensor name, got None"),
        (_set(["graphs", "model", "outputs", 0, "shape"], [0]),
         "'graphs.model.outputs[0].shape' must be a list of positive integers or dimension names, got [0]"),
        (_set(["graphs", "model", "produces"], ["logits"]), "'graphs.model.produces' must be a string, got ['logits']"),
        (_set(["sampling_rate"], "100"), "'sampling_rate' must be a number > 0, got '100'"),
        (_set(["graphs", "model", "inputs", 0, "shape"], [2, 1, 32, 32]),
         "graph 'model' input must have shape [k, 3, S, S] with a fixed S of at most 1024, got [2, 1, 32, 32]"),
        (_set(["graphs", "model", "inputs", 0, "shape"], [2, 3, "s", "s"]),
         "graph 'model' input must have shape [k, 3, S, S] with a fixed S of at most 1024, got [2, 3, 's', 's']"),
        (_set(["graphs", "model", "inputs", 0, "shape"], [2, 3, 32, 64]),
         "graph 'model' input must have shape [k, 3, S, S] with a fixed S of at most 1024, got [2, 3, 32, 64]"),
        (_set(["graphs", "model", "inputs", 0, "shape"], [2, 3, 1025, 1025]),
         "graph 'model' input must have shape [k, 3, S, S] with a fixed S of at most 1024, got [2, 3, 1025, 1025]"),
        (_set(["graphs", "model", "inputs", 0, "shape"], [1, 3, 32, 32]),
         "graph 'model' input batch is 1 but 'fusion' lists 2 images (allowed: 2 or a dimension name)"),
        (_set(["labels"], "No Pain"), "'labels' must be a list of names, got 'No Pain'"),
        (_set(["labels"], ["No Pain", 3]),
         "'labels' must be a non-empty list of distinct non-empty strings, got ['No Pain', 3]"),
        (_set(["labels"], ["No Pain", ""]),
         "'labels' must be a non-empty list of distinct non-empty strings, got ['No Pain', '']"),
        (_set(["channels", 1], 5), "'channels[1]' must be a channel name or an object {name, unit, valid_range, adc_range}"),
        (_set(["channels", 1, "name"], 5), "'channels[1].name' must be a channel name, got 5"),
        (_set(["format"], 3), "'format' must be a string, got 3"),
        (_set(["format_version"], "1"), "'format_version' must be an integer, got '1'"),
        (_set(["format_version"], 0), "'format_version' must be >= 1, got 0"),
        (_set(["backend"], 1), "'backend' must be a string, got 1"),
        (_set(["pipeline"], None), "'pipeline' must be a string, got None"),
        (_set(["files"], []), "'files' must be an object {file name: sha256}, got []"),
        (_set(["files", "../escape.onnx"], "0" * 64),
         "bad file name '../escape.onnx'; files are relative paths inside the bundle (no '..', not manifest.json)"),
        (_set(["files", "model.onnx"], "abc"),
         "'files' entry 'model.onnx' must be a lowercase hex SHA-256 (64 digits), got 'abc'"),
        (_set(["files", "model.onnx"], "X" * 64),
         f"'files' entry 'model.onnx' must be a lowercase hex SHA-256 (64 digits), got '{'X' * 64}'"),
        (_set(["fusion"], "EDA"), "'fusion' must be a list of {modality, representation}, got 'EDA'"),
        (_set(["fusion"], []), "'fusion' must list at least one image"),
        (_set(["fusion", 1], "BVP"), "'fusion[1]' must be an object {modality, representation}, got 'BVP'"),
        (_set(["fusion", 1, "modality"], 1), "'fusion[1].modality' must be a channel name, got 1"),
        (_set(["fusion", 1, "representation"], None), "'fusion[1].representation' must be a representation name, got None"),
        (_set(["fusion"], [{"modality": "PPG", "representation": "scalogram"},
                           {"modality": "ECG", "representation": "scalogram"}]),
         "'fusion' uses modality ECG, PPG which 'channels' does not list"),
        (_set(["channels"], {}), "'channels' must be a list, got {}"),
        (_set(["channels"], []), "'channels' must list distinct channels, got []"),
        (_set(["channels"], ["EDA", "BVP", "EDA"]), "'channels' must list distinct channels, got ['EDA', 'BVP', 'EDA']"),
        (lambda m: m.update(sampling_rate=3, window_seconds=0.5),
         "sampling_rate x window_seconds must be a whole number of samples, at least 1, got 1.5"),
        (_set(["window_seconds"], 1e-9), "sampling_rate x window_seconds must be a whole number of samples, at least 1, "
                                         f"got {100 * 1e-9}"),
        (_set(["representation_spec"], []), "'representation_spec' must be an object, got []"),
        (_set(["parity"], "ok"), "'parity' must be an object or null, got 'ok'"),
        (_set(["graphs"], []), "'graphs' must be an object {role: graph}, got []"),
        (_set(["calibration"], "baseline"), "'calibration' must be an object {method, windows}, got 'baseline'"),
        (_set(["calibration"], {"method": "baseline", "windows": 6}),
         "'calibration' baseline calibrates the head's scalars; the manifest lists no 'scalars'"),
    ],
)
def test_refusals_name_the_field_and_what_it_must_be(tmp_path, edit, problem):
    bundle = _save(tmp_path)
    _rewrite_manifest(bundle.path, edit)
    assert _refusal(bundle.path) == problem


def test_describe_is_one_line_with_everything_that_names_the_bundle(tmp_path):
    bundle = _save(tmp_path)
    assert bundle.describe() == (
        f"bundle test-bundle ({bundle.bundle_id}): onnxruntime end_to_end, 2 images [EDA/scalogram, BVP/recurrence] "
        "at 100 Hz x 10 s, labels ['No Pain', 'Low Pain', 'High Pain']"
    )
    placeholder = _save(tmp_path, _manifest(placeholder=True, name="stand-in"), name="placeholder")
    assert placeholder.describe().startswith(f"PLACEHOLDER bundle stand-in ({placeholder.bundle_id}): onnxruntime")


def test_require_channels_says_when_the_device_sends_nothing(tmp_path):
    bundle = _save(tmp_path)
    with pytest.raises(EdgeError) as error:
        bundle.require_channels([])
    assert str(error.value) == (
        "bundle test-bundle needs channel(s) EDA, BVP, which the device does not send (it sends nothing); "
        "connect those sensors or use a bundle trained for the device's channels"
    )


def test_require_representations_names_every_unknown_and_known_one(tmp_path):
    bundle = _save(tmp_path)
    with pytest.raises(EdgeError) as error:
        bundle.require_representations(["waveform", "spectrogram"])
    assert str(error.value) == (
        "bundle test-bundle uses representation(s) recurrence, scalogram that this runtime does not know "
        "(known: waveform, spectrogram); upgrade biomoe or re-export the bundle"
    )


@pytest.mark.parametrize("manifest_text", ["[1, 2]", "{not json", '"tiny-biomoe-bundle"'])
def test_a_folder_whose_manifest_is_not_a_bundle_manifest_is_not_overwritten(tmp_path, manifest_text):
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(manifest_text)
    with pytest.raises(EdgeError, match="exists and is not a bundle"):
        save_bundle(other, _manifest(), {"model.onnx": MODEL_BYTES})
    assert (other / "manifest.json").read_text() == manifest_text


def test_a_file_where_the_bundle_folder_should_be_is_not_overwritten(tmp_path):
    target = tmp_path / "bundle"
    target.write_bytes(b"someone's file")
    with pytest.raises(EdgeError, match=f"cannot write bundle to {target}: it exists and is not a bundle"):
        save_bundle(target, _manifest(), {"model.onnx": MODEL_BYTES})
    assert target.read_bytes() == b"someone's file"


def test_the_old_bundle_is_moved_aside_beside_the_new_one_then_deleted(tmp_path, monkeypatch):
    """Moved within its own folder (one file system, so the renames are atomic) under a hidden name."""
    old = _save(tmp_path)
    deleted = []
    real_rmtree = shutil.rmtree

    def recording_rmtree(path, **kwargs):
        deleted.append((path, json.loads((path / "bundle" / "manifest.json").read_text())["name"]))
        real_rmtree(path, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", recording_rmtree)
    _save(tmp_path, _manifest(name="v2"))
    ((retired, old_name),) = deleted
    assert retired.parent == tmp_path and retired.name.startswith(".bundle.old-") and old_name == old.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_an_update_whose_old_copy_cannot_be_deleted_still_succeeds(tmp_path, monkeypatch):
    """Deleting the old copy is tidying up: the new bundle is already in place, so a failure there is ignored."""
    _save(tmp_path)

    def undeletable(path, ignore_errors=False):  # shutil.rmtree's contract for a tree it cannot delete
        if not ignore_errors:
            raise PermissionError(f"cannot delete {path}")

    monkeypatch.setattr(shutil, "rmtree", undeletable)
    assert _save(tmp_path, _manifest(name="v2")).name == "v2"
    assert load_bundle(tmp_path / "bundle").name == "v2"


def test_a_two_graph_bundle_names_both_batch_sizes_it_allows(tmp_path):
    manifest = _two_graph_manifest()
    manifest["graphs"]["backbone"]["inputs"][0]["shape"] = [3, 3, 32, 32]
    with pytest.raises(EdgeError) as error:
        save_bundle(tmp_path / "b", manifest, {"backbone.onnx": b"backbone", "head.onnx": b"head"})
    assert "input batch is 3 but 'fusion' lists 2 images (allowed: 1 or 2 or a dimension name)" in str(error.value)


def test_each_graph_keeps_its_role_dtype_and_runtime_settings(tmp_path):
    manifest = _manifest()
    manifest["graphs"]["model"]["inputs"][0]["dtype"] = "uint8"
    manifest["graphs"]["model"]["onnxruntime_config"] = {"session.qdq_matmulnbits_accuracy_level": "4"}
    graph = _save(tmp_path, manifest).graphs["model"]
    assert graph.role == "model" and graph.input_dtype == "uint8" and graph.produces == "probabilities"
    assert graph.onnxruntime_config == {"session.qdq_matmulnbits_accuracy_level": "4"}
    assert _save(tmp_path, name="plain").graphs["model"].onnxruntime_config == {}


def test_images_of_the_largest_allowed_side_load(tmp_path):
    manifest = _manifest()
    manifest["graphs"]["model"]["inputs"][0]["shape"] = [2, 3, 1024, 1024]
    assert _save(tmp_path, manifest).image_size == 1024


def test_a_manifest_that_is_not_an_object_is_refused(tmp_path):
    bundle = _save(tmp_path)
    (bundle.path / "manifest.json").write_text('["tiny-biomoe-bundle", 1]')
    assert _refusal(bundle.path) == "the manifest must be a JSON object"


@pytest.mark.parametrize("sampling_rate, window_seconds", [(10_000, 600), (100, 0.5), (0.5, 10), (0.5, 2)])
def test_rates_and_windows_at_the_edges_of_what_is_allowed_load(tmp_path, sampling_rate, window_seconds):
    bundle = _save(tmp_path, _manifest(sampling_rate=sampling_rate, window_seconds=window_seconds))
    assert bundle.window_samples == round(sampling_rate * window_seconds)


def test_channel_quality_settings_come_from_the_manifest(tmp_path):
    channels = ["EDA", {"name": "BVP", "flat_std": 0.5, "max_constant_seconds": 2.0, "valid_range": [-3, 3]}]
    spec = _save(tmp_path, _manifest(channels=channels)).channels[1]
    assert (spec.flat_std, spec.max_constant_seconds, spec.valid_range) == (0.5, 2.0, (-3, 3))


def test_save_creates_missing_folders_and_nested_files(tmp_path):
    name = "graphs/fp32/model.onnx"
    manifest = _manifest(graphs={"model": {**_manifest()["graphs"]["model"], "file": name}})
    bundle = save_bundle(tmp_path / "a" / "b" / "bundle", manifest, {name: MODEL_BYTES})
    assert (bundle.path / name).read_bytes() == MODEL_BYTES and bundle.files == {name: file_sha256(bundle.path / name)}


def test_the_written_manifest_is_indented_json_in_the_order_given(tmp_path):
    """A person reads it: format first, the given fields in their order, checksums last, two-space indent."""
    text = (_save(tmp_path).path / "manifest.json").read_text()
    assert text.startswith('{\n  "format": "tiny-biomoe-bundle",\n  "format_version": 1,\n  "name": "test-bundle",\n'
                           '  "placeholder": false,\n  "backend": "onnxruntime",\n')
    assert text.endswith(f'  "files": {{\n    "model.onnx": "{hashlib.sha256(MODEL_BYTES).hexdigest()}"\n  }}\n}}\n')


def test_a_new_bundle_is_staged_beside_its_destination(tmp_path, monkeypatch):
    """Staged in the destination's folder (one file system, so the final rename is atomic) under a hidden name."""
    targets = []

    def failing_copy(source, target):
        targets.append(Path(target))
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfile", failing_copy)
    (tmp_path / "new.onnx").write_bytes(MODEL_BYTES)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(tmp_path / "bundle", _manifest(), {"model.onnx": tmp_path / "new.onnx"})
    ((target,),) = [targets]
    assert target.name == "model.onnx" and target.parent.parent == tmp_path
    assert target.parent.name.startswith(".bundle.tmp-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.onnx"]  # the staging folder is gone


def test_a_failed_save_reports_its_own_error_even_when_its_staging_folder_stays(tmp_path, monkeypatch):
    def failing_copy(source, target):
        raise OSError("disk full")

    def undeletable(path, ignore_errors=False):  # shutil.rmtree's contract for a tree it cannot delete
        if not ignore_errors:
            raise PermissionError(f"cannot delete {path}")

    monkeypatch.setattr(shutil, "copyfile", failing_copy)
    monkeypatch.setattr(shutil, "rmtree", undeletable)
    (tmp_path / "new.onnx").write_bytes(MODEL_BYTES)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(tmp_path / "bundle", _manifest(), {"model.onnx": tmp_path / "new.onnx"})


def test_a_tampered_file_is_named_with_both_checksums(tmp_path):
    bundle = _save(tmp_path)
    (bundle.path / "model.onnx").write_bytes(b"modified")
    with pytest.raises(EdgeError) as error:
        load_bundle(bundle.path)
    assert str(error.value) == (
        f"bundle {bundle.path}: checksum mismatch for model.onnx (manifest {hashlib.sha256(MODEL_BYTES).hexdigest()[:12]}"
        f"..., file {hashlib.sha256(b'modified').hexdigest()[:12]}...): the file is corrupt or was modified; "
        "re-export the bundle or copy it again"
    )


def test_a_manifest_of_exactly_the_largest_allowed_size_loads(tmp_path):
    bundle = _save(tmp_path)
    manifest_path = bundle.path / "manifest.json"
    text = manifest_path.read_text()
    manifest_path.write_text(text + " " * (bundle_module.MAX_MANIFEST_BYTES - len(text)))
    assert load_bundle(bundle.path).files == bundle.files


def test_a_manifest_the_size_of_a_disk_is_refused_without_reading_it(tmp_path):
    bundle = _save(tmp_path)
    with open(bundle.path / "manifest.json", "r+b") as handle:
        handle.truncate(1 << 40)  # 1 TiB, sparse: reading it whole would not fit in memory
    _one_line_refusal(bundle.path, r"manifest.json is larger than \d+ bytes")


@pytest.mark.parametrize("name", ["graphs\\model.onnx", "manifest.json", "", 3])
def test_file_names_that_are_not_plain_relative_paths_are_refused(tmp_path, name):
    with pytest.raises(EdgeError) as error:
        save_bundle(tmp_path / "b", _manifest(), {"model.onnx": MODEL_BYTES, name: b"x"})
    assert str(error.value).startswith(f"bundle {tmp_path / 'b'}: bad file name {name!r}; files are relative paths")
    assert not (tmp_path / "b").exists()


def _scalar_manifest(**calibration):
    manifest = _two_graph_manifest()
    manifest["scalars"] = ["EDA.mean", "BVP.rate"]
    if calibration:
        manifest["calibration"] = calibration
    return manifest


def _save_two_graph(tmp_path, manifest):
    return save_bundle(tmp_path / "b", manifest, {"backbone.onnx": b"backbone", "head.onnx": b"head"})


def test_scalars_and_baseline_calibration_come_from_the_manifest(tmp_path):
    bundle = _save_two_graph(tmp_path, _scalar_manifest(method="baseline", windows=6, embeddings=True))
    assert bundle.scalars == ("EDA.mean", "BVP.rate")
    assert bundle.calibration == {"method": "baseline", "windows": 6, "embeddings": True}


def test_calibration_defaults_to_scalars_only_and_to_none(tmp_path):
    assert _save_two_graph(tmp_path, _scalar_manifest(method="baseline", windows=6)).calibration == {
        "method": "baseline", "windows": 6, "embeddings": False}
    assert _save_two_graph(tmp_path, _scalar_manifest()).calibration == {"method": "none", "windows": 0,
                                                                         "embeddings": False}


@pytest.mark.parametrize("windows", [1, 360])
def test_baselines_of_one_to_360_windows_load(tmp_path, windows):
    assert _save_two_graph(tmp_path, _scalar_manifest(method="baseline", windows=windows)).calibration["windows"] == windows


@pytest.mark.parametrize("calibration", [
    {"method": "zscore"},
    {"method": "baseline", "windows": 361},
    {"method": "baseline", "windows": 6.5},
    {"method": "baseline", "windows": 0},
    {"method": "none", "windows": 6},
    {"method": "baseline", "windows": 6, "embeddings": "yes"},
])
def test_invalid_calibrations_are_refused_with_what_is_allowed(tmp_path, calibration):
    with pytest.raises(EdgeError) as error:
        _save_two_graph(tmp_path, _scalar_manifest(**calibration))
    full = {"method": "none", "windows": 0, "embeddings": False, **calibration}
    assert str(error.value) == (
        f"bundle {tmp_path / 'b'}: 'calibration' must be {{method: none}} or {{method: baseline, windows: 1-360, "
        f"embeddings: true|false}}, got {full}; re-export the bundle"
    )


def test_scalars_of_channels_the_bundle_lacks_are_refused(tmp_path):
    manifest = _two_graph_manifest()
    manifest["scalars"] = ["EDA.mean", "ECG.rate"]
    with pytest.raises(EdgeError, match=r"'scalars' must name scalars of the bundle's channels for a backbone_head "
                                        r"pipeline, got \['EDA.mean', 'ECG.rate'\]; re-export the bundle$"):
        _save_two_graph(tmp_path, manifest)


def test_two_classes_are_enough(tmp_path):
    manifest = _manifest(labels=["No Pain", "Pain"])
    manifest["graphs"]["model"]["outputs"][0]["shape"] = [2]
    assert _save(tmp_path, manifest).labels == ("No Pain", "Pain")


def test_a_model_file_is_checksummed_in_1_mib_blocks_not_read_whole(tmp_path):
    """The device has little memory: at most the block being hashed and the one before it are held."""
    content = os.urandom(16 << 20)
    (tmp_path / "model.onnx").write_bytes(content)
    tracemalloc.start()
    try:
        digest = file_sha256(tmp_path / "model.onnx")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest == hashlib.sha256(content).hexdigest()
    assert peak < 3 << 20  # two 1 MiB blocks and change, not 16 MiB
