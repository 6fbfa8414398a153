"""``biomoe monitor --record DIR``: every sample the bridge delivers, kept as EDF+ (BDF+) files.

The monitor feeds one :class:`Recorder` every reader event (ingest thread)
and every stored window (main thread). Files are EDF+C (BDF+C when an ADC
has more than 16 bits), one per *continuous segment*: a new file starts when
the current one reaches ``rotate_seconds``, after a link loss, after a device
restart and when the device changes its channels. pyedflib (EDFlib) refuses
discontinuous EDF+D files, so a gap ends a file rather than being filled:
no sample in a file was invented.

Each channel is stored as the ADC's integers (digital range = the channel's
``raw_min..raw_max`` from the device's hello, physical range = ``raw * scale +
offset`` at both ends, unit from the hello): a reader's digital samples are
exactly the raw values the bridge delivered. One data record is one device
block. Annotations (EDF+ TALs, onsets in seconds from the file's first
sample, as pyedflib and MNE report them):

``window N: <level> p=<probability>`` (duration: the window; quality flags appended)
    every stored window, its raw label and that label's probability;
    skipped windows say why (``calibrating``, ``behind``).
``link lost ...`` / ``recording resumes after a gap of S s (...)``
    at the end of the file before a gap and the start of the file after it.
``device restarted (boot id B)``, ``link disconnected|connected``,
``lead_off|saturation on|off: CH``
    as they happen.

File names are ``biomoe-YYYYMMDDTHHMMSS.mmmZ.edf`` (UTC start of the first
sample, so they sort in time; the header's start date and time are UTC too).

Disk budget: :class:`Recorder` refuses to start when the folder's disk has
less than one rotated file plus ``min_free_mb`` free, and stops recording
(never monitoring) with one warning when free space falls under
``min_free_mb`` or a write fails. Size per hour: :func:`bytes_per_hour`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import shutil
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import EdgeError
from edge.recording.edf_writer import ANNOTATION_BYTES, EdfPlusWriter, EdfSignal, fits_bdf, needs_bdf
from firmware_bridge import ChannelBlock, DeviceConfig, DeviceEvent, GapEvent, LinkEvent, StatusEvent

#: Events of :class:`edge.dashboard.alerts.HighPainAlerts` that become annotations.
ALERT_EVENTS = ("alert", "alert_ack", "alert_end")

__all__ = ["Recorder", "edf_signals", "bytes_per_hour", "window_annotation", "DEFAULT_ROTATE_SECONDS",
           "DEFAULT_MIN_FREE_MB"]

logger = logging.getLogger(__name__)

#: A new file every hour.
DEFAULT_ROTATE_SECONDS = 3600.0
#: Free space the recorder leaves on the disk (the database and the system need it too).
DEFAULT_MIN_FREE_MB = 64.0
_OPEN_FILES = 4  # recent files kept open for the window annotations that arrive after their samples
_CHECK_DISK_EVERY = 60  # records between free-space checks and fsyncs
_MAX_WAITING_RECORDS = 8  # records assembled at once (a block's channels arrive together)


def edf_signals(config: DeviceConfig) -> tuple[list[EdfSignal], bool]:
    """The EDF signals of a device description, and whether the file must be BDF+ (an ADC over 16 bits).

    Raises
    ------
    EdgeError
        For an ADC range wider than the 24 bits of BDF+.
    """
    bdf = any(needs_bdf(c.raw_min, c.raw_max) for c in config.channels)
    signals = []
    for channel in config.channels:
        if not fits_bdf(channel.raw_min, channel.raw_max):
            raise EdgeError(f"cannot record channel {channel.name}: its ADC range {channel.raw_min}..{channel.raw_max} "
                            "is wider than the 24 bits of BDF+; record without --record")
        low = channel.raw_min * channel.scale + channel.offset
        high = channel.raw_max * channel.scale + channel.offset
        rate = config.sampling_rate(channel.name)
        signals.append(EdfSignal(channel.name, channel.unit, channel.samples_per_block, low, high,
                                 channel.raw_min, channel.raw_max, f"biomoe {channel.name} {rate:g} Hz"))
    return signals, bdf


def bytes_per_hour(config: DeviceConfig) -> float:
    """Bytes one hour of recording this device takes (samples plus the annotation signal)."""
    signals, bdf = edf_signals(config)
    sample_bytes = 3 if bdf else 2
    record = sample_bytes * sum(s.samples_per_record for s in signals) + ANNOTATION_BYTES
    return record * 3600.0 / config.block_duration_s


@dataclass
class _Record:
    """One data record being assembled: per channel the raw samples, and how many arrived."""

    device_time_s: float
    received_at: float
    samples: dict = field(default_factory=dict)
    filled: dict = field(default_factory=dict)


@dataclass
class _Segment:
    """One open file: its writer, absolute start (unix s) and the record index it began at."""

    writer: EdfPlusWriter
    start_abs: float
    first_record: int
    first_onset: float


class Recorder:
    """Writes what the bridge delivers to EDF+/BDF+ files in ``folder``.

    Parameters
    ----------
    folder : str or Path
        Created if missing.
    device : DeviceConfig
        The device's description (channels, units, ranges, block period).
    rotate_seconds : float
        Length of one file (default one hour).
    min_free_mb : float
        Free space to leave on the disk.
    """

    def __init__(self, folder, device: DeviceConfig, rotate_seconds: float = DEFAULT_ROTATE_SECONDS,
                 min_free_mb: float = DEFAULT_MIN_FREE_MB):
        if not (math.isfinite(rotate_seconds) and rotate_seconds > 0):
            raise EdgeError(f"recording rotation must be a number of seconds > 0, got {rotate_seconds!r}")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeError(f"cannot create the recording folder {self.folder}: {exc.strerror}; "
                            "choose another --record folder") from None
        if not os.access(self.folder, os.W_OK):
            raise EdgeError(f"cannot write to the recording folder {self.folder}: permission denied; "
                            "choose another --record folder or fix its permissions")
        self.rotate_seconds = float(rotate_seconds)
        self.min_free_bytes = min_free_mb * 2**20
        self.files: list[Path] = []
        self.on_file = None  # on_file(detail): a file was started (path, its start and the device clock's zero, unix s)
        self.recording = True
        self.stopped_because: str | None = None
        self.annotations_unplaced = 0
        self.samples_not_recorded = 0
        self._lock = threading.Lock()
        self._open: deque[_Segment] = deque()
        self._segment: _Segment | None = None
        self._records: dict[int, _Record] = {}
        self._abandoned: set[int] = set()  # records a gap touched: their other channels' samples are not recorded
        self._epochs: list[float] = []  # unix time of device time 0, one per device session
        self._window_epoch = 0  # the session of the windows being annotated now
        self._last_window_start = -math.inf
        self._last_abs_end = -math.inf
        self._pending_notes: list[tuple[str, float | None]] = []  # for the start of the next file
        self._gap_loss: dict | None = None  # samples lost since the last file ended: {"before", "reasons", "lost"}
        self._flags: dict[str, set[str]] = {}
        self._use(device)
        needed = bytes_per_hour(device) * self.rotate_seconds / 3600.0 + self.min_free_bytes
        free = shutil.disk_usage(self.folder).free
        if free < needed:
            raise EdgeError(
                f"not enough disk space to record in {self.folder}: {free / 2**20:.0f} MiB free, one "
                f"{self.rotate_seconds / 60:g}-minute file ({bytes_per_hour(device) / 2**20:.1f} MiB per hour) plus "
                f"{self.min_free_bytes / 2**20:.0f} MiB to leave free need {needed / 2**20:.0f} MiB; free some space "
                "or record elsewhere"
            )

    def _use(self, device: DeviceConfig) -> None:
        self.device = device
        self.signals, self.bdf = edf_signals(device)
        self._channels = [c.name for c in device.channels]
        self._per_record = {c.name: c.samples_per_block for c in device.channels}

    # -- what the monitor feeds (any thread)

    def on_event(self, event) -> None:
        """Record one reader event (blocks, gaps, status flags, restarts, link changes)."""
        if not self.recording:
            return
        with self._lock:
            try:
                self._dispatch(event)
            except OSError as exc:
                self._stop(f"cannot write to {self.folder}: {exc.strerror or exc}")
            except (ValueError, EdgeError) as exc:  # e.g. a new device description EDF cannot hold
                self._stop(str(exc))

    def on_window(self, result) -> None:
        """Annotate one stored window (:class:`~edge.storage.WindowResult`) over its device time span."""
        if not self.recording:
            return
        with self._lock:
            if result.start_time < self._last_window_start and self._window_epoch + 1 < len(self._epochs):
                self._window_epoch += 1  # windows arrive in order: time going back means the device restarted
            self._last_window_start = result.start_time
            if not self._epochs:
                return
            onset = self._epochs[self._window_epoch] + result.start_time
            try:
                self._annotate_at(onset, window_annotation(result), result.end_time - result.start_time)
            except OSError as exc:
                self._stop(f"cannot write to {self.folder}: {exc.strerror or exc}")

    def on_stored_event(self, kind: str, detail: dict) -> None:
        """Annotate the bedside page's High Pain alerts (raised, acknowledged, ended) where the recording is now."""
        if kind not in ALERT_EVENTS or not self.recording:
            return
        text = f"{kind.replace('_', ' ')} {detail['id']}: High Pain for {detail['high_seconds']:.0f} s"
        with self._lock:
            try:
                self._note(text)
            except OSError as exc:
                self._stop(f"cannot write to {self.folder}: {exc.strerror or exc}")

    def close(self) -> None:
        """Write the records complete so far and close every file (a last block some channels missed is not)."""
        with self._lock:
            if self.recording:
                try:
                    self._flush_complete()
                except OSError as exc:
                    self._stop(f"cannot write to {self.folder}: {exc.strerror or exc}")
            unfinished = sum(sum(record.filled.values()) for record in self._records.values())
            self.samples_not_recorded += unfinished
            self._records.clear()
            self._close_all()
        logger.info("recorded %d file(s) in %s%s%s", len(self.files), self.folder,
                    f"; {unfinished} samples of a last, incomplete block not recorded" if unfinished else "",
                    f"; {self.annotations_unplaced} annotations found no room (they are in the database)"
                    if self.annotations_unplaced else "")

    # -- events

    def _dispatch(self, event) -> None:
        if isinstance(event, ChannelBlock):
            if event.channel in self._per_record:
                self._place(event)
        elif isinstance(event, GapEvent):
            if event.channel in self._per_record:
                self._gap(event)
        elif isinstance(event, DeviceEvent):
            if event.kind == "session" and event.restarted:
                self._flush_complete()
                self._end_segment(f"device restarted (boot id {event.boot_id})")
                self._records.clear()
                self._abandoned.clear()
                self._epochs.append(math.nan)  # set by the new session's first block
            elif event.kind == "config" and event.config is not None and event.config != self.device:
                self._flush_complete()
                self._end_segment("device description changed")
                self._records.clear()
                self._abandoned.clear()
                self._use(event.config)
        elif isinstance(event, LinkEvent):
            self._note(f"link {event.kind}" + (f": {event.detail}" if event.detail else ""))
        elif isinstance(event, StatusEvent):
            for name in self._channels:
                now = {flag for flag, names in (("lead_off", event.lead_off), ("saturation", event.saturated))
                       if name in names}
                before = self._flags.get(name, set())
                for flag in sorted(now - before):
                    self._note_device(f"{flag} on: {name}", event.device_time_s)
                for flag in sorted(before - now):
                    self._note_device(f"{flag} off: {name}", event.device_time_s)
                self._flags[name] = now

    def _place(self, block: ChannelBlock) -> None:
        """Cut a block into the records it covers; write every record complete in all channels."""
        if not self._epochs or math.isnan(self._epochs[-1]):
            end = block.device_time_s + len(block.raw) / block.sampling_rate
            start = block.received_at - end  # unix time of device time 0
            if self._epochs:
                self._epochs[-1] = start
            else:
                self._epochs.append(start)
        n = self._per_record[block.channel]
        index = block.first_sample_index
        position = 0
        raw = np.asarray(block.raw)
        while position < len(raw):
            record_index, offset = divmod(index + position, n)
            take = min(n - offset, len(raw) - position)
            if record_index in self._abandoned:
                self.samples_not_recorded += take
                position += take
                continue
            record = self._records.get(record_index)
            if record is None:
                device_time = block.device_time_s + (record_index * n - index) / block.sampling_rate
                record = self._records[record_index] = _Record(device_time, block.received_at)
            samples = record.samples.setdefault(block.channel, np.zeros(n, dtype=np.int64))
            samples[offset:offset + take] = raw[position:position + take]
            record.filled[block.channel] = record.filled.get(block.channel, 0) + take
            position += take
        self._flush_complete()

    def _complete(self, record: _Record) -> bool:
        return all(record.filled.get(name, 0) >= self._per_record[name] for name in self._channels)

    def _flush_complete(self) -> None:
        """Write the complete records in order; a record still incomplete far behind the newest is given up."""
        for record_index in sorted(self._records):
            record = self._records[record_index]
            if not self._complete(record):
                if len(self._records) <= _MAX_WAITING_RECORDS:
                    break
                del self._records[record_index]
                self.samples_not_recorded += sum(record.filled.values())
                self._end_segment(f"record {record_index} incomplete: {sum(record.filled.values())} samples not "
                                  "recorded")
                continue
            del self._records[record_index]
            self._abandoned = {k for k in self._abandoned if k > record_index}
            self._write(record_index, record)

    def _gap(self, gap: GapEvent) -> None:
        """Samples that will never come: the records they touch are dropped and the file ends there.

        The gap is described once, with every channel's loss, when the next
        file starts (or at close): at the end of the file before it and at
        the start of the file after it.
        """
        n = self._per_record[gap.channel]
        first = gap.first_sample_index // n
        last = (gap.end_sample_index - 1) // n
        dropped = [self._records.pop(k) for k in sorted(self._records) if first <= k <= last]
        self._abandoned.update(range(first, last + 1))
        self.samples_not_recorded += sum(sum(r.filled.values()) for r in dropped)
        segment = self._segment
        if segment is not None and segment.first_record + segment.writer.records > first:
            return  # already written past it: a late notice of samples that were never placed
        if self._gap_loss is None:
            self._gap_loss = {"before": segment, "reasons": set(), "lost": {}}
            self._segment = None
        self._gap_loss["reasons"].add({"link": "link loss", "overflow": "queue overflow"}.get(gap.reason, gap.reason))
        self._gap_loss["lost"][gap.channel] = self._gap_loss["lost"].get(gap.channel, 0) + gap.n_samples

    def _describe_gap(self, after: _Segment | None) -> None:
        """Annotate the waiting gap at the end of the file before it and the start of ``after`` (None: no more)."""
        gap, self._gap_loss = self._gap_loss, None
        if gap is None:
            return
        lost = ", ".join(f"{name} {count}" for name, count in gap["lost"].items())
        what = f"{' and '.join(sorted(gap['reasons']))}: samples lost ({lost})"
        before = gap["before"]
        seconds = None
        if before is not None and after is not None:
            end_abs = before.start_abs + before.first_onset + before.writer.records * before.writer.record_seconds
            seconds = round(after.start_abs + after.first_onset - end_abs, 6)
        if before is not None and before in self._open:
            before.writer.annotate(before.first_onset + before.writer.records * before.writer.record_seconds,
                                   f"gap: {what}", seconds)
        if after is not None:
            gap_text = "" if seconds is None else f" of {seconds:g} s"
            after.writer.annotate(after.first_onset, f"recording resumes after a gap{gap_text} ({what})")

    # -- files

    def _write(self, record_index: int, record: _Record) -> None:
        epoch = self._epochs[-1]
        start_abs = epoch + record.device_time_s
        segment = self._segment
        if segment is not None:
            expected = segment.first_record + segment.writer.records
            length = segment.writer.records * segment.writer.record_seconds
            if record_index != expected:
                self._end_segment("samples missing")
            elif length >= self.rotate_seconds:
                self._segment = None  # rotation; the old file stays open for late window annotations
            segment = self._segment
        if segment is None:
            self._check_disk()
            if not self.recording:
                return
            if start_abs < self._last_abs_end:  # a restarted device clock must not go back in the recording
                shift = self._last_abs_end - start_abs
                self._epochs[-1] += shift
                start_abs += shift
            segment = self._start_segment(start_abs, record_index)
        onset = segment.first_onset + (record_index - segment.first_record) * segment.writer.record_seconds
        digital = []
        for signal in self.signals:
            values = record.samples[signal.label]
            outside = int(np.count_nonzero((values < signal.digital_min) | (values > signal.digital_max)))
            if outside:  # the hello's ADC range is the file's digital range: a value past it is stored at its end
                segment.writer.annotate(onset, f"{outside} samples of {signal.label} outside the ADC range "
                                               f"{signal.digital_min}..{signal.digital_max}, stored at its ends")
                values = np.clip(values, signal.digital_min, signal.digital_max)
            digital.append(values)
        segment.writer.write_record(onset, digital)
        self._last_abs_end = segment.start_abs + onset + segment.writer.record_seconds
        if segment.writer.records % _CHECK_DISK_EVERY == 0:
            segment.writer.sync()
            self._check_disk()

    def _start_segment(self, start_abs: float, record_index: int) -> _Segment:
        start = dt.datetime.fromtimestamp(math.floor(start_abs), tz=dt.timezone.utc).replace(tzinfo=None)
        stem = f"biomoe-{start:%Y%m%dT%H%M%S}.{int((start_abs % 1) * 1000):03d}Z"
        path = self.folder / f"{stem}.{'bdf' if self.bdf else 'edf'}"
        copy = 1
        while path.exists():
            copy += 1
            path = self.folder / f"{stem}-{copy}.{'bdf' if self.bdf else 'edf'}"
        writer = EdfPlusWriter(path, self.signals, self.device.block_duration_s, start, self.bdf)
        segment = _Segment(writer, float(math.floor(start_abs)), record_index, start_abs - math.floor(start_abs))
        self._segment = segment
        self._open.append(segment)
        self.files.append(path)
        while len(self._open) > _OPEN_FILES:
            self._close_writer(self._open.popleft())
        self._describe_gap(segment)
        for text, duration in self._pending_notes:
            writer.annotate(segment.first_onset, text, duration)
        self._pending_notes.clear()
        logger.debug("recording to %s", path)
        if self.on_file is not None:
            self.on_file({"file": str(path), "start_unix": start_abs, "device_time_zero_unix": self._epochs[-1]})
        return segment

    def _end_segment(self, why: str) -> None:
        """End the current file at its last record, saying why; the next file starts by saying it too."""
        segment = self._segment
        if segment is not None:
            segment.writer.annotate(segment.first_onset + segment.writer.records * segment.writer.record_seconds, why)
            self._segment = None
        self._pending_notes.append((why, None))

    def _close_writer(self, segment: _Segment) -> None:
        self.annotations_unplaced += segment.writer.close()

    def _close_all(self) -> None:
        self._describe_gap(None)
        while self._open:
            self._close_writer(self._open.popleft())
        self._segment = None

    def _note(self, text: str) -> None:
        """An annotation at the end of what the current file holds (link changes), else at the next file's start."""
        segment = self._segment
        if segment is None:
            self._pending_notes.append((text, None))
        else:
            segment.writer.annotate(segment.first_onset + segment.writer.records * segment.writer.record_seconds, text)

    def _note_device(self, text: str, device_time_s: float) -> None:
        if self._epochs and not math.isnan(self._epochs[-1]):
            self._annotate_at(self._epochs[-1] + device_time_s, text, None)

    def _annotate_at(self, abs_time: float, text: str, duration: float | None) -> None:
        """Annotate the newest open file that began at or before ``abs_time`` (else the oldest open one)."""
        target = next((s for s in reversed(self._open) if s.start_abs + s.first_onset <= abs_time + 1e-6),
                      self._open[0] if self._open else None)
        if target is None:
            self._pending_notes.append((text, duration))
        else:
            target.writer.annotate(abs_time - target.start_abs, text, duration)

    # -- disk budget

    def _check_disk(self) -> None:
        free = shutil.disk_usage(self.folder).free
        if free < self.min_free_bytes:
            self._stop(f"only {free / 2**20:.0f} MiB free on the disk of {self.folder} "
                       f"(recording leaves {self.min_free_bytes / 2**20:.0f} MiB)")

    def _stop(self, why: str) -> None:
        self.recording = False
        self.stopped_because = why
        logger.warning("recording stopped: %s; monitoring continues, the files so far are complete", why)
        try:
            self._close_all()
        except OSError:
            pass  # the disk refuses even the close: the files hold what was written


def window_annotation(result) -> str:
    """``window 12: High Pain p=0.67 [EDA flat_line]`` (or the reason a window was skipped)."""
    if result.probabilities and result.label is not None:
        what = f"{result.label} p={result.probabilities[result.label]:.3f}"
    else:
        what = f"no level ({result.skip_reason or 'skipped'})"
    flags = [f"{name} {' '.join(v.get('flags', []))}" for name, v in (result.quality or {}).items()
             if v.get("flags")]
    return f"window {result.window_index}: {what}" + (f" [{'; '.join(flags)}]" if flags else "")
