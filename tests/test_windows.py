import doctest
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import edge.windows
from edge.windows import ChannelBuffer, Windower, antialias_taps


def _feed(windower, channel, rate, origin, duration, signal, block_seconds=0.5):
    """Push ``signal(t)`` sampled at ``rate`` from ``origin`` for ``duration`` s, in blocks."""
    windows = []
    n_total = int(round(duration * rate))
    block = max(1, int(round(block_seconds * rate)))
    for first in range(0, n_total, block):
        index = np.arange(first, min(first + block, n_total))
        times = origin + index / rate
        windows += windower.push(channel, origin + first / rate, signal(times))
    return windows


def _interleaved(windower, specs, duration, block_seconds=0.5):
    """Feed several channels block by block, alternating like a serial stream."""
    windows = []
    for start in np.arange(0.0, duration, block_seconds):
        for channel, rate, origin, signal in specs:
            first = int(round(start * rate))
            stop = int(round(min(start + block_seconds, duration) * rate))
            if stop > first:
                times = origin + np.arange(first, stop) / rate
                windows += windower.push(channel, origin + first / rate, signal(times))
    return windows


def test_ring_buffer_keeps_the_last_capacity_samples():
    buffer = ChannelBuffer("EDA", 10.0, capacity=8)
    buffer.origin = 0.0
    buffer.append(np.arange(5.0))
    buffer.append(np.arange(5.0, 12.0))
    assert buffer.end == 12
    np.testing.assert_array_equal(buffer.read(4, 12), np.arange(4.0, 12.0))
    held = buffer.read(2, 14)
    assert np.isnan(held[:2]).all() and np.isnan(held[-2:]).all()  # evicted, not yet written
    np.testing.assert_array_equal(held[2:-2], np.arange(4.0, 12.0))


def test_channels_with_different_rates_and_offsets_are_aligned_by_device_time():
    ramp = lambda t: 3.0 * t + 1.0  # linear: every resampling path must reproduce it
    specs = [
        ("EDA", 100.0, 0.0, ramp),
        ("RESP", 50.0, 0.02, ramp),
        ("SpO2", 1.0, 0.5, ramp),
        ("BVP", 250.0, 0.013, ramp),
    ]
    windower = Windower({c: r for c, r, _, _ in specs}, 100.0, 10.0, hop_seconds=5.0)
    windows = _interleaved(windower, specs, duration=41.0)
    assert [w.index for w in windows] == list(range(len(windows)))
    assert len(windows) >= 6
    for window in windows:
        assert window.start_time == pytest.approx(0.5 + 5.0 * window.index)  # grid starts at the latest origin
        assert window.data.shape == (4, 1000)
        grid = window.start_time + np.arange(1000) / 100.0
        for row, channel in zip(window.data, window.channels):
            # Downsampled BVP: the polyphase filter's branches have DC gains within 1e-4 of 1.
            tolerance = 1e-4 if channel == "BVP" else 1e-9
            np.testing.assert_allclose(row, ramp(grid), rtol=tolerance, err_msg=channel)
        assert not window.forced


def test_downsampling_filters_what_the_target_rate_cannot_carry():
    rate_in, rate_out = 250.0, 100.0
    slow = lambda t: np.sin(2 * np.pi * 1.0 * t)
    fast = lambda t: np.sin(2 * np.pi * 1.0 * t) + np.sin(2 * np.pi * 70.0 * t)  # 70 Hz > 50 Hz Nyquist
    for signal, expected_error in ((slow, 1e-3), (fast, 0.05)):
        windower = Windower({"BVP": rate_in}, rate_out, 10.0)
        window = _feed(windower, "BVP", rate_in, 0.0, 22.0, signal)[1]  # the first has no signal before it
        grid = 10.0 + np.arange(1000) / rate_out
        # Without the anti-aliasing filter the 70 Hz tone would fold to 30 Hz at full amplitude.
        assert np.max(np.abs(window.data[0] - slow(grid))) < expected_error


def test_gaps_by_timestamp_and_by_notice_become_nan():
    windower = Windower({"EDA": 100.0, "BVP": 100.0}, 100.0, 10.0)
    ones = np.ones(100)
    windows = []
    for second in range(12):
        windows += windower.push("BVP", float(second), ones)
        if second == 3:
            continue  # one block never arrives: the next timestamp reveals the gap
        if second == 6:
            windows += windower.mark_lost("EDA", 50)  # bridge reports 50 lost samples
            windows += windower.push("EDA", 6.5, ones[:50])
            continue
        windows += windower.push("EDA", float(second), ones)
    (window,) = windows
    eda = window.data[0]
    expected_missing = np.zeros(1000, dtype=bool)
    expected_missing[300:400] = True
    expected_missing[600:650] = True
    np.testing.assert_array_equal(np.isnan(eda), expected_missing)
    assert not np.isnan(window.data[1]).any()
    assert windower.stats()["EDA"]["lost"] == 150


def test_timestamp_jitter_within_tolerance_is_contiguous_and_duplicates_are_dropped():
    windower = Windower({"EDA": 100.0}, 100.0, 2.0, timestamp_tolerance_seconds=0.02)
    windows = []
    for block in range(4):
        jitter = 0.008 if block % 2 else -0.006
        windows += windower.push("EDA", block * 0.5 + jitter * (block > 0), np.arange(50.0) + 50 * block)
    windows += windower.push("EDA", 1.5, np.arange(150.0, 200.0))  # the last block sent twice
    windows += windower.push("EDA", 2.0, np.arange(200.0, 250.0))
    (window,) = windows
    np.testing.assert_array_equal(window.data[0], np.arange(200.0))
    assert windower.stats()["EDA"] == {"received": 300, "lost": 0, "dropped": 50, "retimed": 0}


def test_hop_makes_overlapping_windows():
    windower = Windower({"EDA": 100.0}, 100.0, 10.0, hop_seconds=2.5)
    windows = _feed(windower, "EDA", 100.0, 0.0, 30.0, lambda t: t)
    assert [w.start_time for w in windows] == pytest.approx([0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5, 20.0])
    for earlier, later in zip(windows, windows[1:]):
        np.testing.assert_array_equal(later.data[0, :750], earlier.data[0, 250:])


def test_hop_longer_than_window_skips_signal():
    windower = Windower({"EDA": 100.0}, 100.0, 2.0, hop_seconds=5.0)
    windows = _feed(windower, "EDA", 100.0, 0.0, 16.0, lambda t: t)
    assert [w.start_time for w in windows] == pytest.approx([0.0, 5.0, 10.0])
    np.testing.assert_allclose(windows[1].data[0], 5.0 + np.arange(200) / 100.0)


def test_window_is_cut_as_soon_as_every_channel_covers_its_end():
    windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0)
    assert windower.push("EDA", 0.0, np.ones(1000)) == []
    # SpO2 at 1 Hz: the last grid time 9.99 s lies between samples 9 and 10, so both are needed.
    assert windower.push("SpO2", 0.0, np.full(10, 97.0)) == []
    (window,) = windower.push("SpO2", 10.0, [97.0])
    assert window.end_time == 10.0 and not window.forced
    np.testing.assert_array_equal(window.data[1], np.full(1000, 97.0))


def test_a_lagging_channel_does_not_hold_the_monitor_up():
    windower = Windower({"EDA": 100.0, "RESP": 100.0}, 100.0, 10.0, max_wait_seconds=2.0)
    windower.push("RESP", 0.0, np.ones(500))  # RESP stalls after 5 s
    windows = _feed(windower, "EDA", 100.0, 0.0, 11.99, lambda t: t)
    assert windows == []  # still waiting: EDA is not max_wait past the end yet
    windows = windower.push("EDA", 11.99, [11.99])
    (window,) = windows
    assert window.forced
    assert not np.isnan(window.data[1, :500]).any() and np.isnan(window.data[1, 500:]).all()
    # RESP's samples for the span already cut arrive late: dropped, counted.
    windower.push("RESP", 5.0, np.ones(600))
    assert windower.stats()["RESP"]["dropped"] == 500


def test_a_channel_that_never_sends_is_missing_after_the_wait():
    windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0, max_wait_seconds=2.0)
    windows = _feed(windower, "EDA", 100.0, 0.0, 25.0, lambda t: t)
    assert len(windows) == 2 and all(w.forced for w in windows)
    assert all(np.isnan(w.data[1]).all() for w in windows)
    np.testing.assert_allclose(windows[1].data[0], 10.0 + np.arange(1000) / 100.0)


def test_a_channel_that_starts_within_the_wait_sets_the_grid():
    windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0, max_wait_seconds=2.0)
    windows = _feed(windower, "EDA", 100.0, 0.0, 9.5, lambda t: t)  # 9.5 s alone: less than window + wait
    windows += windower.push("SpO2", 9.0, [97.0])  # SpO2 starts at 9 s
    for second in range(10, 31):  # then both, as a serial stream interleaves them
        windows += windower.push("SpO2", float(second), [97.0])
        windows += windower.push("EDA", second - 0.5, np.ones(100))
    assert [w.start_time for w in windows] == [9.0, 19.0] and not any(w.forced for w in windows)


def test_next_window_start_follows_the_grid():
    windower = Windower({"EDA": 100.0}, 100.0, 10.0, hop_seconds=2.5)
    assert windower.next_window_start is None
    windows = _feed(windower, "EDA", 100.0, 100.0, 13.0, lambda t: t)
    assert [w.start_time for w in windows] == [100.0, 102.5]
    assert windower.next_window_start == 105.0


def test_device_clock_reset_restarts_the_grid():
    windower = Windower({"EDA": 100.0}, 100.0, 10.0, resync_seconds=30.0)
    first = _feed(windower, "EDA", 100.0, 5000.0, 25.0, lambda t: t)
    second = _feed(windower, "EDA", 100.0, 0.0, 12.0, lambda t: t)  # board rebooted: time restarts
    assert [w.start_time for w in first] == [5000.0, 5010.0]
    assert [w.start_time for w in second] == [0.0]
    assert second[0].index == 2 and windower.resyncs == 1


@pytest.mark.parametrize("blocks", [100_000, 4_294_967_000])
def test_a_gap_notice_of_any_length_costs_constant_memory_and_restarts_the_grid(blocks):
    """The bridge reports a block-index jump at 20 s: ``blocks`` one-second blocks lost on every channel.
    The window [10, 20) waited for SpO2's sample at 20 s: it is cut without it rather than dropped."""
    windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0, resync_seconds=30.0)
    before = _interleaved(windower, [("EDA", 100.0, 0.0, np.sin), ("SpO2", 1.0, 0.0, np.cos)], duration=20.0,
                          block_seconds=1.0)
    tracemalloc.start()
    try:
        gap = windower.mark_lost("EDA", blocks * 100, 20.0) + windower.mark_lost("SpO2", blocks, 20.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert [w.start_time for w in before] == [0.0] and [(w.index, w.start_time, w.forced) for w in gap] == [
        (1, 10.0, True)]
    assert not np.isnan(gap[0].data[0]).any()
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(gap[0].data[1])), np.arange(901, 1000))  # after 19 s
    assert windower.resyncs == 1
    assert windower.stats()["EDA"]["lost"] == blocks * 100 and windower.stats()["SpO2"]["lost"] == blocks + 1
    after = _interleaved(windower, [("EDA", 100.0, 20.0, np.sin), ("SpO2", 1.0, 20.0, np.cos)], duration=12.0,
                         block_seconds=1.0)
    assert [(w.index, w.start_time) for w in after] == [(2, 20.0)]
    assert not np.isnan(after[0].data).any()


def test_memory_stays_bounded_over_a_long_feed():
    rates = {"EDA": 100.0, "BVP": 250.0, "RESP": 100.0, "SpO2": 1.0}
    windower = Windower(rates, 100.0, 10.0, hop_seconds=10.0)
    held = windower.nbytes
    specs = [(c, r, 0.0, lambda t: np.sin(t)) for c, r in rates.items()]
    hours = 0.5
    windows = _interleaved(windower, specs, duration=hours * 3600, block_seconds=1.0)
    assert windower.nbytes == held
    assert held < 200_000  # about (window + wait + 1 s) of each channel
    assert len(windows) == int(hours * 3600 / 10) - 1  # the last one needs samples past the feed
    last = windows[-1]  # still read from the right place of the ring buffers
    np.testing.assert_allclose(last.data[0], np.sin(last.start_time + np.arange(1000) / 100.0), atol=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"channel_rates": {}}, "channel_rates"),
        ({"sampling_rate": 0}, "sampling_rate"),
        ({"window_seconds": 10.005}, "whole number"),
        ({"hop_seconds": -1.0}, "hop_seconds"),
        ({"resync_seconds": 5.0}, "resync_seconds"),
        ({"channel_rates": {"EDA": float("nan")}}, "EDA"),
        ({"channel_rates": {"EDA": 1e6}}, "channel 'EDA' must be 0.1 to 10000 Hz .*got 1e\\+06"),
        ({"channel_rates": {"SpO2": 1e6 / (2**32 - 1)}}, "channel 'SpO2' must be 0.1 to 10000 Hz"),
        ({"channel_rates": {}}, "^channel_rates must name at least one channel, got none$"),
        ({"sampling_rate": True}, "sampling_rate must be a number > 0, got True"),
        ({"window_seconds": -10.0}, "window_seconds must be a number > 0, got -10.0"),
        ({"hop_seconds": "5"}, "hop_seconds must be a number > 0, got '5'"),
        ({"max_wait_seconds": 0}, "max_wait_seconds must be a number > 0, got 0"),
        ({"timestamp_tolerance_seconds": float("inf")}, "timestamp_tolerance_seconds must be a number > 0, got inf"),
        ({"resync_seconds": 12.0}, r"resync_seconds must exceed window_seconds \+ max_wait_seconds \(12.0\), got 12.0"),
        ({"resync_seconds": 10.0}, r"\(12.0\), got 10.0"),
        ({"sampling_rate": 3.0, "window_seconds": 10.5}, "got 31.5; choose a window length in whole samples"),
    ],
)
def test_bad_parameters_are_refused_with_their_name(kwargs, match):
    arguments = {"channel_rates": {"EDA": 100.0}, "sampling_rate": 100.0, "window_seconds": 10.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        Windower(**arguments)


def test_unknown_channel_is_refused():
    windower = Windower({"EDA": 100.0}, 100.0, 10.0)
    with pytest.raises(ValueError, match="unknown channel 'ECG'"):
        windower.push("ECG", 0.0, [1.0])


def test_docstring_examples_run():
    results = doctest.testmod(edge.windows)
    assert results.attempted > 0 and results.failed == 0


def test_a_fast_channel_is_not_cut_short_by_its_own_filter_margin():
    """1000 Hz read at 4 Hz: the anti-aliasing filter reads 2.5 s past each window, more than max_wait_seconds."""
    windower = Windower({"X": 1000.0}, 4.0, 10.0, max_wait_seconds=2.0)
    windows = _feed(windower, "X", 1000.0, 0.0, 40.0, lambda t: np.sin(2 * np.pi * 0.05 * t), block_seconds=1.0)
    assert [(w.start_time, w.forced) for w in windows] == [(0.0, False), (10.0, False), (20.0, False)]
    for window in windows[1:]:  # the first has no signal before it for the filter
        grid = window.start_time + np.arange(40) / 4.0
        np.testing.assert_allclose(window.data[0], np.sin(2 * np.pi * 0.05 * grid), atol=1e-3)
    assert windower.stats()["X"] == {"received": 40_000, "lost": 0, "dropped": 0, "retimed": 0}


def test_a_slow_channel_is_waited_for_until_its_sample_after_the_window_is_due():
    """SpO2 at 1 Hz, grid from 0.5 s: the window [0.5, 10.5) needs SpO2's sample at 11 s, due after max_wait 0.5 s."""
    windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0, max_wait_seconds=0.5)
    assert windower.push("EDA", 0.5, np.ones(1000)) == []
    (window,) = windower.push("SpO2", 0.0, 90.0 + np.arange(13.0))  # samples at 0..12 s in one block
    assert (window.start_time, window.forced) == (0.5, False)
    np.testing.assert_allclose(window.data[1], 90.5 + np.arange(1000) / 100.0)
    assert windower.stats()["SpO2"] == {"received": 13, "lost": 0, "dropped": 0, "retimed": 0}


def test_a_slow_leader_keeps_its_window_while_a_fast_channel_stalls():
    """The slow channel runs a downsampling margin plus max_wait past the window before it is cut: all held."""
    windower = Windower({"X": 1000.0, "EDA": 4.0}, 4.0, 10.0, max_wait_seconds=2.0)
    windows = windower.push("X", 0.0, np.ones(5000))  # X stalls after 5 s
    for second in range(40):
        windows += windower.push("EDA", float(second), np.full(4, float(second)))
    assert [(w.start_time, w.forced) for w in windows] == [(0.0, True), (10.0, True), (20.0, True)]
    for window in windows:
        np.testing.assert_array_equal(window.data[1], np.repeat(window.start_time + np.arange(10.0), 4))
        assert np.isnan(window.data[0, 20:]).all()


def test_channel_rates_at_the_limits_are_accepted():
    windower = Windower({"slow": 0.1, "fast": 10_000.0}, 100.0, 10.0)  # one sample per window; the fastest allowed
    assert windower.channels == ("slow", "fast")
    assert (windower.max_wait_seconds, windower.resync_seconds) == (2.0, 30.0)  # the documented defaults


def test_windows_carry_their_rate():
    windows = _feed(Windower({"EDA": 50.0}, 25.0, 4.0), "EDA", 50.0, 0.0, 9.0, lambda t: t)
    assert [(w.sampling_rate, w.data.shape) for w in windows] == [(25.0, (1, 100)), (25.0, (1, 100))]


@pytest.mark.parametrize("rate_in", [150.0, 250.0])
def test_a_channel_up_to_twice_the_rate_is_filtered_too(rate_in):
    """150 Hz to 100 Hz (ratio 2/3) needs the anti-aliasing filter as much as 250 Hz does: 70 Hz would fold to 30 Hz."""
    windower = Windower({"BVP": rate_in}, 100.0, 10.0)
    signal = lambda t: np.sin(2 * np.pi * 1.0 * t) + np.sin(2 * np.pi * 70.0 * t)
    window = _feed(windower, "BVP", rate_in, 0.0, 22.0, signal)[1]
    grid = 10.0 + np.arange(1000) / 100.0
    assert np.max(np.abs(window.data[0] - np.sin(2 * np.pi * grid))) < 0.05


def test_a_gap_in_a_downsampled_channel_is_missing_at_its_own_grid_times():
    """BVP at 250 Hz loses 3.0-4.0 s: exactly the grid samples whose nearest input sample is lost are NaN."""
    windower = Windower({"BVP": 250.0}, 100.0, 10.0)
    windows = _feed(windower, "BVP", 250.0, 0.0, 3.0, np.sin)
    windows += windower.mark_lost("BVP", 250)
    windows += _feed(windower, "BVP", 250.0, 4.0, 20.0, np.sin)
    missing = np.isnan(windows[0].data[0])
    np.testing.assert_array_equal(np.flatnonzero(missing), np.arange(300, 400))
    assert not np.isnan(windows[1].data).any()


def test_a_single_lost_sample_is_missing_alone():
    """Sample 998 lost: its neighbours 997 and 999 (the window's last) are intact samples, not interpolated through it."""
    windower = Windower({"EDA": 100.0}, 100.0, 10.0)
    windower.push("EDA", 0.0, np.arange(998.0))
    windower.mark_lost("EDA", 1)
    (window,) = windower.push("EDA", 9.99, np.arange(999.0, 1100.0))
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(window.data[0])), [998])
    assert window.data[0, 997] == 997.0 and window.data[0, 999] == 999.0


def test_gap_notices_are_validated_and_counted():
    windower = Windower({"EDA": 100.0}, 100.0, 10.0, resync_seconds=30.0)
    for bad in (-1, 2.5, "3"):
        with pytest.raises(ValueError, match=f"n_samples must be an integer >= 0, got {bad!r}"):
            windower.mark_lost("EDA", bad)
    assert windower.mark_lost("EDA", 0) == [] and windower.mark_lost("EDA", 5) == []  # nothing to place it against
    windower.push("EDA", 0.0, np.ones(500))
    assert windower.mark_lost("EDA", 0) == []
    windower.mark_lost("EDA", 3000)  # exactly resync_seconds of samples: still a gap held as missing samples
    assert windower.resyncs == 0 and windower.stats()["EDA"]["lost"] == 3005
    windower.mark_lost("EDA", 3001)  # longer: the grid restarts
    assert windower.resyncs == 1 and windower.stats()["EDA"]["lost"] == 6006
    windower.mark_lost("EDA", 7)  # before the first block on the new clock: counted, not placed
    assert windower.stats()["EDA"]["lost"] == 6013


def test_a_timestamp_jump_of_exactly_resync_seconds_is_a_gap():
    windower = Windower({"EDA": 100.0}, 100.0, 10.0, resync_seconds=30.0)
    windows = windower.push("EDA", 0.0, np.ones(1000))
    windows += windower.push("EDA", 40.0, np.ones(1300))  # 30 s after the last sample's successor
    assert windower.resyncs == 0 and windower.stats()["EDA"]["lost"] == 3000
    assert [w.start_time for w in windows] == [0.0, 10.0, 20.0, 30.0, 40.0]
    windower.push("EDA", 83.01, np.ones(100))  # 30.01 s: a clock jump
    assert windower.resyncs == 1


def test_repeated_duplicates_and_clock_resets_are_counted():
    windower = Windower({"EDA": 100.0}, 100.0, 10.0, resync_seconds=30.0)
    windower.push("EDA", 0.0, np.ones(100))
    windower.push("EDA", 0.0, np.ones(100))  # sent twice
    windower.push("EDA", 0.5, np.ones(100))  # half of it again
    assert windower.stats()["EDA"] == {"received": 300, "lost": 0, "dropped": 150, "retimed": 0}
    windower.push("EDA", 500.0, np.ones(10))
    windower.push("EDA", 0.0, np.ones(10))
    assert windower.resyncs == 2


def test_a_slow_channel_restarts_on_the_new_clock_without_a_hole():
    """SpO2 at 1 Hz (jitter tolerance 0.02 of a sample) after a board reset: its first new sample is sample 0."""
    windower = Windower({"SpO2": 1.0}, 1.0, 10.0)
    windower.push("SpO2", 1000.0, np.full(5, 97.0))
    windows = windower.push("SpO2", 0.0, np.arange(12.0))
    assert windower.resyncs == 1
    (window,) = windows
    np.testing.assert_array_equal(window.data[0], np.arange(10.0))


def test_timestamp_jitter_of_exactly_the_tolerance_is_contiguous_and_one_sample_late_is_a_gap():
    windower = Windower({"BVP": 64.0}, 64.0, 2.0, timestamp_tolerance_seconds=1 / 32)  # 2 samples of jitter
    windows = windower.push("BVP", 0.0, np.arange(64.0))
    windows += windower.push("BVP", 1.0 + 1 / 32, np.arange(64.0, 128.0))  # 2 samples late: jitter
    windows += windower.push("BVP", 2.0, np.arange(128.0, 130.0))
    window = windows[0]
    np.testing.assert_array_equal(window.data[0], np.arange(128.0))
    spo2 = Windower({"SpO2": 1.0}, 1.0, 10.0)
    spo2.push("SpO2", 0.0, np.arange(5.0))
    (window,) = spo2.push("SpO2", 6.0, np.arange(6.0, 11.0))  # the sample at 5 s never came
    np.testing.assert_array_equal(np.isnan(window.data[0]), np.arange(10) == 5)


def test_lagging_channel_losses_add_to_its_earlier_losses():
    windower = Windower({"EDA": 100.0, "RESP": 100.0}, 100.0, 10.0, max_wait_seconds=2.0)
    windower.push("RESP", 0.0, np.ones(200))
    windower.push("RESP", 3.0, np.ones(200))  # 2-3 s lost, then RESP stalls at 5 s
    (window,) = _feed(windower, "EDA", 100.0, 0.0, 12.0, lambda t: t)
    assert window.forced and windower.stats()["RESP"]["lost"] == 100 + 500


def test_a_channel_that_starts_within_the_wait_sets_the_grid_on_any_clock():
    """As above, on a device clock at 100 s: the wait is measured from the first channel's start, not from 0."""
    windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0, max_wait_seconds=2.0)
    windows = _feed(windower, "EDA", 100.0, 100.0, 9.5, lambda t: t)
    windows += windower.push("SpO2", 109.0, [97.0])
    for second in range(110, 131):
        windows += windower.push("SpO2", float(second), [97.0])
        windows += windower.push("EDA", second - 0.5, np.ones(100))
    assert [w.start_time for w in windows] == [109.0, 119.0] and not any(w.forced for w in windows)


def test_a_lone_channel_waits_exactly_window_plus_wait_for_the_others():
    windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0, max_wait_seconds=2.0)
    windows = _feed(windower, "EDA", 100.0, 0.0, 12.0, lambda t: t)  # ends exactly 12 s after it started
    assert [(w.start_time, w.forced) for w in windows] == [(0.0, True)]


def test_pushed_lists_may_mark_bad_samples_with_none():
    """A JSON block's null is a missing sample, as NaN is."""
    windower = Windower({"EDA": 10.0}, 10.0, 1.0)
    (window,) = windower.push("EDA", 0.0, [1, 2, None, 4, 5, 6, 7, 8, 9, 10, 11])
    np.testing.assert_array_equal(np.isnan(window.data[0]), np.arange(10) == 2)
    assert windower.stats()["EDA"] == {"received": 11, "lost": 1, "dropped": 0, "retimed": 0}


def _blocks_with_index(windower, blocks, clock):
    """One-second blocks of EDA (100 Hz, sample k = k) and SpO2 (1 Hz) stamped ``clock(block)``, with their index."""
    windows = []
    for block in blocks:
        windows += windower.push("EDA", clock(block), np.arange(100.0) + 100 * block, first_index=100 * block)
        windows += windower.push("SpO2", clock(block), [float(block)], first_index=block)
    return windows


def test_a_device_clock_that_stops_is_placed_by_sample_index_and_nothing_is_dropped():
    """The board's clock freezes at 15 s while its blocks keep coming: the windows go on, contiguous."""
    windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0)
    windows = _blocks_with_index(windower, range(40), lambda block: float(min(block, 15)))
    assert [w.start_time for w in windows] == [0.0, 10.0, 20.0]
    for window in windows:
        np.testing.assert_array_equal(window.data[0], np.arange(100 * window.start_time, 100 * window.end_time))
    assert windower.stats()["EDA"] == {"received": 4000, "lost": 0, "dropped": 0, "retimed": 24 * 100}
    assert windower.stats()["SpO2"]["retimed"] == 24
    assert (windower.clock_lags, windower.resyncs) == (1, 0)
    assert windower.block_time("EDA") == windower.block_time("SpO2") == 39.0
    windows = _blocks_with_index(windower, range(40, 52), float)  # the clock runs again, on time
    assert [w.start_time for w in windows] == [30.0, 40.0]
    assert windower.stats()["EDA"]["retimed"] == 2400 and windower.clock_lags == 1


def test_a_device_clock_that_steps_back_keeps_the_samples_and_a_repeat_is_still_dropped():
    windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0)
    windows = _blocks_with_index(windower, range(25), lambda block: block - 5.0 * (block >= 8))  # 5 s back at 8 s
    windows += windower.push("EDA", 3.0, np.arange(1000.0, 1100.0), first_index=1000)  # block 10 again
    windows += _blocks_with_index(windower, range(25, 30), lambda block: block - 5.0)
    assert [w.start_time for w in windows] == [0.0, 10.0]
    np.testing.assert_array_equal(windows[1].data[0], np.arange(1000.0, 2000.0))
    assert windower.stats()["EDA"] == {"received": 3100, "lost": 0, "dropped": 100, "retimed": 22 * 100}
    assert windower.clock_lags == 1


def test_a_lost_block_is_missing_in_its_place_while_the_clock_is_stopped():
    windower = Windower({"EDA": 100.0}, 100.0, 10.0)
    windows = []
    for block in [*range(14), *range(15, 25)]:  # block 14 never came; the clock stopped at 5 s
        windows += windower.push("EDA", float(min(block, 5)), np.ones(100), first_index=100 * block)
    assert [w.start_time for w in windows] == [0.0, 10.0]
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(windows[1].data[0])), np.arange(400, 500))
    assert windower.stats()["EDA"]["lost"] == 100


def test_downsampling_does_not_import_scipy_signal():
    """Importing scipy.signal costs the monitor about 48 MB: a board faster than the bundle must not need it."""
    code = (
        "import sys, numpy as np\n"
        "from edge.windows import Windower\n"
        "windower = Windower({'BVP': 256.0}, 100.0, 10.0)\n"
        "windows = [w for s in range(13) for w in windower.push('BVP', float(s), np.ones(256))]\n"
        "assert windows and np.allclose(windows[0].data, 1.0)\n"
        "print('scipy.signal' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_antialias_taps_pass_a_ramp_and_stop_above_the_slower_nyquist():
    taps = antialias_taps(2.56)  # 256 Hz read at 100 Hz
    assert len(taps) % 2 == 1 and taps.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(taps, taps[::-1])
    response = np.abs(np.fft.rfft(taps, 4096))
    frequency = np.fft.rfftfreq(4096, 1 / 256.0)
    assert np.all(np.abs(response[frequency <= 40.0] - 1) < 3e-3)  # pass band: the grid's content
    assert np.all(response[frequency >= 60.0] < 3e-3)  # stop band: what would fold below 50 Hz


def _board(windower, seconds, stamp, skip=(), with_index=True):
    """One-second blocks of EDA (100 Hz, sample k = k / 100) and SpO2 (1 Hz, sample k = k) from a board whose
    block ``b`` is stamped ``stamp(b)``; blocks in ``skip`` never arrive."""
    windows = []
    for block in range(seconds):
        if block in skip:
            continue
        eda_index, spo2_index = (100 * block, block) if with_index else (None, None)
        windows += windower.push("EDA", stamp(block), block + np.arange(100) / 100.0, first_index=eda_index)
        windows += windower.push("SpO2", stamp(block), [float(block)], first_index=spo2_index)
    return windows


@pytest.mark.parametrize("with_index", [True, False])
@pytest.mark.parametrize("clock", [
    pytest.param(lambda b: 1.02 * b, id="fast2"),
    pytest.param(lambda b: 0.98 * b, id="slow2"),
    pytest.param(lambda b: 1.05 * b, id="fast5"),
    pytest.param(lambda b: 0.95 * b, id="slow5"),
    pytest.param(lambda b: b + 0.05 * np.sin(7.3 * b ** 1.5), id="jitter50"),
])
def test_a_sample_clock_off_its_rate_or_jittering_timestamps_give_complete_aligned_windows(clock, with_index, caplog):
    """10 minutes of a board whose timestamps run 2 or 5 % off its sample count, or jitter by up to 50 ms: no
    NaN, nothing dropped, the 1 Hz and 100 Hz channels carry the same time, the windows follow the device clock."""
    windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0)
    rate_error = abs(clock(600) - clock(0) - 600) / 600
    with caplog.at_level("WARNING", logger="edge.windows"):
        windows = _board(windower, 600, clock, with_index=with_index)
    assert len(windows) >= 56 and not any(w.forced for w in windows)
    for window in windows:
        assert not np.isnan(window.data).any()
        # EDA's sample k is k / 100 and SpO2's is k: linear between SpO2's samples, both read the same time.
        np.testing.assert_allclose(window.data[1], window.data[0], atol=1e-9)
        # Labelled with the device clock as the window was cut, a window + wait + block after its start.
        sample_time = window.data[0, 0]  # the board's own (sample count) time of the window's start
        assert abs(window.start_time - clock(sample_time)) < 0.3 + 13 * rate_error
    stats = windower.stats()
    assert stats["EDA"] == {"received": 60_000, "lost": 0, "dropped": 0, "retimed": 0}
    assert stats["SpO2"] == {"received": 600, "lost": 0, "dropped": 0, "retimed": 0}
    assert (windower.resyncs, windower.clock_lags) == (0, 0)
    rate_off = rate_error > 0.01
    assert [r.getMessage().split(" runs at ")[0] for r in caplog.records] == (
        ["channel EDA", "channel SpO2"] if rate_off else [])
    assert windower.reanchors > 0 if rate_off else windower.reanchors == 0


@pytest.mark.parametrize("with_index", [True, False])
def test_a_lost_block_of_a_drifting_board_is_still_missing(with_index):
    windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0)
    windows = _board(windower, 330, lambda b: 1.05 * b, skip={304}, with_index=with_index)
    (window,) = [w for w in windows if w.data[0, 0] == 300.0]  # the board's 300 to 310 s
    # Sized exactly by the sample index; by the timestamps alone, in device time (the block and a 5 % skew).
    size = 100 if with_index else 110
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(window.data[0])), np.arange(400, 400 + size))
    assert windower.stats()["EDA"] == {"received": 32_900, "lost": size, "dropped": 0, "retimed": 0}


def test_a_big_jump_of_a_drifting_board_still_restarts_the_grid():
    windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0)
    _board(windower, 100, lambda b: 1.05 * b + 3600.0 * (b >= 80))
    assert windower.resyncs == 1


RATE_CHANGE_SIGNALS = {"EDA": lambda t: 5.0 + np.sin(2 * np.pi * 0.3 * t), "BVP": lambda t: np.sin(2 * np.pi * 1.2 * t),
                       "SpO2": lambda t: 97.0 + 0.01 * t}


def _rate_change_board(windower, seconds, change_at, rates_after, skip=()):
    """One-second blocks stamped with their index ``b``, sample index ``b`` x samples per block, of EDA, BVP
    (100 Hz) and SpO2 (1 Hz) whose rates become ``rates_after`` from block ``change_at`` on, the windower told
    between two blocks as the monitor tells it; blocks in ``skip`` never arrive."""
    rates = {"EDA": 100.0, "BVP": 100.0, "SpO2": 1.0}
    windows = []
    for block in range(seconds):
        if block == change_at:
            rates = {**rates, **rates_after}
            windower.reconfigure(rates)
        if block in skip:
            continue
        for name, rate in rates.items():
            per_block = int(rate)
            values = RATE_CHANGE_SIGNALS[name](block + np.arange(per_block) / rate)
            windows += windower.push(name, float(block), values, first_index=block * per_block)
    return windows


def test_a_rate_change_mid_stream_keeps_the_windows_their_indices_and_the_window_across_it():
    """At 32 s the board's EDA goes from 100 to 250 Hz and BVP from 100 to 50 Hz: the grid and the window
    indices go on, the windows across the change ([25, 35) and [30, 40)) are whole, every window carries the
    signal at the bundle's rate (within linear interpolation of 50 Hz BVP), nothing is lost or dropped."""
    windower = Windower({"EDA": 100.0, "BVP": 100.0, "SpO2": 1.0}, 100.0, 10.0, hop_seconds=5.0)
    windows = _rate_change_board(windower, 70, 32, {"EDA": 250.0, "BVP": 50.0})
    assert [w.index for w in windows] == list(range(12))
    assert [w.start_time for w in windows] == [5.0 * i for i in range(12)]
    assert not any(w.forced for w in windows)
    for window in windows:
        grid = window.start_time + np.arange(1000) / 100.0
        for row, channel in zip(window.data, window.channels):
            np.testing.assert_allclose(row, RATE_CHANGE_SIGNALS[channel](grid), atol=0.01, err_msg=channel)
    assert windower.channel_rates == {"EDA": 250.0, "BVP": 50.0, "SpO2": 1.0}
    assert windower.stats() == {"EDA": {"received": 3200 + 38 * 250, "lost": 0, "dropped": 0, "retimed": 0},
                                "BVP": {"received": 3200 + 38 * 50, "lost": 0, "dropped": 0, "retimed": 0},
                                "SpO2": {"received": 70, "lost": 0, "dropped": 0, "retimed": 0}}
    assert (windower.resyncs, windower.clock_lags, windower.reanchors) == (0, 0, 0)


def test_a_block_lost_after_a_rate_change_is_missing_in_its_place():
    windower = Windower({"EDA": 100.0, "BVP": 100.0, "SpO2": 1.0}, 100.0, 10.0, hop_seconds=5.0)
    windows = _rate_change_board(windower, 60, 32, {"EDA": 250.0, "BVP": 50.0}, skip={45})
    (window,) = [w for w in windows if w.start_time == 40.0]
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(window.data[0])), np.arange(500, 600))
    assert windower.stats()["EDA"]["lost"] == 250 and windower.stats()["BVP"]["lost"] == 50


@pytest.mark.parametrize("rates, match", [
    ({"BVP": 100.0, "EDA": 100.0}, r"channels \['EDA', 'BVP'\] in that order, got \['BVP', 'EDA'\]"),
    ({"EDA": 100.0, "BVP": 1e6}, "channel 'BVP' must be 0.1 to 10000 Hz"),
])
def test_a_rate_change_windows_cannot_follow_is_refused_and_changes_nothing(rates, match):
    windower = Windower({"EDA": 100.0, "BVP": 100.0}, 100.0, 10.0)
    windower.push("EDA", 0.0, np.ones(500))
    with pytest.raises(ValueError, match=match):
        windower.reconfigure(rates)
    assert windower.channel_rates == {"EDA": 100.0, "BVP": 100.0} and windower.stats()["EDA"]["received"] == 500
