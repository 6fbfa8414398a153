"""Biosignal windows as the six 224 x 224 RGB images Tiny-BioMoE reads.

One window of one signal (EDA, BVP, RESP, SpO2 at 100 Hz, 10 s) becomes six
images: the PSD, the unwrapped phase and the wrapped angle of one short-time
Fourier transform, a wavelet scalogram, a recurrence plot and a waveform
diagram. Everything is NumPy/SciPy/PyWavelets, vectorised over any leading
dimensions (channels, windows), so a Raspberry Pi renders a window in
milliseconds without matplotlib.

Each image is made the same way: the representation's matrix (public here as
:func:`spectrogram`, :func:`scalogram`, :func:`recurrence_matrix`, so tests can
check it against library references) is resized to ``image_size`` with
precomputed separable weights (linear when enlarging, area-averaging when
shrinking), min-max normalised per window and coloured through a fixed
viridis lookup table. The waveform is drawn directly as an anti-aliased line
(:func:`waveform_coverage`). Every setting is a field of
:class:`RepresentationSpec`, which serialises to JSON so a model bundle carries
the exact settings it was trained with.

Flat windows
------------
A window whose samples are all equal (peak-to-peak 0, e.g. SpO2 reading a
steady 98 % for 10 s) has no shape to show, and a whole batch must not fail
because of it. Its images are deterministic and independent of the constant:
each of the five matrix representations is a uniform image of the colormap's
first colour (``VIRIDIS_LUT[0]``, dark purple), and the waveform is a
horizontal line through the middle of the image. More generally any matrix
whose values are all equal normalises to 0.

Examples
--------
>>> import numpy as np
>>> from edge.representations import RepresentationSpec, represent, to_model_input
>>> spec = RepresentationSpec()
>>> t = np.arange(spec.n_samples) / spec.sampling_rate
>>> windows = np.stack([np.sin(2 * np.pi * 1.2 * t), np.cos(2 * np.pi * 0.3 * t)])
>>> images = represent(windows, spec, sampling_rate=100.0)
>>> images.shape, images.dtype
((2, 6, 224, 224, 3), dtype('uint8'))
>>> to_model_input(images).shape
(2, 6, 3, 224, 224)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pywt

from edge._viridis import VIRIDIS_LUT

__all__ = [
    "REPRESENTATIONS",
    "RepresentationSpec",
    "VIRIDIS_LUT",
    "recurrence_matrix",
    "represent",
    "scalogram",
    "scalogram_frequencies",
    "spectrogram",
    "spectrogram_frequencies",
    "to_model_input",
    "waveform_coverage",
]

#: The six representations, in the order Tiny-BioMoE's experts were trained on.
REPRESENTATIONS = (
    "spectrogram_angle",
    "spectrogram_phase",
    "spectrogram_psd",
    "recurrence",
    "scalogram",
    "waveform",
)

_SPECTROGRAM_MODES = {"spectrogram_psd": "psd", "spectrogram_phase": "phase", "spectrogram_angle": "angle"}
_DETRENDS = ("none", "constant", "linear")
_THRESHOLD_MODES = ("fraction", "percentile")
# pywt samples a wavelet on 2**precision points; 12 is pywt.cwt's default since PyWavelets 1.9.
_WAVELET_PRECISION = 12
# Longest window, samples (100 s at 1 kHz): the scalogram holds a complex row per scale of it
# (64 scales: about 100 MB), so longer windows would exhaust a device's memory.
_MAX_WINDOW_SAMPLES = 100_000


@dataclasses.dataclass(frozen=True)
class RepresentationSpec:
    """Every setting of the six representations, validated on construction.

    Sample counts (``stft_nperseg``, ``recurrence_points``...) are in samples,
    frequencies in Hz, durations in seconds, sizes in pixels. A spec is
    immutable and hashable; use :func:`dataclasses.replace` to derive one.

    Parameters
    ----------
    sampling_rate : float, default 100.0
        Sampling rate of the windows, Hz. :func:`represent` refuses windows
        declared at another rate.
    window_seconds : float, default 10.0
        Window length, s. ``window_seconds * sampling_rate`` must be a whole
        number of samples (:attr:`n_samples`); every window must have exactly
        that many.
    image_size : int, default 224
        Side of the square output images, pixels.
    stft_window : str, default "hann"
        Taper of each STFT segment, any name :func:`scipy.signal.get_window`
        accepts (periodic form, as :func:`scipy.signal.stft` uses).
    stft_nperseg : int, default 128
        STFT segment length, samples (1.28 s at 100 Hz).
    stft_noverlap : int, default 120
        Samples shared by consecutive segments (hop ``nperseg - noverlap``).
    stft_nfft : int or None, default None
        FFT length (zero-padding), at least ``stft_nperseg``; None means
        ``stft_nperseg``.
    stft_fmax_hz : float or None, default None
        Highest frequency kept in the spectrogram images, Hz; None keeps all
        up to ``sampling_rate / 2``. EDA, BVP and RESP carry little above
        5-10 Hz, so a crop gives their band more rows (raise ``stft_nfft``
        for finer ones).
    stft_detrend : {"constant", "linear", "none"}, default "constant"
        Trend removed from each segment before the FFT, as in
        :func:`scipy.signal.spectrogram`; "constant" keeps a large DC level
        (EDA) from dominating the image.
    psd_dynamic_range_db : float, default 80.0
        dB floor of the PSD: values more than this many dB below the window's
        maximum are clipped to the floor.
    scalogram_wavelet : str, default "cmor1.5-1.0"
        A continuous PyWavelets wavelet: "cmor1.5-1.0" (complex Morlet, smooth
        magnitude) or "morl" (real Morlet) are the usual choices.
    scalogram_fmin_hz, scalogram_fmax_hz : float, default 0.05, 5.0
        Frequency band of the scalogram, Hz; covers EDA, respiration and the
        heart rate with its first harmonics. ``0 < fmin < fmax < sampling_rate / 2``.
    scalogram_n_scales : int, default 64
        Number of wavelet scales (image rows), log-spaced in frequency.
    recurrence_points : int, default 224
        The window is area-resampled to this many points before the
        recurrence plot, so the plot costs ``points ** 2`` and not
        ``n_samples ** 2``.
    recurrence_dimension, recurrence_delay : int, default 1, 1
        Delay embedding (dimension, and delay in resampled points) of the
        resampled signal; dimension 1 is the plain signal.
    recurrence_threshold : float or None, default None
        None: the plot is the matrix of distances (unthresholded). A float
        makes it binary (1 = recurrence, distance at most the threshold),
        read according to ``recurrence_threshold_mode``.
    recurrence_threshold_mode : {"fraction", "percentile"}, default "fraction"
        "fraction": the threshold is a fraction in (0, 1) of the window's
        largest distance. "percentile": it is a percentile in (0, 100) of the
        window's distances (so about that share of points recur).
    waveform_line_width : float, default 2.0
        Width of the waveform line, pixels.
    waveform_line_rgb, waveform_background_rgb : tuple of 3 int
        Colours of the waveform line (default black) and background (default
        white), 0-255.

    Examples
    --------
    >>> spec = RepresentationSpec(recurrence_threshold=0.1)
    >>> RepresentationSpec.from_json(spec.to_json()) == spec
    True
    >>> spec.n_samples
    1000
    """

    sampling_rate: float = 100.0
    window_seconds: float = 10.0
    image_size: int = 224
    stft_window: str = "hann"
    stft_nperseg: int = 128
    stft_noverlap: int = 120
    stft_nfft: int | None = None
    stft_fmax_hz: float | None = None
    stft_detrend: str = "constant"
    psd_dynamic_range_db: float = 80.0
    scalogram_wavelet: str = "cmor1.5-1.0"
    scalogram_fmin_hz: float = 0.05
    scalogram_fmax_hz: float = 5.0
    scalogram_n_scales: int = 64
    recurrence_points: int = 224
    recurrence_dimension: int = 1
    recurrence_delay: int = 1
    recurrence_threshold: float | None = None
    recurrence_threshold_mode: str = "fraction"
    waveform_line_width: float = 2.0
    waveform_line_rgb: tuple[int, int, int] = (0, 0, 0)
    waveform_background_rgb: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self) -> None:
        set_field = functools.partial(object.__setattr__, self)
        for name in ("sampling_rate", "window_seconds", "psd_dynamic_range_db",
                     "scalogram_fmin_hz", "scalogram_fmax_hz", "waveform_line_width"):
            set_field(name, _positive_float(name, getattr(self, name)))
        for name, minimum in (("image_size", 8), ("stft_nperseg", 2), ("scalogram_n_scales", 2),
                              ("recurrence_points", 2), ("recurrence_dimension", 1),
                              ("recurrence_delay", 1), ("stft_noverlap", 0)):
            set_field(name, _integer(name, getattr(self, name), minimum))
        for name in ("waveform_line_rgb", "waveform_background_rgb"):
            set_field(name, _rgb(name, getattr(self, name)))
        for name, allowed in (("stft_detrend", _DETRENDS), ("recurrence_threshold_mode", _THRESHOLD_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}")

        exact_samples = self.window_seconds * self.sampling_rate
        if not exact_samples <= _MAX_WINDOW_SAMPLES:
            raise ValueError(
                f"window_seconds x sampling_rate must be at most {_MAX_WINDOW_SAMPLES} samples; got "
                f"{self.window_seconds:g} s x {self.sampling_rate:g} Hz = {exact_samples:g} samples"
            )
        if abs(exact_samples - round(exact_samples)) > 1e-6:
            raise ValueError(
                f"window_seconds x sampling_rate must be a whole number of samples; got "
                f"{self.window_seconds} s x {self.sampling_rate} Hz = {exact_samples:g} samples"
            )
        n_samples = self.n_samples
        if self.stft_nperseg > n_samples:
            raise ValueError(f"stft_nperseg must be at most the window length {n_samples} samples; "
                             f"got {self.stft_nperseg}")
        if self.stft_noverlap >= self.stft_nperseg:
            raise ValueError(f"stft_noverlap must be smaller than stft_nperseg={self.stft_nperseg}; "
                             f"got {self.stft_noverlap}")
        if self.stft_nfft is not None:
            set_field("stft_nfft", _integer("stft_nfft", self.stft_nfft, self.stft_nperseg))
        _check_stft_window(self.stft_window, self.stft_nperseg)
        if self.stft_fmax_hz is not None:
            set_field("stft_fmax_hz", _positive_float("stft_fmax_hz", self.stft_fmax_hz))
            resolution = self.sampling_rate / (self.stft_nfft or self.stft_nperseg)
            if not resolution <= self.stft_fmax_hz <= self.sampling_rate / 2:
                raise ValueError(
                    f"stft_fmax_hz must be between the frequency resolution {resolution:g} Hz "
                    f"(sampling_rate / nfft) and sampling_rate / 2 = {self.sampling_rate / 2:g} Hz; "
                    f"got {self.stft_fmax_hz:g}"
                )
        _check_wavelet(self.scalogram_wavelet)
        nyquist = self.sampling_rate / 2
        if not self.scalogram_fmin_hz < self.scalogram_fmax_hz < nyquist:
            raise ValueError(
                f"scalogram band must satisfy 0 < scalogram_fmin_hz < scalogram_fmax_hz < "
                f"sampling_rate / 2 = {nyquist:g} Hz; got {self.scalogram_fmin_hz:g} to "
                f"{self.scalogram_fmax_hz:g} Hz"
            )
        if self.recurrence_points > n_samples:
            raise ValueError(f"recurrence_points must be at most the window length {n_samples} "
                             f"samples; got {self.recurrence_points}")
        if self.n_recurrence_vectors < 2:
            raise ValueError(
                f"recurrence_dimension={self.recurrence_dimension} with recurrence_delay="
                f"{self.recurrence_delay} leaves {self.n_recurrence_vectors} embedded vectors of "
                f"{self.recurrence_points} points; lower them or raise recurrence_points"
            )
        if self.recurrence_threshold is not None:
            set_field("recurrence_threshold", _positive_float("recurrence_threshold", self.recurrence_threshold))
            upper = 1.0 if self.recurrence_threshold_mode == "fraction" else 100.0
            if not self.recurrence_threshold < upper:
                raise ValueError(
                    f"recurrence_threshold with recurrence_threshold_mode="
                    f"{self.recurrence_threshold_mode!r} must be in (0, {upper:g}); "
                    f"got {self.recurrence_threshold:g}"
                )
        if self.waveform_line_width > self.image_size / 4:
            raise ValueError(f"waveform_line_width must be at most image_size / 4 = "
                             f"{self.image_size / 4:g} pixels; got {self.waveform_line_width:g}")

    @property
    def n_samples(self) -> int:
        """Samples in one window: ``window_seconds * sampling_rate``."""
        return int(round(self.window_seconds * self.sampling_rate))

    @property
    def n_recurrence_vectors(self) -> int:
        """Side of the recurrence matrix: embedded vectors of the resampled window."""
        return self.recurrence_points - (self.recurrence_dimension - 1) * self.recurrence_delay

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (colours as lists)."""
        return {field.name: _jsonable(getattr(self, field.name)) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> RepresentationSpec:
        """Build a spec from :meth:`to_dict` output; missing keys take their defaults.

        Raises
        ------
        ValueError
            For keys that are not settings (a typo would otherwise be ignored
            silently) and for invalid values.
        """
        if not isinstance(settings, dict):
            raise ValueError(f"representation settings must be a JSON object / dict; got {type(settings).__name__}")
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"unknown representation settings {unknown}; known settings are {known}")
        return cls(**settings)

    def to_json(self, indent: int | None = 2) -> str:
        """The settings as a JSON object string."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> RepresentationSpec:
        """Inverse of :meth:`to_json`; invalid JSON raises ValueError."""
        try:
            settings = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"representation settings are not valid JSON: {exc}") from None
        return cls.from_dict(settings)


def represent(
    windows: Any,
    spec: RepresentationSpec,
    kinds: Sequence[str] = REPRESENTATIONS,
    *,
    sampling_rate: float,
) -> np.ndarray:
    """Render windows as RGB images, several representations in one call.

    The three spectrogram images share one STFT.

    Parameters
    ----------
    windows : array_like of float, shape (..., n_samples)
        Any leading dimensions (channels, windows); the last axis is time and
        must hold exactly ``spec.n_samples`` finite values.
    spec : RepresentationSpec
        Settings of every representation.
    kinds : sequence of str, default REPRESENTATIONS
        Representations to render, in output order; names from
        :data:`REPRESENTATIONS`.
    sampling_rate : float
        Sampling rate of ``windows``, Hz; must equal ``spec.sampling_rate``.

    Returns
    -------
    ndarray of uint8, shape (..., len(kinds), image_size, image_size, 3)
        RGB images. Frequency axes grow upward, time grows rightward. Flat
        windows give the deterministic images described in the module
        docstring.

    Raises
    ------
    ValueError
        For an unknown kind, a sampling rate other than the spec's, a wrong
        window length, or NaN/inf samples.

    See Also
    --------
    to_model_input : the float32 channels-first view the model eats.
    """
    kinds = _check_kinds(kinds)
    if not math.isclose(float(sampling_rate), spec.sampling_rate, rel_tol=1e-9):
        raise ValueError(
            f"windows are sampled at {sampling_rate:g} Hz but the representation spec expects "
            f"{spec.sampling_rate:g} Hz; resample the signal or use a spec with "
            f"sampling_rate={sampling_rate:g}"
        )
    signal = _check_windows(windows, spec)
    batch = signal.reshape(-1, spec.n_samples)
    is_flat = np.ptp(batch, axis=-1) == 0
    size = spec.image_size
    images = np.empty((batch.shape[0], len(kinds), size, size, 3), dtype=np.uint8)
    spectra = None
    for position, kind in enumerate(kinds):
        if kind == "waveform":
            images[:, position] = _paint_line(_waveform_coverage(batch, spec), spec)
            continue
        if kind in _SPECTROGRAM_MODES:
            if spectra is None:
                spectra = _stft(batch, spec)
            matrix = _spectrogram_from_stft(spectra, spec, _SPECTROGRAM_MODES[kind])
        elif kind == "scalogram":
            matrix = _scalogram(batch, spec)
        else:
            matrix = _recurrence(batch, spec)
        images[:, position] = _colourise(matrix, spec, is_flat, frequency_rows=kind != "recurrence")
    return images.reshape(signal.shape[:-1] + images.shape[1:])


def to_model_input(images: Any) -> np.ndarray:
    """The model's view of :func:`represent` output: float32, channels first, in [0, 1].

    Parameters
    ----------
    images : ndarray of uint8, shape (..., S, S, 3)

    Returns
    -------
    ndarray of float32, shape (..., 3, S, S)
        ``images / 255`` with the colour axis moved before the pixel axes.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim < 3 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be uint8 RGB of shape (..., S, S, 3) as represent() returns; "
            f"got {images.dtype} {images.shape}"
        )
    return np.moveaxis(images, -1, -3).astype(np.float32) * np.float32(1 / 255)


def spectrogram(windows: Any, spec: RepresentationSpec, mode: str = "psd") -> np.ndarray:
    """Short-time Fourier spectrogram of windows, one of three modes.

    Segments of ``stft_nperseg`` samples every ``nperseg - noverlap`` samples
    (no boundary padding), detrended, tapered by ``stft_window`` and
    transformed with a one-sided FFT of ``stft_nfft`` points, as
    :func:`scipy.signal.spectrogram` does.

    Parameters
    ----------
    windows : array_like of float, shape (..., n_samples)
    spec : RepresentationSpec
    mode : {"psd", "phase", "angle"}
        "psd": power spectral density in dB (10 log10 of the one-sided
        density, per Hz), clipped at ``psd_dynamic_range_db`` below each
        window's maximum (within the kept band). "angle": the wrapped phase in (-pi, pi]. "phase":
        the phase unwrapped along the frequency axis (as matplotlib's
        ``specgram`` and scipy do).

    Returns
    -------
    ndarray of float64, shape (..., n_frequencies, n_frames)
        Rows follow :func:`spectrogram_frequencies` (ascending), columns time.
    """
    if mode not in _SPECTROGRAM_MODES.values():
        raise ValueError(f"mode must be one of {tuple(_SPECTROGRAM_MODES.values())}; got {mode!r}")
    return _spectrogram_from_stft(_stft(_check_windows(windows, spec), spec), spec, mode)


def spectrogram_frequencies(spec: RepresentationSpec) -> np.ndarray:
    """Frequencies of the :func:`spectrogram` rows, Hz, ascending from 0 to ``stft_fmax_hz``."""
    frequencies = np.fft.rfftfreq(spec.stft_nfft or spec.stft_nperseg, d=1 / spec.sampling_rate)
    return frequencies if spec.stft_fmax_hz is None else frequencies[frequencies <= spec.stft_fmax_hz]


def scalogram(windows: Any, spec: RepresentationSpec) -> np.ndarray:
    """Magnitude of the continuous wavelet transform of windows, after removing each window's mean.

    Equal to ``abs(pywt.cwt(windows - mean, scales, spec.scalogram_wavelet)[0])``
    with the scales of :func:`scalogram_frequencies`, but computed as one
    batched FFT product with a filter bank that is built (from PyWavelets'
    integrated wavelet, exactly as :func:`pywt.cwt` builds it) once per spec.
    That is over 20x faster than :func:`pywt.cwt` even with ``method="fft"``
    (``benchmarks/bench_representations.py``): its per-scale loop convolves
    with wavelets far longer than the window at low frequencies.

    Departure from :func:`pywt.cwt`: the mean is removed first. A wavelet
    longer than the window sees a constant offset as a step at the window's
    edges, so without it the same pulse gives another image on a sensor with
    another DC level (a raw PPG's ADC counts); with it the image depends on
    the signal's shape only, like the other representations.

    Parameters
    ----------
    windows : array_like of float, shape (..., n_samples)
    spec : RepresentationSpec

    Returns
    -------
    ndarray of float64, shape (..., scalogram_n_scales, n_samples)
        Rows follow :func:`scalogram_frequencies` (ascending), columns time.
    """
    return _scalogram(_check_windows(windows, spec), spec)


def scalogram_frequencies(spec: RepresentationSpec) -> np.ndarray:
    """Frequencies of the :func:`scalogram` rows, Hz: log-spaced, ascending.

    The wavelet scale of a row is
    ``pywt.frequency2scale(spec.scalogram_wavelet, frequency / spec.sampling_rate)``.
    """
    return np.geomspace(spec.scalogram_fmin_hz, spec.scalogram_fmax_hz, spec.scalogram_n_scales)


def recurrence_matrix(windows: Any, spec: RepresentationSpec) -> np.ndarray:
    """Recurrence matrix of windows: distances between embedded states.

    The window is area-resampled to ``recurrence_points`` points (each point
    the mean of the signal over its share of the window), delay-embedded
    (vector ``k`` is ``(r[k], r[k + delay], ..., r[k + (dimension - 1) delay])``)
    and the Euclidean distance of every pair of vectors is taken.

    Parameters
    ----------
    windows : array_like of float, shape (..., n_samples)
    spec : RepresentationSpec

    Returns
    -------
    ndarray of float64, shape (..., m, m), ``m = spec.n_recurrence_vectors``
        Distances (``recurrence_threshold`` None), or 1.0 where the distance
        is at most the threshold and 0.0 elsewhere.
    """
    return _recurrence(_check_windows(windows, spec), spec)


def waveform_coverage(windows: Any, spec: RepresentationSpec) -> np.ndarray:
    """Anti-aliased line coverage of the waveform diagram, in [0, 1].

    The window, min-max scaled (maximum at the top, a margin of half the line
    width plus half a pixel), is a polyline across the image width. In each
    pixel column it is represented by a vertical stroke at the column centre
    spanning the rows the polyline crosses there (within half a pixel of the
    true curve). A pixel's coverage is ``width / 2 + 0.5 - d`` clipped to
    [0, 1], with ``d`` its centre's distance to the nearest stroke: a
    box-filtered line of ``waveform_line_width`` pixels whose edges take
    intermediate values (anti-aliased) in every direction. A flat window is a
    horizontal line through the middle.

    Parameters
    ----------
    windows : array_like of float, shape (..., n_samples)
    spec : RepresentationSpec

    Returns
    -------
    ndarray of float32, shape (..., image_size, image_size)
        Row 0 is the top of the image. :func:`represent` blends
        ``waveform_background_rgb`` to ``waveform_line_rgb`` by it.
    """
    signal = _check_windows(windows, spec)
    coverage = _waveform_coverage(signal.reshape(-1, spec.n_samples), spec)
    return coverage.reshape(signal.shape[:-1] + coverage.shape[1:])


# --- representation matrices (batch of shape (B, n_samples) in, float64 out) ---


def _stft(batch: np.ndarray, spec: RepresentationSpec) -> np.ndarray:
    """Unscaled one-sided STFT up to ``stft_fmax_hz``, shape (..., n_frequencies, n_frames)."""
    hop = spec.stft_nperseg - spec.stft_noverlap
    segments = np.lib.stride_tricks.sliding_window_view(batch, spec.stft_nperseg, axis=-1)[..., ::hop, :]
    if spec.stft_detrend == "constant":
        segments = segments - segments.mean(axis=-1, keepdims=True)
    elif spec.stft_detrend == "linear":
        from scipy.signal import detrend  # deferred, see _stft_taper

        segments = detrend(segments, axis=-1, type="linear")
    taper = _stft_taper(spec.stft_window, spec.stft_nperseg)
    spectra = np.fft.rfft(segments * taper, n=spec.stft_nfft or spec.stft_nperseg, axis=-1)
    return np.swapaxes(spectra[..., : spectrogram_frequencies(spec).size], -1, -2)


def _spectrogram_from_stft(spectra: np.ndarray, spec: RepresentationSpec, mode: str) -> np.ndarray:
    if mode == "angle":
        return np.angle(spectra)
    if mode == "phase":
        return np.unwrap(np.angle(spectra), axis=-2)
    taper = _stft_taper(spec.stft_window, spec.stft_nperseg)
    density = np.abs(spectra) ** 2 / (spec.sampling_rate * np.sum(taper**2))
    # One-sided: double every bin that has a negative-frequency twin (not DC, not Nyquist).
    frequencies = spectrogram_frequencies(spec)
    density[..., (frequencies > 0) & (frequencies < spec.sampling_rate / 2), :] *= 2
    decibels = 10 * np.log10(np.maximum(density, np.finfo(np.float64).tiny))
    floor = decibels.max(axis=(-2, -1), keepdims=True) - spec.psd_dynamic_range_db
    return np.maximum(decibels, floor)


def _scalogram(batch: np.ndarray, spec: RepresentationSpec) -> np.ndarray:
    filters, n_fft, is_complex = _wavelet_filter_bank(spec)
    n = spec.n_samples
    batch = batch - batch.mean(axis=-1, keepdims=True)
    if is_complex:
        coefficients = np.fft.ifft(np.fft.fft(batch, n_fft, axis=-1)[..., None, :] * filters, axis=-1)
    else:
        coefficients = np.fft.irfft(np.fft.rfft(batch, n_fft, axis=-1)[..., None, :] * filters, n_fft, axis=-1)
    return np.abs(coefficients[..., n - 1 : 2 * n - 1])


def _next_fast_len(size: int) -> int:
    """The smallest 2^a 3^b 5^c >= ``size``: a length pocketfft transforms fast.

    NumPy's FFT (the same pocketfft as :mod:`scipy.fft`) is used rather than
    SciPy's so that the device never imports SciPy for the default images:
    ``python -m benchmarks.run_all`` measured the monitor's import time
    257 -> 133 ms and its peak memory 254 -> 234 MB. This is
    ``scipy.fft.next_fast_len(size, real=True)``.
    """
    best = 1 << max(0, (size - 1).bit_length())
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35 << max(0, (-(-size // power35) - 1).bit_length())
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


@functools.lru_cache(maxsize=8)
def _wavelet_filter_bank(spec: RepresentationSpec) -> tuple[np.ndarray, int, bool]:
    """FFTs of pywt.cwt's per-scale kernels, cut to the taps one window can reach.

    pywt.cwt convolves the window with the integrated wavelet resampled at
    each scale, differentiates and keeps the centre. Folding the difference
    into the kernel gives one linear filter per scale; output sample t needs
    kernel taps -(n-1)..(n-1) only, so a (2n-1)-tap kernel and an FFT of at
    least 2n-1 points reproduce pywt.cwt exactly (wrap-around lands outside
    the kept centre).
    """
    wavelet = pywt.ContinuousWavelet(spec.scalogram_wavelet)
    n = spec.n_samples
    scales = pywt.frequency2scale(wavelet, scalogram_frequencies(spec) / spec.sampling_rate)
    integral, grid = pywt.integrate_wavelet(wavelet, precision=_WAVELET_PRECISION)
    is_complex = bool(wavelet.complex_cwt)
    if is_complex:
        integral = np.conj(integral)
    step, support = grid[1] - grid[0], grid[-1] - grid[0]
    lags = np.arange(-(n - 1), n)
    kernels = np.zeros((len(scales), 2 * n - 1), dtype=integral.dtype)
    for row, scale in enumerate(scales):
        taps = (np.arange(scale * support + 1) / (scale * step)).astype(int)
        resampled = integral[taps[taps < integral.size]][::-1]
        if resampled.size < 3:
            raise ValueError(
                f"scalogram_fmax_hz={spec.scalogram_fmax_hz:g} Hz needs a wavelet scale of {scale:.3g} "
                f"samples, too small to sample {spec.scalogram_wavelet!r}; lower scalogram_fmax_hz"
            )
        derivative = -np.sqrt(scale) * np.diff(resampled, prepend=0, append=0)
        index = lags + (resampled.size - 2) // 2 + 1
        inside = (index >= 0) & (index < derivative.size)
        kernels[row, inside] = derivative[index[inside]]
    n_fft = _next_fast_len(2 * n - 1)
    transform = np.fft.fft if is_complex else np.fft.rfft
    filters = transform(kernels, n_fft, axis=-1)
    filters.setflags(write=False)
    return filters, n_fft, is_complex


def _recurrence(batch: np.ndarray, spec: RepresentationSpec) -> np.ndarray:
    points = _resample(batch, spec.recurrence_points, axis=-1)
    n_vectors, delay = spec.n_recurrence_vectors, spec.recurrence_delay
    squared = np.zeros(points.shape[:-1] + (n_vectors, n_vectors))
    for lag in range(0, spec.recurrence_dimension * delay, delay):
        coordinate = points[..., lag : lag + n_vectors]
        squared += (coordinate[..., :, None] - coordinate[..., None, :]) ** 2
    distances = np.sqrt(squared)
    if spec.recurrence_threshold is None:
        return distances
    if spec.recurrence_threshold_mode == "fraction":
        radius = spec.recurrence_threshold * distances.max(axis=(-2, -1), keepdims=True)
    else:
        radius = np.percentile(distances, spec.recurrence_threshold, axis=(-2, -1), keepdims=True)
    return (distances <= radius).astype(np.float64)


def _waveform_coverage(batch: np.ndarray, spec: RepresentationSpec) -> np.ndarray:
    size, width = spec.image_size, spec.waveform_line_width
    low = batch.min(axis=-1, keepdims=True)
    span = batch.max(axis=-1, keepdims=True) - low
    scaled = np.divide(batch - low, span, out=np.full_like(batch, 0.5), where=span > 0)
    margin = width / 2 + 0.5
    rows = margin + (1 - scaled) * (size - 2 * margin)  # row coordinate; pixel r spans [r, r + 1)
    left, weight, starts, has_samples = _column_geometry(spec.n_samples, size)
    # Polyline height where it crosses each column boundary, then the extent within each column.
    edges = rows[..., left] * (1 - weight) + rows[..., left + 1] * weight
    top = np.minimum(edges[..., :-1], edges[..., 1:])
    bottom = np.maximum(edges[..., :-1], edges[..., 1:])
    top = np.where(has_samples, np.minimum(top, np.minimum.reduceat(rows, starts, axis=-1)), top)
    bottom = np.where(has_samples, np.maximum(bottom, np.maximum.reduceat(rows, starts, axis=-1)), bottom)
    centres = np.arange(size, dtype=np.float32)[:, None] + np.float32(0.5)
    top = top.astype(np.float32)[..., None, :]
    bottom = bottom.astype(np.float32)[..., None, :]
    vertical = np.maximum(np.maximum(top - centres, centres - bottom), 0)  # to the own column's stroke
    own = vertical**2
    squared = own.copy()
    reach = width / 2 + 0.5
    for offset in range(1, math.ceil(reach)):  # strokes of neighbouring columns, `offset` pixels away
        neighbour = own + np.float32(offset**2)
        squared[..., offset:] = np.minimum(squared[..., offset:], neighbour[..., :-offset])
        squared[..., :-offset] = np.minimum(squared[..., :-offset], neighbour[..., offset:])
    return np.clip(np.float32(reach) - np.sqrt(squared), 0, 1)


@functools.lru_cache(maxsize=8)
def _column_geometry(n_samples: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where the waveform's samples fall among ``size`` pixel columns.

    Sample i sits at x = (i + 0.5) size / n_samples. Returns, for each column
    boundary x = 0..size, the sample left of it and the interpolation weight
    of the next one; and for each column the first sample inside it (for
    ``reduceat``) and whether it holds any.
    """
    position = np.arange(size + 1) * n_samples / size - 0.5  # boundaries in sample units
    left = np.clip(np.floor(position).astype(int), 0, n_samples - 2)
    weight = np.clip(position - left, 0, 1)
    column_of_sample = np.floor((np.arange(n_samples) + 0.5) * size / n_samples).astype(int)
    first = np.searchsorted(column_of_sample, np.arange(size + 1))
    has_samples = first[1:] > first[:-1]
    starts = np.minimum(first[:-1], n_samples - 1)
    return left, weight, starts, has_samples


# --- image path: normalise -> resize -> colour ---


def _colourise(matrix: np.ndarray, spec: RepresentationSpec, is_flat: np.ndarray, frequency_rows: bool) -> np.ndarray:
    """Resize each (H, W) matrix to the image size, min-max normalise it, look up viridis.

    Normalising after the resize makes every image span the whole colormap
    (interpolation would otherwise pull single-cell extremes inward).
    """
    resized = _resize(matrix.astype(np.float32), spec.image_size, flip_rows=frequency_rows)
    low = resized.min(axis=(-2, -1), keepdims=True)
    span = resized.max(axis=(-2, -1), keepdims=True) - low
    span[is_flat] = 0  # flat windows: a uniform image of VIRIDIS_LUT[0]
    unit = np.divide(resized - low, span, out=np.zeros_like(resized), where=span > 0)
    index = np.clip(unit * 256, 0, 255).astype(np.uint8)  # matplotlib's binning of [0, 1]
    return VIRIDIS_LUT[index]


def _resize(images: np.ndarray, size: int, flip_rows: bool) -> np.ndarray:
    """Separable resize of (..., H, W) to (..., size, size); optionally upside down."""
    images = _resample(images, size, axis=-1)
    return _resample(images, size, axis=-2, reverse=flip_rows)


def _resample(values: np.ndarray, n_out: int, axis: int, reverse: bool = False) -> np.ndarray:
    """Resample ``values`` along ``axis`` (-1 or -2) to ``n_out`` cells, optionally reversed.

    A weighted sum of a few gathered neighbours per output cell (the taps of
    :func:`_resampling_taps`), in a fixed order: no BLAS call, whose thread
    pool stalls on a busy CPU, and bit-identical results on every machine.
    """
    n_in = values.shape[axis]
    if n_in == n_out and not reverse:
        return values
    indices, weights = _resampling_taps(n_in, n_out)
    if reverse:
        indices, weights = indices[:, ::-1], weights[:, ::-1]
    weights = weights.astype(values.dtype, copy=False)
    if axis == -2:
        weights = weights[..., None]
    resampled = np.take(values, indices[0], axis=axis) * weights[0]
    for tap in range(1, len(indices)):
        resampled += np.take(values, indices[tap], axis=axis) * weights[tap]
    return resampled


@functools.lru_cache(maxsize=32)
def _resampling_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights, each (n_taps, n_out), resampling n_in cells to n_out.

    Enlarging: linear interpolation between cell centres (centres at i + 0.5,
    edges clamped), 2 taps. Shrinking: area averaging, each output cell the
    mean of the input over the interval it covers (anti-aliased), about
    ``n_in / n_out + 1`` taps. The weights of an output cell sum to 1.
    """
    if n_out >= n_in:
        source = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        left = np.minimum(np.floor(source).astype(int), max(n_in - 2, 0))
        fraction = source - left
        dense = np.zeros((n_out, n_in))
        dense[np.arange(n_out), left] = 1 - fraction
        dense[np.arange(n_out), np.minimum(left + 1, n_in - 1)] += fraction
    else:
        edges = np.arange(n_out + 1) * n_in / n_out
        cells = np.arange(n_in)
        overlap = np.minimum(edges[1:, None], cells + 1) - np.maximum(edges[:-1, None], cells)
        dense = np.maximum(overlap, 0) * n_out / n_in
    n_taps = int((dense > 0).sum(axis=1).max())
    sources = np.argsort(dense <= 0, axis=1, kind="stable")[:, :n_taps]  # contributing cells first
    indices, weights = sources.T.copy(), np.take_along_axis(dense, sources, axis=1).T.copy()
    indices.setflags(write=False)
    weights.setflags(write=False)
    return indices, weights


def _paint_line(coverage: np.ndarray, spec: RepresentationSpec) -> np.ndarray:
    background = np.asarray(spec.waveform_background_rgb, dtype=np.float32)
    line = np.asarray(spec.waveform_line_rgb, dtype=np.float32)
    return np.rint(background + coverage[..., None] * (line - background)).astype(np.uint8)


# --- validation ---


def _check_windows(windows: Any, spec: RepresentationSpec) -> np.ndarray:
    """Windows as a float64 array (..., n_samples), or a ValueError saying what is wrong."""
    array = np.asarray(windows)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"windows must be a real numeric array; got dtype {array.dtype}")
    if array.ndim == 0 or array.shape[-1] != spec.n_samples:
        got = "a scalar" if array.ndim == 0 else f"{array.shape[-1]} samples (shape {array.shape})"
        raise ValueError(
            f"windows must have exactly {spec.n_samples} samples on the last axis "
            f"(window_seconds={spec.window_seconds:g} s x sampling_rate={spec.sampling_rate:g} Hz); "
            f"got {got}. Cut or pad the signal into windows of that length, or use a spec whose "
            f"window_seconds matches"
        )
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)
        raise ValueError(
            f"windows contain {len(bad)} NaN or inf sample(s), first at index {tuple(int(i) for i in bad[0])}; "
            f"interpolate short gaps or drop those windows"
        )
    return array


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = [kind for kind in kinds if kind not in REPRESENTATIONS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty sequence of names from {REPRESENTATIONS}; got {list(kinds)}")
    return kinds


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def _integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)


def _rgb(name: str, value: Any) -> tuple[int, int, int]:
    try:
        channels = tuple(value)
    except TypeError:
        channels = ()
    if len(channels) != 3 or not all(
        isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c <= 255 for c in channels
    ):
        raise ValueError(f"{name} must be three integers 0-255 (red, green, blue); got {value!r}")
    return tuple(int(c) for c in channels)


def _check_stft_window(name: str, nperseg: int) -> None:
    if not isinstance(name, str):
        raise ValueError(f"stft_window must be a window name such as 'hann'; got {name!r}")
    if name == "hann":
        return  # the default, valid for any length; checking it would import scipy.signal at every bundle load
    try:
        _stft_taper(name, nperseg)
    except ValueError as exc:
        raise ValueError(f"stft_window {name!r} is not a scipy.signal.get_window name ({exc}); "
                         f"try 'hann' or 'hamming'") from None


@functools.lru_cache(maxsize=8)
def _stft_taper(name: str, nperseg: int) -> np.ndarray:
    # Deferred: importing scipy.signal took ~0.4 s, most of the monitor's
    # start-up (`python -m benchmarks.monitor_path load`), and only the
    # spectrogram images need it.
    from scipy.signal import get_window

    taper = get_window(name, nperseg)
    taper.setflags(write=False)
    return taper


def _check_wavelet(name: str) -> None:
    problem = None
    if not isinstance(name, str):
        problem = "not a string"
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # pywt warns (and guesses) on 'cmor' without parameters
                pywt.ContinuousWavelet(name)
        except (ValueError, Warning) as exc:
            problem = str(exc)
    if problem:
        raise ValueError(f"scalogram_wavelet must name a continuous PyWavelets wavelet such as "
                         f"'cmor1.5-1.0' or 'morl'; got {name!r} ({problem})")


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
