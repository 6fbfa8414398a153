import dataclasses
import inspect
import json
import subprocess
import warnings
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module
import pywt
import scipy.signal

from edge.representations import (
    REPRESENTATIONS,
    VIRIDIS_LUT,
    RepresentationSpec,
    recurrence_matrix,
    represent,
    scalogram,
    scalogram_frequencies,
    spectrogram,
    spectrogram_frequencies,
    to_model_input,
    waveform_coverage,
)

FS = 100.0
SPEC = RepresentationSpec()


def bvp_like(n_windows: int = 1, seed: int = 0, n: int = 1000) -> np.ndarray:
    """Pulse + respiration + noise, one row per window, with a DC offset (as EDA/BVP have)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    rate = rng.uniform(0.9, 1.6, size=(n_windows, 1))
    signal = np.sin(2 * np.pi * rate * t) + 0.4 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6, (n_windows, 1)))
    return 3.0 + signal + 0.1 * rng.standard_normal((n_windows, n))


def colour_index(image: np.ndarray) -> np.ndarray:
    """The viridis index of every pixel (first match where two entries coincide)."""
    codes = {tuple(rgb): index for index, rgb in reversed(list(enumerate(VIRIDIS_LUT.tolist())))}
    return np.vectorize(lambda r, g, b: codes[(r, g, b)])(image[..., 0], image[..., 1], image[..., 2])


# --- spec ---


def test_spec_defaults_match_the_paper_setting():
    assert (SPEC.sampling_rate, SPEC.window_seconds, SPEC.image_size, SPEC.n_samples) == (100.0, 10.0, 224, 1000)
    assert REPRESENTATIONS == (
        "spectrogram_angle", "spectrogram_phase", "spectrogram_psd", "recurrence", "scalogram", "waveform",
    )


def test_spec_json_round_trip():
    spec = RepresentationSpec(stft_nfft=256, stft_fmax_hz=12.5, recurrence_threshold=20.0, recurrence_threshold_mode="percentile",
                              waveform_line_rgb=(31, 119, 180), scalogram_wavelet="morl")
    text = spec.to_json()
    assert RepresentationSpec.from_json(text) == spec
    assert RepresentationSpec.from_dict(json.loads(text)) == spec
    assert json.loads(text)["waveform_line_rgb"] == [31, 119, 180]
    assert spec.to_dict()["waveform_line_rgb"] == [31, 119, 180] and type(spec.to_dict()["waveform_line_rgb"]) is list
    assert text.startswith('{\n  "sampling_rate": 100.0,\n  "window_seconds": 10.0,')  # indented 2 by default
    assert RepresentationSpec.from_json(SPEC.to_json()) == SPEC
    assert RepresentationSpec.from_dict({}) == SPEC  # missing keys take defaults


def test_spec_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown representation settings \['imagesize'\]"):
        RepresentationSpec.from_dict({"imagesize": 128})
    with pytest.raises(ValueError, match="not valid JSON"):
        RepresentationSpec.from_json("{image_size: 1")
    with pytest.raises(ValueError, match="JSON object / dict; got list"):
        RepresentationSpec.from_json("[1, 2]")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"sampling_rate": 0}, "sampling_rate"),
        ({"sampling_rate": -100.0}, "sampling_rate must be a finite number > 0"),
        ({"window_seconds": -10.0}, "window_seconds must be a finite number > 0"),
        ({"window_seconds": 100_000.0}, "window_seconds x sampling_rate must be at most"),
        ({"sampling_rate": float("nan")}, "sampling_rate"),
        ({"sampling_rate": "100"}, "sampling_rate"),
        ({"window_seconds": 10.005}, "whole number of samples"),
        ({"image_size": 4}, "image_size"),
        ({"image_size": 224.0}, "image_size"),
        ({"image_size": True}, "image_size"),
        ({"stft_nperseg": 2000}, "stft_nperseg"),
        ({"stft_noverlap": 128}, "stft_noverlap"),
        ({"stft_nfft": 64}, "stft_nfft"),
        ({"stft_window": "no-such-window"}, "stft_window"),
        ({"stft_detrend": "mean"}, "stft_detrend"),
        ({"stft_fmax_hz": 0.5}, "stft_fmax_hz"),
        ({"stft_fmax_hz": 60.0}, "sampling_rate / 2 = 50 Hz; got 60"),
        ({"scalogram_fmin_hz": 1.0, "scalogram_fmax_hz": 1.0}, "scalogram_fmin_hz < scalogram_fmax_hz"),
        ({"recurrence_points": 1, "recurrence_dimension": 1}, "recurrence_points"),
        ({"stft_noverlap": -1}, "stft_noverlap"),
        ({"scalogram_wavelet": "db4"}, r"got 'db4' \(Invalid wavelet name 'db4'.\)"),
        ({"scalogram_wavelet": "cmor"}, "got 'cmor' \\(Wavelets from the family cmor, without parameters"),
        ({"scalogram_fmin_hz": 6.0}, "scalogram_fmin_hz < scalogram_fmax_hz"),
        ({"scalogram_fmax_hz": 50.0}, "sampling_rate / 2"),
        ({"recurrence_points": 1001}, "recurrence_points"),
        ({"recurrence_dimension": 100, "recurrence_delay": 3}, "recurrence_dimension"),
        ({"recurrence_threshold": 1.5}, "recurrence_threshold"),
        ({"recurrence_threshold": 150.0, "recurrence_threshold_mode": "percentile"}, "recurrence_threshold"),
        ({"recurrence_threshold_mode": "distance"}, "recurrence_threshold_mode"),
        ({"waveform_line_width": 100.0}, "waveform_line_width"),
        ({"waveform_line_rgb": (256, 0, 0)}, "waveform_line_rgb"),
        ({"waveform_background_rgb": (0, 0)}, "waveform_background_rgb"),
        ({"image_size": 7}, "image_size must be an integer >= 8; got 7"),
        ({"stft_nperseg": 1}, "stft_nperseg must be an integer >= 2; got 1"),
        ({"scalogram_n_scales": 1}, "scalogram_n_scales must be an integer >= 2; got 1"),
        ({"recurrence_dimension": 0}, "recurrence_dimension must be an integer >= 1; got 0"),
        ({"recurrence_delay": 0}, "recurrence_delay must be an integer >= 1; got 0"),
        ({"stft_nfft": 127}, "stft_nfft must be an integer >= 128; got 127"),
        ({"stft_nfft": 128.0}, "stft_nfft must be an integer >= 128; got 128.0"),
        ({"window_seconds": 1000.01}, "at most 100000 samples; got 1000.01 s x 100 Hz = 100001 samples"),
        ({"window_seconds": 10.00001}, "whole number of samples; got 10.00001 s x 100.0 Hz"),
        ({"stft_fmax_hz": 0.5}, r"frequency resolution 0.78125 Hz \(sampling_rate / nfft\)"),
        ({"stft_fmax_hz": float("inf")}, "stft_fmax_hz must be a finite number > 0; got inf"),
        ({"sampling_rate": True}, "sampling_rate must be a number; got True"),
        ({"recurrence_threshold": 0.0}, "recurrence_threshold must be a finite number > 0"),
        ({"recurrence_threshold": 1.0}, r"recurrence_threshold_mode='fraction' must be in \(0, 1\); got 1"),
        ({"recurrence_threshold": 100.0, "recurrence_threshold_mode": "percentile"},
         r"recurrence_threshold_mode='percentile' must be in \(0, 100\); got 100"),
        ({"image_size": 8, "waveform_line_width": 2.01}, "at most image_size / 4 = 2 pixels; got 2.01"),
        ({"waveform_line_rgb": (True, 0, 0)}, r"waveform_line_rgb must be three integers 0-255 \(red, green, blue\)"),
        ({"waveform_line_rgb": 5}, "waveform_line_rgb must be three integers 0-255"),
        ({"waveform_line_rgb": (0, -1, 0)}, "waveform_line_rgb must be three integers 0-255"),
        ({"stft_window": 3}, "stft_window must be a window name such as 'hann'; got 3"),
        ({"scalogram_wavelet": 5}, r"got 5 \(not a string\)"),
        ({"stft_nperseg": 1001, "stft_noverlap": 0}, "stft_nperseg must be at most the window length 1000 samples; got 1001"),
        ({"stft_noverlap": 128}, "stft_noverlap must be smaller than stft_nperseg=128; got 128"),
        ({"recurrence_points": 1001}, "recurrence_points must be at most the window length 1000 samples; got 1001"),
        ({"recurrence_points": 10, "recurrence_dimension": 5, "recurrence_delay": 3},
         "recurrence_dimension=5 with recurrence_delay=3 leaves -2 embedded vectors of 10 points"),
    ],
)
def test_spec_rejects_bad_settings_naming_them(settings, named):
    with pytest.raises(ValueError, match=named.replace("/", r"\/").replace("<", "<")):
        RepresentationSpec(**settings)


def test_spec_accepts_the_limits_of_its_settings():
    # two embedded vectors (10 points - (5 - 1) x 2) are the fewest a recurrence plot can compare
    spec = RepresentationSpec(recurrence_points=10, recurrence_dimension=5, recurrence_delay=2, stft_noverlap=0)
    assert spec.n_recurrence_vectors == 2 and spec.stft_noverlap == 0
    assert RepresentationSpec(recurrence_points=2, recurrence_dimension=1).n_recurrence_vectors == 2
    assert RepresentationSpec(image_size=8).image_size == 8
    # each bound itself is allowed: the longest window, the shortest segment, a segment of the whole window...
    for settings in (
        {"window_seconds": 1000.0},  # 100000 samples, the most a device holds the scalogram of
        {"stft_nperseg": 2, "stft_noverlap": 0},
        {"stft_nperseg": 1000},
        {"stft_nfft": 128},
        {"stft_nfft": 1000, "stft_fmax_hz": 0.1},  # exactly one frequency step of a 1000-point FFT
        {"stft_fmax_hz": 50.0},  # the Nyquist frequency
        {"scalogram_n_scales": 2},
        {"scalogram_fmax_hz": 49.0},  # just below the Nyquist frequency
        {"recurrence_points": 1000},
        {"recurrence_threshold": 0.999},
        {"recurrence_threshold": 99.9, "recurrence_threshold_mode": "percentile"},
        {"image_size": 8, "waveform_line_width": 2.0},
    ):
        spec = RepresentationSpec(**settings)
        assert all(getattr(spec, name) == value for name, value in settings.items()), settings


def test_spec_from_numpy_scalars_holds_python_numbers_and_serialises():
    """Settings read from arrays (np.float32, np.int64, np.uint8) are stored as float, int and tuple of int."""
    spec = RepresentationSpec(sampling_rate=np.int64(100), window_seconds=np.float32(10.0), image_size=np.int64(64),
                              stft_nfft=np.int64(256), stft_fmax_hz=np.float64(20.0),
                              recurrence_threshold=np.float32(0.25), waveform_line_rgb=(np.uint8(3), 0, 255),
                              waveform_background_rgb=[255, 255, np.int16(250)])
    assert type(spec.sampling_rate) is float and type(spec.window_seconds) is float
    assert type(spec.image_size) is int and type(spec.stft_nfft) is int
    assert type(spec.stft_fmax_hz) is float and type(spec.recurrence_threshold) is float
    assert spec.waveform_line_rgb == (3, 0, 255) and all(type(c) is int for c in spec.waveform_line_rgb)
    assert spec.waveform_background_rgb == (255, 255, 250) and type(spec.waveform_background_rgb) is tuple
    assert json.loads(spec.to_json())["waveform_background_rgb"] == [255, 255, 250]
    assert RepresentationSpec.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json(indent=None)) == json.loads(spec.to_json()) and "\n" not in spec.to_json(indent=None)


def test_a_spec_read_back_from_json_draws_the_same_images():
    window = bvp_like(seed=21)
    again = RepresentationSpec.from_json(SPEC.to_json())  # its strings are new objects, equal to the defaults
    np.testing.assert_array_equal(represent(window, again, sampling_rate=FS), represent(window, SPEC, sampling_rate=FS))


def test_model_input_refuses_images_that_are_not_rgb():
    with pytest.raises(ValueError, match="uint8 RGB"):
        to_model_input(np.zeros((2, 8, 8, 4), np.uint8))


def test_viridis_table_is_matplotlibs():
    matplotlib = require_module("matplotlib")
    expected = matplotlib.colormaps["viridis"](np.arange(256), bytes=True)[:, :3]
    assert VIRIDIS_LUT.shape == (256, 3) and VIRIDIS_LUT.dtype == np.uint8
    np.testing.assert_array_equal(VIRIDIS_LUT, expected)


# --- matrices against library references ---


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"stft_window": "hamming", "stft_nperseg": 100, "stft_noverlap": 50, "stft_nfft": 129, "stft_detrend": "linear"},
        {"stft_detrend": "none", "stft_nfft": 256},
        {"stft_fmax_hz": 10.0, "stft_nperseg": 256, "stft_noverlap": 240, "stft_nfft": 512},
        {"stft_fmax_hz": 50.0, "stft_nfft": 129},
    ],
)
def test_spectrogram_matches_scipy(settings):
    spec = RepresentationSpec(**settings)
    windows = bvp_like(2, seed=3)
    reference = {
        mode: scipy.signal.spectrogram(
            windows, fs=FS, window=spec.stft_window, nperseg=spec.stft_nperseg, noverlap=spec.stft_noverlap,
            nfft=spec.stft_nfft, detrend=False if spec.stft_detrend == "none" else spec.stft_detrend, mode=mode,
        )
        for mode in ("psd", "angle", "phase")
    }
    frequencies, times, density = reference["psd"]
    kept = frequencies <= (spec.stft_fmax_hz or FS / 2)
    frequencies, density = frequencies[kept], density[..., kept, :]
    reference = {mode: values[..., kept, :] for mode, (_, _, values) in reference.items()}
    np.testing.assert_allclose(spectrogram_frequencies(spec), frequencies)
    decibels = 10 * np.log10(density)
    floor = decibels.max(axis=(-2, -1), keepdims=True) - spec.psd_dynamic_range_db
    psd = spectrogram(windows, spec, "psd")
    assert psd.shape == (2, frequencies.size, times.size) and psd.dtype == np.float64
    np.testing.assert_allclose(psd, np.maximum(decibels, floor), atol=1e-9)
    np.testing.assert_allclose(np.exp(1j * spectrogram(windows, spec, "angle")), np.exp(1j * reference["angle"]),
                               atol=1e-9)
    np.testing.assert_allclose(spectrogram(windows, spec, "phase"), reference["phase"], atol=1e-8)


def test_spectrogram_psd_floor_is_the_dynamic_range():
    spec = RepresentationSpec(psd_dynamic_range_db=40.0)
    psd = spectrogram(bvp_like(seed=4)[0], spec, "psd")
    assert psd.max() - psd.min() == pytest.approx(40.0)


@pytest.mark.parametrize("wavelet", ["cmor1.5-1.0", "morl"])
def test_scalogram_matches_pywt_cwt(wavelet):
    if "precision" not in inspect.signature(pywt.cwt).parameters:
        pytest.skip("pywt.cwt before PyWavelets 1.9 samples wavelets at another precision")
    spec = RepresentationSpec(scalogram_wavelet=wavelet)
    windows = bvp_like(2, seed=5)
    scales = pywt.frequency2scale(wavelet, scalogram_frequencies(spec) / FS)
    demeaned = windows - windows.mean(axis=-1, keepdims=True)  # our one departure from pywt.cwt
    coefficients, frequencies = pywt.cwt(demeaned, scales, wavelet, sampling_period=1 / FS, precision=12, axis=-1)
    reference = np.abs(np.moveaxis(coefficients, 0, -2))
    ours = scalogram(windows, spec)
    assert ours.shape == (2, spec.scalogram_n_scales, spec.n_samples) and ours.dtype == np.float64
    np.testing.assert_allclose(frequencies, scalogram_frequencies(spec), rtol=1e-6)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-10 * reference.max())


@pytest.mark.parametrize("kind", REPRESENTATIONS)
def test_image_ignores_the_sensors_offset_and_gain(kind):
    """The same pulse read by another sensor (ADC counts: DC offset 32768, gain 250) gives the same image."""
    t = np.arange(SPEC.n_samples) / FS
    pulse = np.sin(2 * np.pi * 1.2 * t) + 0.3 * np.sin(2 * np.pi * 0.25 * t)
    volts = represent(pulse, SPEC, [kind], sampling_rate=FS).astype(int)
    counts = represent(32768 + 250 * pulse, SPEC, [kind], sampling_rate=FS).astype(int)
    assert np.abs(volts - counts).max() <= 1


def test_scalogram_frequencies_span_the_band_and_a_tone_peaks_at_its_row():
    frequencies = scalogram_frequencies(SPEC)
    assert frequencies[0] == pytest.approx(0.05) and frequencies[-1] == pytest.approx(5.0)
    assert np.all(np.diff(np.log(frequencies)) == pytest.approx(np.log(100) / 63))
    t = np.arange(SPEC.n_samples) / FS
    for tone in (0.3, 1.2, 3.0):
        magnitude = scalogram(np.sin(2 * np.pi * tone * t), SPEC)[:, 250:750].mean(axis=1)
        assert abs(np.argmax(magnitude) - np.argmin(np.abs(frequencies - tone))) <= 1


def explicit_recurrence(points: np.ndarray, dimension: int, delay: int) -> np.ndarray:
    n_vectors = points.size - (dimension - 1) * delay
    distances = np.empty((n_vectors, n_vectors))
    for i in range(n_vectors):
        for j in range(n_vectors):
            distances[i, j] = np.sqrt(sum((points[i + k * delay] - points[j + k * delay]) ** 2
                                          for k in range(dimension)))
    return distances


def area_resample(signal: np.ndarray, n_out: int) -> np.ndarray:
    """Mean of the step function through the samples over each of n_out equal intervals."""
    integral = np.concatenate([[0.0], np.cumsum(signal)])
    edges = np.arange(n_out + 1) * signal.size / n_out
    whole = np.floor(edges).astype(int)
    at_edges = integral[whole] + (edges - whole) * signal[np.minimum(whole, signal.size - 1)]
    return np.diff(at_edges) * n_out / signal.size


def test_recurrence_matrix_matches_explicit_distances():
    window = bvp_like(seed=6)[0]
    ours = recurrence_matrix(window, SPEC)
    assert ours.shape == (224, 224) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, explicit_recurrence(area_resample(window, 224), 1, 1), atol=1e-12)


def test_recurrence_matrix_with_delay_embedding():
    spec = RepresentationSpec(recurrence_points=100, recurrence_dimension=3, recurrence_delay=4)
    windows = bvp_like(2, seed=7)
    ours = recurrence_matrix(windows, spec)
    assert ours.shape == (2, 92, 92) == (2, spec.n_recurrence_vectors, spec.n_recurrence_vectors)
    for window, matrix in zip(windows, ours):
        block_means = window.reshape(100, 10).mean(axis=1)  # 1000 -> 100 points: means of 10 samples
        np.testing.assert_allclose(matrix, explicit_recurrence(block_means, 3, 4), atol=1e-12)


@pytest.mark.parametrize(("mode", "threshold"), [("fraction", 0.2), ("percentile", 30.0)])
def test_thresholded_recurrence_is_binary_at_the_threshold(mode, threshold):
    spec = RepresentationSpec(recurrence_points=60, recurrence_threshold=threshold, recurrence_threshold_mode=mode)
    window = bvp_like(seed=8)[0]
    distances = explicit_recurrence(area_resample(window, 60), 1, 1)
    radius = threshold * distances.max() if mode == "fraction" else np.percentile(distances, threshold)
    ours = recurrence_matrix(window, spec)
    np.testing.assert_array_equal(ours, (distances <= radius).astype(float))
    if mode == "percentile":
        assert ours.mean() == pytest.approx(threshold / 100, abs=0.02)


# --- waveform ---


def test_waveform_is_anti_aliased_and_tracks_the_signal():
    t = np.arange(SPEC.n_samples) / FS
    window = np.sin(2 * np.pi * 0.1 * t)  # one cycle: at most 3 px of slope per column
    coverage = waveform_coverage(window, SPEC)
    assert coverage.shape == (224, 224) and coverage.dtype == np.float32
    assert coverage.min() == 0 and coverage.max() == 1
    partial = (coverage > 0.05) & (coverage < 0.95)
    assert partial.sum() > 224  # soft edges along the whole line
    centres = np.arange(224) + 0.5
    drawn_row = (coverage * centres[:, None]).sum(axis=0) / coverage.sum(axis=0)
    margin = SPEC.waveform_line_width / 2 + 0.5
    column_time = (np.arange(224) + 0.5) / 224 * SPEC.window_seconds
    value = np.sin(2 * np.pi * 0.1 * column_time)
    expected_row = margin + (1 - (value - window.min()) / np.ptp(window)) * (224 - 2 * margin)
    assert np.abs(drawn_row - expected_row)[2:-2].max() < 1.0  # the line's two ends are one-sided


@pytest.mark.parametrize("width", [1.0, 2.0, 3.5])
def test_waveform_line_has_the_requested_width(width):
    spec = RepresentationSpec(waveform_line_width=width)
    # Samples 502 and 503 both fall in pixel column 112, so the jump is one column's stroke.
    step = np.r_[np.zeros(503), np.ones(spec.n_samples - 503)]
    coverage = waveform_coverage(step, spec).astype(np.float64)
    # Horizontal stretches: each column's coverage adds up to the width ...
    np.testing.assert_allclose(coverage[:, 10:100].sum(axis=0), width, atol=1e-5)
    np.testing.assert_allclose(coverage[:, 124:214].sum(axis=0), width, atol=1e-5)
    # ... and so does each row's across the vertical jump in the middle.
    np.testing.assert_allclose(coverage[20:200].sum(axis=1), width, atol=1e-5)


def test_waveform_image_blends_the_spec_colours():
    spec = RepresentationSpec(waveform_line_rgb=(200, 10, 10), waveform_background_rgb=(0, 0, 40))
    window = bvp_like(seed=9)
    image = represent(window, spec, ("waveform",), sampling_rate=FS)[0, 0]
    coverage = waveform_coverage(window, spec)[0]
    np.testing.assert_array_equal(image[coverage == 0], np.broadcast_to([0, 0, 40], image[coverage == 0].shape))
    np.testing.assert_array_equal(image[coverage == 1], np.broadcast_to([200, 10, 10], image[coverage == 1].shape))
    middle = image[(coverage > 0.4) & (coverage < 0.6)]
    assert middle.size and np.all((middle[:, 0] > 60) & (middle[:, 0] < 140))


# --- images ---


def test_represent_shapes_dtypes_and_model_input():
    windows = bvp_like(6, seed=10).reshape(2, 3, SPEC.n_samples)  # (windows, channels, samples)
    images = represent(windows, SPEC, sampling_rate=FS)
    assert images.shape == (2, 3, 6, 224, 224, 3) and images.dtype == np.uint8
    model_input = to_model_input(images)
    assert model_input.shape == (2, 3, 6, 3, 224, 224) and model_input.dtype == np.float32
    assert 0 <= model_input.min() and model_input.max() <= 1
    np.testing.assert_allclose(model_input[1, 2, 4, 0], images[1, 2, 4, ..., 0] / 255, rtol=1e-6)


def test_represent_is_deterministic_and_batch_independent():
    windows = bvp_like(3, seed=11)
    images = represent(windows, SPEC, sampling_rate=FS)
    np.testing.assert_array_equal(images, represent(windows, SPEC, sampling_rate=FS))
    np.testing.assert_array_equal(images[1], represent(windows[1], SPEC, sampling_rate=FS))
    subset = represent(windows, SPEC, ("waveform", "spectrogram_psd"), sampling_rate=FS)
    np.testing.assert_array_equal(subset, images[:, [5, 2]])


def test_matrix_images_use_the_colormap_and_its_full_range():
    images = represent(bvp_like(seed=12), SPEC, REPRESENTATIONS[:5], sampling_rate=FS)[0]
    for image in images:
        index = colour_index(image)  # raises KeyError for a colour outside viridis
        assert index.min() <= 1 and index.max() >= 254  # min-max normalised per window


def test_spectrogram_image_has_low_frequencies_at_the_bottom():
    t = np.arange(SPEC.n_samples) / FS
    for tone in (5.0, 25.0, 40.0):
        image = represent(np.sin(2 * np.pi * tone * t), SPEC, ("spectrogram_psd",), sampling_rate=FS)[0]
        brightest_row = np.argmax(colour_index(image).mean(axis=1))
        assert abs(brightest_row - (1 - tone / (FS / 2)) * 224) < 224 / 65 + 2


def test_scalogram_image_has_low_frequencies_at_the_bottom():
    # The scalogram's 64 rows span 0.05-5 Hz on a log scale; the highest frequency row is at the top.
    t = np.arange(SPEC.n_samples) / FS
    for tone in (0.3, 1.2, 3.0):
        image = represent(np.sin(2 * np.pi * tone * t), SPEC, ("scalogram",), sampling_rate=FS)[0]
        brightest_row = np.argmax(colour_index(image)[:, 56:168].mean(axis=1))
        assert abs(brightest_row - (1 - np.log(tone / 0.05) / np.log(100)) * 224) < 2 * 224 / 64, tone


def test_recurrence_image_diagonal():
    window = bvp_like(seed=13)
    plain = represent(window, SPEC, ("recurrence",), sampling_rate=FS)[0, 0]
    thresholded_spec = RepresentationSpec(recurrence_threshold=0.1)
    thresholded = represent(window, thresholded_spec, ("recurrence",), sampling_rate=FS)[0, 0]
    diagonal = np.arange(224)
    assert (plain[diagonal, diagonal] == VIRIDIS_LUT[0]).all()  # distance 0: lowest colour
    assert (thresholded[diagonal, diagonal] == VIRIDIS_LUT[255]).all()  # every state recurs with itself
    assert set(map(tuple, thresholded.reshape(-1, 3))) == {tuple(VIRIDIS_LUT[0]), tuple(VIRIDIS_LUT[255])}


def test_flat_windows_give_documented_images():
    spec = RepresentationSpec(image_size=64)
    flat = np.full((2, spec.n_samples), [[3.0], [-7.0]])
    images = represent(flat, spec, sampling_rate=FS)
    np.testing.assert_array_equal(images[0], images[1])  # independent of the constant
    assert (images[0, :5] == VIRIDIS_LUT[0]).all()
    coverage = waveform_coverage(flat[0], spec)
    drawn_row = (coverage * (np.arange(64) + 0.5)[:, None]).sum(axis=0) / coverage.sum(axis=0)
    np.testing.assert_allclose(drawn_row, 32.0)
    mixed = np.stack([flat[0], bvp_like(seed=14)[0]])
    np.testing.assert_array_equal(represent(mixed, spec, sampling_rate=FS)[1],
                                  represent(mixed[1], spec, sampling_rate=FS))


def test_other_image_sizes():
    spec = dataclasses.replace(SPEC, image_size=96)
    images = represent(bvp_like(seed=15), spec, sampling_rate=FS)
    assert images.shape == (1, 6, 96, 96, 3)


# --- bad input ---


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        (np.r_[np.zeros(500), np.nan, np.zeros(499)], r"1 NaN or inf sample\(s\), first at index \(500,\)"),
        (np.r_[np.zeros(999), np.inf], "NaN or inf"),
        (np.zeros(999), "exactly 1000 samples.*got 999"),
        (np.zeros((2, 1001)), "exactly 1000 samples.*got 1001"),
        (np.float64(1.0), "got a scalar"),
        (np.array(["1"] * 1000), "real numeric array"),
        (np.zeros(1000, dtype=complex), "real numeric array"),
    ],
)
def test_bad_windows_raise(windows, message):
    with pytest.raises(ValueError, match=message):
        represent(windows, SPEC, sampling_rate=FS)
    with pytest.raises(ValueError, match=message):
        scalogram(windows, SPEC)


def test_wrong_sampling_rate_and_kinds_raise():
    window = bvp_like(seed=16)
    with pytest.raises(ValueError, match="sampled at 250 Hz but the representation spec expects 100 Hz"):
        represent(window, SPEC, sampling_rate=250)
    with pytest.raises(ValueError, match="kinds must be"):
        represent(window, SPEC, ("spectrogram",), sampling_rate=FS)
    with pytest.raises(ValueError, match="kinds must be"):
        represent(window, SPEC, (), sampling_rate=FS)
    with pytest.raises(ValueError, match="mode must be"):
        spectrogram(window, SPEC, "power")
    with pytest.raises(ValueError, match="uint8 RGB"):
        to_model_input(np.zeros((4, 4, 3), dtype=np.float32))


def test_device_modules_import_neither_torch_nor_matplotlib():
    code = (
        "import sys, edge.representations, edge.render, edge.png; "
        "print(sorted(m for m in ('torch', 'matplotlib', 'PIL') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_scipy_is_imported_only_for_spectrograms():
    # Importing SciPy took ~0.5 s and ~20 MB of the monitor's start-up; the
    # default bundle (scalograms and waveforms, equal channel rates) never needs it.
    code = (
        "import sys, numpy as np\n"
        "import edge.monitor, edge.windows\n"
        "from edge.bundle import load_bundle\n"
        "from edge.representations import RepresentationSpec, represent\n"
        "load_bundle('edge/bundles/default')\n"
        "spec = RepresentationSpec()\n"
        "window = np.sin(np.arange(spec.n_samples) / 7.0)\n"
        "represent(window, spec, ('scalogram', 'waveform', 'recurrence'), sampling_rate=spec.sampling_rate)\n"
        "print('scipy' in sys.modules)\n"
        "represent(window, spec, ('spectrogram_psd',), sampling_rate=spec.sampling_rate)\n"
        "print('scipy.signal' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert result.stdout.split() == ["False", "True"]


# --- building blocks: FFT length, image resize, colouring, caches ---


def test_fast_fft_length_is_scipys_next_fast_len():
    """The scalogram's FFT length is the smallest 2^a 3^b 5^c >= 2n - 1, as scipy.fft.next_fast_len(real=True)."""
    from edge.representations import _next_fast_len

    sizes = list(range(1, 2100)) + [2 * 100_000 - 1, 3**7 * 5**3 + 1, 2**17 - 1, 2**17, 2**17 + 1]
    assert [_next_fast_len(size) for size in sizes] == [scipy.fft.next_fast_len(size, real=True) for size in sizes]


def linear_resize(values: np.ndarray, n_out: int) -> np.ndarray:
    """Linear interpolation along the last axis between cell centres, edges clamped (as image resizers do)."""
    n_in = values.shape[-1]
    source = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    return np.apply_along_axis(lambda row: np.interp(source, np.arange(n_in), row), -1, values)


def test_image_resize_is_linear_when_enlarging_and_area_mean_when_shrinking():
    from edge.representations import _resize

    matrix = np.random.default_rng(30).standard_normal((2, 65, 1000))  # scalogram-like: few rows, many columns
    expected = np.swapaxes(linear_resize(np.swapaxes(np.apply_along_axis(area_resample, -1, matrix, 224), -1, -2),
                                         224), -1, -2)
    np.testing.assert_allclose(_resize(matrix, 224, flip_rows=False), expected, atol=1e-12)
    np.testing.assert_allclose(_resize(matrix, 224, flip_rows=True), expected[:, ::-1], atol=1e-12)
    tall = matrix[0, :, :300].T  # 300 rows shrink, 65 columns grow
    np.testing.assert_allclose(_resize(tall, 224, flip_rows=False),
                               np.apply_along_axis(area_resample, 0, linear_resize(tall, 224), 224), atol=1e-12)
    square = matrix[0, :, :65]
    np.testing.assert_array_equal(_resize(square, 65, flip_rows=True), square[::-1])
    single_frame = matrix[0, :, :1]  # one STFT segment spanning the whole window: one column
    np.testing.assert_allclose(_resize(single_frame, 224, flip_rows=False),
                               np.repeat(linear_resize(single_frame.T, 224).T, 224, axis=1), atol=1e-12)


def test_spectrogram_of_a_single_segment_spans_the_image_width():
    spec = RepresentationSpec(stft_nperseg=1000, stft_noverlap=0)
    t = np.arange(spec.n_samples) / FS
    psd = spectrogram(np.sin(2 * np.pi * 10.0 * t), spec)
    assert psd.shape == (501, 1)
    image = represent(np.sin(2 * np.pi * 10.0 * t), spec, ("spectrogram_psd",), sampling_rate=FS)[0]
    assert (image == image[:, :1]).all()  # every column the same
    assert np.argmax(colour_index(image[:, 0][:, None])[:, 0]) == pytest.approx((1 - 10.0 / 50.0) * 224, abs=1)


def test_matrix_colours_are_matplotlibs_viridis_of_the_min_max_normalised_matrix():
    """A 224 x 224 recurrence matrix is drawn unresized: pixel = viridis((d - min) / (max - min)) as matplotlib bins it."""
    matplotlib = require_module("matplotlib")
    window = bvp_like(seed=31)[0]
    distances = recurrence_matrix(window, SPEC).astype(np.float32)
    unit = (distances - distances.min()) / (distances.max() - distances.min())
    expected = matplotlib.colormaps["viridis"](unit, bytes=True)[..., :3]
    np.testing.assert_array_equal(represent(window, SPEC, ("recurrence",), sampling_rate=FS)[0], expected)


def test_cached_tables_are_read_only():
    """Tapers, filter banks and resize taps are shared by every later window: no caller may edit them in place."""
    from edge.representations import _resampling_taps, _stft_taper, _wavelet_filter_bank

    tables = [_stft_taper("hann", 128), _wavelet_filter_bank(SPEC)[0], *_resampling_taps(1000, 224),
              *_resampling_taps(65, 224)]
    assert not any(table.flags.writeable for table in tables)


# --- inputs the device gives ---


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.float32])
def test_integer_and_float32_windows_render_like_their_float64_values(dtype):
    """ADC counts arrive as integers: they are the same numbers, so the same images (no integer arithmetic)."""
    t = np.arange(SPEC.n_samples) / FS
    counts = np.rint(30000 + 2000 * np.sin(2 * np.pi * 1.1 * t) + 300 * np.sin(2 * np.pi * 0.3 * t)).astype(dtype)
    np.testing.assert_array_equal(represent(counts, SPEC, sampling_rate=FS),
                                  represent(counts.astype(np.float64), SPEC, sampling_rate=FS))
    np.testing.assert_array_equal(recurrence_matrix(counts, SPEC), recurrence_matrix(counts.astype(np.float64), SPEC))
    np.testing.assert_array_equal(represent(counts.tolist(), SPEC, ("waveform",), sampling_rate=FS),
                                  represent(counts.astype(np.float64), SPEC, ("waveform",), sampling_rate=FS))


def test_one_kind_may_be_named_by_a_plain_string():
    window = bvp_like(seed=32)[0]
    image = represent(window, SPEC, "scalogram", sampling_rate=FS)
    assert image.shape == (1, 224, 224, 3)
    np.testing.assert_array_equal(image, represent(window, SPEC, sampling_rate=FS)[[4]])


def test_bad_window_messages_locate_the_problem():
    windows = np.zeros((3, 1000))
    windows[1, 7] = np.inf
    windows[2, 0] = np.nan
    with pytest.raises(ValueError, match=r"2 NaN or inf sample\(s\), first at index \(1, 7\)"):
        represent(windows, SPEC, sampling_rate=FS)
    with pytest.raises(ValueError, match="real numeric array; got dtype bool"):
        represent(np.zeros(1000, dtype=bool), SPEC, sampling_rate=FS)
    with pytest.raises(ValueError, match=r"got 999 samples \(shape \(2, 999\)\)"):
        represent(np.zeros((2, 999)), SPEC, sampling_rate=FS)


def test_model_input_is_channels_first_in_unit_range():
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0], image[2, 5, 2] = 255, 51
    model_input = to_model_input(image)
    assert model_input.shape == (3, 8, 8) and model_input.dtype == np.float32
    assert (model_input[0] == 1).all() and model_input[2, 2, 5] == pytest.approx(0.2) and model_input[1].max() == 0
    with pytest.raises(ValueError, match=r"got uint8 \(8, 3\)"):
        to_model_input(np.zeros((8, 3), np.uint8))


def test_validating_the_default_hann_window_needs_no_scipy(monkeypatch):
    """Every bundle load validates its spec; "hann" is valid for any length, so SciPy's window code stays unloaded."""
    import edge.representations

    def no_scipy(name, nperseg):
        raise AssertionError("scipy.signal.get_window called")

    monkeypatch.setattr(edge.representations, "_stft_taper", no_scipy)
    assert RepresentationSpec(stft_nperseg=77, stft_noverlap=7).stft_window == "hann"
    with pytest.raises(AssertionError, match="get_window called"):
        RepresentationSpec(stft_window="hamming")


def test_spectrogram_crop_keeps_the_row_at_exactly_the_top_frequency():
    spec = RepresentationSpec(stft_nfft=256, stft_fmax_hz=12.5)  # 12.5 Hz is bin 32 of a 256-point FFT at 100 Hz
    frequencies = spectrogram_frequencies(spec)
    np.testing.assert_allclose(frequencies, np.arange(33) * 100 / 256)
    assert spectrogram(bvp_like(seed=33)[0], spec).shape[0] == 33
    one_step = RepresentationSpec(stft_nfft=1000, stft_fmax_hz=0.1)
    np.testing.assert_allclose(spectrogram_frequencies(one_step), [0.0, 0.1])


def expected_image(matrix: np.ndarray, flip_rows: bool, matplotlib) -> np.ndarray:
    """Independent image path: separable resize (area mean shrinking, linear enlarging), min-max, matplotlib viridis."""

    def resize(values, axis):
        values = np.moveaxis(values, axis, -1)
        values = (np.apply_along_axis(area_resample, -1, values, 224) if values.shape[-1] > 224
                  else linear_resize(values, 224))
        return np.moveaxis(values, -1, axis)

    resized = resize(resize(matrix, -1), -2)
    if flip_rows:
        resized = resized[::-1]
    unit = (resized - resized.min()) / np.ptp(resized)
    return matplotlib.colormaps["viridis"](unit, bytes=True)[..., :3]


@pytest.mark.parametrize("kind", ["spectrogram_angle", "spectrogram_phase", "spectrogram_psd", "scalogram"])
def test_frequency_images_are_their_matrix_resized_flipped_and_coloured(kind):
    """Each frequency image shows its own matrix (angle, phase, PSD, scalogram), highest frequency row on top."""
    matplotlib = require_module("matplotlib")
    window = bvp_like(seed=34)[0]
    matrix = scalogram(window, SPEC) if kind == "scalogram" else spectrogram(window, SPEC, kind.split("_")[1])
    image = represent(window, SPEC, (kind,), sampling_rate=FS)[0]
    expected = expected_image(matrix, True, matplotlib)
    index, expected_index = colour_index(image), colour_index(expected)
    assert np.abs(index - expected_index).max() <= 1  # float32 rounding may move a value across a colour bin
    assert (index == expected_index).mean() > 0.99


@pytest.mark.parametrize("wavelet", ["morl", "cmor1.5-1.0"])
def test_scalogram_of_windows_with_an_odd_fft_length_matches_pywt(wavelet):
    """563 samples: the FFT length 1125 = 3^2 5^3 is odd, where a real inverse FFT must be told the length."""
    if "precision" not in inspect.signature(pywt.cwt).parameters:
        pytest.skip("pywt.cwt before PyWavelets 1.9 samples wavelets at another precision")
    spec = RepresentationSpec(window_seconds=5.63, scalogram_wavelet=wavelet, recurrence_points=100)
    window = bvp_like(seed=35, n=563)[0]
    scales = pywt.frequency2scale(wavelet, scalogram_frequencies(spec) / FS)
    coefficients, _ = pywt.cwt(window - window.mean(), scales, wavelet, sampling_period=1 / FS, precision=12)
    reference = np.abs(coefficients)
    np.testing.assert_allclose(scalogram(window, spec), reference, rtol=0, atol=1e-10 * reference.max())


def test_matrices_of_windows_in_any_leading_shape_are_those_of_each_window():
    """(windows, channels, samples) in, one matrix per window and channel: nothing mixes across windows."""
    windows = np.stack([bvp_like(3, seed=36), 5.0 * bvp_like(3, seed=37)])  # (2, 3, 1000), different scales
    threshold = RepresentationSpec(recurrence_points=40, recurrence_threshold=0.3)
    percentile = RepresentationSpec(recurrence_points=40, recurrence_threshold=30.0,
                                    recurrence_threshold_mode="percentile")
    for function, spec in ((scalogram, SPEC), (waveform_coverage, SPEC), (recurrence_matrix, threshold),
                           (recurrence_matrix, percentile), (lambda w, s: spectrogram(w, s, "phase"), SPEC)):
        batched = function(windows, spec)
        assert batched.shape[:2] == (2, 3)
        for i in range(2):
            for j in range(3):
                np.testing.assert_allclose(batched[i, j], function(windows[i, j], spec), rtol=1e-12, atol=1e-12)


def test_percentile_threshold_includes_the_distance_at_the_percentile():
    """11 points: 121 distances, the 25th percentile is exactly the 31st smallest: it recurs (distance <= radius)."""
    spec = RepresentationSpec(recurrence_points=11, recurrence_threshold=25.0, recurrence_threshold_mode="percentile")
    window = bvp_like(seed=38)[0]
    distances = explicit_recurrence(area_resample(window, 11), 1, 1)
    radius = np.sort(distances.ravel())[30]
    assert np.percentile(distances, 25.0) == radius
    np.testing.assert_array_equal(recurrence_matrix(window, spec), (distances <= radius).astype(float))
    assert (distances == radius).sum() == 2  # the pair (i, j), (j, i) at the percentile recurs


def test_waveform_reaches_single_sample_spikes():
    """A one-sample spike up and one down inside pixel columns: the stroke spans them, not just the column edges."""
    window = np.zeros(SPEC.n_samples)
    window[502], window[702] = 1.0, -1.0  # in columns 112 and 157, away from their edges
    coverage = waveform_coverage(window, SPEC)
    rows = np.flatnonzero(coverage[:, 112] > 0.5)
    assert rows.min() <= 2 and rows.max() >= 111  # from the top margin down to the zero line
    rows = np.flatnonzero(coverage[:, 157] > 0.5)
    assert rows.min() <= 112 and rows.max() >= 221  # from the zero line down to the bottom margin


def test_waveform_of_a_window_shorter_than_the_image_is_a_continuous_line():
    """100 samples over 224 columns: columns between samples follow the line joining them."""
    spec = RepresentationSpec(window_seconds=1.0, stft_nperseg=64, stft_noverlap=32, recurrence_points=100)
    ramp = np.linspace(0.0, 1.0, spec.n_samples)
    coverage = waveform_coverage(ramp, spec)
    assert coverage.shape == (224, 224)
    centres = np.arange(224) + 0.5
    drawn_row = (coverage * centres[:, None]).sum(axis=0) / coverage.sum(axis=0)
    margin = spec.waveform_line_width / 2 + 0.5
    # sample i sits at x = (i + 0.5) * 2.24: column c's centre is at sample (c + 0.5) / 2.24 - 0.5
    position = np.clip((centres / 2.24 - 0.5) / 99, 0, 1)
    expected_row = margin + (1 - position) * (224 - 2 * margin)
    assert np.abs(drawn_row - expected_row)[3:-3].max() < 0.6


def test_flat_windows_of_an_inexact_constant_give_the_documented_images():
    """98.6 % SpO2 for 10 s: its mean is not exactly 98.6 in floating point, the images are still uniform."""
    spec = RepresentationSpec(image_size=32)
    images = represent(np.full(spec.n_samples, 98.6), spec, REPRESENTATIONS[:5], sampling_rate=FS)
    assert (images == VIRIDIS_LUT[0]).all()


def test_psd_of_a_silent_window_warns_about_nothing():
    """A sensor reading exact zeros has zero power: the dB floor comes from a tiny positive guard, not log10(0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        psd = spectrogram(np.zeros(SPEC.n_samples), SPEC, "psd")
    assert np.isfinite(psd).all() and np.ptp(psd) == 0
