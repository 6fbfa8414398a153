"""Recordings in the field's formats, read into the protocol's channels: :func:`read_recording`.

One reader for replay (``biomoe monitor --replay``, ``biomoe simulate-device
--replay``) and import (``biomoe import``):

=====================  =====================================================  ===========================
format                 how it is recognised                                    read with
=====================  =====================================================  ===========================
EDF, EDF+, BDF, BDF+   ``.edf`` / ``.bdf`` (annotations kept)                  pyedflib
WFDB record            ``.hea`` (or the record name beside one)                wfdb (``pip install -e ".[formats]"``)
Empatica E4 session    a folder holding ``EDA.csv`` / ``BVP.csv`` (or .gz)     numpy
plain CSV              ``.csv`` / ``.csv.gz``: a header row naming columns,     csv + numpy
                       or one headerless column (its channel from the map:     (:mod:`.csv_table`)
                       ``--map EDA=1``); ``rate_hz`` (``--rate``) unless a
                       ``time``/``timestamp`` column (s, ms, ISO) gives it
=====================  =====================================================  ===========================

(The AI4PAIN layout is replayed by the simulator itself: ``--replay DIR
--subject ID``.)

Channels are mapped to the protocol's ``EDA``, ``BVP``, ``RESP`` and ``SpO2``
by ``channel_map`` (``--map EDA=GSR,BVP=Pleth``) or else by the usual names
(GSR, PPG, Pleth, RSP, SaO2, ...; case-insensitive), alone or as the first
word of the name (``Resp Thorax``, ``EDA-Wrist``; several such: refused).
Units are converted to the protocol's (EDA in microsiemens, skin resistance
inverted; SpO2 in percent, a fraction x 100; the table in
:mod:`edge.protocol_channels`); a unit that cannot be converted is refused. Every
problem is one :class:`~edge.errors.EdgeError` line naming the file and what to do.

Missing samples (NaN, empty CSV cells, WFDB gaps) up to
:data:`MAX_FILLED_GAP_SECONDS` repeat the last value. A longer stretch is kept
as missing (:attr:`SourceRecording.missing`, one warning line per channel):
a replay flags it as a lead-off, an import leaves out the segments it touches,
so nothing is read or trained on a made-up flat line.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from edge.errors import EdgeError
from edge.protocol_channels import CHANNEL_ALIASES, PROTOCOL_CHANNELS, PROTOCOL_UNITS, first_word, known_units, \
    unit_conversion
from edge.recording.csv_table import read_csv_columns
from edge.windows import MAX_CHANNEL_RATE_HZ

__all__ = ["PROTOCOL_CHANNELS", "PROTOCOL_RATE_HZ", "SourceRecording", "read_recording", "parse_channel_map",
           "read_e4_signal", "resample_to"]

logger = logging.getLogger(__name__)

#: The rate a replay sends the protocol's channels (:data:`edge.protocol_channels.PROTOCOL_CHANNELS`) at.
PROTOCOL_RATE_HZ = 100.0
#: Missing stretches (NaN, empty CSV cells, WFDB gaps) up to this long are filled with the last value;
#: a longer one is kept as missing (:attr:`SourceRecording.missing`), never read as a flat line.
MAX_FILLED_GAP_SECONDS = 1.0
#: Source rates a replay or import accepts (Hz): below, a 10 s window holds too little of the signal;
#: above, more than the monitor's windows take (:data:`edge.windows.MAX_CHANNEL_RATE_HZ`).
RATE_RANGE_HZ = {"EDA": (1.0, MAX_CHANNEL_RATE_HZ), "BVP": (10.0, MAX_CHANNEL_RATE_HZ),
                 "RESP": (1.0, MAX_CHANNEL_RATE_HZ), "SpO2": (0.1, MAX_CHANNEL_RATE_HZ)}

@dataclass
class SourceRecording:
    """One recording in the protocol's channels.

    Attributes
    ----------
    signals : dict of str to ndarray
        Protocol channel -> physical samples (protocol units), at ``rates``.
    rates : dict of str to float
        Hz per channel.
    path : str
        Where it was read from.
    units : dict of str to str
        Protocol channel -> its unit (``uS``, ``%``; the source's for BVP and RESP).
    scaling : dict of str to (raw_min, raw_max, scale, offset)
        For EDF/BDF: the file's digital range and scaling (in protocol units),
        so a replay sends the stored integers unchanged.
    annotations : list of (onset s, duration s, text)
        From EDF+ annotations (empty for the other formats).
    missing : dict of str to list of (start s, end s)
        Protocol channel -> its stretches without samples longer than
        :data:`MAX_FILLED_GAP_SECONDS` (end exclusive). ``signals`` hold the
        last value there only to stay finite: a replay flags them as a
        lead-off, an import leaves out the segments they touch.
    """

    signals: dict
    rates: dict
    path: str
    units: dict = field(default_factory=dict)
    scaling: dict = field(default_factory=dict)
    annotations: list = field(default_factory=list)
    missing: dict = field(default_factory=dict)

    def at_rate(self, rate_hz: float = PROTOCOL_RATE_HZ) -> dict[str, np.ndarray]:
        """Every channel resampled to ``rate_hz`` (polyphase), cut to the shortest."""
        resampled = {name: resample_to(values, self.rates[name], rate_hz) for name, values in self.signals.items()}
        length = min(len(values) for values in resampled.values())
        return {name: values[:length] for name, values in resampled.items()}


def resample_to(samples: np.ndarray, rate_hz: float, target_hz: float) -> np.ndarray:
    """``samples`` at ``rate_hz`` resampled to ``target_hz`` (polyphase, ratio within 1/1000)."""
    from scipy.signal import resample_poly

    samples = np.asarray(samples, dtype=np.float64)
    if math.isclose(rate_hz, target_hz):
        return samples
    ratio = Fraction(target_hz / rate_hz).limit_denominator(1000)
    return resample_poly(samples, ratio.numerator, ratio.denominator, padtype="line")


def parse_channel_map(text: str | None) -> dict[str, str]:
    """``"EDA=GSR,BVP=Pleth"`` -> ``{"EDA": "GSR", "BVP": "Pleth"}``; protocol channels only."""
    if not text:
        return {}
    mapping = {}
    for item in text.split(","):
        channel, sep, source = (part.strip() for part in item.partition("="))
        if not sep or not source or channel not in PROTOCOL_CHANNELS:
            raise EdgeError(f"--map {text!r}: expected CHANNEL=NAME pairs separated by commas, CHANNEL one of "
                            f"{', '.join(PROTOCOL_CHANNELS)} (e.g. EDA=GSR,BVP=Pleth); got {item!r}")
        mapping[channel] = source
    return mapping


def read_recording(path, channel_map: dict[str, str] | None = None, rate_hz: float | None = None) -> SourceRecording:
    """Read a recording and map its channels to the protocol's (see the module docstring).

    Parameters
    ----------
    path : str or Path
        A file (``.edf``, ``.bdf``, ``.hea``, ``.csv``, ``.csv.gz``) or an E4 session folder.
    channel_map : dict, optional
        Protocol channel -> the source's channel name.
    rate_hz : float, optional
        Sampling rate of a CSV without a time column.

    Raises
    ------
    EdgeError
        Missing or unreadable file, a channel the map names that is not there,
        no channel the protocol knows, a unit that cannot be converted, a rate
        out of :data:`RATE_RANGE_HZ`.
    """
    path = Path(path)
    channel_map = dict(channel_map or {})
    name = path.name.lower()
    wfdb_record = path.suffix.lower() in (".hea", ".dat") or (not path.exists() and path.with_name(path.name + ".hea")
                                                              .exists())
    if path.is_dir():
        columns, annotations = _read_e4(path), []
    elif wfdb_record:
        columns, annotations = _read_wfdb(path), []
    elif not path.exists():
        raise EdgeError(f"{path}: no such file or folder")
    elif name.endswith((".edf", ".bdf")):
        columns, annotations = _read_edf(path)
    elif name.endswith((".csv", ".csv.gz")):
        columns, annotations = read_csv_columns(path, rate_hz, channel_map), []
    else:
        raise EdgeError(f"{path}: unknown recording format; give an EDF/BDF file, a WFDB .hea, a CSV or an E4 "
                        "session folder")
    return _to_protocol(path, columns, channel_map, annotations)


# (name, unit (None: already the protocol's), rate Hz, samples, (raw_min, raw_max, scale, offset) or None)
_Column = tuple[str, str | None, float, np.ndarray, tuple | None]


def _to_protocol(path: Path, columns: list[_Column], channel_map: dict[str, str], annotations) -> SourceRecording:
    by_name = {column[0]: column[1:] for column in columns}
    lowered = {name.strip().lower(): name for name in by_name}
    chosen = {}
    for channel, source in channel_map.items():
        if source not in by_name and source.lower() not in lowered:
            raise EdgeError(f"{path}: --map {channel}={source}: no channel {source!r}; its channels are "
                            f"{', '.join(by_name)}")
        chosen[channel] = source if source in by_name else lowered[source.lower()]
    for channel in PROTOCOL_CHANNELS:
        if channel in chosen:
            continue
        match = next((lowered[alias] for alias in CHANNEL_ALIASES[channel] if alias in lowered
                      and lowered[alias] not in chosen.values()), None)
        if match is None:  # a usual name as the first word: 'Resp Thorax', 'EDA-Wrist'
            qualified = [name for name in by_name
                         if name not in chosen.values() and first_word(name) in CHANNEL_ALIASES[channel]]
            if len(qualified) > 1:
                raise EdgeError(f"{path}: several channels could be {channel} ({', '.join(qualified)}); say which "
                                f"with --map {channel}={qualified[0]}")
            match = qualified[0] if qualified else None
        if match is not None:
            chosen[channel] = match
    if not chosen:
        raise EdgeError(f"{path}: none of its channels ({', '.join(by_name)}) is EDA, BVP, RESP or SpO2 by name; "
                        "say which is which with --map, e.g. --map EDA=GSR,BVP=Pleth")
    recording = SourceRecording({}, {}, str(path), annotations=list(annotations))
    for channel, source in chosen.items():
        unit, rate, values, scaling = by_name[source]
        low, high = RATE_RANGE_HZ[channel]
        if not (math.isfinite(rate) and low <= rate <= high):
            raise EdgeError(f"{path}: {source} ({channel}) is sampled at {rate:g} Hz; the protocol carries "
                            f"{channel} at {low:g} to {high:g} Hz; resample it first or check the file's rate")
        values, factor = _in_protocol_unit(np.asarray(values, dtype=np.float64), channel, unit,
                                           f"{path}: {source} ({channel})")
        if not np.isfinite(values).any():
            raise EdgeError(f"{path}: {source} ({channel}) holds no finite sample")
        gaps = [(start / rate, end / rate) for start, end in _missing_runs(values)
                if end - start > MAX_FILLED_GAP_SECONDS * rate]
        if gaps:
            recording.missing[channel] = gaps
            _warn_missing(f"{path}: {source} ({channel})", gaps)
        recording.signals[channel], recording.rates[channel] = _fill_gaps(values), rate
        recording.units[channel] = _protocol_unit(channel, unit)
        if scaling is not None and factor is not None:
            raw_min, raw_max, scale, offset = scaling
            recording.scaling[channel] = (raw_min, raw_max, scale * factor, offset * factor)
    return recording


def _in_protocol_unit(values: np.ndarray, channel: str, unit: str | None,
                      where: str) -> tuple[np.ndarray, float | None]:
    """``values`` in the protocol's unit of ``channel``, and the factor applied (None: skin resistance inverted)."""
    conversion = unit_conversion(channel, unit)
    if conversion is None:
        raise EdgeError(f"{where} is in {unit!r}, which is not a unit of {channel} "
                        f"({', '.join(repr(u) for u in known_units(channel))}); check --map or convert the channel")
    return conversion.apply(values), None if conversion.reciprocal else conversion.factor


def _protocol_unit(channel: str, unit: str | None) -> str:
    """The unit a replay's hello gives: the protocol's for EDA and SpO2, the source's (ASCII, 8 characters) else."""
    if PROTOCOL_UNITS[channel] is not None:
        return PROTOCOL_UNITS[channel]
    text = (unit or "").strip()
    return text if text and len(text) <= 8 and all(33 <= ord(c) <= 126 for c in text) else "a.u."


def _missing_runs(values: np.ndarray) -> list[tuple[int, int]]:
    """``[(first index, end index)]`` of each run of missing values (NaN), end exclusive."""
    edges = np.flatnonzero(np.diff(np.r_[False, ~np.isfinite(values), False].astype(np.int8)))
    return [(int(start), int(end)) for start, end in zip(edges[::2], edges[1::2])]


def _warn_missing(where: str, gaps: list[tuple[float, float]]) -> None:
    """One line for a channel's stretches without samples (s): how long in all, and the longest."""
    start, end = max(gaps, key=lambda gap: gap[1] - gap[0])
    logger.warning("%s has no samples for %g s in %d stretch(es) longer than %g s (the longest %g s from %g s); "
                   "not filled: a replay flags them as a lead-off, biomoe import leaves out the segments they touch",
                   where, sum(e - s for s, e in gaps), len(gaps), MAX_FILLED_GAP_SECONDS, end - start, start)


def _fill_gaps(values: np.ndarray) -> np.ndarray:
    """Missing values (NaN) repeat the previous sample; leading ones the first valid one."""
    valid = np.isfinite(values)
    if valid.all():
        return values
    index = np.where(valid, np.arange(len(values)), 0)
    np.maximum.accumulate(index, out=index)
    filled = values[index]
    filled[: np.argmax(valid)] = values[np.argmax(valid)]
    return filled


def _read_edf(path: Path) -> tuple[list[_Column], list]:
    import pyedflib

    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as exc:
        reason = str(exc).split(": ", 1)[-1]
        hint = ("pyedflib reads no EDF+D (discontinuous) file: export each continuous part as EDF+C (e.g. EDFbrowser)"
                if "discontinuous" in reason else "a truncated or unfinished file cannot be read, re-export it")
        raise EdgeError(f"{path}: not a readable EDF/BDF file ({reason}); {hint}") from None
    with reader:
        columns = []
        for i in range(reader.signals_in_file):
            low, high = reader.getDigitalMinimum(i), reader.getDigitalMaximum(i)
            scale = (reader.getPhysicalMaximum(i) - reader.getPhysicalMinimum(i)) / (high - low)
            columns.append((reader.getLabel(i), reader.getPhysicalDimension(i), float(reader.getSampleFrequency(i)),
                            reader.readSignal(i), (low, high, scale, reader.getPhysicalMinimum(i) - low * scale)))
        onsets, durations, texts = reader.readAnnotations()
    annotations = [(float(o), float(d) if d > 0 else 0.0, str(t)) for o, d, t in zip(onsets, durations, texts)]
    return columns, annotations


def _read_wfdb(path: Path) -> list[_Column]:
    try:
        import wfdb
    except ModuleNotFoundError:
        raise EdgeError(f"{path}: reading WFDB records needs the wfdb package; install the extra: "
                        'pip install -e ".[formats]"') from None
    record_name = str(path.with_suffix("")) if path.suffix.lower() in (".hea", ".dat") else str(path)
    try:
        record = wfdb.rdrecord(record_name)
    except Exception as exc:  # wfdb raises bare Exception, AttributeError... on records it cannot read
        raise EdgeError(f"{path}: not a readable WFDB record ({type(exc).__name__}: {exc}); check its .hea and "
                        "segment files, or convert it to EDF") from None
    return [(name, unit or "", float(record.fs), record.p_signal[:, i], None)
            for i, (name, unit) in enumerate(zip(record.sig_name, record.units))]


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def read_e4_signal(path: str | os.PathLike) -> tuple[float, float, np.ndarray]:
    """``(start unix time, sampling rate Hz, samples)`` of one single-column Empatica E4 CSV."""
    path = Path(path)
    try:
        with _open_text(path) as handle:
            values = np.loadtxt(handle, delimiter=",", ndmin=1)
    except (OSError, ValueError, EOFError) as error:
        raise EdgeError(f"{path}: not an E4 signal file ({error})") from None
    if values.ndim != 1 or len(values) < 3 or not values[1] > 0:
        raise EdgeError(f"{path}: expected the start time, the sampling rate, then samples, one per row")
    return float(values[0]), float(values[1]), values[2:]


def _read_e4(folder: Path) -> list[_Column]:
    """EDA (uS) and BVP of an E4 session folder, both from the later of their start times."""
    found = {}
    for stem, unit in (("EDA", "uS"), ("BVP", "a.u.")):
        for name in (f"{stem}.csv", f"{stem}.csv.gz"):
            if (folder / name).is_file():
                found[stem] = (unit, read_e4_signal(folder / name))
                break
    if not found:
        raise EdgeError(f"{folder}: a folder must be an E4 session (EDA.csv, BVP.csv); give a recording file instead")
    start = max(t0 for _, (t0, _, _) in found.values())
    return [(stem, unit, rate, values[int(round((start - t0) * rate)):], None)
            for stem, (unit, (t0, rate, values)) in found.items()]
