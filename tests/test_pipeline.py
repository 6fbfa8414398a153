import json

import numpy as np
import pytest

from edge.backends import create_backend
from edge.quality import DeviceFlags
from edge.smoothing import create_smoother
from edge.storage import ResultStore
from edge.pipeline import WindowProcessor
from edge.windows import Windower

RATES = {"EDA": 100.0, "BVP": 100.0, "RESP": 50.0, "SpO2": 1.0}


def _images_for(size):
    """Stand-in for edge.representations: each row min-max scaled and stretched over an image."""
    def images_for(signals):
        columns = np.linspace(0, signals.shape[1] - 1, size)
        images = []
        for row in signals:
            line = np.interp(columns, np.arange(row.size), row)
            span = np.ptp(line)
            line = (line - line.min()) / span if span > 0 else np.zeros(size)
            images.append(np.broadcast_to(line, (3, size, size)))
        return np.asarray(images, dtype=np.float32)
    return images_for


def _signal(channel, t):
    if channel == "EDA":
        return 4.0 + 0.2 * np.sin(2 * np.pi * 0.05 * t)
    if channel == "BVP":
        return np.sin(2 * np.pi * 1.2 * t)
    if channel == "RESP":
        return np.sin(2 * np.pi * 0.25 * t)
    return np.full(t.shape, 97.0)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from quantize.placeholder import build_placeholder_bundle

    return build_placeholder_bundle(tmp_path_factory.mktemp("bundle") / "placeholder")


def _processor(bundle, flags=None, smoothing="ema"):
    backend = create_backend(bundle, threads=1)
    return WindowProcessor(bundle, backend, create_smoother(smoothing), _images_for(bundle.image_size), flags)


def test_windows_with_injected_faults_become_stored_results(tmp_path, bundle):
    """Feed 4 windows with one fault each in windows 1-3 and check every stage's record."""
    flags = DeviceFlags()
    windower = Windower({name: RATES[name] for name in bundle.channel_names}, bundle.sampling_rate,
                        bundle.window_seconds)
    processor = _processor(bundle, flags)
    windows = []
    for second in range(42):
        for channel, rate in RATES.items():
            t = second + np.arange(int(rate)) / rate
            samples = _signal(channel, t)
            if channel == "RESP" and 20 <= second < 30:
                samples = np.zeros_like(samples)  # window 2: respiration belt unplugged (flat)
            if channel == "BVP" and 12 <= second < 15:
                windows += windower.mark_lost("BVP", int(rate))  # window 1: 3 s lost on the link
                continue
            windows += windower.push(channel, float(second), samples)
        if second == 31:
            flags.update("EDA", 31.0, {"lead_off"})  # window 3: electrode off for 2 s
        if second == 33:
            flags.update("EDA", 33.0, set())
    assert len(windows) == 4
    lines = []
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.start_session(bundle.bundle_id, bundle.placeholder, bundle.labels, bundle.channel_names)
        for window in windows:
            result = processor.process(window)
            store.append(result)
            lines.append(result.to_json())
        stored = store.windows()
    assert len(stored) == len(lines) == 4
    records = [json.loads(line) for line in lines]
    expected_flags = [{}, {"BVP": ["missing"]}, {"RESP": ["flat_line"]}, {"EDA": ["lead_off"]}]
    for record, row, expected in zip(records, stored, expected_flags):
        flagged = {name: v["flags"] for name, v in record["quality"].items() if v["flags"]}
        assert flagged == expected
        assert record["quality_ok"] is (not expected)
        assert sum(record["probabilities"].values()) == pytest.approx(1.0)
        assert sum(record["smoothed_probabilities"].values()) == pytest.approx(1.0)
        assert record["label"] in bundle.labels and record["placeholder"] is True
        assert set(record["latency_ms"]) == {"quality", "represent", "infer", "smooth", "total"}
        assert row.probabilities == record["probabilities"] and row.quality_ok == record["quality_ok"]
    assert records[1]["quality"]["BVP"]["missing"] == pytest.approx(0.3)
    # Unreliable windows leave the smoothed probabilities where the last good window put them.
    for record in records[1:]:
        assert record["smoothed_probabilities"] == records[0]["smoothed_probabilities"]


def test_smoothing_follows_reliable_windows(bundle):
    processor = _processor(bundle, smoothing="none")
    windower = Windower({name: RATES[name] for name in bundle.channel_names}, 100.0, 10.0)
    windows = []
    for channel, rate in RATES.items():
        t = np.arange(int(21 * rate)) / rate
        windows += windower.push(channel, 0.0, _signal(channel, t))
    results = [processor.process(w) for w in windows]
    for result in results:
        assert result.smoothed_probabilities == result.probabilities
        assert result.label == max(result.probabilities, key=result.probabilities.get)


def test_skipped_windows_are_recorded_explicitly(bundle):
    processor = _processor(bundle)
    windower = Windower({name: RATES[name] for name in bundle.channel_names}, 100.0, 10.0)
    (window,) = [w for channel, rate in RATES.items()
                 for w in windower.push(channel, 0.0, _signal(channel, np.arange(int(11 * rate)) / rate))]
    result = processor.skipped(window, wall_time=123.0)
    assert result.skipped and result.skip_reason == "behind" and result.probabilities is None
    assert result.window_index == window.index and result.wall_time == 123.0
    assert json.loads(result.to_json())["quality_ok"] is None


def test_window_channels_must_match_the_bundle(bundle):
    processor = _processor(bundle)
    windower = Windower({"EDA": 100.0}, 100.0, 10.0)
    (window,) = windower.push("EDA", 0.0, np.ones(1100))
    with pytest.raises(ValueError, match="differ from the bundle's"):
        processor.process(window)


def test_device_flags_looked_up_elsewhere_are_used_for_the_window(bundle):
    """A monitor looks the flags up on its ingest thread and hands them over with the window."""
    tracked = DeviceFlags()
    tracked.update("BVP", 0.0, {"saturation"})
    processor = _processor(bundle, tracked)
    windower = Windower({name: RATES[name] for name in bundle.channel_names}, 100.0, 10.0)
    (window,) = [w for channel, rate in RATES.items()
                 for w in windower.push(channel, 0.0, _signal(channel, np.arange(int(11 * rate)) / rate))]
    handed_over = processor.process(window, device_flags={"EDA": {"lead_off"}})
    assert {name: v["flags"] for name, v in handed_over.quality.items() if v["flags"]} == {"EDA": ["lead_off"]}
    tracked_result = processor.process(window)
    assert {name: v["flags"] for name, v in tracked_result.quality.items() if v["flags"]} == {"BVP": ["saturation"]}


def test_calibrated_bundle_learns_the_patients_baseline_first_and_again_on_request():
    """The shipped bundle reads scalars relative to the patient's first minute of reliable rest windows."""
    from edge.bundle import default_bundle_path, load_bundle
    from edge.bundle_images import FusionImages, bundle_representation_spec

    bundle = load_bundle(default_bundle_path())
    assert bundle.calibration["method"] == "baseline" and bundle.calibration["windows"] == 6 and "BVP.rate" in bundle.scalars
    learnt = []
    processor = WindowProcessor(bundle, create_backend(bundle, threads=1), create_smoother("none"),
                                FusionImages(bundle.fusion, bundle_representation_spec(bundle)),
                                on_baseline=learnt.append)
    rates = {name: 100.0 for name in bundle.channel_names}
    windower = Windower(rates, bundle.sampling_rate, bundle.window_seconds)
    windows = []
    for second in range(100):
        t = second + np.arange(100) / 100.0
        for channel in bundle.channel_names:
            values = _signal(channel, t)
            if channel == "EDA" and second < 10:
                values = np.full(100, 4.0)  # a flat (unreliable) first window is not part of the baseline
            windows += windower.push(channel, float(second), values)
    results = [processor.process(window) for window in windows[:9]]
    assert [r.skip_reason for r in results[:7]] == ["calibrating"] * 7 and results[0].quality["EDA"]["ok"] is False
    assert all(r.label in bundle.labels and not r.skipped for r in results[7:])
    assert len(learnt) == 1 and learnt[0].windows == 6
    processor.recalibrate()
    assert processor.process(windows[9]).skip_reason == "calibrating"
