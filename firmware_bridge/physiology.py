"""One seeded model of pain physiology: EDA, BVP (PPG), RESP and SpO2 of one subject.

The simulated sensor hub (:class:`PhysiologyStream`, block by block),
synthetic cohorts (:func:`simulate_recording`, used by ``biomoe synth``) and
the pretraining corpus all draw their signals from this one model, so a pain
response looks the same wherever the project meets it. NumPy only, because
the device side (``firmware_bridge``) imports it.

The model is a state machine at one sampling rate (100 Hz by default): every
filter, oscillator and event process carries its state from one call to the
next, and every random process has its own generator, drawn event by event
or sample by sample. Cutting a recording into blocks therefore changes
nothing but rounding: the streaming front end continues across block edges
exactly as the batch front end does inside one call.

Three layers, each set explicitly and seeded:

* **the subject** (:class:`SubjectProfile`, drawn by :func:`draw_profile`):
  resting physiology, how strongly and through which channels the subject
  responds to pain, habituation, artefact rates;
* **pain** (:class:`PainEffects`, presets in :data:`EFFECT_PRESETS`): the
  size of each response at strength 1;
* **the device** (:class:`DeviceSettings`, presets in
  :data:`DEVICE_PRESETS`): each sensor's gain, offset, unit, sampling rate,
  resolution, limits (saturation) and drift, the PPG site (finger or wrist)
  and how much the wearer moves.

Changing the effects or the device changes no random draw: the same seed
gives the same subject, seen through another device or with other response
sizes. The published ranges behind the numbers below are in
``training/README.md`` ("Synthetic physiology").

Per-subject physiology
----------------------
Drawn per subject, so raw levels differ more between subjects than pain
changes them within one:

- heart rate 72 +- 10 bpm (50-105), respiratory sinus arrhythmia 1-5 bpm,
  slow (60 s) and fast (4 s) heart-rate fluctuations of 4 % and 2 % of the
  rate (3 and 1.5 bpm at 72 bpm);
- breathing rate 15 +- 3 /min (8-24), rate fluctuating by 10 % (30 s) and
  7 % (5 s) of the rate, depth by 15 %, sighs (one breath 1.6-2.4 x deeper)
  about 0.4 /min;
- skin-conductance level (SCL) log-normal around 4 uS (0.5-25 uS),
  drifting (10 %, 300 s) and changing by -30 to +10 % over the first 20
  minutes (an exponential approach, so a stream of hours stays bounded);
  spontaneous skin-conductance responses (SCRs) at 0.3-6 /min, height
  log-normal around 0.05 x SCL;
- SpO2 97.3 +- 0.9 % (94.5-99.4), drifting 0.5 % (40 s);
- pulse amplitude (log-normal, sd 0.4), dicrotic wave 0.2-0.5 of the
  systolic peak, amplitude fluctuations of 8 % (20 s) and 4 % (2 s), and
  breathing modulation of 7 %.

What pain changes
-----------------
A pain episode (a *trial*: a TENS trial of a cohort, or a ``pain:LEVEL``
condition of the simulated hub) has a response strength per response
channel ``m`` (EDA, heart rate, pulse amplitude, breathing, SpO2): ``s =
scale x g x g_m x level x t x t_m x h``. ``scale`` is the difficulty (1 for
"medium"), ``g`` the subject's responsiveness (log-normal, sd 0.5; 12 % of
subjects are near non-responders, x 0.2), ``g_m`` the subject's gain for that
channel (log-normal, sd 0.7: some subjects answer with their skin, others
with their heart), ``level`` 1 for HIGH and 0.3-0.6 (per subject) for LOW,
``t`` and ``t_m`` trial-to-trial variation shared by all channels (sd 0.2)
and per channel (sd 0.45, both log-normal), and ``h`` habituation over the
subject's trials (``exp(-k / H)`` for the k-th trial, ``H`` 60-150 trials).
Responses start 1-3 s (per subject, +- 0.3 s per trial) after the episode's
onset, hold while it lasts and fade after it ends. At ``s = 1`` with the
default :class:`PainEffects`:

- EDA: an evoked SCR of 0.25 x SCL at the response onset (bi-exponential,
  rise 0.75 s, decay 2.5-6 s per subject), extra SCRs of half that height
  at 5 /min while the response lasts (about 0.8 in a 10 s trial), and a
  tonic rise of 0.08 x SCL (time constant 5 s);
- BVP: heart rate +15 bpm (time constant 1.5 s, twice) and pulse amplitude
  x exp(-0.6) (vasoconstriction, 1 s later, time constant 2.5 s, twice);
- RESP: breathing rate +6 /min and depth +40 % (time constant 2 s, twice),
  and a gasp at the response onset (one breath 1.6-2.4 x deeper) with
  probability min(0.8, 0.6 s);
- SpO2: -1 % (4 s later, time constant 4 s, twice): about the 1 %
  quantisation step of an oximeter, so SpO2 carries little information.

Each effect saturates, ``limit x tanh(effect / limit)``, so the strongest
responders stay physiological: SCR heights at 1 x SCL, extra SCRs at 20 /min,
tonic rise at 0.5 x SCL, heart rate at +40 bpm, pulse amplitude at about
-75 %, breathing at +15 /min and +100 % depth, SpO2 at -4 % (at ``s = 1``
the effects are 1-6 % below the sizes above).

Artefacts
---------
Motion bursts (0.1-2 /min per subject, times the device's ``motion``; 0.5-4 s
long, independent of pain) shake the PPG (1.5-4 x the pulse amplitude) and
the breathing belt (0.5-2 x the depth), press the EDA electrodes (0.3 uS) and
make the oximeter read 2-6 % low. 15 % of subjects saturate the EDA
amplifier at 0.3-1.5 uS above their resting level (flat clipped tops); 10 %
have a poor PPG contact (four times the PPG noise). PPG (30 %, 5 s) and
breathing-belt (30 %, 30 s) baselines wander; every signal has white noise.
A device adds its own drift, quantisation and saturation (its ADC limits).

Examples
--------
>>> import numpy as np
>>> stream = PhysiologyStream({"EDA": 100, "BVP": 100, "RESP": 100, "SpO2": 1}, np.random.default_rng(0))
>>> first = stream.block(0.0, 1.0)
>>> painful = stream.block(1.0, 1.0, pain=PAIN_LEVELS["high"])
>>> painful["BVP"].shape, painful["SpO2"].shape
((100,), (1,))
>>> recording = simulate_recording(6000, np.random.default_rng(1), [(2000, 3000, 2)], device="raw-adc")
>>> recording.units["BVP"], recording.strengths["heart"].shape
('counts', (1,))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "CHANNELS",
    "RESPONSES",
    "PAIN_LEVELS",
    "RESPONSE_DELAYS_S",
    "PainEffects",
    "EFFECT_PRESETS",
    "pain_effects",
    "effect_size",
    "SensorSettings",
    "DeviceSettings",
    "DEVICE_PRESETS",
    "device_settings",
    "SubjectProfile",
    "draw_profile",
    "Recording",
    "simulate_recording",
    "PhysiologyStream",
]

#: Channels of the model, named as the sensor board names them.
CHANNELS: tuple[str, ...] = ("EDA", "BVP", "RESP", "SpO2")
#: Response channels of a pain episode, each with its own strength.
RESPONSES: tuple[str, ...] = ("eda", "heart", "pulse", "resp", "spo2")
#: Pain levels as the front ends take them.
PAIN_LEVELS: dict[str, int] = {"none": 0, "low": 1, "high": 2}

# Response dynamics: delay after the response onset (s), time constant (s), low-pass order.
_RESPONSE_DYNAMICS = {
    "eda": (0.0, 5.0, 1),
    "heart": (0.0, 1.5, 2),
    "pulse": (1.0, 2.5, 2),
    "resp": (0.0, 2.0, 2),
    "spo2": (4.0, 4.0, 2),
}
#: Seconds from a pain episode's onset (after the subject's latency) to the start of each response.
RESPONSE_DELAYS_S: dict[str, float] = {name: delay_s for name, (delay_s, _, _) in _RESPONSE_DYNAMICS.items()}
# Ceilings of the pain effects: each is limit * tanh(effect / limit), nearly linear at s = 1
# and bounded for the strongest responders (modelling choices; see training/README.md).
_LIMITS = {
    "scr_of_scl": 1.0,
    "extra_scr_rate_per_min": 20.0,  # 0.33 /s, the severe-pain NFSC of Ledowski et al. 2007
    "tonic_of_scl": 0.5,
    "heart_rate_bpm": 40.0,
    "log_pulse_amplitude": 1.4,  # at most about -75 %
    "breathing_rate_per_min": 15.0,
    "breathing_depth": 1.0,
    "spo2_percent": 4.0,
}
_RUNNING = 2**62  # offset of an episode that has not ended yet
_SCL_CHANGE_S = 1200.0  # the SCL's session change is reached after 20 minutes
_SENSOR_DRIFT_S = 120.0  # correlation time of a sensor's baseline drift
_PPG_SITES = ("finger", "wrist")
# Pulse shape per site, as fractions of a beat: systolic (centre, width),
# dicrotic (centre, width, height relative to the subject's dicrotic ratio).
# A wrist pulse is smoother, with a weaker dicrotic wave.
_PULSE_SHAPES = {
    "finger": ((0.15, 0.055), (0.4, 0.08, 1.0)),
    "wrist": ((0.15, 0.08), (0.42, 0.12, 0.35)),
}


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class PainEffects:
    """Size of each pain response at response strength ``s = 1`` (units in names).

    The module docstring describes how the strength is drawn; ``training/README.md``
    gives the published range behind each default and says which are modelling choices.
    """

    scr_of_scl: float = 0.25  # evoked SCR height, fraction of the subject's SCL
    extra_scr_rate_per_min: float = 5.0  # extra SCRs (half the evoked height) while the response lasts
    tonic_of_scl: float = 0.08  # tonic EDA rise, fraction of SCL
    heart_rate_bpm: float = 15.0
    log_pulse_amplitude: float = -0.6  # vasoconstriction: pulse amplitude x exp(this)
    breathing_rate_per_min: float = 6.0
    breathing_depth: float = 0.4  # relative
    gasp_probability: float = 0.6  # per episode, times s, capped at 0.8
    spo2_percent: float = -1.0


#: Named response patterns: ``default`` (every channel as documented), ``cardiac-dominant``
#: (heart rate and vasoconstriction strong, skin weak) and ``eda-dominant`` (the reverse).
EFFECT_PRESETS: dict[str, PainEffects] = {
    "default": PainEffects(),
    "cardiac-dominant": PainEffects(
        scr_of_scl=0.08, extra_scr_rate_per_min=1.5, tonic_of_scl=0.03, heart_rate_bpm=22.0, log_pulse_amplitude=-0.9
    ),
    "eda-dominant": PainEffects(
        scr_of_scl=0.4,
        extra_scr_rate_per_min=8.0,
        tonic_of_scl=0.15,
        heart_rate_bpm=5.0,
        log_pulse_amplitude=-0.2,
        breathing_rate_per_min=3.0,
        breathing_depth=0.2,
    ),
}


@dataclass(frozen=True)
class SensorSettings:
    """How one sensor turns its physiological signal into the numbers it reports.

    A reading is ``clip(round(gain_s * value + offset_s + drift + noise, resolution), limits)``,
    taken ``source_rate_hz`` times a second and held until the next one.

    Parameters
    ----------
    unit : str
        Unit of the readings (``"uS"``, ``"a.u."``, ``"counts"``, ``"%"``).
    gain, offset : float
        Readings per physiological unit, and the reading at zero. Default 1 and 0.
    gain_spread, offset_spread : float
        Per subject (unit to unit, placement), ``gain_s = gain * exp(gain_spread * z)``
        and ``offset_s = offset + offset_spread * z`` with standard normal ``z``. Default 0.
    drift : float
        Standard deviation of a slow baseline wander (2 min), in reading units. Default 0.
    noise : float
        Standard deviation of white noise on each reading, in reading units. Default 0.
    source_rate_hz : float or None
        The sensor's own sampling rate; None reads every sample of the model.
    interpolate : bool
        How a recording at the model's rate fills in between readings: linear
        interpolation (a data set resampled to 100 Hz) or holding each reading
        (an oximeter's display logged at 100 Hz). Default True.
    resolution : float
        Quantisation step in reading units; 0 for none.
    limits : (float, float)
        The ADC's range in reading units: readings beyond it saturate.
    """

    unit: str
    gain: float = 1.0
    offset: float = 0.0
    gain_spread: float = 0.0
    offset_spread: float = 0.0
    drift: float = 0.0
    noise: float = 0.0
    source_rate_hz: float | None = None
    interpolate: bool = True
    resolution: float = 0.0
    limits: tuple[float, float] = (-math.inf, math.inf)


@dataclass(frozen=True)
class DeviceSettings:
    """A recording device: one :class:`SensorSettings` per channel, the PPG site and the wearer's motion.

    Parameters
    ----------
    name : str
    sensors : mapping of str to SensorSettings
        One per channel of :data:`CHANNELS`.
    ppg_site : {"finger", "wrist"}
        Pulse shape: a finger clip's sharp systolic peak and clear dicrotic wave,
        or a wrist band's smoother pulse. Default "finger".
    motion : float
        Factor on the subject's rate of motion bursts (a wrist worn while moving: > 1). Default 1.
    """

    name: str
    sensors: Mapping[str, SensorSettings]
    ppg_site: str = "finger"
    motion: float = 1.0

    def __post_init__(self):
        if set(self.sensors) != set(CHANNELS):
            raise ValueError(f"device {self.name!r}: sensors must be given for {CHANNELS}, got {tuple(self.sensors)}")
        if self.ppg_site not in _PPG_SITES:
            raise ValueError(f"device {self.name!r}: ppg_site must be one of {_PPG_SITES}, got {self.ppg_site!r}")
        if not self.motion >= 0:
            raise ValueError(f"device {self.name!r}: motion must be >= 0, got {self.motion!r}")


_OXIMETER = SensorSettings("%", noise=0.25, source_rate_hz=1.0, interpolate=False, resolution=1.0, limits=(0.0, 100.0))

#: Named devices. ``finger-lab``: a laboratory system (EDA in uS, finger PPG and
#: belt in arbitrary units, all at 100 Hz; a finger oximeter reporting whole
#: percent once a second): the AI4PAIN-like default. ``wrist-e4``: an
#: Empatica-E4-like wristband (EDA at 4 Hz, about 0.3 x the palmar level; BVP at
#: 64 Hz with a wrist pulse shape and E4-like scale; three times the motion),
#: resampled to 100 Hz in a recording. ``raw-adc``: a board sending raw ADC
#: counts (12-bit EDA and belt, 16-bit PPG around a large DC offset), with
#: per-unit gain and offset spread, baseline drift and saturation at full scale.
DEVICE_PRESETS: dict[str, DeviceSettings] = {
    "finger-lab": DeviceSettings(
        "finger-lab",
        {"EDA": SensorSettings("uS"), "BVP": SensorSettings("a.u."), "RESP": SensorSettings("a.u."), "SpO2": _OXIMETER},
    ),
    "wrist-e4": DeviceSettings(
        "wrist-e4",
        {
            "EDA": SensorSettings(
                "uS", gain=0.3, gain_spread=0.5, drift=0.02, source_rate_hz=4.0, resolution=0.001, limits=(0.0, 100.0)
            ),
            "BVP": SensorSettings("a.u.", gain=80.0, gain_spread=0.4, source_rate_hz=64.0, resolution=0.01),
            "RESP": SensorSettings("a.u."),
            "SpO2": _OXIMETER,
        },
        ppg_site="wrist",
        motion=3.0,
    ),
    "raw-adc": DeviceSettings(
        "raw-adc",
        {
            "EDA": SensorSettings(
                "counts", gain=100.0, offset=200.0, gain_spread=0.1, offset_spread=50.0, drift=5.0,
                resolution=1.0, limits=(0.0, 4095.0),
            ),
            "BVP": SensorSettings(
                "counts", gain=3000.0, offset=32768.0, gain_spread=0.3, offset_spread=4000.0, drift=500.0,
                resolution=1.0, limits=(0.0, 65535.0),
            ),
            "RESP": SensorSettings(
                "counts", gain=800.0, offset=2048.0, gain_spread=0.2, offset_spread=150.0, drift=20.0,
                resolution=1.0, limits=(0.0, 4095.0),
            ),
            "SpO2": _OXIMETER,
        },
    ),
}


def _preset(value, presets: dict, kind: type, what: str):
    """``value`` itself when it is a ``kind``, else the preset of that name."""
    if isinstance(value, kind):
        return value
    if value not in presets:
        raise ValueError(f"{what} must be one of {tuple(presets)} or a {kind.__name__}, got {value!r}")
    return presets[value]


def pain_effects(effects: str | PainEffects) -> PainEffects:
    """The :class:`PainEffects` named ``effects`` in :data:`EFFECT_PRESETS` (or ``effects`` itself)."""
    return _preset(effects, EFFECT_PRESETS, PainEffects, "effects")


def device_settings(device: str | DeviceSettings) -> DeviceSettings:
    """The :class:`DeviceSettings` named ``device`` in :data:`DEVICE_PRESETS` (or ``device`` itself)."""
    return _preset(device, DEVICE_PRESETS, DeviceSettings, "device")


# --------------------------------------------------------------------------- the subject


@dataclass(frozen=True)
class SubjectProfile:
    """Physiology and pain-response parameters of one subject (units in names; see the module docstring)."""

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


def draw_profile(rng: np.random.Generator) -> SubjectProfile:
    """Draw one subject's :class:`SubjectProfile` from ``rng`` (a fixed number of draws but one, the EDA ceiling's)."""
    responsiveness = float(rng.lognormal(0.0, 0.5)) * (0.2 if rng.random() < 0.12 else 1.0)
    gains = {name: float(rng.lognormal(0.0, 0.7)) for name in RESPONSES}
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
        eda_ceiling_us=scl + float(rng.uniform(0.3, 1.5)) if rng.random() < 0.15 else math.inf,
    )


# --------------------------------------------------------------------------- stateful building blocks


def _recursive(x: np.ndarray, a: float, b: float, y_prev: float) -> np.ndarray:
    """``y[k] = a * y[k-1] + b * x[k]`` from ``y[-1] = y_prev``: a first-order IIR filter without SciPy.

    Vectorised through its closed form ``y[k] = a**(k+1) * (y_prev + b * sum_{j<=k} x[j] a**-(j+1))``,
    in chunks short enough that ``a**-k`` stays below e**30 and the cumulative sum accurate
    (at most 4,096 samples: relative error about 1e-9 of the input's scale).
    """
    n = len(x)
    y = np.empty(n)
    chunk = int(min(4096, max(1, 30.0 / -math.log(a))))
    powers = a ** np.arange(1, min(chunk, n) + 1)
    for start in range(0, n, chunk):
        piece = x[start : start + chunk]
        p = powers[: len(piece)]
        y[start : start + len(piece)] = p * (y_prev + b * np.cumsum(piece / p))
        y_prev = y[start + len(piece) - 1]
    return y


class _Lowpass:
    """First-order low-pass (unit gain at DC), ``order`` times in cascade; state carried across calls."""

    def __init__(self, tau_s: float, fs: float, order: int = 1, initial: float = 0.0):
        self._a = math.exp(-1.0 / (tau_s * fs))
        self._state = [initial] * order

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        for k, y_prev in enumerate(self._state):
            x = _recursive(x, self._a, 1.0 - self._a, y_prev)
            if len(x):
                self._state[k] = x[-1]
        return x


class _OrnsteinUhlenbeck:
    """Stationary Ornstein-Uhlenbeck noise (standard deviation about ``sd``, correlation time
    ``tau_s``), smoothed over ``smooth_s`` (None: not) so it has no sample-to-sample roughness."""

    def __init__(self, rng: np.random.Generator, fs: float, tau_s: float, sd: float, smooth_s: float | None = 0.3):
        self._rng = rng
        self._a = math.exp(-1.0 / (tau_s * fs))
        self._gain = sd * math.sqrt(1.0 - self._a**2)
        self._walk = float(rng.normal(0.0, sd))
        self._smooth = _Lowpass(smooth_s, fs, initial=self._walk) if smooth_s else None

    def __call__(self, n: int) -> np.ndarray:
        walk = _recursive(self._rng.standard_normal(n), self._a, self._gain, self._walk)
        if n:
            self._walk = walk[-1]
        return self._smooth(walk) if self._smooth else walk


class _PoissonProcess:
    """Events of a Poisson process with a varying rate, each with a random mark.

    Drawn event by event (the next event's place in integrated rate, then its
    mark), so the events do not depend on how the stream is cut into blocks.
    """

    def __init__(self, rng: np.random.Generator, mark: Callable[[np.random.Generator], float]):
        self._rng = rng
        self._mark = mark
        self._elapsed = 0.0  # integrated rate so far: expected events
        self._next = float(rng.exponential())

    def __call__(self, rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sample positions and marks of the events in the next ``len(rate)`` samples
        (``rate``: expected events per sample)."""
        cumulative = self._elapsed + np.cumsum(rate)
        positions, marks = [], []
        while len(cumulative) and self._next <= cumulative[-1]:
            positions.append(int(np.searchsorted(cumulative, self._next)))
            marks.append(self._mark(self._rng))
            self._next += float(self._rng.exponential())
        if len(cumulative):
            self._elapsed = float(cumulative[-1])
        return np.asarray(positions, dtype=np.int64), np.asarray(marks, dtype=np.float64)


class _SkinConductanceResponses:
    """Impulses -> SCRs through a bi-exponential kernel of unit peak (rise, decay); state carried."""

    def __init__(self, fs: float, decay_s: float, rise_s: float = 0.75):
        self._decay, self._rise = math.exp(-1.0 / (decay_s * fs)), math.exp(-1.0 / (rise_s * fs))
        t = np.arange(int(10 * decay_s * fs))
        self._peak = float(np.max(self._decay**t - self._rise**t))
        self._slow = self._fast = 0.0

    def __call__(self, impulses: np.ndarray) -> np.ndarray:
        slow = _recursive(impulses, self._decay, 1.0, self._slow)
        fast = _recursive(impulses, self._rise, 1.0, self._fast)
        if len(impulses):
            self._slow, self._fast = slow[-1], fast[-1]
        return (slow - fast) / self._peak


def effect_size(effects: PainEffects, name: str, response) -> np.ndarray:
    """Size of pain effect ``name`` (a field of :class:`PainEffects`, in its unit) for a response of
    strength ``response``, saturating at its ceiling: what the model adds at that strength."""
    limit = _LIMITS[name]
    return limit * np.tanh(getattr(effects, name) * np.asarray(response, dtype=np.float64) / limit)


def _impulses(n: int, positions: np.ndarray, heights: np.ndarray) -> np.ndarray:
    train = np.zeros(n)
    np.add.at(train, positions, heights)
    return train


def _boxes(first: int, n: int, starts: np.ndarray, stops: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Samples ``first .. first + n - 1`` of a sum of rectangles ``heights[k]`` on ``[starts[k], stops[k])``."""
    edges = np.zeros(n + 1)
    np.add.at(edges, np.clip(starts - first, 0, n), heights)
    np.add.at(edges, np.clip(stops - first, 0, n), -heights)
    return np.cumsum(edges[:-1])


def _wrapped_bump(u: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Gaussian bump on the unit circle (continuous across beats)."""
    d = (u - centre + 0.5) % 1.0 - 0.5
    return np.exp(-0.5 * (d / width) ** 2)


class _Streams:
    """Independent random generators, one per random process, all from one ``rng``."""

    def __init__(self, rng: np.random.Generator):
        self._seeds = np.random.SeedSequence(rng.integers(0, 2**62, size=4))

    def __call__(self) -> np.random.Generator:
        return np.random.default_rng(self._seeds.spawn(1)[0])


# --------------------------------------------------------------------------- the physiology, channel by channel


class _Motion:
    """Envelope of movement bursts: Hann-shaped, 0.5-4 s long, height 1, at a Poisson rate."""

    def __init__(self, rng: np.random.Generator, fs: float, rate_per_min: float):
        self._rate = rate_per_min / 60.0 / fs
        self._starts = _PoissonProcess(rng, lambda r: max(2, int(r.uniform(0.5, 4.0) * fs)))
        self._running: list[tuple[int, int]] = []  # (first sample, length)
        self._position = 0

    def __call__(self, n: int) -> np.ndarray:
        first = self._position
        positions, lengths = self._starts(np.full(n, self._rate))
        self._running += [(first + int(p), int(length)) for p, length in zip(positions, lengths)]
        envelope = np.zeros(n)
        for start, length in self._running:
            k = np.arange(max(start, first), min(start + length, first + n))
            envelope[k - first] += 0.5 - 0.5 * np.cos(2 * np.pi * (k - start) / (length - 1))
        self._position += n
        self._running = [(start, length) for start, length in self._running if start + length > self._position]
        return envelope


class _Eda:
    """Skin conductance (uS): tonic level x drift + tonic pain rise + SCRs + electrode pressure + noise, clipped."""

    def __init__(self, profile: SubjectProfile, effects: PainEffects, fs: float, streams: _Streams):
        self._profile, self._effects, self._fs = profile, effects, fs
        scl = profile.skin_conductance_us
        self._drift = _OrnsteinUhlenbeck(streams(), fs, 300.0, 0.1)
        self._spontaneous = _PoissonProcess(streams(), lambda r: r.lognormal(np.log(0.05 * scl), 0.6))
        self._extra = _PoissonProcess(streams(), lambda r: r.lognormal(0.0, 0.4))
        self._scrs = _SkinConductanceResponses(fs, profile.scr_decay_s)
        self._electrode = _OrnsteinUhlenbeck(streams(), fs, 1.0, 1.0, smooth_s=None)
        self._noise = streams()

    def __call__(self, first, tonic_response, strength, evoked_positions, evoked_strengths, motion) -> np.ndarray:
        profile, effects, fs, n = self._profile, self._effects, self._fs, len(motion)
        scl = profile.skin_conductance_us
        t = (first + np.arange(n)) / fs
        session = 1 + profile.scl_session_change * (1 - np.exp(-t / _SCL_CHANGE_S)) / (1 - math.exp(-1))
        spontaneous, spontaneous_heights = self._spontaneous(np.full(n, profile.scr_rate_per_min / 60.0 / fs))
        extra, extra_marks = self._extra(effect_size(effects, "extra_scr_rate_per_min", strength) / 60.0 / fs)
        heights = np.concatenate([
            spontaneous_heights,
            scl * effect_size(effects, "scr_of_scl", evoked_strengths),
            0.5 * scl * effect_size(effects, "scr_of_scl", strength[extra]) * extra_marks,
        ])
        phasic = self._scrs(_impulses(n, np.concatenate([spontaneous, evoked_positions, extra]), heights))
        eda = (
            scl * np.exp(self._drift(n)) * session
            + scl * effect_size(effects, "tonic_of_scl", tonic_response)
            + phasic
            + 0.3 * motion * self._electrode(n)
            + self._noise.normal(0.0, 0.002, n)
        )
        return np.clip(eda, 0.01, profile.eda_ceiling_us)


class _Breathing:
    """Breathing phase (cycles) and belt signal (a.u.): asymmetric breaths, rate and depth drifting,
    sighs and gasps, belt drift, motion, noise."""

    _INSPIRATION = 0.4  # fraction of a breath spent breathing in

    def __init__(self, profile: SubjectProfile, effects: PainEffects, fs: float, streams: _Streams):
        self._profile, self._effects, self._fs = profile, effects, fs
        rate, depth = profile.breathing_rate_per_min, profile.breathing_depth
        self._slow_rate = _OrnsteinUhlenbeck(streams(), fs, 30.0, 0.1 * rate)
        self._fast_rate = _OrnsteinUhlenbeck(streams(), fs, 5.0, rate / 15.0)
        self._depth = _OrnsteinUhlenbeck(streams(), fs, 15.0, 0.15)
        self._sighs = _PoissonProcess(streams(), lambda r: r.uniform(0.6, 1.4))
        tau = 0.25 * 60.0 / rate  # a deep breath lasts about one breath (gamma kernel of peak 1 / (tau e))
        self._deep_breaths = _Lowpass(tau, fs, order=2)
        self._deep_breath_gain = tau * fs * np.e
        self._belt = _OrnsteinUhlenbeck(streams(), fs, 30.0, 0.3 * depth)
        rng = streams()
        self._shake_gain = depth * rng.uniform(0.5, 2.0)
        self._phase = float(rng.random())
        self._noise = rng
        self._shake = _OrnsteinUhlenbeck(streams(), fs, 0.1, 1.0, smooth_s=None)

    def __call__(self, response, gasp_positions, gasp_heights, motion) -> tuple[np.ndarray, np.ndarray]:
        profile, fs, n = self._profile, self._fs, len(motion)
        rate = (
            profile.breathing_rate_per_min
            + self._slow_rate(n)
            + self._fast_rate(n)
            + effect_size(self._effects, "breathing_rate_per_min", response)
        )
        phase = self._phase + np.cumsum(np.clip(rate, 4.0, 40.0) / 60.0 / fs)
        if n:
            self._phase = phase[-1] % 1.0
        u, inspiration = phase % 1.0, self._INSPIRATION
        shape = np.where(
            u < inspiration,
            0.5 * (1 - np.cos(np.pi * u / inspiration)),
            0.5 * (1 + np.cos(np.pi * (u - inspiration) / (1 - inspiration))),
        )
        sighs, sigh_heights = self._sighs(np.full(n, 0.4 / 60.0 / fs))
        deep = self._deep_breaths(
            _impulses(n, np.concatenate([sighs, gasp_positions]), np.concatenate([sigh_heights, gasp_heights]))
        ) * self._deep_breath_gain
        depth = (
            profile.breathing_depth
            * np.exp(self._depth(n))
            * (1 + effect_size(self._effects, "breathing_depth", response))
            * (1 + deep)
        )
        shake = self._shake_gain * motion * self._shake(n)
        noise = self._noise.normal(0.0, 0.01 * profile.breathing_depth, n)
        return phase, depth * shape + self._belt(n) + shake + noise


class _Pulse:
    """PPG (a.u.): a systolic and a dicrotic wave per beat (finger or wrist shape), heart rate with
    RSA and drifts, amplitude with vasoconstriction and breathing, baseline wander, motion, noise."""

    def __init__(self, profile: SubjectProfile, effects: PainEffects, site: str, fs: float, streams: _Streams):
        self._profile, self._effects, self._fs = profile, effects, fs
        rate, amplitude = profile.heart_rate_bpm, profile.pulse_amplitude
        self._slow_rate = _OrnsteinUhlenbeck(streams(), fs, 60.0, 0.04 * rate)
        self._fast_rate = _OrnsteinUhlenbeck(streams(), fs, 4.0, 0.02 * rate)
        self._slow_amplitude = _OrnsteinUhlenbeck(streams(), fs, 20.0, 0.08)
        self._fast_amplitude = _OrnsteinUhlenbeck(streams(), fs, 2.0, 0.04)
        self._wander = _OrnsteinUhlenbeck(streams(), fs, 5.0, 0.3 * amplitude)
        rng = streams()
        self._shake_gain = amplitude * rng.uniform(1.5, 4.0)
        self._phase = float(rng.random())
        self._noise = rng
        self._shake = _OrnsteinUhlenbeck(streams(), fs, 0.05, 1.0, smooth_s=None)
        (systolic_centre, systolic_width), (dicrotic_centre, dicrotic_width, dicrotic) = _PULSE_SHAPES[site]
        self._waves = ((systolic_centre, systolic_width, 1.0),
                       (dicrotic_centre, dicrotic_width, dicrotic * profile.dicrotic_ratio))
        self._mean = sum(height * width * math.sqrt(2 * math.pi) for _, width, height in self._waves)

    def __call__(self, breathing_phase, heart_response, pulse_response, motion) -> np.ndarray:
        profile, effects, fs, n = self._profile, self._effects, self._fs, len(motion)
        breathing = np.sin(2 * np.pi * breathing_phase)
        heart_rate = (
            profile.heart_rate_bpm
            + profile.rsa_bpm * breathing
            + self._slow_rate(n)
            + self._fast_rate(n)
            + effect_size(effects, "heart_rate_bpm", heart_response)
        )
        phase = self._phase + np.cumsum(np.clip(heart_rate, 35.0, 180.0) / 60.0 / fs)
        if n:
            self._phase = phase[-1] % 1.0
        u = phase % 1.0
        pulse = sum(height * _wrapped_bump(u, centre, width) for centre, width, height in self._waves) - self._mean
        log_amplitude = (
            self._slow_amplitude(n)
            + self._fast_amplitude(n)
            + effect_size(effects, "log_pulse_amplitude", pulse_response)
        )
        amplitude = profile.pulse_amplitude * np.exp(log_amplitude) * (1 + 0.07 * breathing)
        shake = self._shake_gain * motion * self._shake(n)
        noise = self._noise.normal(0.0, profile.ppg_noise * profile.pulse_amplitude, n)
        return amplitude * pulse + self._wander(n) + shake + noise


class _Saturation:
    """Arterial oxygen saturation (%) as the oximeter's optics see it: level, drift, a pain dip,
    and motion making it read low (the oximeter's sampling and rounding are the device's)."""

    def __init__(self, profile: SubjectProfile, effects: PainEffects, fs: float, streams: _Streams):
        self._profile, self._effects = profile, effects
        self._drift = _OrnsteinUhlenbeck(streams(), fs, 40.0, 0.5)
        self._motion_drop = float(streams().uniform(2.0, 6.0))

    def __call__(self, response, motion) -> np.ndarray:
        return (
            self._profile.spo2_percent
            + self._drift(len(motion))
            + effect_size(self._effects, "spo2_percent", response)
            - self._motion_drop * np.minimum(motion, 1.0)
        )


@dataclass
class _Episode:
    """One pain episode: onset and offset (samples), response latency (samples), strengths, gasp height (0: none)."""

    onset: int
    offset: int
    latency: int
    strengths: dict[str, float]
    gasp: float


class _Physiology:
    """One subject's physiology (physiological units), advanced sample by sample in blocks of any size."""

    def __init__(self, profile: SubjectProfile, effects: PainEffects, device: DeviceSettings, fs: float,
                 streams: _Streams):
        self.profile, self.effects, self.fs = profile, effects, fs
        self.position = 0  # next sample to produce
        self._episodes: list[_Episode] = []
        self._episode_count = 0
        self._episode_rng = streams()
        self._responses = {name: _Lowpass(tau, fs, order) for name, (_, tau, order) in _RESPONSE_DYNAMICS.items()}
        self._motion = _Motion(streams(), fs, profile.motion_rate_per_min * device.motion)
        self._eda = _Eda(profile, effects, fs, streams)
        self._breathing = _Breathing(profile, effects, fs, streams)
        self._pulse = _Pulse(profile, effects, device.ppg_site, fs, streams)
        self._saturation = _Saturation(profile, effects, fs, streams)

    def start_episode(self, onset: int, offset: int | None, level: int, scale: float = 1.0) -> _Episode:
        """Schedule a pain episode of ``level`` (1 low, 2 high) from sample ``onset`` to ``offset``
        (None: until :meth:`end_episode`); returns it (its response strengths and latency)."""
        profile, rng = self.profile, self._episode_rng
        shared = rng.lognormal(0.0, 0.2)
        per_channel = rng.lognormal(0.0, 0.45, len(RESPONSES))
        jitter_s, gasp_draw, gasp_height = rng.uniform(-0.3, 0.3), rng.random(), rng.uniform(0.6, 1.4)
        level_factor = 1.0 if level == PAIN_LEVELS["high"] else profile.low_to_high
        habituation = math.exp(-self._episode_count / profile.habituation_trials)
        base = scale * profile.responsiveness * level_factor * shared * habituation
        strengths = {name: float(base * profile.gains[name] * k) for name, k in zip(RESPONSES, per_channel)}
        gasp = gasp_height if gasp_draw < min(0.8, self.effects.gasp_probability * strengths["resp"]) else 0.0
        latency = int(round((profile.latency_s + jitter_s) * self.fs))
        episode = _Episode(onset, _RUNNING if offset is None else offset, latency, strengths, gasp)
        self._episodes.append(episode)
        self._episode_count += 1
        return episode

    def end_episode(self, offset: int) -> None:
        """End the running episode at sample ``offset``."""
        self._episodes[-1].offset = offset

    def advance(self, n: int) -> dict[str, np.ndarray]:
        """The next ``n`` samples of every channel, physiological units."""
        first = self.position
        episodes = self._episodes
        onsets = np.array([e.onset + e.latency for e in episodes], dtype=np.int64)
        offsets = np.array([e.offset + e.latency for e in episodes], dtype=np.int64)
        boxes, responses = {}, {}
        for name, (delay_s, _, _) in _RESPONSE_DYNAMICS.items():
            delay = int(round(delay_s * self.fs))
            heights = np.array([e.strengths[name] for e in episodes])
            boxes[name] = _boxes(first, n, onsets + delay, offsets + delay, heights)
            responses[name] = self._responses[name](boxes[name])
        starting = (onsets >= first) & (onsets < first + n)
        gasps = np.array([e.gasp for e in episodes])
        eda_strengths = np.array([e.strengths["eda"] for e in episodes])
        motion = self._motion(n)
        eda = self._eda(first, responses["eda"], boxes["eda"], onsets[starting] - first, eda_strengths[starting], motion)
        gasping = starting & (gasps > 0)
        breathing_phase, resp = self._breathing(responses["resp"], onsets[gasping] - first, gasps[gasping], motion)
        bvp = self._pulse(breathing_phase, responses["heart"], responses["pulse"], motion)
        spo2 = self._saturation(responses["spo2"], motion)
        self.position += n
        last_delay = int(round(max(d for d, _, _ in _RESPONSE_DYNAMICS.values()) * self.fs))
        self._episodes = [e for e in episodes if e.offset + e.latency + last_delay > self.position]
        return {"EDA": eda, "BVP": bvp, "RESP": resp, "SpO2": spo2}


# --------------------------------------------------------------------------- the device


class _Sensor:
    """One sensor of a device (see :class:`SensorSettings`), reading a signal at the model's rate."""

    def __init__(self, settings: SensorSettings, fs: float, rng: np.random.Generator):
        self._settings, self._rng = settings, rng
        self._gain = settings.gain * math.exp(settings.gain_spread * rng.standard_normal())
        self._offset = settings.offset + settings.offset_spread * rng.standard_normal()
        self._drift = _OrnsteinUhlenbeck(rng, fs, _SENSOR_DRIFT_S, settings.drift) if settings.drift else None
        self._readings_per_sample = settings.source_rate_hz / fs if settings.source_rate_hz else None
        self._held = math.nan

    def read(self, values: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
        """Readings at samples ``first ..`` (each held until the next), and which samples take a new reading."""
        settings, n = self._settings, len(values)
        x = self._gain * values + self._offset
        if self._drift is not None:
            x = x + self._drift(n)
        if self._readings_per_sample is None:
            fresh = np.ones(n, dtype=bool)
        else:
            ticks = np.floor((first - 1 + np.arange(n + 1)) * self._readings_per_sample + 1e-9)
            fresh = ticks[1:] > ticks[:-1]
        readings = x[fresh]
        if settings.noise:
            readings = readings + self._rng.normal(0.0, settings.noise, len(readings))
        if settings.resolution:
            readings = np.round(readings / settings.resolution) * settings.resolution
        readings = np.clip(readings, *settings.limits)
        held = np.concatenate([[self._held], readings])[np.cumsum(fresh)]
        if len(readings):
            self._held = float(readings[-1])
        return held, fresh


def _sensors(device: DeviceSettings, fs: float, streams: _Streams) -> dict[str, _Sensor]:
    return {channel: _Sensor(device.sensors[channel], fs, streams()) for channel in CHANNELS}


# --------------------------------------------------------------------------- front ends


@dataclass
class Recording:
    """A recording from :func:`simulate_recording`.

    Attributes
    ----------
    profile : SubjectProfile
    device : DeviceSettings
    effects : PainEffects
    sampling_rate : float
        Hz of every signal.
    signals : dict of str to ndarray
        Channel -> readings in the device's units, float64, shape (n_samples,).
    strengths : dict of str to ndarray
        Response channel (:data:`RESPONSES`) -> strength of each episode, in the order given.
    onsets : dict of str to ndarray
        Response channel -> sample at which each episode's response in that channel starts
        (the episode's onset, plus the subject's latency with this episode's jitter, plus the
        channel's delay: the evoked SCR's impulse, the start of the heart-rate step, ...).
    """

    profile: SubjectProfile
    device: DeviceSettings
    effects: PainEffects
    sampling_rate: float
    signals: dict[str, np.ndarray]
    strengths: dict[str, np.ndarray] = field(default_factory=dict)
    onsets: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def units(self) -> dict[str, str]:
        """Channel -> unit of its readings."""
        return {channel: self.device.sensors[channel].unit for channel in self.signals}


def simulate_recording(
    n_samples: int,
    rng: np.random.Generator,
    episodes: Sequence[tuple[int, int, int]] = (),
    *,
    sampling_rate: float = 100.0,
    profile: SubjectProfile | None = None,
    effects: str | PainEffects = "default",
    device: str | DeviceSettings = "finger-lab",
    scale: float = 1.0,
) -> Recording:
    """Simulate one subject's continuous recording with pain episodes at known samples (the batch front end).

    Parameters
    ----------
    n_samples : int
        Length of the recording in samples.
    rng : numpy.random.Generator
        Source of every random draw (the subject's profile first, unless given).
    episodes : sequence of (int, int, int)
        ``(onset, offset, level)`` of each pain episode: samples, and 1 (low) or 2 (high).
    sampling_rate : float, default 100.0
        Hz of the model and of the output.
    profile : SubjectProfile, optional
        The subject; default :func:`draw_profile` ``(rng)``.
    effects : str or PainEffects, default "default"
        A name from :data:`EFFECT_PRESETS` or the settings.
    device : str or DeviceSettings, default "finger-lab"
        A name from :data:`DEVICE_PRESETS` or the settings. A sensor with a
        ``source_rate_hz`` is read at that rate and resampled to ``sampling_rate``.
    scale : float, default 1.0
        Factor on every response strength (the cohort's difficulty).

    Returns
    -------
    Recording

    Examples
    --------
    >>> recording = simulate_recording(3000, np.random.default_rng(0), [(1000, 2000, 2)], device="wrist-e4")
    >>> {channel: signal.shape for channel, signal in recording.signals.items()}["EDA"], recording.units["EDA"]
    ((3000,), 'uS')
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    for onset, offset, level in episodes:
        if level not in (PAIN_LEVELS["low"], PAIN_LEVELS["high"]) or not 0 <= onset < offset:
            raise ValueError(f"an episode is (onset, offset, level) with 0 <= onset < offset and level 1 or 2, "
                             f"got {(onset, offset, level)!r}")
    effects, device = pain_effects(effects), device_settings(device)
    profile = draw_profile(rng) if profile is None else profile
    streams = _Streams(rng)
    model = _Physiology(profile, effects, device, sampling_rate, streams)
    sensors = _sensors(device, sampling_rate, streams)
    drawn = [model.start_episode(onset, offset, level, scale) for onset, offset, level in episodes]
    delays = {name: int(round(delay_s * sampling_rate)) for name, (delay_s, _, _) in _RESPONSE_DYNAMICS.items()}
    physiology = model.advance(int(n_samples))
    signals = {}
    for channel, sensor in sensors.items():
        held, fresh = sensor.read(physiology[channel], 0)
        if device.sensors[channel].interpolate and not fresh.all():
            where = np.flatnonzero(fresh)
            held = np.interp(np.arange(n_samples), where, held[where])
        signals[channel] = held
    strengths = {name: np.array([e.strengths[name] for e in drawn]) for name in RESPONSES}
    onsets = {name: np.array([e.onset + e.latency + delays[name] for e in drawn], dtype=np.int64) for name in RESPONSES}
    return Recording(profile, device, effects, float(sampling_rate), signals, strengths, onsets)


class PhysiologyStream:
    """One simulated subject, streamed block by block (the streaming front end; the simulated hub's source).

    Each call to :meth:`block` continues the same physiology: filters,
    oscillators and event processes carry their state across blocks, so
    consecutive blocks join without a jump. A pain level that switches on
    starts a pain episode (a response 1-3 s later that holds while the level
    lasts and fades after it ends), exactly as in :func:`simulate_recording`.

    Parameters
    ----------
    sampling_rates : dict of str to float
        Hz of each channel to produce (any of :data:`CHANNELS`). The model runs
        at the highest; a slower channel reads it at its own rate (a sensor's
        held reading: a 1 Hz oximeter gives that second's value).
    rng : numpy.random.Generator
        Source of every random draw (use a seeded ``np.random.default_rng``).
    profile : SubjectProfile, optional
        The subject; default :func:`draw_profile` ``(rng)``.
    effects : str or PainEffects, default "default"
    device : str or DeviceSettings, default "finger-lab"
        As in :func:`simulate_recording`; a sensor's ``source_rate_hz`` holds
        its readings, and ``sampling_rates`` decide what is sent.
    scale : float, default 1.0
        Factor on every response strength.
    """

    def __init__(
        self,
        sampling_rates: Mapping[str, float],
        rng: np.random.Generator,
        *,
        profile: SubjectProfile | None = None,
        effects: str | PainEffects = "default",
        device: str | DeviceSettings = "finger-lab",
        scale: float = 1.0,
    ):
        self.rates = {channel: float(rate) for channel, rate in sampling_rates.items()}
        unknown = set(self.rates) - set(CHANNELS)
        if unknown or not self.rates or min(self.rates.values()) <= 0:
            raise ValueError(f"sampling_rates must map channels of {CHANNELS} to rates > 0 Hz, got {dict(sampling_rates)}")
        self.model_rate = max(self.rates.values())
        self.effects, self.device = pain_effects(effects), device_settings(device)
        self.profile = draw_profile(rng) if profile is None else profile
        self.scale = scale
        streams = _Streams(rng)
        self._model = _Physiology(self.profile, self.effects, self.device, self.model_rate, streams)
        self._sensors = _sensors(self.device, self.model_rate, streams)
        self._pain = PAIN_LEVELS["none"]

    def block(self, start_s: float, duration_s: float, pain: int = 0) -> dict[str, np.ndarray]:
        """Readings of every channel for stream seconds ``[start_s, start_s + duration_s)``, in the device's units.

        Blocks come in time order; a block that starts after the previous one
        ended skips the gap (the physiology goes on meanwhile). ``pain``: 0
        none, 1 low, 2 high, for the whole block.
        """
        if pain not in PAIN_LEVELS.values():
            raise ValueError(f"pain must be one of {sorted(PAIN_LEVELS.values())} (none, low, high), got {pain!r}")
        first = int(round(start_s * self.model_rate))
        stop = int(round((start_s + duration_s) * self.model_rate))
        if stop <= first:
            raise ValueError(f"duration_s must cover at least one sample at {self.model_rate:g} Hz, got {duration_s!r}")
        if first < self._model.position:
            raise ValueError(f"blocks must come in time order: this one starts at {start_s:g} s, the previous one "
                             f"ended at {self._model.position / self.model_rate:g} s")
        if first > self._model.position:
            self._read(first - self._model.position)
        if pain != self._pain:
            if self._pain:
                self._model.end_episode(first)
            if pain:
                self._model.start_episode(first, None, pain, self.scale)
            self._pain = pain
        readings = self._read(stop - first)
        out = {}
        for channel, rate in self.rates.items():
            samples = np.arange(int(round(start_s * rate)), int(round((start_s + duration_s) * rate)))
            index = np.floor(samples * self.model_rate / rate + 1e-9).astype(np.int64) - first
            out[channel] = readings[channel][np.clip(index, 0, stop - first - 1)]
        return out

    def _read(self, n: int) -> dict[str, np.ndarray]:
        first = self._model.position
        physiology = self._model.advance(n)
        return {channel: sensor.read(physiology[channel], first)[0] for channel, sensor in self._sensors.items()}
