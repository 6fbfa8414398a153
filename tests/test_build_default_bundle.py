"""``python -m quantize.build_default_bundle``: the default is the fastest variant that keeps its answers."""

from __future__ import annotations

import time

import numpy as np
import pytest

import quantize.build_default_bundle as build
from conftest import shared_path
from edge.backends import create_backend
from edge.bundle import load_bundle
from quantize.errors import ParityError


def test_the_fastest_variant_that_passed_is_chosen():
    variants = [
        {"name": "int8-fast-but-wrong", "passed": False, "ms_per_window": 10.0},
        {"name": "float", "passed": True, "ms_per_window": 40.0},
        {"name": "int8-kept", "passed": True, "ms_per_window": 25.0},
    ]
    assert build.choose_fastest(variants)["name"] == "int8-kept"
    with pytest.raises(ParityError, match="no variant meets the parity thresholds: int8-fast-but-wrong"):
        build.choose_fastest(variants[:1])


class _SleepingBackend:
    def __init__(self, seconds):
        self.seconds, self.calls, self.closed = seconds, 0, False

    def predict(self, images):
        self.calls += 1
        time.sleep(self.seconds)

    def close(self):
        self.closed = True


def test_window_milliseconds_times_each_variant_on_every_window(monkeypatch):
    backends = {"slow": _SleepingBackend(0.02), "quick": _SleepingBackend(0.0)}
    monkeypatch.setattr(build, "create_backend", lambda bundle, threads: backends[bundle])
    milliseconds = build.window_milliseconds({"slow": "slow", "quick": "quick"}, np.zeros((3, 5)), rounds=2)
    assert milliseconds["slow"] >= 20 and milliseconds["quick"] < 20
    assert all(backend.calls == 1 + 2 * 3 and backend.closed for backend in backends.values())  # warm-up + rounds


def test_a_trained_default_records_every_variant_and_runs(tiny_cohort, tmp_path):
    checkpoint = shared_path("reference/tiny_biomoe/golden_checkpoint.pth")
    head = build.fit_demo_head(checkpoint, tiny_cohort, tmp_path / "head.pt", windows=8)
    logged = []
    result = build.build_default_bundle(tmp_path / "default", checkpoint, head, tiny_cohort, log=logged.append,
                                        candidates=("onnx-int8-weight-only", "onnx-float32"),
                                        variants_dir=tmp_path / "variants")
    bundle = load_bundle(tmp_path / "default")
    selection = bundle.manifest["selection"]
    variants = {variant["name"]: variant for variant in selection["variants"]}
    assert sorted(variants) == ["onnx-float32", "onnx-int8-weight-only"]
    timed = [variant for variant in variants.values() if variant["passed"]]
    assert "onnx-float32" in {variant["name"] for variant in timed} and all(v["ms_per_window"] > 0 for v in timed)
    assert selection["chosen"] == min(timed, key=lambda variant: variant["ms_per_window"])["name"]
    assert bundle.name == f"tiny-biomoe-{selection['chosen']}" and result.bundle.path == bundle.path
    assert variants["onnx-int8-weight-only"]["parity"]["windows"] == 20
    assert any(line.startswith(f"the default is {selection['chosen']}") for line in logged)
    kept = load_bundle(tmp_path / "variants" / selection["chosen"])
    assert kept.files == bundle.files  # the same graphs as the variant it was chosen from
    logged.clear()
    build.build_default_bundle(tmp_path / "again", checkpoint, head, tiny_cohort, log=logged.append,
                               candidates=("onnx-float32",), variants_dir=tmp_path / "variants")
    assert any(line.startswith("variant onnx-float32: reusing") for line in logged)  # same checkpoint and head
    other_head = build.fit_demo_head(checkpoint, tiny_cohort, tmp_path / "other_head.pt", windows=4)
    logged.clear()
    build.build_default_bundle(tmp_path / "third", checkpoint, other_head, tiny_cohort, log=logged.append,
                               candidates=("onnx-float32",), variants_dir=tmp_path / "variants")
    assert "variant onnx-float32: exporting" in logged  # another head: exported afresh
    with create_backend(bundle, threads=1) as backend:
        probabilities = backend.predict(np.random.default_rng(0).random((bundle.n_images, 3, 224, 224),
                                                                        dtype=np.float32))
    assert probabilities.shape == (3,) and probabilities.sum() == pytest.approx(1.0)
