"""Synthetic cohorts in the AI4PAIN layout, from the project's seeded model of pain physiology.

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

Physiology, devices and pain effects
------------------------------------
Each subject is drawn from the project's one physiology model,
:mod:`firmware_bridge.physiology` (the simulated sensor hub streams the same
model): a subject profile (resting levels, responsiveness and per-channel
gains with near non-responders, habituation over the 24 trials, artefacts),
each trial a pain episode with responses 1-3 s after its onset in every
channel (heart rate up, pulse amplitude down, an evoked SCR, extra SCRs and
a tonic EDA rise, faster and deeper breathing, a small SpO2 dip), fading
during the REST that follows. Its docstring gives every number, and
``training/README.md`` the published range behind each effect.

Two settings choose what the cohort looks like without changing a single
random draw (the same seed gives the same subjects and trials):

- ``device`` (``--device``, :data:`firmware_bridge.physiology.DEVICE_PRESETS`):
  ``finger-lab`` (default: EDA in uS, finger PPG and belt in arbitrary units
  at 100 Hz, an oximeter reporting whole percent once a second),
  ``wrist-e4`` (wrist EDA at 4 Hz and PPG at 64 Hz resampled to 100 Hz, a
  wrist pulse shape, three times the motion) or ``raw-adc`` (raw ADC counts
  with per-unit gain and offset spread, a large PPG DC offset, drift and
  saturation at full scale);
- ``effects`` (``--effects``, :data:`firmware_bridge.physiology.EFFECT_PRESETS`):
  ``default``, ``cardiac-dominant`` or ``eda-dominant`` response sizes.

A cohort with a held-out device-and-effect setting, for testing what a model
learnt on another one::

    biomoe synth --out data/synth                                     # train here (finger-lab, default)
    biomoe synth --out data/heldout --device wrist-e4 --effects eda-dominant --split validation

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
EDA        55.8 %  68.9 %  61.9 %  42.8 %
BVP        54.2 %  54.7 %  60.6 %  47.2 %
RESP       46.7 %  52.5 %  55.6 %  41.7 %
SpO2       35.0 %  34.7 %  35.8 %  34.4 %
all four   65.3 %  67.2 %  73.1 %  49.2 %
=========  ======  ======  ======  ====================

(macro-F1 with all four: 0.65, 0.68, 0.74; measured on the shared
physiology model, ``finger-lab`` device, ``default`` effects). Fusion beats
the best single signal by 9-12 points for seeds 0 and 2 but not EDA alone
for seed 1; without per-subject normalisation all four reach only 49-58 %
(subjects differ more than pain levels do). Seed 0 at "easy": 73.3 %, at
"hard": 58.6 % with all four. The feature observer sits 5-15 points under
the 75-80 % aimed for the ideal observer; most of its errors confuse Low
Pain with the other two classes.

Even knowing every trial's true strengths, Low and High overlap: choosing
the best threshold per subject on the mean log strength of the five
channels separates them 94 % of the time (mean over 59 subjects, seed 0;
measured before the model moved to :mod:`firmware_bridge.physiology`, whose
strengths follow the same distribution).

Seeds
-----
A subject's recording depends only on ``(seed, subject_id)``, the
difficulty, the device and the effects (the last three change no random
draw: the same subject and trials, scaled or recorded differently), so the
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

from firmware_bridge.physiology import (
    DEVICE_PRESETS,
    EFFECT_PRESETS,
    PAIN_LEVELS,
    DeviceSettings,
    PainEffects,
    SubjectProfile,
    device_settings,
    draw_profile,
    pain_effects,
    simulate_recording,
)
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
_EPISODES_PER_LEVEL = 3  # sustained protocol: 3 low and 3 high minutes of ongoing pain
_EPISODE_WINDOWS = 6  # a 60 s episode, six 10 s columns
PROTOCOLS = ("trials", "sustained")
_NAME_STYLES = ("plain", "prefixed", "x_upper")
_CHANNELS = {"Eda": "EDA", "Bvp": "BVP", "Resp": "RESP", "SpO2": "SpO2"}  # modality folder -> model channel
_FS = SAMPLING_RATE

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
        Continuous signal of each modality (float64, 100 Hz, in the device's units), before the CSV's rounding.
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


def _column_name(style: str, subject_id: int, kind: str, number: int) -> str:
    if style == "plain":
        return "Baseline" if kind == "baseline" else f"{kind.upper()}_{number}"
    if style == "prefixed":
        return f"{subject_id}_Baseline_1" if kind == "baseline" else f"{subject_id}_{kind.upper()}_{number}"
    return f"x{subject_id}_{kind.upper()}" if kind == "baseline" else f"x{subject_id}_{kind.upper()}_{number}"


def _padding(subject_id: int) -> str:
    """Empty cells or ``NaN`` after a short column, alternating every three subject ids."""
    return ("", "NaN")[subject_id // len(_NAME_STYLES) % 2]


def _session(rng: np.random.Generator, subject_id: int, protocol: str = "trials"):
    """Column names, kinds, sample bounds and pain episode (index, or -1) of each column of one session, in order.

    ``trials``: AI4PAIN's 10 s stimuli, one column (one window) each.
    ``sustained``: 60 s episodes of ongoing pain, each written as six 10 s columns
    (six windows) while the physiology sees one episode.
    """
    levels = rng.permutation(np.repeat(["low", "high"], _TRIALS_PER_LEVEL if protocol == "trials" else _EPISODES_PER_LEVEL))
    kinds = ["baseline"]
    lengths = [int(rng.integers(5955, 6046))]
    episode_of = [-1]
    for i, level in enumerate(levels):
        if protocol == "trials":
            kinds.append(str(level))
            lengths.append(int(np.clip(np.round(rng.normal(1040, 45)), 985, 1130)))
            episode_of.append(i)
        else:
            kinds += [str(level)] * _EPISODE_WINDOWS
            lengths += [int(_FS * 10)] * _EPISODE_WINDOWS
            episode_of += [i] * _EPISODE_WINDOWS
        if i < len(levels) - 1:
            kinds.append("rest")
            lengths.append(int(np.clip(np.round(rng.normal(4000, 250)), 3500, 4500)))
            episode_of.append(-1)
    counters = {"baseline": 0, "low": 0, "high": 0, "rest": 0}
    names = []
    for kind in kinds:
        counters[kind] += 1
        names.append(_column_name(_NAME_STYLES[subject_id % len(_NAME_STYLES)], subject_id, kind, counters[kind]))
    stops = np.cumsum(lengths)
    bounds = [(int(stop - length), int(stop)) for stop, length in zip(stops, lengths)]
    return names, kinds, bounds, np.asarray(episode_of)


def synthesize_subject(
    subject_id: int,
    seed: int = 0,
    difficulty: str | float = "medium",
    *,
    device: str | DeviceSettings = "finger-lab",
    effects: str | PainEffects = "default",
    protocol: str = "trials",
) -> SyntheticSubject:
    """Simulate one subject's session (see the module docstring for the model).

    Parameters
    ----------
    subject_id : int
        Subject number; with ``seed`` it fixes every random draw.
    seed : int, default 0
        Cohort seed.
    difficulty : {"easy", "medium", "hard"} or float, default "medium"
        A named difficulty or the response scale itself (> 0; larger is easier).
    device : str or DeviceSettings, default "finger-lab"
        A name from :data:`firmware_bridge.physiology.DEVICE_PRESETS` or the settings.
    effects : str or PainEffects, default "default"
        A name from :data:`firmware_bridge.physiology.EFFECT_PRESETS` or the settings.
    protocol : {"trials", "sustained"}, default "trials"
        AI4PAIN's 10 s stimuli, or 60 s episodes of ongoing pain written as six
        10 s columns each (what a bedside monitor sees).

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
    profile = draw_profile(rng)
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    names, kinds, bounds, episode_of = _session(rng, subject_id, protocol)
    trial = episode_of >= 0
    episodes = []
    for index in range(episode_of.max() + 1):
        columns = np.flatnonzero(episode_of == index)
        episodes.append((bounds[columns[0]][0], bounds[columns[-1]][1], PAIN_LEVELS[kinds[columns[0]]]))
    recording = simulate_recording(
        bounds[-1][1], rng, episodes, sampling_rate=_FS, profile=profile, effects=effects, device=device, scale=scale
    )
    strengths = {}
    for response, per_episode in recording.strengths.items():
        strengths[response] = np.zeros(len(names))
        strengths[response][trial] = np.asarray(per_episode)[episode_of[trial]]
    return SyntheticSubject(
        subject_id=subject_id,
        profile=profile,
        names=names,
        bounds=bounds,
        strengths=strengths,
        recording={modality: recording.signals[channel] for modality, channel in _CHANNELS.items()},
    )


def synthesize_cohort(
    root: str | Path,
    split: str,
    n_subjects: int | None = None,
    seed: int = 0,
    *,
    first_subject_id: int | None = None,
    difficulty: str | float = "medium",
    device: str | DeviceSettings = "finger-lab",
    effects: str | PainEffects = "default",
    protocol: str = "trials",
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
    device : str or DeviceSettings, default "finger-lab"
        Recording device: a name from :data:`firmware_bridge.physiology.DEVICE_PRESETS`
        (``finger-lab``, ``wrist-e4``, ``raw-adc``) or the settings.
    effects : str or PainEffects, default "default"
        Pain-response sizes: a name from :data:`firmware_bridge.physiology.EFFECT_PRESETS`
        (``default``, ``cardiac-dominant``, ``eda-dominant``) or the settings.
    protocol : {"trials", "sustained"}, default "trials"
        See :func:`synthesize_subject`.
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
    device = device_settings(device)
    effects = pain_effects(effects)

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
        subject = synthesize_subject(subject_id, seed, difficulty, device=device, effects=effects, protocol=protocol)
        for modality in MODALITIES:
            _write_columns(
                split_dir / modality / f"{subject_id}.csv",
                subject.columns(modality),
                _decimals(device.sensors[_CHANNELS[modality]].resolution),
                _padding(subject_id),
            )
    logger.info("wrote %d synthetic subjects (%d-%d) to %s", n_subjects, subject_ids[0], subject_ids[-1], split_dir)
    return subject_ids


def _progress(items: list, description: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="subject")


def _decimals(resolution: float) -> int:
    """Readings in whole steps (ADC counts, whole percent) are written as integers, others with 4 decimals."""
    return 0 if resolution >= 1 and float(resolution).is_integer() else 4


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
    parser.add_argument(
        "--device",
        default="finger-lab",
        choices=tuple(DEVICE_PRESETS),
        help="simulated recording device: finger-lab (uS and a.u. at 100 Hz), wrist-e4 (4 Hz EDA, 64 Hz wrist PPG, "
        "resampled to 100 Hz), raw-adc (ADC counts with offsets, drift, saturation) (default: finger-lab)",
    )
    parser.add_argument(
        "--effects",
        default="default",
        choices=tuple(EFFECT_PRESETS),
        help="pain-response sizes: default, cardiac-dominant (heart strong, skin weak) or eda-dominant (the reverse) "
        "(default: default)",
    )
    parser.add_argument(
        "--protocol",
        default="trials",
        choices=PROTOCOLS,
        help="trials: AI4PAIN's 10 s stimuli (default); sustained: 60 s episodes of ongoing pain, six windows each",
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
            device=args.device,
            effects=args.effects,
            protocol=args.protocol,
            overwrite=args.overwrite,
            progress=True,
        )
        print(f"{args.out / split}: {len(ids)} subjects, ids {ids[0]}-{ids[-1]}, seed {args.seed}, {args.difficulty}, "
              f"device {args.device}, effects {args.effects}")
    return 0


def _resolve_difficulty(difficulty: str | float) -> float:
    if isinstance(difficulty, str):
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be one of {tuple(DIFFICULTIES)} or a positive number, got {difficulty!r}")
        return DIFFICULTIES[difficulty]
    if not float(difficulty) > 0:
        raise ValueError(f"difficulty as a number is the response scale and must be > 0, got {difficulty}")
    return float(difficulty)
