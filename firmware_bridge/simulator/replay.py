"""Replay sources of the simulated device: :class:`ReplayRecording`, :class:`Ai4PainRecording`, :class:`Segment`.

A :class:`ReplayRecording` holds signals already in memory (physical values,
each channel at its own rate, optionally with the ADC scaling to send them
with): ``edge.recording`` reads EDF+/BDF+, WFDB, E4 and CSV files into one
and passes it to :class:`~firmware_bridge.simulator.SimulatedDevice` (this
package reads no file format but AI4PAIN's CSVs). ``biomoe simulate-device
--replay DIR --subject ID`` streams one AI4PAIN subject (EDA, BVP, RESP and
SpO2, all four at 100 Hz) instead of the built-in generator.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_bridge.errors import BridgeError
from firmware_bridge.protocol import ChannelSpec, DeviceConfig, SampleFormat

__all__ = ["Segment", "ReplayRecording", "Ai4PainRecording"]

CHANNELS = ("EDA", "BVP", "RESP", "SpO2")


@dataclass(frozen=True)
class Segment:
    """One replayed AI4PAIN segment: its column name, label and place in the stream (s)."""

    name: str
    label: str
    start_s: float
    end_s: float


_MODALITY_FOLDERS = {"EDA": "eda", "BVP": "bvp", "RESP": "resp", "SpO2": "spo2"}
_SEGMENT_LABELS = {"baseline": "no_pain", "low": "low_pain", "high": "high_pain", "rest": "rest"}


class ReplayRecording:
    """Signals to replay: physical values per channel, each at its own rate.

    Parameters
    ----------
    signals : dict of str to ndarray
        Channel name -> physical samples.
    rates : dict of str to float
        Hz per channel; ``rate * block_ms / 1000`` must be a whole number.
    units : dict of str to str
        Unit per channel (the hello's).
    scaling : dict of str to (raw_min, raw_max, scale, offset), optional
        The ADC scaling to send a channel with (a recording of a real device
        replays its raw values exactly); default: int16 fitted to the
        signal's range, full scale left for saturation.
    timeline : list of Segment, optional
        Labelled parts, for reports.
    """

    def __init__(self, signals: dict, rates: dict, units: dict, scaling: dict | None = None,
                 timeline: list | None = None):
        self.signals = {name: np.asarray(values, dtype=np.float64) for name, values in signals.items()}
        self.rates = {name: float(rates[name]) for name in self.signals}
        self.units = dict(units)
        self.scaling = dict(scaling or {})
        self.timeline: list[Segment] = list(timeline or [])

    def config(self, block_ms: int, firmware_version: int = 1) -> DeviceConfig:
        """A device description sending these signals in blocks of ``block_ms``."""
        specs = []
        for name, values in self.signals.items():
            per_block = self.rates[name] * block_ms / 1000
            if abs(per_block - round(per_block)) > 1e-9 or not 1 <= per_block <= 65535:
                raise ValueError(f"{name} at {self.rates[name]:g} Hz gives {per_block:g} samples per {block_ms} ms "
                                 "block; it must be a whole number from 1 to 65535 (choose block_ms or resample)")
            if name in self.scaling:
                raw_min, raw_max, scale, offset = self.scaling[name]
                sample_format = SampleFormat.INT16 if -32768 <= raw_min and raw_max <= 32767 else SampleFormat.INT32
            else:
                low, high = float(np.min(values)), float(np.max(values))
                if high - low < 1e-6:
                    low, high = low - 1.0, high + 1.0
                # +-30000 of the int16 range: only the saturate condition reaches full scale
                raw_min, raw_max, scale, offset = -32768, 32767, (high - low) / 60000, (low + high) / 2
                sample_format = SampleFormat.INT16
            specs.append(ChannelSpec(name, self.units.get(name, ""), int(round(per_block)), sample_format,
                                     raw_min, raw_max, scale, offset))
        return DeviceConfig(block_ms * 1000, tuple(specs), firmware_version)

    def blocks(self, block_ms: int) -> int:
        """Whole blocks the recording holds in every channel."""
        return min(int(len(values) // round(self.rates[name] * block_ms / 1000))
                   for name, values in self.signals.items())

    def block(self, k: int, block_ms: int) -> dict[str, np.ndarray]:
        """Physical samples of block ``k`` per channel (from the start again past the end)."""
        out = {}
        for name, values in self.signals.items():
            n = int(round(self.rates[name] * block_ms / 1000))
            out[name] = values[(k * n + np.arange(n)) % len(values)]
        return out


class Ai4PainRecording(ReplayRecording):
    """One subject of an AI4PAIN-format data set, as four continuous 100 Hz signals.

    Layout (``/work/shared/reference/ai4pain/FORMAT.md``): ``ROOT/[split/]Eda/ID.csv``
    and the same for ``Bvp``, ``Resp``, ``SpO2``; one header row, one column
    per segment, NaN- or empty-padded. The segments present in all four files
    are concatenated in file order; trailing padding is removed and isolated
    missing values repeat the previous sample.

    Parameters
    ----------
    root : str or Path
        The data set root or one split folder.
    subject : str
        Subject id, the CSV file name without ``.csv``.
    """

    sampling_rate = 100.0

    def __init__(self, root: str | os.PathLike, subject: str):
        files = self._find(Path(root), str(subject))
        columns = {name: self._read_csv(path) for name, path in files.items()}
        common = [c for c in columns["EDA"] if all(c in columns[m] for m in CHANNELS)]
        pieces: dict[str, list[np.ndarray]] = {m: [] for m in CHANNELS}
        self.timeline: list[Segment] = []
        position = 0
        for column in common:
            length = min(len(columns[m][column]) for m in CHANNELS)
            if length == 0:
                continue
            for m in CHANNELS:
                pieces[m].append(columns[m][column][:length])
            kind = re.search(r"baseline|low|high|rest", column, re.IGNORECASE)
            label = _SEGMENT_LABELS[kind.group(0).lower()] if kind else "unknown"
            self.timeline.append(
                Segment(column, label, position / self.sampling_rate, (position + length) / self.sampling_rate)
            )
            position += length
        if position == 0:
            raise BridgeError(f"subject {subject} in {root} has no segment with data in all four signals",
                              "replay_empty")
        timeline, self.timeline = self.timeline, []
        super().__init__({m: np.concatenate(pieces[m]) for m in CHANNELS}, dict.fromkeys(CHANNELS, self.sampling_rate),
                         {"EDA": "uS", "BVP": "a.u.", "RESP": "a.u.", "SpO2": "%"}, timeline=timeline)

    @staticmethod
    def _find(root: Path, subject: str) -> dict[str, Path]:
        if not root.is_dir():
            raise BridgeError(f"replay folder {root} does not exist", "replay_not_found")
        tried = []
        for folder in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
            subfolders = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
            found = {}
            for channel, wanted in _MODALITY_FOLDERS.items():
                path = subfolders.get(wanted, folder / wanted) / f"{subject}.csv"
                tried.append(str(path))
                if path.is_file():
                    found[channel] = path
            if len(found) == len(CHANNELS):
                return found
        raise BridgeError(
            f"no AI4PAIN files for subject {subject!r} under {root}: expected Eda/, Bvp/, Resp/ and SpO2/ "
            f"folders holding {subject}.csv (tried e.g. {', '.join(tried[:4])})",
            "replay_not_found",
        )

    @staticmethod
    def _read_csv(path: Path) -> dict[str, np.ndarray]:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            raise BridgeError(f"{path} is empty; expected a header row and one column per segment", "replay_bad_file")
        header = [name.strip() for name in rows[0]]
        data = np.full((len(rows) - 1, len(header)), np.nan)
        for i, row in enumerate(rows[1:]):
            for j, cell in enumerate(row[: len(header)]):
                cell = cell.strip()
                if cell and cell.lower() != "nan":
                    try:
                        data[i, j] = float(cell)
                    except ValueError:
                        raise BridgeError(f"{path}, row {i + 2}: {cell!r} is not a number", "replay_bad_file") from None
        columns = {}
        for j, name in enumerate(header):
            values = data[:, j]
            valid = np.flatnonzero(np.isfinite(values))
            if len(valid) == 0:
                columns[name] = values[:0]
                continue
            values = values[: valid[-1] + 1]
            index = np.where(np.isfinite(values), np.arange(len(values)), 0)
            np.maximum.accumulate(index, out=index)
            values = values[index]
            values[: valid[0]] = values[valid[0]]
            columns[name] = values
        return columns

    def __len__(self) -> int:
        """Samples per channel (all four at 100 Hz)."""
        return len(self.signals["EDA"])
