"""biomoe bench: verdicts, exit codes, JSON record, bad input (no timing asserted)."""

from __future__ import annotations

import json
import platform

import pytest

from benchmarks.budgets import BUDGET_KEYS, evaluate, get_target
from edge.bundle import default_bundle_path, load_bundle
from edge.cli import main

FAST = ["--quick", "--repeats", "1", "--warmup", "0", "--processes", "1"]
STAGES = {"bridge_decode", "windowing", "quality", "represent", "infer_window", "infer_image", "end_to_end", "load",
          "peak_rss_pipeline", "bundle_size"}


def _budgets(tmp_path, **budgets) -> str:
    lines = ["[targets.here]", f'machine = "{platform.machine()}"', "x86_slowdown = 3.0"]
    lines += [f"{key} = {budgets[key]}" for key in BUDGET_KEYS]
    path = tmp_path / "budgets.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_generous_budget_passes_on_the_default_bundle(tmp_path, capsys):
    """The CI run: short mode, the shipped bundle, the PyTorch reference measured alongside."""
    budgets = _budgets(tmp_path, window_ms=1e9, load_ms=1e9, peak_rss_mb=1e9, bundle_mb=1e9)
    out = tmp_path / "bench.json"
    assert main(["bench", *FAST, "--budgets", budgets, "--target", "here", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "verdict for here: PASS" in table
    record = json.loads(out.read_text())
    rows = {row["stage"]: row for row in record["rows"]}
    assert STAGES <= set(rows)
    assert {f"represent:{kind}" for kind in ("scalogram", "recurrence", "waveform")} <= set(rows)
    assert all(row["q1"] <= row["median"] <= row["q3"] for row in rows.values())
    assert rows["end_to_end"]["median"] > rows["represent:scalogram"]["median"]
    assert 0 < rows["peak_rss_pipeline"]["median"] < 4000
    assert record["evaluation"]["verdict"] == "pass" and not record["evaluation"]["estimated"]
    assert record["bundle"]["id"] == load_bundle(default_bundle_path()).bundle_id
    assert set(record["all_targets"]) == {"here"}
    assert set(record["load_breakdown"]) == {"import_ms", "bundle_ms", "backend_ms", "first_inference_ms"}
    reference = record["reference"]
    if reference["status"] == "measured":  # torch installed (CI installs the train extra)
        assert "reference" in rows
        assert reference["speedup"] == pytest.approx(rows["reference"]["median"] / rows["infer_window"]["median"])
    else:
        assert reference["status"].endswith("not installed") and "reference" not in rows


def test_impossible_budget_fails_each_budgeted_stage(tmp_path, capsys):
    budgets = _budgets(tmp_path, window_ms=1e-6, load_ms=1e-6, peak_rss_mb=1e-6, bundle_mb=1e-9)
    assert main(["bench", *FAST, "--no-reference", "--budgets", budgets, "--target", "here"]) == 1
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    assert verdict.startswith("verdict for here: FAIL")
    for stage in ("end_to_end", "load", "peak_rss_monitor", "bundle_size"):
        assert f"{stage}:" in verdict


def test_estimate_scales_latency_not_memory():
    rows = [
        {"stage": "end_to_end", "median": 100.0, "unit": "ms", "scaled": True, "budget": "window_ms"},
        {"stage": "represent", "median": 10.0, "unit": "ms", "scaled": True, "budget": None},
        {"stage": "peak_rss_pipeline", "median": 300.0, "unit": "MB", "scaled": False, "budget": "peak_rss_mb"},
    ]
    target = get_target("rpi-zero-2w")
    evaluation = evaluate({"rows": rows}, target)
    factor = target.latency_factor()
    assert evaluation["rows"]["end_to_end"]["on_target"] == pytest.approx(100.0 * factor)
    assert evaluation["rows"]["represent"]["share"] == pytest.approx(10.0 * factor / target.window_ms)
    assert evaluation["rows"]["peak_rss_pipeline"]["on_target"] == 300.0
    assert evaluation["verdict"] == "fail"  # 300 MB > the Zero 2 W's 250 MB
    assert evaluation["failures"] == ["peak_rss_pipeline: 300 MB > 250 MB"]


def test_unknown_target_is_a_one_line_error(capsys):
    assert main(["bench", "--target", "rpi9"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("biomoe bench: error: unknown target 'rpi9'; known targets: rpi4, rpi5")
    assert len(error.splitlines()) == 1


def test_missing_bundle_is_a_one_line_error(tmp_path, capsys):
    assert main(["bench", "--bundle", str(tmp_path / "nowhere")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"biomoe bench: error: bundle {tmp_path / 'nowhere'} not found")
    assert len(error.splitlines()) == 1


def test_bad_setting_is_a_one_line_error(capsys):
    assert main(["bench", "--repeats", "0"]) == 1
    assert capsys.readouterr().err.strip() == "biomoe bench: error: --repeats must be >= 1, got 0"


def test_monitor_peak_memory_is_measured(tmp_path):
    budgets = _budgets(tmp_path, window_ms=1e9, load_ms=1e9, peak_rss_mb=1e9, bundle_mb=1e9)
    out = tmp_path / "bench.json"
    assert main(["bench", *FAST, "--no-reference", "--budgets", budgets, "--target", "here", "--json", str(out)]) == 0
    rows = {row["stage"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["peak_rss_monitor"]["budget"] == "peak_rss_mb" and rows["peak_rss_pipeline"]["budget"] is None
    assert rows["peak_rss_monitor"]["median"] > 0
    # A board faster than the bundle is downsampled without scipy.signal (~48 MB): the same budget, about the same peak.
    assert rows["peak_rss_monitor_250hz"]["budget"] == "peak_rss_mb"
    assert rows["peak_rss_monitor_250hz"]["median"] < rows["peak_rss_monitor"]["median"] + 20
