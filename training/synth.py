"""Synthetic cohorts in the AI4PAIN layout: a seeded model of pain physiology.

``biomoe synth --out data/synth`` writes ``train/`` (41 subjects),
``validation/`` (12) and ``test/`` (12), each with ``Eda/``, ``Bvp/``,
``Resp/`` and ``SpO2/`` folders of one CSV per subject, exactly as
:mod:`training.ai4pain` reads the real data set. It lets the whole pipeline
(pretraining, fine-tuning, fusion, export) run and be tested without the real
data, which is only released to challenge participants.

The session
-----------
Each subject is one continuous 100 Hz recording, cut into columns afterwards:
a baseline of 5,955-6,045 samples (about 60 s, six windows for the loader),
then 12 LOW and 12 HIGH TENS trials in random order, each 985-1,130 samples
long (1,040 +- 45; about one in five is shorter than 1,000 and gets padded by
the loader), separated by REST segments of about 40 s (3,500-4,500
samples). The columns are written in session order and named in one of the
exported styles, by subject id modulo 3 (``Baseline``/``LOW_3``/``REST_2``,
``7_Baseline_1``/``7_LOW_3``, or ``x7_BASELINE``/``x7_LOW_3``), padded with
empty cells or ``NaN`` (alternating every three ids), so any three or six
consecutive subjects exercise every quirk of the loader.

Per-subject physiology
----------------------
Drawn per subject, so raw levels differ more between subjects than pain
changes them within one:

- heart rate 72 +- 10 bpm (50-105), respiratory sinus arrhythmia 1-5 bpm,
  slow (60 s) and fast (4 s) heart-rate fluctuations of 3 and 1.5 bpm;
- breathing rate 15 +- 3 /min (8-24), rate fluctuating by 1.5 /min (30 s)
  and 1 /min (5 s), depth by 15 %, sighs (one breath 1.6-2.4 x deeper)
  about 0.4 /min;
- skin-conductance level log-normal around 4 uS (0.5-25 uS), drifting (10 %,
  300 s) and changing by -30 to +10 % over the session; spontaneous
  skin-conductance responses (SCRs) at 0.3-6 /min, height log-normal around
  0.05 x SCL;
- SpO2 97.3 +- 0.9 % (94.5-99.4), drifting 0.5 % (40 s), read at 1 Hz with
  0.25 % noise as a whole percent and held (step-like, as a pulse oximeter
  reports it at 100 Hz);
- pulse amplitude (log-normal, sd 0.4), dicrotic wave 0.2-0.5 of the
  systolic peak, amplitude fluctuations of 8 % (20 s) and 4 % (2 s), and
  breathing modulation of 7 %.

What pain changes, per modality
-------------------------------
A trial's response strength, per response channel ``m`` (EDA, heart rate,
pulse amplitude, breathing, SpO2), is ``s = scale x g x g_m x level x t x
t_m x h``: ``scale`` the difficulty (1 for "medium"), ``g`` the subject's
responsiveness (log-normal, sd 0.5; 12 % of subjects are near
non-responders, x 0.2), ``g_m`` the subject's gain for that channel
(log-normal, sd 0.7: some subjects answer with their skin, others with their
heart), ``level`` 1 for HIGH and 0.3-0.6 (per subject) for LOW, ``t`` and
``t_m`` trial-to-trial variation shared by all channels (sd 0.2) and per
channel (sd 0.45, both log-normal), and ``h`` habituation over the 24
trials (``exp(-k / H)``, ``H`` 60-150 trials). Responses start 1-3 s (per
subject, +- 0.3 s per trial) after the trial's onset, so they rise inside
the trial's first 10 s window, and fade during the REST that follows. At
``s = 1``:

- EDA: an evoked SCR of 0.25 x SCL (bi-exponential, rise 0.75 s, decay
  2.5-6 s per subject), on average 0.8 s extra SCRs of half that height at
  random times in the trial, and a tonic rise of 0.08 x SCL (time constant
  5 s);
- BVP: heart rate +15 bpm (time constant 1.5 s, twice) and pulse amplitude
  x exp(-0.6) (vasoconstriction, 1 s later, time constant 2.5 s, twice);
- RESP: breathing rate +6 /min and depth +40 % (time constant 2 s, twice),
  and a gasp at the response onset (one breath 1.6-2.4 x deeper) with
  probability min(0.8, 0.6 s);
- SpO2: -1 % (4 s later, time constant 4 s, twice): about the 1 %
  quantisation step and late in the window, so SpO2 carries little
  information (as reported for AI4PAIN).

Artefacts
---------
Motion bursts (0.1-2 /min per subject, 0.5-4 s long, independent of pain)
shake the PPG (1.5-4 x the pulse amplitude) and the breathing belt (0.5-2 x
the depth), press the EDA electrodes (0.3 uS) and make the oximeter read
2-6 % low. 15 % of subjects saturate the EDA amplifier at 0.3-1.5 uS above
their resting level (flat clipped tops); 10 % have a poor PPG contact (four
times the PPG noise). PPG (30 %, 5 s) and breathing-belt (30 %, 30 s)
baselines wander; every signal has white sensor noise.

Difficulty
----------
The aim is a task like the real one: learnable, far from trivially
separable, every modality informative but noisy, and fusion worth having.
Targets at "medium" for an ideal observer that knows which windows belong
to which subject (so it can normalise per subject): about 75-80 % 3-class
accuracy with all four signals, 55-65 % with EDA or BVP alone, about 50 %
with RESP and near chance with SpO2. For scale: the classes are 20/40/40 %,
so always answering one pain class scores 40 % accuracy and 0.19 macro-F1;
the real data's published baselines reach about 50 %.

Measured (``python -m training.synth_difficulty``: hand-made features,
per-subject z-scores, class-balanced logistic regression, trained on 41
train subjects and scored on 12 validation subjects; a lower bound on the
ideal observer), validation accuracy, seeds 0/1/2:

=========  ======  ======  ======  ====================
signals    seed 0  seed 1  seed 2  seed 0, no z-scores
=========  ======  ======  ======  ====================
EDA        56.7 %  63.6 %  62.2 %  39.2 %
BVP        57.8 %  50.8 %  62.5 %  51.9 %
RESP       50.0 %  50.6 %  52.8 %  45.0 %
SpO2       31.9 %  39.7 %  33.1 %  33.3 %
all four   66.1 %  69.7 %  70.6 %  52.8 %
=========  ======  ======  ======  ====================

(macro-F1 with all four: 0.66, 0.71, 0.70). Fusion beats the best single
signal by 6-8 points; without per-subject normalisation all four reach
only 52-56 % (subjects differ more than pain levels do). Seed 0 at "easy":
73.9 %, at "hard": 56.7 % with all four. The feature observer sits 5-10
points under the 75-80 % aimed for the ideal observer; most of its errors
confuse Low Pain with the other two classes.

Even knowing every trial's true strengths, Low and High overlap: choosing
the best threshold per subject on the mean log strength of the five
channels separates them 94 % of the time (mean over 59 subjects, seed 0).

Seeds
-----
A subject's recording depends only on ``(seed, subject_id)`` and the
difficulty (which scales the responses and changes no random draw), so the
same call writes byte-identical files, and the default subject ids make the
splits disjoint: train is numbered from 1, validation from 101, test from
201 (at most 100 subjects each unless ``first_subject_id`` is given).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from training.ai4pain import MODALITIES, SAMPLING_RATE
from training.errors import DataError

__all__ = [
    "DIFFICULTIES",
    "SPLIT_SIZES",
    "SubjectProfile",
    "SyntheticSubject",
    "configure_parser",
    "run",
    "synthesize_cohort",
    "synthesize_subject",
]

logger = logging.getLogger(__name__)

DIFFICULTIES: dict[str, float] = {"easy": 2.0, "medium": 1.0, "hard": 0.5}
"""Named difficulties: the factor ``scale`` on every pain response."""

SPLIT_SIZES: dict[str, int] = {"train": 41, "validation": 12, "test": 12}
"""Subjects per split in AI4PAIN 2025, the default cohort sizes."""

_FIRST_SUBJECT_ID = {"train": 1, "validation": 101, "test": 201}
_ID_BLOCK = 100
_TRIALS_PER_LEVEL = 12
_NAME_STYLES = ("plain", "prefixed", "x_upper")
_DECIMALS = {"Eda": 4, "Bvp": 4, "Resp": 4, "SpO2": 0}
_FS = SAMPLING_RATE

# Size of each pain response at strength s = 1 (the module docstring explains the model).
_EFFECT = {
    "scr_of_scl": 0.25,  # evoked SCR height, as a fraction of the subject's SCL
    "extra_scrs": 0.8,  # expected extra SCRs during the trial (each half the evoked height)
    "tonic_of_scl": 0.08,  # tonic EDA rise, fraction of SCL
    "heart_rate_bpm": 15.0,
    "log_pulse_amplitude": -0.6,  # vasoconstriction: pulse amplitude x exp(this)
    "breathing_rate_per_min": 6.0,
    "breathing_depth": 0.4,  # relative
    "gasp_probability": 0.6,  # capped at 0.8
    "spo2_percent": -1.0,
}


@dataclass(frozen=True)
class SubjectProfile:
    """Physiology and pain-response parameters of one synthetic subject (units in names)."""

    heart_rate_bpm: float
    rsa_bpm: float
    breathing_rate_per_min: float
    breathing_depth: float
    skin_conductance_us: float
    scl_session_change: float
    scr_rate_per_min: float
    scr_decay_s: float
    spo2_percent: float
    pulse_amplitude: float
    dicrotic_ratio: float
    ppg_noise: float
    responsiveness: float
    gains: dict[str, float]
    low_to_high: float
    latency_s: float
    habituation_trials: float
    motion_rate_per_min: float
    eda_ceiling_us: float
    name_style: str
    padding: str


@dataclass
class SyntheticSubject:
    """One synthetic subject: its profile, its session and its continuous recording.

    Attributes
    ----------
    subject_id : int
    profile : SubjectProfile
    names : list of str
        Column names in session order.
    bounds : list of (int, int)
        Sample range of each column within the recording.
    strengths : dict of str to ndarray
        Response strength ``s`` of each column per response (``"eda"``,
        ``"heart"``, ``"pulse"``, ``"resp"``, ``"spo2"``); 0 for baseline and REST.
    recording : dict of str to ndarray
        Continuous signal of each modality (float64, 100 Hz), before the CSV's rounding.
    """

    subject_id: int
    profile: SubjectProfile
    names: list[str]
    bounds: list[tuple[int, int]]
    strengths: dict[str, np.ndarray]
    recording: dict[str, np.ndarray]

    def columns(self, modality: str) -> dict[str, np.ndarray]:
        """Column name -> samples of ``modality``, in session order."""
        signal = self.recording[modality]
        return {name: signal[start:stop] for name, (start, stop) in zip(self.names, self.bounds)}


def _draw_profile(rng: np.random.Generator, subject_id: int) -> SubjectProfile:
    responsiveness = float(rng.lognormal(0.0, 0.5)) * (0.2 if rng.random() < 0.12 else 1.0)
    gains = {name: float(rng.lognormal(0.0, 0.7)) for name in ("eda", "heart", "pulse", "resp", "spo2")}
    scl = float(np.clip(rng.lognormal(np.log(4.0), 0.6), 0.5, 25.0))
    return SubjectProfile(
        heart_rate_bpm=float(np.clip(rng.normal(72, 10), 50, 105)),
        rsa_bpm=float(rng.uniform(1, 5)),
        breathing_rate_per_min=float(np.clip(rng.normal(15, 3), 8, 24)),
        breathing_depth=float(rng.lognormal(0.0, 0.3)),
        skin_conductance_us=scl,
        scl_session_change=float(rng.uniform(-0.3, 0.1)),
        scr_rate_per_min=float(np.clip(rng.lognormal(np.log(1.5), 0.6), 0.3, 6.0)),
        scr_decay_s=float(rng.uniform(2.5, 6.0)),
        spo2_percent=float(np.clip(rng.normal(97.3, 0.9), 94.5, 99.4)),
        pulse_amplitude=float(rng.lognormal(0.0, 0.4)),
        dicrotic_ratio=float(rng.uniform(0.2, 0.5)),
        ppg_noise=0.02 * (4.0 if rng.random() < 0.1 else 1.0),
        responsiveness=responsiveness,
        gains=gains,
        low_to_high=float(rng.uniform(0.3, 0.6)),
        latency_s=float(rng.uniform(1.0, 3.0)),
        habituation_trials=float(rng.uniform(60, 150)),
        motion_rate_per_min=float(np.clip(rng.lognormal(np.log(0.5), 0.7), 0.1, 2.0)),
        eda_ceiling_us=scl + float(rng.uniform(0.3, 1.5)) if rng.random() < 0.15 else np.inf,
        name_style=_NAME_STYLES[subject_id % len(_NAME_STYLES)],
        padding=("", "NaN")[subject_id // len(_NAME_STYLES) % 2],
    )


def _column_name(style: str, subject_id: int, kind: str, number: int) -> str:
    if style == "plain":
        return "Baseline" if kind == "baseline" else f"{kind.upper()}_{number}"
    if style == "prefixed":
        return f"{subject_id}_Baseline_1" if kind == "baseline" else f"{subject_id}_{kind.upper()}_{number}"
    return f"x{subject_id}_{kind.upper()}" if kind == "baseline" else f"x{subject_id}_{kind.upper()}_{number}"


def _session(rng: np.random.Generator, profile: SubjectProfile, subject_id: int):
    """Column names, kinds and sample bounds of one session, in order."""
    levels = rng.permutation(np.repeat(["low", "high"], _TRIALS_PER_LEVEL))
    kinds = ["baseline"]
    lengths = [int(rng.integers(5955, 6046))]
    for i, level in enumerate(levels):
        kinds.append(str(level))
        lengths.append(int(np.clip(np.round(rng.normal(1040, 45)), 985, 1130)))
        if i < len(levels) - 1:
            kinds.append("rest")
            lengths.append(int(np.clip(np.round(rng.normal(4000, 250)), 3500, 4500)))
    counters = {"baseline": 0, "low": 0, "high": 0, "rest": 0}
    names = []
    for kind in kinds:
        counters[kind] += 1
        names.append(_column_name(profile.name_style, subject_id, kind, counters[kind]))
    stops = np.cumsum(lengths)
    bounds = [(int(stop - length), int(stop)) for stop, length in zip(stops, lengths)]
    return names, kinds, bounds


def _ou(rng: np.random.Generator, n: int, tau_s: float, sd: float, smooth_s: float = 0.3) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck noise (standard deviation about ``sd``, correlation time
    ``tau_s``), smoothed over ``smooth_s`` so that it has no sample-to-sample roughness."""
    a = np.exp(-1.0 / (tau_s * _FS))
    start = rng.normal(0.0, sd)
    walk = lfilter([sd * np.sqrt(1 - a * a)], [1.0, -a], rng.standard_normal(n), zi=[a * start])[0]
    b = np.exp(-1.0 / (smooth_s * _FS))
    return lfilter([1 - b], [1.0, -b], walk, zi=[b * start])[0]


def _lowpass(x: np.ndarray, tau_s: float, order: int = 1) -> np.ndarray:
    """First-order low-pass (unit gain at DC) applied ``order`` times."""
    a = np.exp(-1.0 / (tau_s * _FS))
    for _ in range(order):
        x = lfilter([1 - a], [1.0, -a], x)
    return x


def _boxes(n: int, starts: np.ndarray, stops: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Sum of rectangles ``heights[k]`` on ``[starts[k], stops[k])``."""
    edges = np.zeros(n + 1)
    np.add.at(edges, np.clip(starts, 0, n), heights)
    np.add.at(edges, np.clip(stops, 0, n), -heights)
    return np.cumsum(edges[:-1])


def _impulses(n: int, positions: np.ndarray, heights: np.ndarray) -> np.ndarray:
    train = np.zeros(n)
    inside = (positions >= 0) & (positions < n)
    np.add.at(train, positions[inside], heights[inside])
    return train


def _scr(impulses: np.ndarray, decay_s: float, rise_s: float = 0.75) -> np.ndarray:
    """Skin-conductance responses: impulses through a bi-exponential kernel of unit peak."""
    a_decay, a_rise = np.exp(-1.0 / (decay_s * _FS)), np.exp(-1.0 / (rise_s * _FS))
    t = np.arange(int(10 * decay_s * _FS))
    peak = np.max(a_decay**t - a_rise**t)
    return (lfilter([1.0], [1.0, -a_decay], impulses) - lfilter([1.0], [1.0, -a_rise], impulses)) / peak


def _wrapped_bump(u: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Gaussian bump on the unit circle (continuous across beats)."""
    d = (u - centre + 0.5) % 1.0 - 0.5
    return np.exp(-0.5 * (d / width) ** 2)


def _poisson_times(rng: np.random.Generator, n: int, rate_per_min: float) -> np.ndarray:
    count = rng.poisson(rate_per_min * n / _FS / 60.0)
    return np.sort(rng.integers(0, n, count))


def synthesize_subject(subject_id: int, seed: int = 0, difficulty: str | float = "medium") -> SyntheticSubject:
    """Simulate one subject's session (see the module docstring for the model).

    Parameters
    ----------
    subject_id : int
        Subject number; with ``seed`` it fixes every random draw.
    seed : int, default 0
        Cohort seed.
    difficulty : {"easy", "medium", "hard"} or float, default "medium"
        A named difficulty or the response scale itself (> 0; larger is easier).

    Returns
    -------
    SyntheticSubject

    Examples
    --------
    >>> subject = synthesize_subject(7, seed=0)
    >>> subject.names[:3]
    ['7_Baseline_1', '7_LOW_1', '7_REST_1']
    >>> subject.recording["Eda"].shape
    (124801,)
    """
    scale = _resolve_difficulty(difficulty)
    rng = np.random.default_rng([seed, subject_id])
    profile = _draw_profile(rng, subject_id)
    names, kinds, bounds = _session(rng, profile, subject_id)
    n = bounds[-1][1]
    kinds_array = np.asarray(kinds)
    trial = np.isin(kinds_array, ("low", "high"))
    onsets = np.array([b[0] for b in bounds])[trial]
    offsets = np.array([b[1] for b in bounds])[trial]
    n_trials = len(onsets)

    # Response strength per trial and response channel.
    level = np.where(kinds_array[trial] == "high", 1.0, profile.low_to_high)
    shared = rng.lognormal(0.0, 0.2, n_trials)
    habituation = np.exp(-np.arange(n_trials) / profile.habituation_trials)
    base = scale * profile.responsiveness * level * shared * habituation
    strengths = {}
    for channel, gain in profile.gains.items():
        per_trial = base * gain * rng.lognormal(0.0, 0.45, n_trials)
        column_strength = np.zeros(len(names))
        column_strength[trial] = per_trial
        strengths[channel] = column_strength
    latency = np.round((profile.latency_s + rng.uniform(-0.3, 0.3, n_trials)) * _FS).astype(int)

    def response(channel: str, delay_s: float, tau_s: float, order: int = 2) -> np.ndarray:
        shift = latency + int(delay_s * _FS)
        return _lowpass(_boxes(n, onsets + shift, offsets + shift, strengths[channel][trial]), tau_s, order)

    motion = _motion_envelope(rng, n, profile)
    eda = _eda(rng, n, profile, onsets + latency, offsets, strengths["eda"][trial], response("eda", 0, 5.0, 1), motion)
    breathing_phase, resp = _resp(rng, n, profile, onsets + latency, strengths["resp"][trial], response("resp", 0, 2.0), motion)
    bvp = _bvp(rng, n, profile, breathing_phase, response("heart", 0, 1.5), response("pulse", 1.0, 2.5), motion)
    spo2 = _spo2(rng, n, profile, response("spo2", 4.0, 4.0), motion)
    return SyntheticSubject(
        subject_id=subject_id,
        profile=profile,
        names=names,
        bounds=bounds,
        strengths=strengths,
        recording={"Eda": eda, "Bvp": bvp, "Resp": resp, "SpO2": spo2},
    )


def _motion_envelope(rng: np.random.Generator, n: int, profile: SubjectProfile) -> np.ndarray:
    """Sum of Hann-shaped bursts, one per movement, of height 1."""
    envelope = np.zeros(n)
    for start in _poisson_times(rng, n, profile.motion_rate_per_min):
        length = int(rng.uniform(0.5, 4.0) * _FS)
        stop = min(n, start + length)
        envelope[start:stop] += np.hanning(length)[: stop - start]
    return envelope


def _band_noise(rng: np.random.Generator, n: int, tau_s: float) -> np.ndarray:
    """White noise low-passed with time constant ``tau_s``, rescaled to unit standard deviation."""
    a = np.exp(-1.0 / (tau_s * _FS))
    return _lowpass(rng.standard_normal(n), tau_s) * np.sqrt((1 + a) / (1 - a))


def _eda(rng, n, profile, response_onsets, offsets, strength, tonic_response, motion) -> np.ndarray:
    """Tonic level x drift + evoked, extra and spontaneous SCRs + electrode pressure + noise, clipped."""
    scl = profile.skin_conductance_us
    drift = np.exp(_ou(rng, n, 300.0, 0.1)) * (1 + profile.scl_session_change * np.arange(n) / n)
    spontaneous = _poisson_times(rng, n, profile.scr_rate_per_min)
    spontaneous_heights = rng.lognormal(np.log(0.05 * scl), 0.6, len(spontaneous))
    # Extra SCRs during the trial: three candidates per trial, each kept with probability 0.8 s / 3,
    # so the number of random draws does not depend on the response strength.
    candidates = response_onsets[:, None] + rng.random((len(strength), 3)) * np.maximum(offsets - response_onsets, 1)[:, None]
    kept = rng.random((len(strength), 3)) < np.minimum(1.0, _EFFECT["extra_scrs"] * strength / 3)[:, None]
    candidate_heights = 0.5 * _EFFECT["scr_of_scl"] * scl * strength[:, None] * rng.lognormal(0.0, 0.4, (len(strength), 3))
    positions = np.concatenate([spontaneous, response_onsets, candidates[kept].astype(int)])
    heights = np.concatenate([spontaneous_heights, _EFFECT["scr_of_scl"] * scl * strength, candidate_heights[kept]])
    phasic = _scr(_impulses(n, positions, heights), profile.scr_decay_s)
    electrode = 0.3 * motion * _band_noise(rng, n, 1.0)
    eda = scl * drift + _EFFECT["tonic_of_scl"] * scl * tonic_response + phasic + electrode + rng.normal(0.0, 0.002, n)
    return np.clip(eda, 0.01, profile.eda_ceiling_us)


def _resp(rng, n, profile, response_onsets, strength, rate_depth_response, motion):
    """Breathing phase (cycles) and belt signal: asymmetric breaths, sighs and gasps, drift, motion, noise."""
    rate = (
        profile.breathing_rate_per_min
        + _ou(rng, n, 30.0, 1.5)
        + _ou(rng, n, 5.0, 1.0)
        + _EFFECT["breathing_rate_per_min"] * rate_depth_response
    )
    phase = np.cumsum(np.clip(rate, 4.0, 40.0) / 60.0 / _FS)
    u = phase % 1.0
    inspiration = 0.4  # fraction of a breath spent breathing in
    shape = np.where(
        u < inspiration,
        0.5 * (1 - np.cos(np.pi * u / inspiration)),
        0.5 * (1 + np.cos(np.pi * (u - inspiration) / (1 - inspiration))),
    )
    sighs = _poisson_times(rng, n, 0.4)
    gasp = rng.random(len(strength)) < np.minimum(0.8, _EFFECT["gasp_probability"] * strength)
    deep_breaths = np.concatenate([sighs, response_onsets[gasp]])
    extra = rng.uniform(0.6, 1.4, len(sighs) + len(strength))
    extra = np.concatenate([extra[: len(sighs)], extra[len(sighs) :][gasp]])
    # Each deep breath: depth x (1 + extra) at its peak, over about one breath (gamma kernel, peak 1/(tau e)).
    tau = 0.25 * 60.0 / profile.breathing_rate_per_min
    bump = _lowpass(_impulses(n, deep_breaths, extra), tau, 2) * tau * _FS * np.e
    depth = (
        profile.breathing_depth
        * np.exp(_ou(rng, n, 15.0, 0.15))
        * (1 + _EFFECT["breathing_depth"] * rate_depth_response)
        * (1 + bump)
    )
    belt_drift = _ou(rng, n, 30.0, 0.3 * profile.breathing_depth)
    shake = profile.breathing_depth * motion * rng.uniform(0.5, 2.0) * _band_noise(rng, n, 0.1)
    noise = rng.normal(0.0, 0.01 * profile.breathing_depth, n)
    return phase, depth * shape + belt_drift + shake + noise


def _bvp(rng, n, profile, breathing_phase, heart_response, pulse_response, motion) -> np.ndarray:
    """PPG: systolic + dicrotic pulse per beat, heart rate with RSA and drifts, amplitude, wander, motion."""
    breathing = np.sin(2 * np.pi * breathing_phase)
    heart_rate = (
        profile.heart_rate_bpm
        + profile.rsa_bpm * breathing
        + _ou(rng, n, 60.0, 3.0)
        + _ou(rng, n, 4.0, 1.5)
        + _EFFECT["heart_rate_bpm"] * heart_response
    )
    u = np.cumsum(np.clip(heart_rate, 35.0, 180.0) / 60.0 / _FS) % 1.0
    pulse = _wrapped_bump(u, 0.15, 0.055) + profile.dicrotic_ratio * _wrapped_bump(u, 0.4, 0.08)
    log_amplitude = _ou(rng, n, 20.0, 0.08) + _ou(rng, n, 2.0, 0.04) + _EFFECT["log_pulse_amplitude"] * pulse_response
    amplitude = profile.pulse_amplitude * np.exp(log_amplitude) * (1 + 0.07 * breathing)
    wander = _ou(rng, n, 5.0, 0.3 * profile.pulse_amplitude)
    shake = profile.pulse_amplitude * motion * rng.uniform(1.5, 4.0) * _band_noise(rng, n, 0.05)
    noise = rng.normal(0.0, profile.ppg_noise * profile.pulse_amplitude, n)
    return amplitude * (pulse - pulse.mean()) + wander + shake + noise


def _spo2(rng, n, profile, response, motion) -> np.ndarray:
    """Saturation read once a second in whole percent and held; motion makes it read low."""
    second = int(_FS)
    drift = _ou(rng, n, 40.0, 0.5)
    level = profile.spo2_percent + drift + _EFFECT["spo2_percent"] * response - rng.uniform(2, 6) * np.minimum(motion, 1)
    readings = level[::second] + rng.normal(0.0, 0.25, len(level[::second]))
    return np.minimum(np.round(np.repeat(readings, second)[:n]), 100.0)


def synthesize_cohort(
    root: str | Path,
    split: str,
    n_subjects: int | None = None,
    seed: int = 0,
    *,
    first_subject_id: int | None = None,
    difficulty: str | float = "medium",
    overwrite: bool = False,
    progress: bool = False,
) -> list[int]:
    """Write a synthetic cohort as ``root/split/{Eda,Bvp,Resp,SpO2}/<subject>.csv``.

    Parameters
    ----------
    root : str or Path
        Data set folder (created if needed).
    split : str
        Split folder name, usually ``"train"``, ``"validation"`` or ``"test"``.
    n_subjects : int, optional
        Number of subjects; default :data:`SPLIT_SIZES` ``[split]``.
    seed : int, default 0
        Cohort seed; with the subject id it fixes every random draw.
    first_subject_id : int, optional
        Id of the first subject (ids are consecutive). Default 1 for train,
        101 for validation, 201 for test, so splits never share a subject.
    difficulty : {"easy", "medium", "hard"} or float, default "medium"
        Named difficulty or response scale (see :data:`DIFFICULTIES`).
    overwrite : bool, default False
        Replace CSVs already in the split's modality folders (otherwise refuse).
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    list of int
        The subject ids written.

    Examples
    --------
    >>> synthesize_cohort("data/synth", "validation", 12, seed=0)   # doctest: +SKIP
    [101, 102, ..., 112]
    """
    if n_subjects is None:
        if split not in SPLIT_SIZES:
            raise ValueError(f"n_subjects is needed for split {split!r} (defaults exist for {tuple(SPLIT_SIZES)})")
        n_subjects = SPLIT_SIZES[split]
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)) or n_subjects < 1:
        raise ValueError(f"n_subjects must be an integer >= 1, got {n_subjects!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not split or Path(split).name != split:
        raise ValueError(f"split must be a plain folder name such as 'train', got {split!r}")
    if first_subject_id is None:
        if split not in _FIRST_SUBJECT_ID:
            raise ValueError(f"first_subject_id is needed for split {split!r} (defaults exist for {tuple(_FIRST_SUBJECT_ID)})")
        if n_subjects > _ID_BLOCK:
            raise ValueError(
                f"n_subjects={n_subjects} is more than the {_ID_BLOCK} default ids of a split; "
                "pass first_subject_id so that the splits' ids do not overlap"
            )
        first_subject_id = _FIRST_SUBJECT_ID[split]
    if isinstance(first_subject_id, bool) or not isinstance(first_subject_id, (int, np.integer)) or first_subject_id < 0:
        raise ValueError(f"first_subject_id must be an integer >= 0, got {first_subject_id!r}")
    _resolve_difficulty(difficulty)

    split_dir = Path(root) / split
    existing = sorted(split_dir.glob("*/*.csv")) if split_dir.is_dir() else []
    if existing and not overwrite:
        raise DataError(
            f"{split_dir} already holds {len(existing)} CSV files; pass overwrite=True (--overwrite) "
            "to replace them, or choose another folder"
        )
    for path in existing:
        path.unlink()
    for modality in MODALITIES:
        (split_dir / modality).mkdir(parents=True, exist_ok=True)

    subject_ids = [int(first_subject_id) + i for i in range(n_subjects)]
    for subject_id in _progress(subject_ids, f"synth {split}", progress):
        subject = synthesize_subject(subject_id, seed, difficulty)
        for modality in MODALITIES:
            _write_columns(
                split_dir / modality / f"{subject_id}.csv",
                subject.columns(modality),
                _DECIMALS[modality],
                subject.profile.padding,
            )
    logger.info("wrote %d synthetic subjects (%d-%d) to %s", n_subjects, subject_ids[0], subject_ids[-1], split_dir)
    return subject_ids


def _progress(items: list, description: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="subject")


def _write_columns(path: Path, columns: dict[str, np.ndarray], decimals: int, padding: str) -> None:
    """One AI4PAIN CSV: a header, one column per segment, padded to the longest with ``padding``."""
    rows = max(len(column) for column in columns.values())
    table = np.full((rows, len(columns)), padding, dtype=object)
    for j, column in enumerate(columns.values()):
        rounded = np.round(column, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
        table[: len(column), j] = (rounded.astype(np.int64) if decimals == 0 else rounded).astype(str)
    lines = [",".join(columns)]
    lines.extend(",".join(row) for row in table.tolist())
    path.write_text("\n".join(lines) + "\n")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``biomoe synth``."""
    parser.add_argument("--out", required=True, type=Path, help="data set folder to write (ROOT/SPLIT/MODALITY/ID.csv)")
    parser.add_argument(
        "--split",
        default="all",
        choices=(*SPLIT_SIZES, "all"),
        help="split to write; 'all' writes train, validation and test (default: all)",
    )
    parser.add_argument(
        "--subjects",
        type=int,
        help="subjects in the split (default: AI4PAIN's sizes, 41 train / 12 validation / 12 test)",
    )
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (default: 0)")
    parser.add_argument(
        "--first-subject-id",
        type=int,
        help="id of the first subject; default 1 (train), 101 (validation), 201 (test), so splits are disjoint",
    )
    parser.add_argument(
        "--difficulty",
        default="medium",
        choices=tuple(DIFFICULTIES),
        help="pain-response strength: easy (x2), medium (x1), hard (x0.5) (default: medium)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace CSV files already in the split folders")


def run(args: argparse.Namespace) -> int:
    """Run ``biomoe synth``."""
    splits = tuple(SPLIT_SIZES) if args.split == "all" else (args.split,)
    if len(splits) > 1 and (args.subjects is not None or args.first_subject_id is not None):
        raise ValueError("--subjects and --first-subject-id apply to one split; add --split train (or validation, test)")
    for split in splits:
        ids = synthesize_cohort(
            args.out,
            split,
            args.subjects,
            args.seed,
            first_subject_id=args.first_subject_id,
            difficulty=args.difficulty,
            overwrite=args.overwrite,
            progress=True,
        )
        print(f"{args.out / split}: {len(ids)} subjects, ids {ids[0]}-{ids[-1]}, seed {args.seed}, {args.difficulty}")
    return 0


def _resolve_difficulty(difficulty: str | float) -> float:
    if isinstance(difficulty, str):
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be one of {tuple(DIFFICULTIES)} or a positive number, got {difficulty!r}")
        return DIFFICULTIES[difficulty]
    if not float(difficulty) > 0:
        raise ValueError(f"difficulty as a number is the response scale and must be > 0, got {difficulty}")
    return float(difficulty)
