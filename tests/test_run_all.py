"""benchmarks.run_all: the whole report in quick mode (slow: ONNX export and every per-area benchmark)."""

from __future__ import annotations

import json

import pytest

from benchmarks.run_all import main
from edge.bundle import default_bundle_path, load_bundle


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_quick_run_writes_every_part_of_the_report(tmp_path):
    report, plot, record = tmp_path / "RESULTS.md", tmp_path / "latency.png", tmp_path / "all.json"
    assert main(["--quick", "--report", str(report), "--plot", str(plot), "--json", str(record)]) == 0
    text = report.read_text()
    shipped = load_bundle(default_bundle_path()).name
    for heading in (f"## Bundle `{shipped}`", "## Bundle `release-size-float32`",
                    "## Representations of one window: this project vs matplotlib",
                    "## Serial bridge: decoding throughput", "## Tiny-BioMoE backbone",
                    "## Budgets and where they come from", "(estimate)"):
        assert heading in text
    assert plot.read_bytes()[:4] == b"\x89PNG"
    records = json.loads(record.read_text())["records"]
    float_rows = {row["stage"]: row for row in records[1]["rows"]}
    assert float_rows["bundle_size"]["median"] > 20  # 7.3 M float32 parameters
    assert records[1]["reference"]["speedup"] > 0
