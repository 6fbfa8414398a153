"""Benchmark: the six representations of one window, this project's path vs matplotlib.

One 10 s, 100 Hz window (1,000 samples of a BVP-like signal) is rendered as
the six 224 x 224 images by :func:`edge.representations.represent`, and, in
the same run, by matplotlib the usual way: ``specgram`` with its ``mode``,
``pywt.cwt`` (its faster ``method="fft"``) + ``imshow``, the full-resolution
distance matrix + ``imshow``, ``plot``; each figure saved to an in-memory PNG
at 224 x 224. The goal is the project's path at least 20x faster. A second
table times two building blocks against the library call they replace: the
scalogram's cached FFT filter bank against ``pywt.cwt``, and the precomputed
resampling taps against ``scipy.ndimage.zoom`` (order 1).

Run::

    python -m benchmarks.bench_representations [--repeats 20]

matplotlib is needed here only (the ``dev`` extra); the device never imports it.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import pywt
import scipy.ndimage

from benchmarks.report import text_table
from edge.png import encode_png
from edge.representations import (
    REPRESENTATIONS,
    RepresentationSpec,
    _resize,
    represent,
    scalogram,
    scalogram_frequencies,
    spectrogram,
)

GOAL_RATIO = 20.0


def median_ms(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``function()`` in ms, after two warm-up calls."""
    for _ in range(2):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bvp_like_window(spec: RepresentationSpec, seed: int) -> np.ndarray:
    """A pulse wave at 72 bpm riding on respiration at 0.25 Hz, plus sensor noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(spec.n_samples) / spec.sampling_rate
    pulse = np.sin(2 * np.pi * 1.2 * t) + 0.35 * np.sin(2 * np.pi * 2.4 * t + 0.8)
    return pulse + 0.5 * np.sin(2 * np.pi * 0.25 * t) + 0.05 * rng.standard_normal(t.size)


def matplotlib_renderers(window: np.ndarray, spec: RepresentationSpec) -> dict[str, Callable[[], bytes]]:
    """The six images drawn with matplotlib as one usually would, each returning PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inches = spec.image_size / 100

    def figure_png(draw: Callable[[object], None]) -> bytes:
        figure = plt.figure(figsize=(inches, inches), dpi=100)
        axes = figure.add_axes((0, 0, 1, 1))
        axes.set_axis_off()
        draw(axes)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        plt.close(figure)
        return buffer.getvalue()

    def specgram(mode: str) -> Callable[[], bytes]:
        return lambda: figure_png(lambda axes: axes.specgram(
            window, NFFT=spec.stft_nperseg, Fs=spec.sampling_rate, noverlap=spec.stft_noverlap,
            detrend="mean", mode=mode, cmap="viridis"))

    def scalogram_png() -> bytes:
        scales = pywt.frequency2scale(spec.scalogram_wavelet, scalogram_frequencies(spec) / spec.sampling_rate)
        coefficients, _ = pywt.cwt(window, scales, spec.scalogram_wavelet, method="fft")
        return figure_png(lambda axes: axes.imshow(np.abs(coefficients), aspect="auto", origin="lower",
                                                   cmap="viridis"))

    def recurrence_png() -> bytes:
        distances = np.abs(window[:, None] - window[None, :])
        return figure_png(lambda axes: axes.imshow(distances, aspect="auto", cmap="viridis"))

    def waveform_png() -> bytes:
        def draw(axes):
            axes.plot(window, color="black", linewidth=spec.waveform_line_width * 72 / 100)
            axes.margins(0)
        return figure_png(draw)

    return {
        "spectrogram_angle": specgram("angle"),
        "spectrogram_phase": specgram("phase"),
        "spectrogram_psd": specgram("psd"),
        "recurrence": recurrence_png,
        "scalogram": scalogram_png,
        "waveform": waveform_png,
    }


def collect(repeats: int = 20, seed: int = 0) -> list[dict]:
    """Measure both tables; each a section ``{"title", "command", "columns", "rows", "notes"}``."""
    spec = RepresentationSpec()
    window = bvp_like_window(spec, seed)
    rate = spec.sampling_rate
    renderers = matplotlib_renderers(window, spec)

    rows = []
    for kind in REPRESENTATIONS:
        ours = median_ms(lambda: represent(window, spec, (kind,), sampling_rate=rate), repeats)
        theirs = median_ms(renderers[kind], repeats)
        rows.append([kind, ours, theirs, theirs / ours])
    ours_all = median_ms(lambda: represent(window, spec, sampling_rate=rate), repeats)
    ours_png = median_ms(lambda: [encode_png(image) for image in represent(window, spec, sampling_rate=rate)],
                         repeats)
    theirs_all = median_ms(lambda: [render() for render in renderers.values()], repeats)
    ratio = theirs_all / ours_all
    rows.append(["all six (arrays)", ours_all, theirs_all, ratio])
    rows.append(["all six (PNG bytes)", ours_png, theirs_all, theirs_all / ours_png])
    comparison = {
        "title": "Representations of one window: this project vs matplotlib",
        "command": "python -m benchmarks.bench_representations",
        "columns": ["representation", "ours ms", "matplotlib ms", "ratio"],
        "rows": rows,
        "notes": [
            f"one window: {spec.n_samples} samples at {rate:g} Hz -> {spec.image_size}x{spec.image_size} RGB; "
            f"median of {repeats} calls",
            f"goal: arrays path >= {GOAL_RATIO:g}x faster than matplotlib: "
            f"{'met' if ratio >= GOAL_RATIO else 'NOT met'} ({ratio:.1f}x)",
        ],
    }

    blocks = []
    scales = pywt.frequency2scale(spec.scalogram_wavelet, scalogram_frequencies(spec) / rate)
    ours = median_ms(lambda: scalogram(window, spec), repeats)
    library = median_ms(lambda: pywt.cwt(window, scales, spec.scalogram_wavelet, method="fft"), repeats)
    blocks.append(["scalogram: filter bank vs pywt.cwt", ours, library, library / ours])
    for name, matrix in (("spectrogram", spectrogram(window, spec)), ("scalogram", scalogram(window, spec))):
        matrix = matrix.astype(np.float32)
        height, width = matrix.shape
        factors = (spec.image_size / height, spec.image_size / width)
        ours = median_ms(lambda: _resize(matrix, spec.image_size, flip_rows=False), repeats)
        library = median_ms(lambda: scipy.ndimage.zoom(matrix, factors, order=1), repeats)
        blocks.append([f"resize {height}x{width}: taps vs ndimage.zoom", ours, library, library / ours])
    building_blocks = {
        "title": "Representation building blocks vs the library call they replace",
        "command": "python -m benchmarks.bench_representations",
        "columns": ["block", "ours ms", "library ms", "ratio"],
        "rows": blocks,
        "notes": [],
    }
    return [comparison, building_blocks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for section in collect(args.repeats, args.seed):
        print(text_table(section) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
