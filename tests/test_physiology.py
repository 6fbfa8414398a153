"""firmware_bridge.physiology: one model, two front ends (stream and batch), devices and effect presets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from firmware_bridge.physiology import (
    DEVICE_PRESETS,
    EFFECT_PRESETS,
    PAIN_LEVELS,
    RESPONSES,
    PhysiologyStream,
    draw_profile,
    effect_size,
    simulate_recording,
)
from rhythm import breathing_rate, heart_rate

FS = 100
RATES = {"EDA": FS, "BVP": FS, "RESP": FS, "SpO2": 1}
HIGH, LOW = PAIN_LEVELS["high"], PAIN_LEVELS["low"]
# A typical responder (every gain 1), so the tests measure the model's effects rather than one subject's draw.
TYPICAL = replace(
    draw_profile(np.random.default_rng(0)),
    responsiveness=1.0,
    gains=dict.fromkeys(RESPONSES, 1.0),
    latency_s=2.0,
    eda_ceiling_us=np.inf,
)


def stream(seed, seconds, pain=lambda t: 0, block_s=1.0, **options) -> dict[str, np.ndarray]:
    generator = PhysiologyStream(RATES, np.random.default_rng(seed), **options)
    blocks = [generator.block(k * block_s, block_s, pain(k * block_s)) for k in range(int(seconds / block_s))]
    return {channel: np.concatenate([b[channel] for b in blocks]) for channel in RATES}


@pytest.mark.parametrize("block_s", [1.0, 0.25])
def test_stream_blocks_continue_one_batch_recording(block_s):
    """Cut into blocks or made in one call, the recording is the same (to rounding): no restart at block edges."""
    streamed = stream(3, 60, block_s=block_s)
    batch = simulate_recording(60 * FS, np.random.default_rng(3)).signals
    for channel in ("EDA", "BVP", "RESP"):
        np.testing.assert_allclose(streamed[channel], batch[channel], atol=1e-8)
    np.testing.assert_array_equal(streamed["SpO2"], batch["SpO2"][::FS])


def test_no_jump_at_block_edges_even_when_pain_starts():
    """Sample-to-sample steps at block edges are no larger than those inside blocks."""
    signals = stream(1, 120, pain=lambda t: HIGH if 40 <= t < 80 else 0, profile=TYPICAL)
    for channel in ("EDA", "BVP", "RESP"):
        steps = np.abs(np.diff(signals[channel]))
        at_edges = steps[FS - 1 :: FS]
        inside = np.delete(steps, np.arange(FS - 1, len(steps), FS))
        assert at_edges.max() <= inside.max(), channel
        assert at_edges.mean() < 2 * inside.mean(), channel


def test_same_seed_same_signals_and_another_seed_differs():
    first, again, other = stream(7, 20), stream(7, 20), stream(8, 20)
    for channel in RATES:
        np.testing.assert_array_equal(first[channel], again[channel])
    assert not np.array_equal(first["BVP"], other["BVP"])


def test_stream_pain_raises_heart_rate_breathing_and_skin_conductance_after_1_to_3_s():
    onset = 60
    signals = stream(4, 180, pain=lambda t: HIGH if onset <= t < 120 else 0, profile=TYPICAL)
    bvp, resp, eda = signals["BVP"], signals["RESP"], signals["EDA"]
    rest, pain, after = slice(0, 60 * FS), slice(62 * FS, 120 * FS), slice(140 * FS, 180 * FS)
    assert heart_rate(bvp[pain]) > heart_rate(bvp[rest]) + 5
    assert heart_rate(bvp[after]) < heart_rate(bvp[pain]) - 5  # fades after the episode
    assert breathing_rate(resp[pain]) > breathing_rate(resp[rest]) + 2
    scl = TYPICAL.skin_conductance_us
    before = eda[(onset - 5) * FS : onset * FS].mean()
    assert abs(eda[onset * FS : (onset + 1) * FS].mean() - before) < 0.05 * scl  # nothing yet within 1 s
    assert eda[(onset + 3) * FS : (onset + 8) * FS].max() > before + 0.1 * scl  # the evoked SCR by 3-8 s
    assert eda[pain].mean() > eda[rest].mean() + 0.05 * scl  # tonic rise and extra SCRs


def test_low_pain_responds_less_than_high_pain():
    def rise(level, seed):
        signals = stream(seed, 120, pain=lambda t: level if t >= 60 else 0, profile=TYPICAL)
        return heart_rate(signals["BVP"][62 * FS :]) - heart_rate(signals["BVP"][: 60 * FS])

    assert np.mean([rise(HIGH, seed) for seed in range(3)]) > np.mean([rise(LOW, seed) for seed in range(3)])


def test_batch_pain_raises_heart_rate_and_skin_conductance():
    episodes = [(60 * FS, 120 * FS, HIGH)]
    recording = simulate_recording(180 * FS, np.random.default_rng(5), episodes, profile=TYPICAL)
    bvp, eda = recording.signals["BVP"], recording.signals["EDA"]
    rest, pain = slice(0, 60 * FS), slice(62 * FS, 120 * FS)
    assert heart_rate(bvp[pain]) > heart_rate(bvp[rest]) + 5
    assert eda[pain].mean() > eda[rest].mean() + 0.05 * TYPICAL.skin_conductance_us
    assert recording.strengths["heart"].shape == (1,) and recording.strengths["heart"][0] > 0


def test_a_recording_says_when_each_response_starts_and_how_big_it_is():
    episodes = [(10 * FS, 20 * FS, HIGH), (40 * FS, 50 * FS, LOW)]
    recording = simulate_recording(60 * FS, np.random.default_rng(6), episodes, profile=TYPICAL)
    heart = recording.onsets["heart"]
    assert ((heart - [10 * FS, 40 * FS]) / FS >= TYPICAL.latency_s - 0.31).all()
    assert ((heart - [10 * FS, 40 * FS]) / FS <= TYPICAL.latency_s + 0.31).all()
    assert (recording.onsets["eda"] == heart).all() and (recording.onsets["pulse"] == heart + FS).all()
    assert (recording.onsets["spo2"] == heart + 4 * FS).all()
    step = effect_size(recording.effects, "heart_rate_bpm", recording.strengths["heart"])
    assert step.shape == (2,) and (0 < step).all() and (step < 40).all()  # below the +40 bpm ceiling


def test_effects_and_device_change_no_random_draw():
    """The same seed is the same subject and the same episodes whatever the presets."""
    episodes = [(1000, 2000, HIGH), (3000, 4000, LOW)]
    recordings = [
        simulate_recording(5000, np.random.default_rng(2), episodes, effects=effects, device=device)
        for effects, device in (("default", "finger-lab"), ("eda-dominant", "raw-adc"), ("cardiac-dominant", "wrist-e4"))
    ]
    for other in recordings[1:]:
        assert other.profile == recordings[0].profile
        for name in RESPONSES:
            np.testing.assert_array_equal(other.strengths[name], recordings[0].strengths[name])


def test_effect_presets_move_the_response_between_heart_and_skin():
    def rises(effects):
        recording = simulate_recording(120 * FS, np.random.default_rng(6), [(60 * FS, 120 * FS, HIGH)],
                                       profile=TYPICAL, effects=effects)
        bvp, eda = recording.signals["BVP"], recording.signals["EDA"]
        return (heart_rate(bvp[62 * FS :]) - heart_rate(bvp[: 60 * FS]),
                eda[62 * FS :].mean() - eda[: 60 * FS].mean())

    (heart_cardiac, skin_cardiac), (heart_eda, skin_eda) = rises("cardiac-dominant"), rises("eda-dominant")
    assert heart_cardiac > heart_eda + 5
    assert skin_eda > 2 * skin_cardiac


def test_raw_adc_device_reports_counts_with_gain_offset_and_limits():
    lab = simulate_recording(60 * FS, np.random.default_rng(9), device="finger-lab")
    raw = simulate_recording(60 * FS, np.random.default_rng(9), device="raw-adc")
    assert raw.units == {"EDA": "counts", "BVP": "counts", "RESP": "counts", "SpO2": "%"}
    for channel, (low, high) in (("EDA", (0, 4095)), ("BVP", (0, 65535)), ("RESP", (0, 4095))):
        signal = raw.signals[channel]
        assert np.array_equal(signal, np.round(signal)) and low <= signal.min() and signal.max() <= high
    assert 20_000 < raw.signals["BVP"].mean() < 45_000  # PPG around a large DC offset
    # The same physiology seen through another gain and offset: a straight line, up to drift and 1-count steps.
    for channel in ("EDA", "BVP"):
        assert np.corrcoef(lab.signals[channel], raw.signals[channel])[0, 1] > 0.95
    gain = np.polyfit(lab.signals["EDA"], raw.signals["EDA"], 1)[0]
    assert 60 < gain < 160  # 100 counts per uS, +- 10 % per unit
    np.testing.assert_array_equal(raw.signals["SpO2"], lab.signals["SpO2"])


def test_wrist_device_resamples_4_hz_eda_and_64_hz_ppg_to_100_hz():
    recording = simulate_recording(30 * FS, np.random.default_rng(4), device="wrist-e4")
    eda, bvp = recording.signals["EDA"], recording.signals["BVP"]
    assert eda.shape == bvp.shape == (30 * FS,)
    kinks = np.flatnonzero(np.abs(np.diff(eda, 2)) > 1e-9) + 1  # linear between readings 25 samples apart
    assert len(kinks) and np.all(kinks % 25 == 0)
    kinks = np.flatnonzero(np.abs(np.diff(bvp, 2)) > 1e-9) + 1  # 64 readings a second
    assert 60 * 30 < len(kinks) <= 64 * 30
    lab = simulate_recording(30 * FS, np.random.default_rng(4), device="finger-lab")
    assert DEVICE_PRESETS["wrist-e4"].ppg_site == "wrist" and 10 < np.std(bvp) / np.std(lab.signals["BVP"]) < 1000


def test_finger_lab_oximeter_reports_whole_percent_once_a_second():
    spo2 = simulate_recording(20 * FS, np.random.default_rng(1)).signals["SpO2"]
    assert np.array_equal(spo2, np.round(spo2)) and 90 <= spo2.min() and spo2.max() <= 100
    assert np.all(spo2.reshape(20, FS) == spo2.reshape(20, FS)[:, :1])


def test_named_presets_and_bad_arguments():
    assert set(DEVICE_PRESETS) >= {"finger-lab", "wrist-e4", "raw-adc"}
    assert set(EFFECT_PRESETS) >= {"default", "cardiac-dominant", "eda-dominant"}
    with pytest.raises(ValueError, match="device must be one of .*finger-lab"):
        simulate_recording(100, np.random.default_rng(0), device="finger")
    with pytest.raises(ValueError, match="effects must be one of"):
        PhysiologyStream(RATES, np.random.default_rng(0), effects="strong")
    with pytest.raises(ValueError, match="episode"):
        simulate_recording(100, np.random.default_rng(0), [(50, 40, HIGH)])
    generator = PhysiologyStream(RATES, np.random.default_rng(0))
    with pytest.raises(ValueError, match="pain must be one of"):
        generator.block(0.0, 1.0, pain=3)
    generator.block(0.0, 1.0)
    with pytest.raises(ValueError, match="time order"):
        generator.block(0.0, 1.0)
    assert generator.block(5.0, 1.0)["SpO2"].shape == (1,)  # a gap is skipped
