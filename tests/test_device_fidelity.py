"""Device-path fidelity: a recording replayed over the serial protocol into ``biomoe monitor`` gets the
predictions the training side computes for the same windows (images, backbone graph, scalars, baseline, head)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge.backends import create_backend
from edge.bundle import default_bundle_path, load_bundle
from edge.bundle_images import FusionImages, bundle_representation_spec
from edge.scalars import window_scalars
from firmware_bridge.physiology import simulate_recording
from training.ai4pain import load_split
from training.features import DEVICE_CHANNELS

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"Eda": "EDA", "Bvp": "BVP", "Resp": "RESP", "SpO2": "SpO2"}


def write_subject(root: Path, subject: str, seed: int) -> None:
    """A minute of rest, a minute of high pain, a minute of low pain; columns of whole 10 s windows."""
    recording = simulate_recording(18000, np.random.default_rng(seed), ((6000, 12000, 2), (12000, 18000, 1)))
    names = ["Baseline"] + [f"HIGH_{i + 1}" for i in range(6)] + [f"LOW_{i + 1}" for i in range(6)]
    bounds = [(0, 6000)] + [(6000 + 1000 * i, 7000 + 1000 * i) for i in range(12)]
    for folder, channel in FOLDERS.items():
        table = np.full((6000, len(names)), np.nan)
        for column, (start, stop) in enumerate(bounds):
            table[: stop - start, column] = recording.signals[channel][start:stop]
        (root / "validation" / folder).mkdir(parents=True, exist_ok=True)
        with open(root / "validation" / folder / f"{subject}.csv", "w") as handle:
            handle.write(",".join(names) + "\n")
            np.savetxt(handle, table, delimiter=",", fmt="%.6f")


def training_side(root: Path, subject: str) -> np.ndarray:
    """Probabilities of the subject's windows as the training code computes them (no serial link)."""
    bundle = load_bundle(default_bundle_path())
    backend = create_backend(bundle, threads=1)
    windows = load_split(root, "validation")
    rows = windows.subjects == subject
    signals = windows.signals[rows].astype(np.float64)
    order = [list(FOLDERS.values()).index(entry.modality) for entry in bundle.fusion]
    images = np.stack([FusionImages(bundle.fusion, bundle_representation_spec(bundle))(s[order]) for s in signals])
    embeddings = backend.embed(images)
    scalars = window_scalars(signals, [DEVICE_CHANNELS[m] for m in windows.modalities], 100.0)
    features = np.concatenate([embeddings.reshape(len(signals), -1), scalars], axis=1)
    relative = features - features[:6].mean(axis=0)  # the first minute: the patient's baseline
    width = embeddings[0].size
    return backend.classify(relative[6:, :width].reshape((-1,) + embeddings.shape[1:]), relative[6:, width:])


def test_replayed_recording_gets_the_training_sides_predictions(tmp_path):
    bundle = load_bundle(default_bundle_path())
    assert bundle.calibration["embeddings"] and len(bundle.scalars) == 10
    config = tmp_path / "monitor.toml"
    config.write_text("[budgets]\nmax_pending_windows = 64\n")
    agreements, differences = [], []
    for seed, subject in enumerate(("S1", "S2")):
        write_subject(tmp_path / "data", subject, seed)
        port = f"sim://?replay={tmp_path / 'data' / 'validation'}&subject={subject}&speed=20&loop=1"
        done = subprocess.run([sys.executable, "-m", "edge.cli", "monitor", "--port", port, "--windows", "18",
                               "--db", str(tmp_path / f"{subject}.sqlite"), "--config", str(config)],
                              cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        assert [r["skip_reason"] for r in records[:6]] == ["calibrating"] * 6
        monitor = np.array([[r["probabilities"][label] for label in bundle.labels] for r in records[6:18]])
        reference = training_side(tmp_path / "data", subject)
        agreements.extend(monitor.argmax(1) == reference.argmax(1))
        differences.append(np.abs(monitor - reference).max())
    assert np.mean(agreements) >= 0.99, (agreements, differences)
    assert max(differences) < 0.05  # the link carries int16 samples: small rounding, same decisions
