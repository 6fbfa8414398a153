"""firmware_bridge.simulator: realistic signals, conditions at known times, faults, AI4PAIN replay, CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.signal import find_peaks

from firmware_bridge.errors import BridgeError
from firmware_bridge.protocol import FrameDecoder, Hello, SampleBlock, Status
from firmware_bridge.reader import ChannelBlock, StatusEvent, StreamAssembler
from firmware_bridge.simulator import (
    Ai4PainRecording,
    SignalGenerator,
    SimulatedDevice,
    SimulatorParams,
    generator_config,
    parse_condition,
)
from rhythm import breathing_rate, heart_rate


class Collector:
    """A write() sink that keeps everything."""

    def __init__(self):
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


def stream_bytes(**options) -> tuple[bytes, SimulatedDevice]:
    """Run a simulated device as fast as possible into memory."""
    sink = Collector()
    device = SimulatedDevice(SimulatorParams(speed=0, **options), sink=sink)
    device.open()
    device.start()
    assert device.wait(timeout=60)
    device.close()
    return bytes(sink.data), device


def decode(data: bytes):
    decoder = FrameDecoder()
    items = decoder.feed(data) + decoder.flush()
    return items, StreamAssembler().process(items, received_at=0.0), decoder


def channel(events, name):
    blocks = [e for e in events if isinstance(e, ChannelBlock) and e.channel == name]
    return np.concatenate([b.samples for b in blocks]), np.concatenate([b.raw for b in blocks])


# --------------------------------------------------------------------------- signals


def test_generated_signals_look_physiological():
    """The simulated hub streams the shared physiology model (firmware_bridge.physiology), a random subject."""
    rng = np.random.default_rng(4)
    generator = SignalGenerator({"EDA": 100, "BVP": 100, "RESP": 100, "SpO2": 1}, rng)
    blocks = [generator.block(float(k), 1.0) for k in range(120)]
    signal = {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}

    assert 45 <= heart_rate(signal["BVP"]) <= 110
    assert 6 <= breathing_rate(signal["RESP"]) <= 28

    eda = signal["EDA"]
    assert 0.01 <= eda.min() and eda.max() < 40.0
    responses, _ = find_peaks(eda, prominence=0.05, distance=200)
    assert len(responses) >= 2  # phasic responses on top of the tonic level

    spo2 = signal["SpO2"]
    assert len(spo2) == 120 and 90 <= spo2.mean() <= 100 and np.array_equal(spo2, np.round(spo2))


def test_high_pain_raises_heart_rate_and_skin_conductance_responses():
    def measure(pain):
        generator = SignalGenerator({"EDA": 100, "BVP": 100, "RESP": 100, "SpO2": 1}, np.random.default_rng(5))
        blocks = [generator.block(float(k), 1.0, pain) for k in range(300)]
        bvp = np.concatenate([b["BVP"] for b in blocks])
        eda = np.concatenate([b["EDA"] for b in blocks])
        return heart_rate(bvp[500:]), len(find_peaks(eda, prominence=0.05, distance=100)[0])

    (rate_none, responses_none), (rate_high, responses_high) = measure(0), measure(2)
    assert rate_high > rate_none + 3  # bpm; this subject (seed 5) responds moderately with its heart
    assert responses_high > responses_none


def test_same_seed_same_bytes_and_another_seed_differs():
    options = dict(duration_s=8, flip_rate=0.001, drop_rate=0.05, duplicate_rate=0.05)
    first, _ = stream_bytes(seed=11, **options)
    again, _ = stream_bytes(seed=11, **options)
    other, _ = stream_bytes(seed=12, **options)
    assert first == again
    assert first != other


def test_default_device_description():
    config = generator_config()
    assert config.channel_names == ("EDA", "BVP", "RESP", "SpO2")
    assert [config.sampling_rate(n) for n in config.channel_names] == [100.0, 100.0, 100.0, 1.0]
    with pytest.raises(ValueError, match="block_ms"):
        generator_config(block_ms=250)  # SpO2 at 1 Hz does not fit a 250 ms block


def test_stream_has_hellos_statuses_and_every_block():
    data, device = stream_bytes(duration_s=12, seed=1)
    items, events, decoder = decode(data)
    hellos = [i for i in items if isinstance(i, Hello)]
    assert [h.next_block_index for h in hellos] == [0, 5, 10, 12]  # boot, every 5 s, end of stream
    assert sum(isinstance(i, Status) for i in items) == 12
    assert [i.block_index for i in items if isinstance(i, SampleBlock)] == list(range(12))
    assert decoder.stats.samples_ok == device.stats.samples_generated == {"EDA": 1200, "BVP": 1200, "RESP": 1200,
                                                                           "SpO2": 12}


# --------------------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("flat:EDA:30-60", ("flat", "EDA", 30.0, 60.0)),
        ("pain:HIGH:1.5-2", ("pain", "high", 1.5, 2.0)),
        ("disconnect:70-75", ("disconnect", "", 70.0, 75.0)),
    ],
)
def test_condition_parsing(spec, expected):
    condition = parse_condition(spec)
    assert (condition.kind, condition.target, condition.start_s, condition.end_s) == expected


@pytest.mark.parametrize("spec", ["flat:30-60", "melt:EDA:1-2", "flat:EDA:5-3", "stall:EDA:1-2", "pain:mild:1-2"])
def test_bad_conditions_explain_the_form(spec):
    with pytest.raises(ValueError, match="condition"):
        parse_condition(spec)


def test_condition_on_an_unknown_channel_names_the_channels():
    with pytest.raises(ValueError, match="EDA, BVP, RESP, SpO2"):
        SimulatedDevice(SimulatorParams(conditions=["flat:ECG:1-2"]))


def test_flat_saturated_and_lead_off_at_known_times():
    data, _ = stream_bytes(
        duration_s=10, seed=2, conditions=["flat:EDA:2-4", "saturate:BVP:3-5", "leadoff:RESP:6-8"]
    )
    _, events, _ = decode(data)
    config = generator_config()
    t = np.arange(1000) / 100.0

    eda, _ = channel(events, "EDA")
    inside = (t >= 2) & (t < 4)
    assert np.ptp(eda[inside]) == 0 and eda[inside][0] == eda[np.flatnonzero(inside)[0] - 1]
    assert np.ptp(eda[(t >= 4) & (t < 6)]) > 0

    _, bvp_raw = channel(events, "BVP")
    saturated = (t >= 3) & (t < 5)
    assert np.all(bvp_raw[saturated] == config.channel("BVP").raw_max)
    assert np.all(bvp_raw[~saturated] < config.channel("BVP").raw_max)

    statuses = [e for e in events if isinstance(e, StatusEvent)]
    # a status follows each block, so the one after the block that started at time s has device time s
    flagged = {round(s.device_time_s): (s.saturated, s.lead_off) for s in statuses}
    assert [s for s in range(10) if "BVP" in flagged[s][0]] == [3, 4]
    assert [s for s in range(10) if "RESP" in flagged[s][1]] == [6, 7]
    assert all(not flagged[s][1] for s in (0, 5, 8, 9))


def test_link_conditions_on_a_write_sink():
    data, device = stream_bytes(duration_s=20, seed=3, conditions=["disconnect:5-8", "reboot:12-14", "stall:16-17"])
    items, events, decoder = decode(data)
    stats = device.stats
    assert stats.frames_unsent >= 3 * 2  # three blocks and their statuses went nowhere
    assert stats.reboots == 1 and len(stats.boot_ids) == 2 and stats.stalls == 1
    sessions = [i for i in items if type(i).__name__ == "SessionStarted"]
    assert [s.restarted for s in sessions] == [False, True]
    assert decoder.stats.samples_lost["EDA"] == 300  # the disconnection; the reboot loses nothing (device off)
    assert decoder.stats.samples_ok["EDA"] + 300 == stats.samples_generated["EDA"] == 18 * 100


def test_a_disconnection_inside_a_stall_keeps_the_accounting_exact():
    data, device = stream_bytes(duration_s=15, seed=4, conditions=["stall:5-10", "disconnect:7-9"])
    items, _, decoder = decode(data)
    assert [i.block_index for i in items if isinstance(i, SampleBlock)] == [0, 1, 2, 3, 4, 5, 6] + list(range(9, 15))
    assert decoder.stats.samples_lost == {"EDA": 200, "BVP": 200, "RESP": 200, "SpO2": 2}
    assert device.stats.stalls == 1


# --------------------------------------------------------------------------- faults


def test_injected_faults_are_counted_and_reproducible():
    data, device = stream_bytes(duration_s=60, seed=5, flip_rate=0.0005, drop_rate=0.05, duplicate_rate=0.05)
    stats = device.stats
    assert stats.frames_dropped > 0 and stats.frames_duplicated > 0 and stats.bytes_flipped > 0
    _, _, decoder = decode(data)
    assert decoder.stats.duplicates > 0 and decoder.stats.crc_errors + decoder.stats.cobs_errors > 0
    for name, generated in stats.samples_generated.items():
        assert decoder.stats.samples_ok[name] + decoder.stats.samples_lost.get(name, 0) == generated


# --------------------------------------------------------------------------- replay


def write_subject(root, subject="7"):
    """A tiny AI4PAIN-format subject: padded columns, a NaN hole, an empty cell."""
    rng = np.random.default_rng(0)
    columns = {"Baseline": 250, "LOW_1": 120, "REST_1": 90, "HIGH_1": 101}
    truth = {}
    for folder, base in (("Eda", 4.0), ("Bvp", 0.0), ("Resp", 0.0), ("SpO2", 97.0)):
        (root / "train" / folder).mkdir(parents=True)
        data = {name: base + rng.normal(0, 1, n) for name, n in columns.items()}
        truth[folder] = data
        lines = [",".join(columns)]
        for i in range(max(columns.values())):
            cells = []
            for name, n in columns.items():
                if i >= n:
                    cells.append("" if name == "REST_1" else "nan")
                elif (folder, name, i) == ("Eda", "Baseline", 10):
                    cells.append("nan")  # a hole inside the data
                else:
                    cells.append(f"{data[name][i]:.6f}")
            lines.append(",".join(cells))
        (root / "train" / folder / f"{subject}.csv").write_text("\n".join(lines) + "\n")
    return truth


def test_ai4pain_recording_concatenates_segments_and_labels_them(tmp_path):
    truth = write_subject(tmp_path)
    recording = Ai4PainRecording(tmp_path, "7")
    assert [(s.name, s.label) for s in recording.timeline] == [
        ("Baseline", "no_pain"), ("LOW_1", "low_pain"), ("REST_1", "rest"), ("HIGH_1", "high_pain")]
    assert recording.timeline[1].start_s == 2.5 and recording.timeline[-1].end_s == 5.61
    assert len(recording) == 561
    eda = recording.signals["EDA"]
    assert eda[10] == pytest.approx(truth["Eda"]["Baseline"][9], abs=1e-6)  # the hole repeats the sample before
    assert eda[250:370] == pytest.approx(truth["Eda"]["LOW_1"], abs=1e-6)


def test_replay_streams_the_recording_within_quantisation(tmp_path):
    truth = write_subject(tmp_path)
    data, device = stream_bytes(replay_dir=str(tmp_path), subject="7", block_ms=100)
    assert device.duration_s == pytest.approx(5.6)  # whole 100 ms blocks only
    _, events, _ = decode(data)
    bvp, _ = channel(events, "BVP")
    spec = device.config.channel("BVP")
    expected = np.concatenate([truth["Bvp"][name] for name in ("Baseline", "LOW_1", "REST_1", "HIGH_1")])
    assert len(bvp) == 560
    assert np.max(np.abs(bvp - expected[:560])) <= spec.scale
    assert device.config.sampling_rate("SpO2") == 100.0


def test_replay_of_a_missing_subject_is_a_clear_error(tmp_path):
    write_subject(tmp_path)
    with pytest.raises(BridgeError, match="subject '99'") as info:
        SimulatedDevice(SimulatorParams(replay_dir=str(tmp_path), subject="99"))
    assert info.value.code == "replay_not_found"


def test_replay_rejects_pain_conditions(tmp_path):
    write_subject(tmp_path)
    with pytest.raises(ValueError, match="pain"):
        SimulatedDevice(SimulatorParams(replay_dir=str(tmp_path), subject="7", conditions=["pain:high:1-2"]))


# --------------------------------------------------------------------------- CLI


def test_cli_streams_on_a_pty_and_prints_its_path():
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "simulate-device", "--speed", "0", "--duration", "2", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("/dev/pts/")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--replay", "{tmp}", "--subject", "1"], "no AI4PAIN files for subject '1'"),
        (["--port", "/dev/biomoe-no-such-port"], "cannot open serial port '/dev/biomoe-no-such-port'"),
        (["--speed", "-1"], "speed must be >= 0"),
        (["--conditions", "flat:ECG:1-2"], "condition flat:ECG: no channel 'ECG'"),
    ],
)
def test_cli_user_errors_are_one_line_without_traceback(tmp_path, arguments, message):
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "simulate-device", *arguments],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"biomoe simulate-device: error: {message}")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
