"""A streaming corpus of biosignal images for multi-task pretraining.

The paper pretrained Tiny-BioMoE on 4.4 million ECG, EMG and EEG images;
here seeded generators stand in, and the corpus is made on demand: image
``i`` of a :class:`StreamingCorpus` is window ``i // R`` in representation
``i % R`` (``R`` representations), and window ``w`` is drawn from
``numpy.random.default_rng([seed, w])`` alone, so any DataLoader worker on
any rank makes exactly the same image ``i`` and the corpus is never held in
memory: its size is a number, from thousands to millions of images. Windows
cycle through seven signal types, each driven by one rate-like parameter drawn
uniformly from a physiological range, rendered at 100 Hz in 10 s windows and
turned into images by :func:`edge.representations.represent` (the device's
own code, so pretraining sees exactly the images the monitor makes).

ECG, EMG and EEG are deliberately simple generators; PPG, RESP, EDA and SpO2
are a random resting subject of the project's physiology model
(:mod:`firmware_bridge.physiology`, the model behind ``biomoe synth`` and the
simulated hub, with its artefacts), with the drawn parameter in place of the
subject's own rate:

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
``spo2``    the physiology model's finger oximeter (1 Hz,   resting SpO2
            whole percent, held)                            90-100 %
==========  ==============================================  ===============

Rates and types are not what separates pain levels; the size and timing of
responses within a window are. So half of the EDA, PPG, RESP and SpO2
windows carry a planted event, with exact targets (the generator knows what it
planted): presence, onset (s from the window's start) and amplitude.

==========================  ======  ==============================================  ===================
event                       type    how it is planted                               amplitude
==========================  ======  ==============================================  ===================
``scr``                     eda     a pain episode of the physiology model: its     evoked SCR height,
                                    evoked SCR (with its extra SCRs and tonic        fraction of SCL
                                    rise); onset = the SCR's impulse                 0-1
``heart_rate_step``         ppg     a pain episode: the heart rate steps up         bpm, 0-40
                                    (time constant 1.5 s) and holds
``pulse_amplitude_change``  ppg     the same episode's vasoconstriction, 1 s after  fraction of pulse
                                    the heart-rate step                             amplitude lost, 0-1
``breathing_pause``         resp    the belt held at the end of an expiration       duration, 2-6 s
``desaturation``            spo2    a pain episode: SpO2 falls (time constant 4 s)  % points, 0-4
==========================  ======  ==============================================  ===================

A planted episode's response (in the event's own channel, after that
channel's delay) starts 1-7 s into the window (+- 0.3 s, the
model's latency jitter; the target is the exact onset); its strength scale
is log-uniform in 0.3-3 (times the model's per-episode spread), every subject
a responder. A pause starts at the lowest point of the breath after a time
drawn in 1-7 s.

Examples
--------
>>> from edge.representations import RepresentationSpec
>>> corpus = StreamingCorpus(12, ("scalogram",), RepresentationSpec(), seed=0)
>>> sample = corpus[3]
>>> sample["image"].shape, SIGNAL_TYPES[sample["signal_type"]]
((224, 224, 3), 'ppg')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import scipy.signal

from edge.representations import REPRESENTATIONS, RepresentationSpec, represent
from firmware_bridge.physiology import (
    PAIN_LEVELS,
    RESPONSE_DELAYS_S,
    RESPONSES,
    draw_profile,
    effect_size,
    simulate_recording,
)

__all__ = [
    "EVENTS",
    "EVENT_AMPLITUDE_RANGES",
    "EVENT_SIGNALS",
    "PARAMETER_RANGES",
    "SIGNAL_TYPES",
    "StreamingCorpus",
    "generate_signal",
]

#: Signal types of the corpus, in the order of the signal-type head's classes.
SIGNAL_TYPES: tuple[str, ...] = ("ecg", "emg", "eeg", "ppg", "resp", "eda", "spo2")

#: Range of each signal type's generating parameter (unit in the module table).
PARAMETER_RANGES: dict[str, tuple[float, float]] = {
    "ecg": (40.0, 160.0),
    "emg": (6.0, 60.0),
    "eeg": (4.0, 25.0),
    "ppg": (40.0, 160.0),
    "resp": (5.0, 35.0),
    "eda": (0.5, 15.0),
    "spo2": (90.0, 100.0),
}

#: Planted events, in the order of the event head's outputs.
EVENTS: tuple[str, ...] = ("scr", "heart_rate_step", "pulse_amplitude_change", "breathing_pause", "desaturation")

#: The signal type that carries each event.
EVENT_SIGNALS: dict[str, str] = {
    "scr": "eda", "heart_rate_step": "ppg", "pulse_amplitude_change": "ppg", "breathing_pause": "resp",
    "desaturation": "spo2",
}

#: Range of each event's amplitude (unit in the module table); targets are scaled to [0, 1] over it.
EVENT_AMPLITUDE_RANGES: dict[str, tuple[float, float]] = {
    "scr": (0.0, 1.0),
    "heart_rate_step": (0.0, 40.0),
    "pulse_amplitude_change": (0.0, 1.0),
    "breathing_pause": (2.0, 6.0),
    "desaturation": (0.0, 4.0),
}

EVENT_PROBABILITY = 0.5  # share of EDA, PPG, RESP and SpO2 windows with a planted event
_EVENT_ONSET_S = (1.0, 7.0)  # when a planted response starts in the window
_EVENT_SCALE = (0.3, 3.0)  # log-uniform response strength scale of a planted episode
_WARMUP_S = 20.0  # simulated before each physiology window


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


def _physiology(channel: str, profile_field: str, rng, n, fs, value, episode: bool, response: str = "heart"):
    """``n`` samples of ``channel`` from the physiology model: a random resting subject whose
    ``profile_field`` is ``value``, after a 20 s warm-up (so earlier SCRs decay into the window),
    with one pain episode whose ``response`` starts 1-7 s into the window when ``episode``.

    Returns the window and the :class:`~firmware_bridge.physiology.Recording` (its ``onsets``
    and ``strengths`` say what the episode planted).
    """
    profile = replace(draw_profile(rng), **{profile_field: value})
    warmup = int(_WARMUP_S * fs)
    onset_s, scale = rng.uniform(*_EVENT_ONSET_S), float(np.exp(rng.uniform(*np.log(_EVENT_SCALE))))
    episodes = ()
    if episode:
        # every channel answers at the drawn scale (times the model's per-episode spread), so the
        # planted response is never a near non-responder's invisible one
        profile = replace(profile, responsiveness=1.0, gains=dict.fromkeys(RESPONSES, 1.0))
        onset = warmup + int(round((onset_s - profile.latency_s - RESPONSE_DELAYS_S[response]) * fs))
        episodes = [(onset, warmup + n + 1, PAIN_LEVELS["high"])]
    recording = simulate_recording(n + warmup, rng, episodes, sampling_rate=fs, profile=profile, scale=scale)
    return recording.signals[channel][warmup:], recording


def _maybe_planted(channel: str, profile_field: str, rng, n, fs, value, response: str = "heart"):
    """:func:`_physiology` with an episode in :data:`EVENT_PROBABILITY` of the windows: the window and
    the Recording of its episode (None when none was planted)."""
    planted = rng.random() < EVENT_PROBABILITY
    signal, recording = _physiology(channel, profile_field, rng, n, fs, value, planted, response)
    return signal, recording if planted else None


def _onset_s(recording, response: str) -> float:
    """Seconds from the window's start to the planted episode's response in ``response``."""
    return float(recording.onsets[response][0]) / recording.sampling_rate - _WARMUP_S


def _eda(rng, n, fs, scr_rate):
    """EDA at spontaneous SCR rate ``scr_rate``; event: an evoked SCR (height as a fraction of the SCL)."""
    signal, recording = _maybe_planted("EDA", "scr_rate_per_min", rng, n, fs, scr_rate)
    if recording is None:
        return signal, {}
    height = float(effect_size(recording.effects, "scr_of_scl", recording.strengths["eda"][0]))
    return signal, {"scr": (_onset_s(recording, "eda"), height)}


def _ppg(rng, n, fs, heart_rate):
    """Finger PPG at ``heart_rate``; events: a heart-rate step (bpm) and the pulse-amplitude fall it brings."""
    signal, recording = _maybe_planted("BVP", "heart_rate_bpm", rng, n, fs, heart_rate)
    if recording is None:
        return signal, {}
    step = float(effect_size(recording.effects, "heart_rate_bpm", recording.strengths["heart"][0]))
    fall = 1 - float(np.exp(effect_size(recording.effects, "log_pulse_amplitude", recording.strengths["pulse"][0])))
    return signal, {
        "heart_rate_step": (_onset_s(recording, "heart"), step),
        "pulse_amplitude_change": (_onset_s(recording, "pulse"), fall),
    }


def _resp(rng, n, fs, breathing_rate):
    """Breathing belt at ``breathing_rate``; event: a pause (s) starting at the end of an expiration
    (the belt held at its lowest point of the breath after the drawn time)."""
    planted = rng.random() < EVENT_PROBABILITY
    duration = int(round(rng.uniform(*EVENT_AMPLITUDE_RANGES["breathing_pause"]) * fs))
    signal, recording = _physiology("RESP", "breathing_rate_per_min", rng, n, fs, breathing_rate, False)
    if not planted:
        return signal, {}
    start = int(round(rng.uniform(*_EVENT_ONSET_S) * fs))
    breath = int(60 / breathing_rate * fs)
    pause = start + int(np.argmin(signal[start : start + breath]))
    held = np.concatenate([signal[:pause], np.full(duration, signal[pause]), signal[pause:]])[:n]
    return held, {"breathing_pause": (pause / fs, duration / fs)}


def _spo2(rng, n, fs, saturation):
    """Finger oximeter at resting ``saturation``; event: the fall a pain episode brings (% points)."""
    signal, recording = _maybe_planted("SpO2", "spo2_percent", rng, n, fs, saturation, response="spo2")
    if recording is None:
        return signal, {}
    fall = -float(effect_size(recording.effects, "spo2_percent", recording.strengths["spo2"][0]))
    return signal, {"desaturation": (_onset_s(recording, "spo2"), fall)}


def _no_events(generate):
    return lambda rng, n, fs, value: (generate(rng, n, fs, value), {})


_GENERATORS = {
    "ecg": _no_events(_ecg),
    "emg": _no_events(_emg),
    "eeg": _no_events(_eeg),
    "ppg": _ppg,
    "resp": _resp,
    "eda": _eda,
    "spo2": _spo2,
}


def generate_signal(kind: str, rng: np.random.Generator, n_samples: int = 1000, sampling_rate: float = 100.0):
    """One window of one signal type, with its generating parameter and the events planted in it.

    Parameters
    ----------
    kind : str
        One of :data:`SIGNAL_TYPES`.
    rng : numpy.random.Generator
        Source of every random draw (the parameter and the events included).
    n_samples : int, default 1000
        Window length in samples.
    sampling_rate : float, default 100.0
        Hz.

    Returns
    -------
    signal : ndarray of float64, shape (n_samples,)
    parameter : float
        The generating parameter in its unit (see :data:`PARAMETER_RANGES`).
    events : dict of str to (float, float)
        Each planted event (a name from :data:`EVENTS`) -> (onset in s from the
        window's start, amplitude in its unit); empty when none was planted.
    """
    if kind not in _GENERATORS:
        raise ValueError(f"kind must be one of {SIGNAL_TYPES}; got {kind!r}")
    low, high = PARAMETER_RANGES[kind]
    parameter = float(rng.uniform(low, high))
    signal, events = _GENERATORS[kind](rng, n_samples, sampling_rate, parameter)
    return signal, parameter, events


class StreamingCorpus:
    """Images made on demand, each a pure function of ``(seed, index)`` (a map-style dataset).

    Image ``i`` is window ``(first + i) // R`` in representation ``(first + i) % R``;
    window ``w`` has signal type ``SIGNAL_TYPES[w % 7]`` and is drawn from
    ``numpy.random.default_rng([seed, w])``. ``first`` places a corpus further
    along the same sequence: a hold-out set starting at a window boundary after
    the training images shares no window with them.

    Parameters
    ----------
    size : int
        Images (>= 1).
    representations : sequence of str
        Names from :data:`edge.representations.REPRESENTATIONS`.
    spec : RepresentationSpec
        Image settings (the same as fine-tuning's and the device's).
    seed : int, default 0
    first : int, default 0
        Index of image 0 in the seed's sequence.

    Notes
    -----
    ``corpus[i]`` is a dict of NumPy values: ``image`` (uint8, (S, S, 3)),
    ``signal_type`` and ``representation`` (int64), ``parameter`` (float32,
    scaled to [0, 1] over :data:`PARAMETER_RANGES`) and, per event of
    :data:`EVENTS` (float32, shape (5,)): ``event_applicable`` (1 where the
    window's signal type carries that event), ``event_present``,
    ``event_onset`` (fraction of the window) and ``event_amplitude`` (scaled
    to [0, 1] over :data:`EVENT_AMPLITUDE_RANGES`), both 0 where absent.
    """

    def __init__(self, size: int, representations: Sequence[str], spec: RepresentationSpec, seed: int = 0,
                 first: int = 0):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an integer >= 1; got {size!r}")
        representations = tuple(representations)
        unknown = [name for name in representations if name not in REPRESENTATIONS]
        if unknown or not representations:
            raise ValueError(f"representations must be names from {REPRESENTATIONS}; got {list(representations)}")
        self.size, self.representations, self.spec, self.seed, self.first = size, representations, spec, seed, first

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < self.size:
            raise IndexError(f"image {index} of a corpus of {self.size}")
        window, representation = divmod(self.first + int(index), len(self.representations))
        kind = SIGNAL_TYPES[window % len(SIGNAL_TYPES)]
        spec = self.spec
        signal, parameter, events = generate_signal(
            kind, np.random.default_rng([self.seed, window]), spec.n_samples, spec.sampling_rate
        )
        image = represent(signal, spec, (self.representations[representation],), sampling_rate=spec.sampling_rate)[0]
        low, high = PARAMETER_RANGES[kind]
        targets = np.zeros((4, len(EVENTS)), dtype=np.float32)  # applicable, present, onset, amplitude
        duration_s = spec.n_samples / spec.sampling_rate
        for k, name in enumerate(EVENTS):
            targets[0, k] = EVENT_SIGNALS[name] == kind
            if name in events:
                onset_s, amplitude = events[name]
                low_a, high_a = EVENT_AMPLITUDE_RANGES[name]
                targets[1:, k] = 1.0, onset_s / duration_s, (amplitude - low_a) / (high_a - low_a)
        return {
            "image": image,
            "signal_type": np.int64(SIGNAL_TYPES.index(kind)),
            "representation": np.int64(representation),
            "parameter": np.float32((parameter - low) / (high - low)),
            "event_applicable": targets[0],
            "event_present": targets[1],
            "event_onset": targets[2],
            "event_amplitude": targets[3],
        }
