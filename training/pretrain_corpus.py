"""A generated corpus of biosignal images for multi-task pretraining.

The paper pretrained Tiny-BioMoE on ECG, EMG and EEG images at scale; here a
seeded generator stands in: six signal types, each driven by one rate-like
parameter drawn uniformly from a physiological range, rendered at 100 Hz in
10 s windows and turned into images by :func:`edge.representations.represent`
(the device's own code, so pretraining sees exactly the images the monitor
makes). Every image comes with three targets: its signal type, its
representation and its generating parameter scaled to [0, 1].

ECG, EMG and EEG are deliberately simple generators; PPG, RESP and EDA are a
random resting subject of the project's physiology model
(:mod:`firmware_bridge.physiology`, the model behind ``biomoe synth`` and the
simulated hub, with its artefacts), with the drawn parameter in place of the
subject's own rate. What matters for the backbone is that telling the rates
apart needs the same cues as telling pain levels apart in the target task
(heart rate, breathing rate, skin-conductance responses, amplitude
envelopes):

==========  ==============================================  ===============
type        model                                           parameter
==========  ==============================================  ===============
``ecg``     PQRST template (sum of Gaussians) per beat,     heart rate
            rate fluctuating, baseline wander, noise        40-160 bpm
``emg``     bursts of 15-45 Hz band-limited noise on a      burst rate
            low-level background                            6-60 /min
``eeg``     1/f (pink) noise plus an amplitude-modulated     peak frequency
            rhythm                                          4-25 Hz
``ppg``     the physiology model's finger PPG               heart rate
                                                            40-160 bpm
``resp``    the physiology model's breathing belt           breathing rate
                                                            5-35 /min
``eda``     the physiology model's skin conductance         spontaneous
            (tonic level plus SCRs at random times)         SCR rate
                                                            0.5-15 /min
==========  ==============================================  ===============

Examples
--------
>>> from edge.representations import RepresentationSpec
>>> corpus = generate_corpus(2, ("scalogram",), RepresentationSpec(), seed=0)
>>> corpus.images.shape, corpus.signal_types.tolist()[:4]
((12, 224, 224, 3), [0, 1, 2, 3])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.signal

from edge.representations import REPRESENTATIONS, RepresentationSpec, represent
from firmware_bridge.physiology import draw_profile, simulate_recording

__all__ = [
    "PARAMETER_RANGES",
    "SIGNAL_TYPES",
    "Corpus",
    "generate_corpus",
    "generate_signal",
]

#: Signal types of the corpus, in the order of the signal-type head's classes.
SIGNAL_TYPES: tuple[str, ...] = ("ecg", "emg", "eeg", "ppg", "resp", "eda")

#: Range of each signal type's generating parameter (unit in the module table).
PARAMETER_RANGES: dict[str, tuple[float, float]] = {
    "ecg": (40.0, 160.0),
    "emg": (6.0, 60.0),
    "eeg": (4.0, 25.0),
    "ppg": (40.0, 160.0),
    "resp": (5.0, 35.0),
    "eda": (0.5, 15.0),
}


@dataclass
class Corpus:
    """Images and their three targets.

    Attributes
    ----------
    images : ndarray of uint8, shape (n, S, S, 3)
        May be a read-only memory map (see :func:`generate_corpus`).
    signal_types : ndarray of int64, shape (n,)
        Index into :data:`SIGNAL_TYPES`.
    representations : ndarray of int64, shape (n,)
        Index into the ``representations`` the corpus was made with.
    parameters : ndarray of float32, shape (n,)
        Generating parameter scaled to [0, 1] over :data:`PARAMETER_RANGES`.
    """

    images: np.ndarray
    signal_types: np.ndarray
    representations: np.ndarray
    parameters: np.ndarray

    def __len__(self) -> int:
        return len(self.signal_types)


def _smooth_noise(rng: np.random.Generator, n: int, fs: float, correlation_s: float) -> np.ndarray:
    """Unit-variance noise smoothed over about ``correlation_s`` seconds."""
    white = rng.standard_normal(n + int(4 * correlation_s * fs))
    pole = np.exp(-1.0 / (correlation_s * fs))
    smooth = scipy.signal.lfilter([1 - pole], [1, -pole], white)[-n:]
    return smooth / max(float(np.std(smooth)), 1e-9)


def _event_times(rng: np.random.Generator, n: int, fs: float, rate_per_min: float, jitter: float) -> np.ndarray:
    """Quasi-periodic event times (s) at a slowly fluctuating rate, starting at a random phase."""
    rate_hz = rate_per_min / 60 * (1 + jitter * _smooth_noise(rng, n, fs, 2.0))
    phase = rng.uniform() + np.cumsum(np.maximum(rate_hz, 0.05 * rate_per_min / 60)) / fs
    crossings = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
    return crossings / fs


def _place(n: int, fs: float, times: np.ndarray, shape: Callable[[np.ndarray], np.ndarray], span_s: tuple[float, float]):
    """Sum of ``shape(t - time)`` over events, each evaluated on its own span only."""
    out = np.zeros(n)
    t = np.arange(n) / fs
    for time in times:
        lo, hi = np.searchsorted(t, [time + span_s[0], time + span_s[1]])
        out[lo:hi] += shape(t[lo:hi] - time)
    return out


def _gaussians(offsets, heights, widths) -> Callable[[np.ndarray], np.ndarray]:
    def shape(dt: np.ndarray) -> np.ndarray:
        return sum(h * np.exp(-0.5 * ((dt - o) / w) ** 2) for o, h, w in zip(offsets, heights, widths))

    return shape


def _ecg(rng, n, fs, rate):
    rr = 60 / rate
    template = _gaussians(
        offsets=(-0.2 * rr ** 0.5, -0.03, 0.0, 0.035, 0.28 * rr ** 0.5),
        heights=(0.12, -0.12, 1.0, -0.25, rng.uniform(0.2, 0.4)),
        widths=(0.025, 0.01, 0.012, 0.012, 0.05),
    )
    beats = _event_times(rng, n + int(2 * fs), fs, rate, jitter=0.04) - 1.0
    signal = _place(n, fs, beats, template, (-0.5, 0.7))
    wander = 0.15 * _smooth_noise(rng, n, fs, 3.0)
    return signal * rng.uniform(0.5, 2.0) + wander + 0.03 * rng.standard_normal(n)


def _emg(rng, n, fs, rate):
    low, high = rng.uniform(15, 25), rng.uniform(35, 45)
    sos = scipy.signal.butter(4, [low, high], btype="bandpass", fs=fs, output="sos")
    carrier = scipy.signal.sosfiltfilt(sos, rng.standard_normal(n))
    carrier /= np.std(carrier)
    bursts = _event_times(rng, n + int(3 * fs), fs, rate, jitter=0.3) - 1.5
    duration = rng.uniform(0.2, 0.5) * min(1.0, 60 / rate)
    envelope = _place(n, fs, bursts, lambda dt: np.sin(np.pi * np.clip(dt / duration, 0, 1)) ** 2, (0, duration))
    return carrier * (0.08 + envelope * rng.uniform(0.7, 1.3, size=1))


def _eeg(rng, n, fs, peak_hz):
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequencies = np.fft.rfftfreq(n, 1 / fs)
    pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(frequencies, 0.5)), n)
    pink /= np.std(pink)
    frequency = peak_hz * (1 + 0.03 * _smooth_noise(rng, n, fs, 1.0))
    rhythm = np.sin(2 * np.pi * np.cumsum(frequency) / fs + rng.uniform(0, 2 * np.pi))
    envelope = np.clip(1 + 0.6 * _smooth_noise(rng, n, fs, 0.7), 0, None)
    return 0.6 * pink + rng.uniform(0.8, 1.6) * envelope * rhythm


def _physiology(channel: str, profile_field: str, warmup_s: float = 20.0):
    """A generator of ``channel`` from the physiology model: a random subject at rest whose
    ``profile_field`` is the drawn parameter, after ``warmup_s`` seconds (so earlier SCRs decay into the window)."""

    def generate(rng, n, fs, value):
        profile = replace(draw_profile(rng), **{profile_field: value})
        warmup = int(warmup_s * fs)
        recording = simulate_recording(n + warmup, rng, sampling_rate=fs, profile=profile)
        return recording.signals[channel][warmup:]

    return generate


_GENERATORS = {
    "ecg": _ecg,
    "emg": _emg,
    "eeg": _eeg,
    "ppg": _physiology("BVP", "heart_rate_bpm"),
    "resp": _physiology("RESP", "breathing_rate_per_min"),
    "eda": _physiology("EDA", "scr_rate_per_min"),
}


def generate_signal(kind: str, rng: np.random.Generator, n_samples: int = 1000, sampling_rate: float = 100.0):
    """One window of one signal type, with its generating parameter.

    Parameters
    ----------
    kind : str
        One of :data:`SIGNAL_TYPES`.
    rng : numpy.random.Generator
        Source of every random draw (the parameter included).
    n_samples : int, default 1000
        Window length in samples.
    sampling_rate : float, default 100.0
        Hz.

    Returns
    -------
    signal : ndarray of float64, shape (n_samples,)
    parameter : float
        The generating parameter in its unit (see :data:`PARAMETER_RANGES`).
    """
    if kind not in _GENERATORS:
        raise ValueError(f"kind must be one of {SIGNAL_TYPES}; got {kind!r}")
    low, high = PARAMETER_RANGES[kind]
    parameter = float(rng.uniform(low, high))
    return _GENERATORS[kind](rng, n_samples, sampling_rate, parameter), parameter


def generate_corpus(
    n_per_type: int,
    representations: Sequence[str],
    spec: RepresentationSpec,
    seed: int = 0,
    *,
    path: str | os.PathLike | None = None,
    progress: bool = False,
) -> Corpus:
    """Generate ``n_per_type`` windows of every signal type, each in every representation.

    Image ``i`` is window ``i // len(representations)`` in representation
    ``i % len(representations)``; windows cycle through the signal types.

    Parameters
    ----------
    n_per_type : int
        Windows per signal type (>= 1).
    representations : sequence of str
        Names from :data:`edge.representations.REPRESENTATIONS`.
    spec : RepresentationSpec
        Image settings (the same as fine-tuning's and the device's).
    seed : int, default 0
        Corpus seed.
    path : path-like, optional
        Write the images to this ``.npy`` file (written to ``path + ".partial"``
        and renamed when complete) and return them memory-mapped, so a large
        corpus need not fit in memory. None keeps them in memory.
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    Corpus
    """
    if isinstance(n_per_type, bool) or not isinstance(n_per_type, int) or n_per_type < 1:
        raise ValueError(f"n_per_type must be an integer >= 1; got {n_per_type!r}")
    representations = tuple(representations)
    unknown = [name for name in representations if name not in REPRESENTATIONS]
    if unknown or not representations:
        raise ValueError(f"representations must be names from {REPRESENTATIONS}; got {list(representations)}")
    rng = np.random.default_rng(seed)
    n_windows = n_per_type * len(SIGNAL_TYPES)
    n_images = n_windows * len(representations)
    shape = (n_images, spec.image_size, spec.image_size, 3)
    if path is None:
        images = np.empty(shape, dtype=np.uint8)
    else:
        partial = Path(str(path) + ".partial")
        images = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
    signal_types = np.repeat(np.arange(n_windows) % len(SIGNAL_TYPES), len(representations))
    parameters = np.empty(n_windows, dtype=np.float32)
    indices = range(n_windows)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="pretraining corpus", unit="window")
    for window in indices:
        kind = SIGNAL_TYPES[window % len(SIGNAL_TYPES)]
        signal, value = generate_signal(kind, rng, spec.n_samples, spec.sampling_rate)
        low, high = PARAMETER_RANGES[kind]
        parameters[window] = (value - low) / (high - low)
        start = window * len(representations)
        images[start : start + len(representations)] = represent(
            signal, spec, representations, sampling_rate=spec.sampling_rate
        )
    if path is not None:
        images.flush()
        del images
        os.replace(partial, path)
        images = np.load(path, mmap_mode="r")
    return Corpus(
        images=images,
        signal_types=signal_types.astype(np.int64),
        representations=np.tile(np.arange(len(representations)), n_windows).astype(np.int64),
        parameters=np.repeat(parameters, len(representations)),
    )
