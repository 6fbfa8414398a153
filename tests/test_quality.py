import doctest
import statistics
import warnings

import numpy as np
import pytest

import edge.quality
from edge.quality import (
    DEFAULT_CHANNEL_SPECS,
    QUALITY_FLAGS,
    ChannelSpec,
    DeviceFlags,
    channel_spec,
    channel_spec_with_adc,
    signal_fill,
    signal_quality,
    window_quality,
)

RATE = 100.0


def _clean(channel, seconds=10.0, seed=0):
    """Plausible signal of each channel type (a local seeded generator)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    noise = rng.normal(0, 1, t.size)
    if channel == "EDA":
        return 5.0 + 0.3 * np.sin(2 * np.pi * 0.05 * t) + 0.01 * noise
    if channel == "BVP":
        return np.sin(2 * np.pi * 1.2 * t) + 0.05 * noise
    if channel == "RESP":
        return np.sin(2 * np.pi * 0.25 * t) + 0.02 * noise
    return np.round(97.0 + 0.5 * np.sin(2 * np.pi * 0.02 * t))  # SpO2 in whole %


@pytest.mark.parametrize("channel", ["EDA", "BVP", "RESP", "SpO2"])
def test_clean_signals_pass(channel):
    verdict = signal_quality(_clean(channel), RATE, channel_spec(channel))
    assert verdict["ok"] and verdict["flags"] == []
    assert verdict["missing"] == 0.0


def test_missing_samples_are_counted_and_flagged_above_the_threshold():
    signal = _clean("BVP")
    signal[:50] = np.nan  # 5 %: counted, below the 10 % threshold
    verdict = signal_quality(signal, RATE, channel_spec("BVP"))
    assert verdict["missing"] == pytest.approx(0.05) and verdict["ok"]
    signal[:300] = np.nan
    verdict = signal_quality(signal, RATE, channel_spec("BVP"))
    assert verdict["flags"] == ["missing"] and verdict["missing"] == pytest.approx(0.3)


def test_all_missing_is_only_missing():
    verdict = signal_quality(np.full(1000, np.nan), RATE, channel_spec("EDA"))
    assert verdict["flags"] == ["missing"] and verdict["missing"] == 1.0


def test_flat_line_by_std_and_by_constant_run():
    assert signal_quality(np.full(1000, 4.2), RATE, channel_spec("EDA"))["flags"] == ["flat_line"]
    bvp = _clean("BVP")
    bvp[200:350] = bvp[200]  # pulse wave stuck for 1.5 s (ADC frozen)
    verdict = signal_quality(bvp, RATE, channel_spec("BVP"))
    assert verdict["flags"] == ["flat_line"]
    assert verdict["longest_constant_seconds"] == pytest.approx(1.5)


def test_constant_spo2_is_not_a_flat_line():
    verdict = signal_quality(np.full(1000, 98.0), RATE, channel_spec("SpO2"))
    assert verdict["ok"]


def test_a_gap_breaks_a_constant_run():
    signal = _clean("BVP")
    signal[100:160] = 0.5
    signal[160:170] = np.nan
    signal[170:230] = 0.5
    assert "flat_line" not in signal_quality(signal, RATE, channel_spec("BVP"))["flags"]


def test_saturation_at_the_adc_limits():
    spec = channel_spec("EDA", adc_range=(0.0, 25.0))
    eda = _clean("EDA") + 18.0
    eda[400:600] = 25.0  # clipped at the top of the range for 2 s
    verdict = signal_quality(eda, RATE, spec)
    assert verdict["flags"] == ["saturation"] and verdict["saturated"] == pytest.approx(0.2)
    assert signal_quality(_clean("EDA"), RATE, spec)["ok"]


def test_out_of_physiological_range():
    spo2 = _clean("SpO2")
    spo2[:200] = 0.0  # no finger in the clip
    verdict = signal_quality(spo2, RATE, channel_spec("SpO2"))
    assert verdict["flags"] == ["out_of_range"] and verdict["out_of_range"] == pytest.approx(0.2)
    assert signal_quality(-_clean("EDA"), RATE, channel_spec("EDA"))["flags"] == ["out_of_range"]


def test_the_physiological_range_includes_its_limits():
    spo2 = np.full(1000, 100.0)  # a healthy, well-oxygenated patient reads exactly 100 %
    spo2[::2] = 50.0
    assert signal_quality(spo2, RATE, channel_spec("SpO2"))["out_of_range"] == 0.0
    spo2[:60] = [49.9, 100.1] * 30
    assert signal_quality(spo2, RATE, channel_spec("SpO2"))["out_of_range"] == pytest.approx(0.06)


def test_saturation_counts_samples_at_the_adc_limits_not_inside():
    spec = channel_spec("EDA", adc_range=(0.0, 25.0))
    eda = _clean("EDA") + 10.0
    eda[:100] = [0.0, 25.0] * 50
    eda[100:200] = [0.001, 24.999] * 50
    assert signal_quality(eda, RATE, spec)["saturated"] == pytest.approx(0.1)


def test_samples_at_the_adc_limits_the_device_announces_are_saturated():
    """A board clipping at its ADC's range without raising its flag: the announced range catches it."""
    bvp = np.clip(_clean("BVP"), -0.5, 0.5)  # a pulse wave clipped on both sides
    assert signal_quality(bvp, RATE, channel_spec("BVP"))["ok"]
    verdict = signal_quality(bvp, RATE, channel_spec_with_adc(channel_spec("BVP"), (-0.5, 0.5)))
    assert verdict["flags"] == ["saturation"] and verdict["saturated"] > 0.5


@pytest.mark.parametrize("own, device, narrowed", [
    (None, (0.0, 32.7675), (0.0, 32.7675)),  # the device's range alone
    ((0.0, 25.0), (0.0, 32.7675), (0.0, 25.0)),  # a sensor that saturates before its ADC
    ((0.0, 25.0), (1.0, 20.0), (1.0, 20.0)),  # an ADC narrower than the bundle says
    ((0.0, 25.0), (-5.0, 10.0), (0.0, 10.0)),  # each limit from the range that reaches it first
    ((0.0, 25.0), (30.0, 40.0), (0.0, 25.0)),  # no overlap: the bundle's range flags every sample already
    (None, (3.0, 3.0), None),  # an ADC of one value: no range to count samples against
])
def test_the_device_adc_range_narrows_the_bundles(own, device, narrowed):
    spec = channel_spec("EDA", adc_range=own)
    assert channel_spec_with_adc(spec, device) == channel_spec("EDA", adc_range=narrowed)


def _with_fault(flag: str, n_bad: int) -> tuple[np.ndarray, ChannelSpec]:
    """A clean window whose first ``n_bad`` samples have ``flag``'s fault."""
    if flag == "missing":
        signal, spec = _clean("BVP"), channel_spec("BVP")
        signal[:n_bad] = np.nan
    elif flag == "saturation":
        signal, spec = _clean("EDA") + 10.0, channel_spec("EDA", adc_range=(0.0, 25.0))
        signal[:n_bad] = 25.0
    else:
        signal, spec = _clean("SpO2"), channel_spec("SpO2")
        signal[:n_bad] = 0.0
    return signal, spec


# The defaults of signal_quality: 10 % missing, 1 % saturated, 5 % out of range are still acceptable.
@pytest.mark.parametrize("flag, threshold", [("missing", 0.1), ("saturation", 0.01), ("out_of_range", 0.05)])
def test_a_fault_fraction_at_its_default_threshold_is_not_flagged_one_sample_more_is(flag, threshold):
    n_bad = round(threshold * 1000)
    signal, spec = _with_fault(flag, n_bad)
    assert flag not in signal_quality(signal, RATE, spec)["flags"]
    signal, spec = _with_fault(flag, n_bad + 1)
    assert flag in signal_quality(signal, RATE, spec)["flags"]


def test_a_barely_varying_signal_is_flat_by_its_spread_alone():
    eda = 5.0 + 1e-7 * np.arange(1000)  # no two samples equal; std 2.9e-5 uS, below EDA's 1e-4
    verdict = signal_quality(eda, RATE, channel_spec("EDA"))
    assert verdict["longest_constant_seconds"] == pytest.approx(0.01)
    assert verdict["std"] < 1e-4 and verdict["flags"] == ["flat_line"]


def test_the_longest_constant_run_of_short_signals():
    assert signal_quality([1.0, 2.0], RATE, channel_spec("BVP"))["longest_constant_seconds"] == pytest.approx(0.01)
    assert signal_quality([1.0, 1.0], RATE, channel_spec("BVP"))["longest_constant_seconds"] == pytest.approx(0.02)
    assert signal_quality([1.0], RATE, channel_spec("BVP"))["longest_constant_seconds"] == pytest.approx(0.01)


def test_fractions_are_rounded_to_six_decimals():
    eda = _clean("EDA", seconds=30.0) + 10.0
    eda[0] = -0.5  # below the ADC's range: saturated too
    verdict = signal_quality(eda, RATE, channel_spec("EDA", adc_range=(0.0, 25.0)))
    assert verdict["saturated"] == 0.000333  # 1 / 3000
    assert verdict["out_of_range"] == 0.000333  # -0.5 uS is below EDA's 0.05
    eda[1] = np.nan
    assert signal_quality(eda, RATE, channel_spec("EDA"))["missing"] == 0.000333
    # a run of one sample at 3 Hz lasts 1/3 s
    assert signal_quality([1.0, 2.0, 3.0], 3.0, channel_spec("BVP"))["longest_constant_seconds"] == 0.333333


def test_a_missing_fraction_exactly_at_the_threshold_is_not_flagged():
    signal = [1.0, 2.0, 3.0, np.nan]  # 1/4 missing, exactly representable
    assert "missing" not in signal_quality(signal, RATE, channel_spec("BVP"), max_missing_fraction=0.25)["flags"]
    assert "missing" in signal_quality(signal, RATE, channel_spec("BVP"), max_missing_fraction=0.24)["flags"]


def test_a_channel_with_no_sample_reports_no_fault_fractions_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # np.std of nothing would warn on every lost window
        verdict = signal_quality(np.full(50, np.nan), RATE, channel_spec("EDA", adc_range=(0.0, 25.0)))
    assert verdict["saturated"] == 0.0 and verdict["out_of_range"] == 0.0 and np.isnan(verdict["std"])


def test_unchecked_fractions_are_zero():
    verdict = signal_quality(_clean("BVP"), RATE, channel_spec("BVP"))  # BVP has no ADC or physiological range
    assert verdict["saturated"] == 0.0 and verdict["out_of_range"] == 0.0


def test_the_spread_is_computed_in_double_precision_for_float32_samples():
    samples = (5.0 + 0.001 * np.random.default_rng(3).standard_normal(100_000)).astype(np.float32)
    reference = statistics.pstdev(float(value) for value in samples)
    assert signal_quality(samples, RATE, channel_spec("EDA"))["std"] == pytest.approx(reference, rel=1e-9)


def test_flat_by_spread_needs_two_present_samples_and_includes_its_limit():
    spec = ChannelSpec("X", flat_std=0.5)  # no constant-run check
    one = [np.nan] * 3 + [2.0]
    assert "flat_line" not in signal_quality(one, RATE, spec, max_missing_fraction=1.0)["flags"]
    two = [np.nan, np.nan, 2.0, 2.0]
    assert "flat_line" in signal_quality(two, RATE, spec, max_missing_fraction=1.0)["flags"]
    assert "flat_line" in signal_quality([0.0, 1.0, 0.0, 1.0], RATE, spec)["flags"]  # std exactly 0.5
    assert "flat_line" not in signal_quality([0.0, 1.1, 0.0, 1.1], RATE, spec)["flags"]


def test_a_constant_run_exactly_as_long_as_allowed_is_flat():
    spec = ChannelSpec("X", flat_std=None, max_constant_seconds=5.0)
    run_of_five = [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]  # five equal samples at 1 Hz: 5 s
    assert signal_quality(run_of_five, 1.0, spec)["flags"] == ["flat_line"]
    assert signal_quality(run_of_five, 1.25, spec)["flags"] == []  # the same run lasts 4 s


@pytest.mark.parametrize("signal, rate, message", [([], RATE, "non-empty 1-D"), ([[1.0, 2.0]], RATE, "1-D"),
                                                   ([1.0, 2.0], 0.0, "sampling_rate"),
                                                   ([1.0, 2.0], -100.0, "sampling_rate")])
def test_bad_signals_and_rates_are_refused(signal, rate, message):
    with pytest.raises(ValueError, match=message):
        signal_quality(signal, rate, channel_spec("BVP"))


def test_a_slow_sampling_rate_is_accepted():
    assert signal_quality(_clean("SpO2")[:10], 0.5, channel_spec("SpO2"))["ok"]


def test_device_flags_are_reported():
    verdict = signal_quality(_clean("EDA"), RATE, channel_spec("EDA"), device_flags={"lead_off"})
    assert verdict["flags"] == ["lead_off"] and not verdict["ok"]
    verdict = signal_quality(_clean("BVP"), RATE, channel_spec("BVP"), device_flags=["saturation", "lead_off"])
    assert verdict["flags"] == ["saturation", "lead_off"]
    with pytest.raises(ValueError, match="unknown device flags"):
        signal_quality(_clean("BVP"), RATE, channel_spec("BVP"), device_flags={"battery_low"})


def test_several_faults_are_listed_in_a_fixed_order():
    eda = np.full(1000, 0.0)
    eda[:200] = np.nan
    verdict = signal_quality(eda, RATE, channel_spec("EDA"), device_flags={"lead_off"})
    assert verdict["flags"] == ["missing", "flat_line", "out_of_range", "lead_off"]
    assert list(verdict["flags"]) == [f for f in QUALITY_FLAGS if f in verdict["flags"]]


def test_window_quality_passes_its_thresholds_to_every_channel():
    window = np.stack([_clean("EDA"), _clean("BVP")])
    window[:, :300] = np.nan  # 30 % missing
    specs = [channel_spec("EDA"), channel_spec("BVP")]
    assert all(v["flags"] == ["missing"] for v in window_quality(window, RATE, specs).values())
    assert all(v["ok"] for v in window_quality(window, RATE, specs, max_missing_fraction=0.5).values())


def test_window_quality_reports_every_channel():
    names = ["EDA", "BVP", "RESP", "SpO2"]
    window = np.stack([_clean(name) for name in names])
    window[2, :] = 0.0  # respiration belt unplugged
    report = window_quality(window, RATE, [channel_spec(n) for n in names], {"EDA": {"lead_off"}})
    assert list(report) == names
    assert report["EDA"]["flags"] == ["lead_off"]
    assert report["RESP"]["flags"] == ["flat_line"]
    assert report["BVP"]["ok"] and report["SpO2"]["ok"]
    with pytest.raises(ValueError, match="n_channels=4"):
        window_quality(window[:3], RATE, [channel_spec(n) for n in names])


def test_signal_fill_interpolates_and_holds_edges():
    filled = signal_fill([np.nan, 1.0, np.nan, np.nan, 4.0, np.nan])
    np.testing.assert_allclose(filled, [1.0, 1.0, 2.0, 3.0, 4.0, 4.0])
    np.testing.assert_array_equal(signal_fill(np.full((2, 3), np.nan)), np.zeros((2, 3)))
    rows = signal_fill([[1.0, np.nan, 3.0], [np.nan, 5.0, 5.0]])
    np.testing.assert_allclose(rows, [[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])


def test_signal_fill_fills_a_row_after_a_complete_one_and_returns_float64():
    rows = signal_fill([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0]])
    np.testing.assert_array_equal(rows, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert signal_fill([1, 2, 3]).dtype == np.float64  # ADC counts arrive as integers
    assert signal_fill(np.ones(3, dtype=np.float32)).dtype == np.float64


def test_signal_fill_fills_each_row_of_a_wide_batch():
    batch = np.full((2, 5), np.nan)
    batch[0, [0, 4]] = [0.0, 8.0]
    batch[1, 1] = 3.0
    np.testing.assert_array_equal(signal_fill(batch), [[0.0, 2.0, 4.0, 6.0, 8.0], [3.0] * 5])


def test_a_flag_raised_twice_is_cleared_twice():
    flags = DeviceFlags()
    for time, active in ((10.0, {"lead_off"}), (15.0, set()), (20.0, {"lead_off"}), (25.0, set())):
        flags.update("EDA", time, active)
    assert flags.during("EDA", 12.0, 13.0) == flags.during("EDA", 21.0, 22.0) == {"lead_off"}
    assert flags.during("EDA", 16.0, 19.0) == flags.during("EDA", 26.0, 40.0) == set()


def test_device_flags_timeline():
    flags = DeviceFlags()
    flags.update("EDA", 12.0, {"lead_off"})
    flags.update("EDA", 14.0, set())
    flags.update("BVP", 30.0, {"saturation"})
    assert flags.during("EDA", 10.0, 20.0) == {"lead_off"}
    assert flags.during("EDA", 14.0, 24.0) == set()  # ended exactly when the window starts
    assert flags.during("EDA", 0.0, 12.0) == set()
    assert flags.during("BVP", 40.0, 50.0) == {"saturation"}  # still active
    flags.prune(before=20.0)
    assert flags.during("EDA", 10.0, 20.0) == set()
    assert flags.during("BVP", 40.0, 50.0) == {"saturation"}
    assert flags.during("RESP", 0.0, 100.0) == set()  # a channel that never raised a flag
    with pytest.raises(ValueError, match="unknown device flags"):
        flags.update("EDA", 1.0, {"overheat"})


def test_prune_forgets_an_interval_that_ended_exactly_at_the_limit():
    flags = DeviceFlags()
    flags.update("EDA", 1.0, {"lead_off"})
    flags.update("EDA", 5.0, set())
    assert flags.during("EDA", 4.0, 6.0) == {"lead_off"}
    flags.prune(before=5.0)
    assert flags.during("EDA", 4.0, 6.0) == set()


def test_channel_specs_validate_and_default():
    assert channel_spec("ECG") == ChannelSpec("ECG")
    assert channel_spec("EDA", unit="raw").valid_range == DEFAULT_CHANNEL_SPECS["EDA"].valid_range
    with pytest.raises(ValueError, match="valid_range"):
        ChannelSpec("EDA", valid_range=(5.0, 1.0))
    with pytest.raises(ValueError, match="max_constant_seconds"):
        ChannelSpec("EDA", max_constant_seconds=0)
    with pytest.raises(ValueError, match="adc_range"):  # checked also when valid_range is unset
        ChannelSpec("EDA", valid_range=None, adc_range=(5.0, 1.0))
    with pytest.raises(ValueError, match="low < high"):
        ChannelSpec("EDA", valid_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="flat_std must be >= 0"):
        ChannelSpec("EDA", flat_std=-1.0)


def test_docstring_examples_run():
    results = doctest.testmod(edge.quality)
    assert results.attempted > 0 and results.failed == 0
