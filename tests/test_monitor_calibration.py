"""The monitor learns the patient's baseline first, stores it, and scores a scripted pain episode."""

import json
import subprocess
import sys
from pathlib import Path

from edge.storage import ResultStore

ROOT = Path(__file__).resolve().parents[1]


def test_monitor_calibrates_then_labels_and_reports_agreement_with_the_script(tmp_path):
    database = tmp_path / "r.sqlite"
    config = tmp_path / "monitor.toml"
    config.write_text("[budgets]\nmax_pending_windows = 64\n")
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli", "monitor", "--simulate", "--speed", "20", "--windows", "9",
         "--conditions", "pain:high:60-90", "--db", str(database), "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # stdout is a pipe: JSON lines
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [r["skip_reason"] for r in records[:6]] == ["calibrating"] * 6
    assert all(r["label"] is None and r["quality"] for r in records[:6])
    assert all(r["label"] is not None for r in records[6:]) and len(records) == 9
    assert "scripted pain episodes: " in done.stderr and " of 3 labelled windows agree" in done.stderr
    with ResultStore(database, readonly=True) as store:
        baselines = store.events("calibration")
    assert len(baselines) == 1 and baselines[0]["detail"]["windows"] == 6
    assert baselines[0]["detail"]["shape"] == [5 * 192 + 10]  # the five embeddings and ten scalars


def test_calibration_length_is_a_setting(tmp_path):
    """--calibration-windows (calibration_windows in the config file) overrides the bundle's minute."""
    database = tmp_path / "r.sqlite"
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli", "monitor", "--simulate", "--speed", "20", "--windows", "5",
         "--calibration-windows", "3", "--db", str(database)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [r["skip_reason"] for r in records] == ["calibrating"] * 3 + [None] * 2
    with ResultStore(database, readonly=True) as store:
        assert store.events("calibration")[0]["detail"]["windows"] == 3
    refused = subprocess.run([sys.executable, "-m", "edge.cli", "monitor", "--simulate", "--calibration-windows", "0"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "calibration" in refused.stderr and "Traceback" not in refused.stderr
