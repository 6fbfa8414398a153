"""firmware_bridge.reader: loop:// and sim:// ports, a pty with faults and a reconnection, errors."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import numpy as np
import pytest
import serial

from firmware_bridge.errors import BridgeError
from firmware_bridge.protocol import (
    ChannelSpec, DeviceConfig, FrameDecoder, Hello, SampleBlock, SampleFormat, SessionStarted, Status, encode_frame,
)
from firmware_bridge.reader import (
    BridgeParams,
    ChannelBlock,
    DeviceEvent,
    GapEvent,
    LinkEvent,
    ReaderStats,
    SensorReader,
    StatusEvent,
    StreamAssembler,
)
from firmware_bridge.simulator import SimulatedDevice, SimulatorParams

CONFIG = DeviceConfig(
    100_000,
    (
        ChannelSpec("EDA", "uS", 10, scale=0.0005, offset=16.384),
        ChannelSpec("SpO2", "%", 1, SampleFormat.INT16, 0, 10000, 0.01),
    ),
)


def device_frames(n_blocks, boot_id=9, skip=(), statuses=None):
    """Hello, then blocks 0..n-1 (EDA raw = 100*block + k, SpO2 raw = 9700 + block), minus ``skip``."""
    frames = [Hello(1, boot_id, 0, 0, 0, CONFIG)]
    seq = 1
    for block in range(n_blocks):
        if block not in skip:
            samples = (np.arange(10, dtype=np.int16) + 100 * block, np.array([9700 + block], np.int16))
            frames.append(SampleBlock(1, boot_id, seq, 100 * block, block, samples))
        seq += 1
        if statuses and block in statuses:
            frames.append(Status(1, boot_id, seq, 100 * block, 3900, 80, 1, *statuses[block]))
            seq += 1
    frames.append(Hello(1, boot_id, seq, 100 * n_blocks, n_blocks, CONFIG))
    return frames


def wire(frames) -> bytes:
    return b"\x00" + b"".join(encode_frame(f) for f in frames)


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def loop_reader(request):
    queue_blocks = getattr(request, "param", 4096)
    reader = SensorReader(BridgeParams(port="loop://", queue_blocks=queue_blocks))
    reader.open()
    reader.start()
    yield reader
    reader.close()


def send(reader, data: bytes) -> None:
    before = reader.stats.bytes_read
    reader.port.write(data)
    wait_until(lambda: reader.stats.bytes_read >= before + len(data))


def tiles(events, name, expected_end):
    """The blocks and gaps of a channel cover [0, expected_end) exactly, in order."""
    position = 0
    for event in events:
        if isinstance(event, (ChannelBlock, GapEvent)) and event.channel == name:
            assert event.first_sample_index == position, (name, event)
            position = event.end_sample_index
    return position == expected_end


# --------------------------------------------------------------------------- loop://


def test_blocks_are_named_scaled_and_placed(loop_reader):
    send(loop_reader, wire(device_frames(3)))
    events = loop_reader.read(timeout=1)
    assert isinstance(events[0], LinkEvent) and events[0].kind == "connected"
    assert [e.kind for e in events if isinstance(e, DeviceEvent)] == ["session", "config"]
    eda = [e for e in events if isinstance(e, ChannelBlock) and e.channel == "EDA"]
    assert [b.first_sample_index for b in eda] == [0, 10, 20]
    assert eda[1].samples == pytest.approx((100 + np.arange(10)) * 0.0005 + 16.384, abs=1e-6)
    assert eda[1].raw.dtype == np.int16 and eda[1].unit == "uS" and eda[1].sampling_rate == 100.0
    assert eda[2].device_time_s == pytest.approx(0.2)
    spo2 = [e for e in events if isinstance(e, ChannelBlock) and e.channel == "SpO2"]
    assert [b.samples[0] for b in spo2] == pytest.approx([97.0, 97.01, 97.02])
    assert spo2[0].sampling_rate == 10.0 and spo2[0].session == (1, 9)
    assert loop_reader.config == CONFIG


def test_lost_blocks_become_gap_events_per_channel(loop_reader):
    send(loop_reader, wire(device_frames(6, skip={2, 3})))
    events = loop_reader.read(timeout=1)
    gaps = [e for e in events if isinstance(e, GapEvent)]
    assert [(g.channel, g.first_sample_index, g.n_samples, g.reason) for g in gaps] == [
        ("EDA", 20, 20, "link"), ("SpO2", 2, 2, "link")]
    assert gaps[0].device_time_s == pytest.approx(0.2)
    assert tiles(events, "EDA", 60) and tiles(events, "SpO2", 6)
    stats = loop_reader.stats
    assert stats.samples_delivered == {"EDA": 40, "SpO2": 4}
    assert stats.samples_lost_link == {"EDA": 20, "SpO2": 2}


def test_a_gap_late_in_the_session_is_placed_from_the_last_block_before_it(loop_reader):
    send(loop_reader, wire(device_frames(10, skip={6, 7})))
    gaps = [e for e in loop_reader.read(timeout=1) if isinstance(e, GapEvent)]
    assert [(g.channel, g.first_sample_index, g.n_samples) for g in gaps] == [("EDA", 60, 20), ("SpO2", 6, 2)]
    assert [g.device_time_s for g in gaps] == pytest.approx([0.6, 0.6])
    assert [g.sampling_rate for g in gaps] == [100.0, 10.0]  # 10 and 1 samples per 0.1 s block


def test_a_gap_before_the_first_block_starts_at_zero(loop_reader):
    send(loop_reader, wire(device_frames(4, skip={0, 1})))
    gaps = [e for e in loop_reader.read(timeout=1) if isinstance(e, GapEvent)]
    assert [(g.channel, g.first_sample_index, g.n_samples) for g in gaps] == [("EDA", 0, 20), ("SpO2", 0, 2)]
    assert [g.device_time_s for g in gaps] == [0.0, 0.0]


def test_status_flags_are_named_by_channel(loop_reader):
    send(loop_reader, wire(device_frames(2, statuses={1: (0b10, 0b01)})))
    status = [e for e in loop_reader.read(timeout=1) if isinstance(e, StatusEvent)]
    assert len(status) == 1
    assert status[0].lead_off == ("SpO2",) and status[0].saturated == ("EDA",)
    assert status[0].battery_mv == 3900 and status[0].battery_percent == 80 and status[0].charging


@pytest.mark.parametrize("loop_reader", [6], indirect=True)
def test_a_full_queue_turns_blocks_into_gaps_and_keeps_count(loop_reader):
    send(loop_reader, wire(device_frames(40, skip={7})))
    assert len(loop_reader._queue) <= 6 + 8  # bounded: the queue plus a few merged gaps and events
    events = loop_reader.read_until_idle(idle_s=0.3)  # bytes_read counts bytes before their events are queued
    stats = loop_reader.stats
    assert stats.queue_overflow_blocks > 0
    for name, per_block in (("EDA", 10), ("SpO2", 1)):
        assert tiles(events, name, 40 * per_block)
        total = stats.samples_delivered[name] + stats.samples_lost_link[name] + stats.samples_lost_overflow[name]
        assert total == 40 * per_block
    reasons = {e.reason for e in events if isinstance(e, GapEvent)}
    assert "overflow" in " ".join(reasons)


def test_device_restart_is_a_new_session_not_a_gap(loop_reader):
    send(loop_reader, wire(device_frames(5, boot_id=1) + device_frames(3, boot_id=2)))
    events = loop_reader.read(timeout=1)
    sessions = [e for e in events if isinstance(e, DeviceEvent) and e.kind == "session"]
    assert [(s.boot_id, s.restarted) for s in sessions] == [(1, False), (2, True)]
    assert not any(isinstance(e, GapEvent) for e in events)
    eda = [e.first_sample_index for e in events if isinstance(e, ChannelBlock) and e.channel == "EDA"]
    assert eda == [0, 10, 20, 30, 40, 0, 10, 20]


def test_device_clock_is_unwrapped_across_its_32_bit_limit():
    assembler = StreamAssembler()
    near_end = 2**32 - 150
    frames = [Hello(1, 9, 0, near_end, 0, CONFIG)]
    for block in range(4):
        samples = (np.zeros(10, np.int16), np.zeros(1, np.int16))
        frames.append(SampleBlock(1, 9, block + 1, (near_end + 100 * block) % 2**32, block, samples, CONFIG))
    events = assembler.process([SessionStarted(1, 9, False)] + frames, received_at=0.0)
    times = [e.device_time_s for e in events if isinstance(e, ChannelBlock) and e.channel == "EDA"]
    assert np.diff(times) == pytest.approx([0.1, 0.1, 0.1])


def test_a_device_clock_that_steps_back_a_little_is_not_a_jump_forward():
    assembler = StreamAssembler()
    frames = [Hello(1, 9, 0, 1000, 0, CONFIG)]
    for block, timestamp_ms in enumerate((1000, 1100, 1050, 1200)):  # the third block stamped 50 ms early
        samples = (np.zeros(10, np.int16), np.zeros(1, np.int16))
        frames.append(SampleBlock(1, 9, block + 1, timestamp_ms, block, samples, CONFIG))
    events = assembler.process([SessionStarted(1, 9, False)] + frames, received_at=0.0)
    times = [e.device_time_s for e in events if isinstance(e, ChannelBlock) and e.channel == "EDA"]
    assert times == pytest.approx([1.0, 1.1, 1.05, 1.2])


# --------------------------------------------------------------------------- errors and lifecycle


@pytest.mark.parametrize("port", ["/dev/biomoe-no-such-port", "nosuchscheme://device"])
def test_a_port_that_cannot_be_opened_is_named_in_the_error(port):
    reader = SensorReader(BridgeParams(port=port))
    with pytest.raises(BridgeError) as info:
        reader.open()
    assert info.value.code == "port_open_failed"
    assert repr(port) in str(info.value)
    assert not reader.is_open


@pytest.mark.parametrize(
    "field, value, message",
    [("port", "", "port must be a pyserial URL"), ("queue_blocks", 1, "queue_blocks"),
     ("reconnect_min_s", 10.0, "reconnect_min_s"), ("read_timeout_s", 0, "read_timeout_s"),
     ("read_timeout_s", 6, "read_timeout_s"), ("baudrate", 0, "baudrate"), ("baudrate", -9600, "baudrate"),
     ("baudrate", "fast", "baudrate")],
)
def test_bad_params_name_the_parameter(field, value, message):
    options = {"port": "loop://", field: value}
    with pytest.raises(ValueError, match=message):
        BridgeParams(**options)


def test_params_defaults_and_limits_are_the_documented_ones():
    params = BridgeParams("loop://")
    assert (params.baudrate, params.read_timeout_s, params.queue_blocks) == (115200, 0.05, 4096)
    assert (params.reconnect_min_s, params.reconnect_max_s, params.max_pending_blocks) == (0.1, 5.0, 64)
    assert params.stale_after_s is None
    assert BridgeParams("loop://", read_timeout_s=5, baudrate=1, queue_blocks=2).queue_blocks == 2


def test_a_new_readers_counters_are_zero():
    counters = dataclasses.asdict(ReaderStats())  # the decoder's counters nested as a dict
    leaves = [*counters.pop("decoder").values(), *counters.values()]
    assert len(leaves) > 10 and all(value in (0, {}) for value in leaves), leaves


def test_lifecycle_misuse_is_a_bridge_error():
    reader = SensorReader(BridgeParams(port="loop://"))
    with pytest.raises(BridgeError) as info:
        reader.start()
    assert info.value.code == "not_open"
    reader.open()
    with pytest.raises(BridgeError):
        reader.open()
    reader.close()
    reader.close()  # twice is fine


def test_no_hello_means_a_clear_config_timeout(loop_reader):
    with pytest.raises(BridgeError, match="no device description") as info:
        loop_reader.wait_for_config(timeout=0.2)
    assert info.value.code == "no_config"


def test_wait_for_config_waits_for_a_hello_that_comes_later(loop_reader):
    later = threading.Timer(0.3, lambda: loop_reader.port.write(wire(device_frames(1))))
    later.start()
    try:
        assert loop_reader.wait_for_config(timeout=30) == CONFIG
    finally:
        later.join()


def test_read_until_idle_returns_by_its_timeout_on_a_silent_port(loop_reader):
    started = time.monotonic()
    events = loop_reader.read_until_idle(idle_s=5.0, timeout=0.3)
    assert [event.kind for event in events] == ["connected"]  # the port opening, then nothing
    assert time.monotonic() - started < 0.9  # the timeout, not the idle time nor a second


# --------------------------------------------------------------------------- sim://


def test_sim_url_is_a_synthetic_board_behind_the_same_api():
    params = BridgeParams(port="sim://?speed=0&duration=30&seed=4&drop-rate=0.1&conditions=leadoff:EDA:3-5")
    with SensorReader(params) as reader:
        device = reader.port.device
        assert device.wait(timeout=30)
        events = reader.read_until_idle(idle_s=0.3)
        stats = reader.stats
    generated = device.stats.samples_generated
    for name in ("EDA", "BVP", "RESP", "SpO2"):
        assert stats.samples_delivered[name] + stats.samples_lost_link.get(name, 0) == generated[name]
        assert tiles(events, name, generated[name])
    assert stats.samples_lost_link["EDA"] > 0
    lead_off = {round(e.device_time_s) for e in events if isinstance(e, StatusEvent) and "EDA" in e.lead_off}
    assert lead_off <= {3, 4} and lead_off


def test_sim_url_rejects_unknown_options_quoting_the_form():
    with pytest.raises(BridgeError, match="sim://") as info:
        SensorReader(BridgeParams(port="sim://?sped=3")).open()
    assert "unknown simulator option 'sped'" in str(info.value)


# --------------------------------------------------------------------------- pty, end to end


def test_end_to_end_on_a_pty_with_faults_and_a_reconnection(tmp_path):
    """Simulator on a pty, reader on the other end; flipped bytes, dropped and repeated frames, a
    stall and a disconnection with re-enumeration: every sample is delivered or reported lost, and the
    port is locked again after the reconnection."""
    link = tmp_path / "biomoe-sim"
    device = SimulatedDevice(SimulatorParams(
        link=str(link), speed=25, duration_s=60, seed=7, flip_rate=3e-4, drop_rate=0.03, duplicate_rate=0.03,
        conditions=["disconnect:20-24", "stall:40-43"],
    ))
    reader = SensorReader(BridgeParams(port=str(link), reconnect_min_s=0.02, reconnect_max_s=0.2))
    try:
        device.open()
        reader.open()
        reader.start()
        device.start()
        assert device.wait(timeout=60), "the simulated stream did not end"
        events = reader.read_until_idle(idle_s=1.0, timeout=30)
        stats = reader.stats
        # The reconnection locked the port again: a second opener is refused before it can configure or flush it.
        with pytest.raises(serial.SerialException, match="Could not exclusively lock port"):
            serial.serial_for_url(str(link), exclusive=True)
    finally:
        reader.close()
        device.close()

    generated = device.stats.samples_generated
    for name, count in generated.items():
        delivered, lost = stats.samples_delivered[name], stats.samples_lost_link.get(name, 0)
        assert delivered + lost == count, (name, delivered, lost, count)
        assert tiles(events, name, count)
    links = [e.kind for e in events if isinstance(e, LinkEvent)]
    assert links == ["connected", "disconnected", "connected"]
    assert stats.decoder.crc_errors + stats.decoder.cobs_errors > 0
    assert stats.decoder.duplicates > 0
    assert stats.samples_lost_link["EDA"] >= 4 * 100  # the four seconds of the disconnection at least
    assert not link.exists()  # the device removed its symlink when it closed


def test_reboot_on_a_pty_restarts_the_session_without_a_gap(tmp_path):
    device = SimulatedDevice(SimulatorParams(link=str(tmp_path / "dev"), speed=50, duration_s=20, seed=8,
                                             conditions=["reboot:8-10"]))
    reader = SensorReader(BridgeParams(port=device.open()))
    try:
        reader.open()
        reader.start()
        device.start()
        assert device.wait(timeout=30)
        events = reader.read_until_idle(idle_s=1.0)
    finally:
        reader.close()
        device.close()
    sessions = [e for e in events if isinstance(e, DeviceEvent) and e.kind == "session"]
    assert [s.restarted for s in sessions] == [False, True]
    assert sessions[0].boot_id != sessions[1].boot_id
    assert not any(isinstance(e, GapEvent) for e in events)
    eda = [e for e in events if isinstance(e, ChannelBlock) and e.channel == "EDA"]
    assert sum(b.n_samples for b in eda) == device.stats.samples_generated["EDA"] == 18 * 100


def test_a_silent_port_is_reopened_when_stale_after_is_set():
    params = BridgeParams(port="loop://", stale_after_s=0.15, reconnect_min_s=0.01)
    with SensorReader(params) as reader:
        wait_until(lambda: reader.stats.connects >= 2)
        events = reader.read(timeout=0.5)
    kinds = [e.kind for e in events if isinstance(e, LinkEvent)]
    assert kinds[:3] == ["connected", "disconnected", "connected"]
    assert "no data for 0.15 s" in next(e.detail for e in events if isinstance(e, LinkEvent) and e.detail)


def test_iterating_a_stopped_reader_drains_the_queue():
    reader = SensorReader(BridgeParams(port="sim://?speed=0&duration=3"))
    reader.open()
    reader.start()
    assert reader.port.device.wait(timeout=30)
    wait_until(lambda: reader.stats.samples_delivered.get("EDA", 0) == 300)
    reader.stop()
    events = list(reader)
    reader.close()
    assert sum(e.n_samples for e in events if isinstance(e, ChannelBlock) and e.channel == "SpO2") == 3


# --------------------------------------------------------------------------- assembler details


def decoded(frames):
    """The decoder's items for ``frames``, without the session event (the tests add their own)."""
    return [item for item in FrameDecoder().feed(wire(frames)) if not isinstance(item, SessionStarted)]


def test_every_event_carries_the_receive_time_and_session_it_was_decoded_with():
    frames = device_frames(4, skip={2}, statuses={1: (0b01, 0b10)})
    events = StreamAssembler().process([SessionStarted(1, 9, False)] + decoded(frames), received_at=123.5)
    assert {type(e) for e in events} == {DeviceEvent, ChannelBlock, GapEvent, StatusEvent}
    assert all(e.received_at == 123.5 for e in events)
    assert all(e.session == (1, 9) for e in events if not isinstance(e, DeviceEvent))
    devices = [(e.kind, e.device_id, e.boot_id, e.restarted, e.config) for e in events if isinstance(e, DeviceEvent)]
    assert devices == [("session", 1, 9, False, None), ("config", 1, 9, False, CONFIG)]
    (status,) = [e for e in events if isinstance(e, StatusEvent)]
    assert (status.lead_off_mask, status.saturated_mask) == (0b01, 0b10)
    assert (status.lead_off, status.saturated) == (("EDA",), ("SpO2",))


def test_a_status_before_the_description_keeps_its_masks_and_unknown_battery_is_none():
    status = Status(1, 9, 0, 0, battery_mv=0, battery_percent=255, lead_off_mask=0b11, saturated_mask=0b1)
    event = StreamAssembler().process([SessionStarted(1, 9, False), status], received_at=0.0)[-1]
    assert (event.lead_off, event.saturated, event.lead_off_mask, event.saturated_mask) == ((), (), 0b11, 0b1)
    assert event.battery_mv is None and event.battery_percent is None and not event.charging
    (known,) = StreamAssembler().process([Status(1, 9, 0, 0, battery_mv=3700, battery_percent=0)], received_at=0.0)
    assert (known.battery_mv, known.battery_percent) == (3700, 0)


def test_gaps_are_placed_on_the_device_clock_of_the_last_block():
    """A device that booted 5 s before the reader joined: block k is at 5 + 0.1 k s, so lost block 6 at 5.6 s."""
    frames = [Hello(1, 9, 0, 5000, 0, CONFIG)]
    for block in (0, 1, 2, 3, 4, 5, 8):
        frames.append(SampleBlock(1, 9, block + 1, 5000 + 100 * block, block,
                                  (np.zeros(10, np.int16), np.zeros(1, np.int16))))
    gaps = [e for e in StreamAssembler().process(decoded(frames), received_at=0.0) if isinstance(e, GapEvent)]
    assert [(g.channel, g.first_sample_index, g.device_time_s) for g in gaps] == [
        ("EDA", 60, pytest.approx(5.6)), ("SpO2", 6, pytest.approx(5.6))]


def test_a_gap_before_any_block_is_placed_from_its_block_index():
    """Hellos announcing blocks 5 then 8: blocks 5-7 are lost, at 0.5 s on the 0.1 s block clock."""
    frames = [Hello(1, 9, 0, 0, 5, CONFIG), Hello(1, 9, 1, 0, 8, CONFIG)]
    gaps = [e for e in StreamAssembler().process(decoded(frames), received_at=0.0) if isinstance(e, GapEvent)]
    assert [(g.first_sample_index, g.n_samples, g.device_time_s) for g in gaps] == [
        (50, 30, pytest.approx(0.5)), (5, 3, pytest.approx(0.5))]


def test_without_received_at_events_are_stamped_with_the_wall_clock():
    before = time.time()
    events = StreamAssembler().process([SessionStarted(1, 9, False)] + decoded(device_frames(1)))
    assert all(before <= e.received_at <= time.time() for e in events)


def test_a_status_after_blocks_is_named_with_the_blocks_description():
    """Blocks carry the description they were decoded with: enough to name the flags without the hello."""
    block = SampleBlock(1, 9, 1, 0, 0, (np.zeros(10, np.int16), np.zeros(1, np.int16)), CONFIG)
    events = StreamAssembler().process([block, Status(1, 9, 2, 0, lead_off_mask=0b10)], received_at=0.0)
    assert events[-1].lead_off == ("SpO2",)


def test_a_status_right_after_the_hello_is_named_with_its_description():
    hello = Hello(1, 9, 0, 0, 0, CONFIG)
    events = StreamAssembler().process([hello, Status(1, 9, 1, 0, saturated_mask=0b01)], received_at=0.0)
    assert events[-1].saturated == ("EDA",)


def test_a_clock_step_of_half_the_32_bit_range_is_backwards_like_a_signed_difference():
    """The step is the int32 difference of the two stamps: 2**31 - 1 ms is forward, 2**31 ms is backward."""
    def times(second_ms):
        assembler = StreamAssembler()
        assembler.process([SessionStarted(1, 9, False)], received_at=0.0)
        return [assembler._device_time(stamp) for stamp in (0, second_ms)]

    for step in (2**31 - 1, 2**31):
        signed = int(np.array([step], np.uint32).view(np.int32)[0])
        assert times(step) == [0.0, signed / 1000]


# --------------------------------------------------------------------------- the bounded queue


@pytest.mark.parametrize("loop_reader", [4], indirect=True)
def test_overflow_gaps_merge_with_link_gaps_and_keep_every_field(loop_reader):
    """Queue of 4: connected, session, config and EDA block 0 fill it; the rest becomes one gap per channel."""
    before = time.time()
    send(loop_reader, wire(device_frames(6, skip={3})))
    wait_until(lambda: len(loop_reader._queue) == 4 + 2)  # queued plus the two waiting gaps
    events = loop_reader.read(timeout=1)
    assert len(events) == 4  # never more than queue_blocks
    events += loop_reader.read(timeout=1)
    assert loop_reader.read(timeout=0.3) == []
    gaps = [e for e in events if isinstance(e, GapEvent)]
    assert [(g.channel, g.first_sample_index, g.n_samples, g.reason) for g in gaps] == [
        ("SpO2", 0, 6, "link+overflow"), ("EDA", 10, 50, "link+overflow")]
    assert [(g.sampling_rate, g.session) for g in gaps] == [(10.0, (1, 9)), (100.0, (1, 9))]
    assert [g.device_time_s for g in gaps] == pytest.approx([0.0, 0.1])
    assert all(before <= g.received_at <= time.time() for g in gaps)


def test_read_takes_at_most_max_items_oldest_first(loop_reader):
    send(loop_reader, wire(device_frames(3)))
    wait_until(lambda: len(loop_reader._queue) == 9)
    first = loop_reader.read(max_items=2)
    assert [type(e) for e in first] == [LinkEvent, DeviceEvent]
    rest = loop_reader.read(max_items=100)
    assert len(rest) == 2 - 1 + 6 and loop_reader.read() == []  # config, then 3 blocks of 2 channels


def test_read_returns_at_once_what_is_queued_and_by_default_does_not_wait(loop_reader):
    started = time.monotonic()
    assert loop_reader.read(timeout=20)  # the connected event is there: no wait
    assert time.monotonic() - started < 10
    later = threading.Timer(0.3, lambda: loop_reader.port.write(wire(device_frames(1))))
    later.start()
    try:
        assert loop_reader.read() == []  # the default timeout is 0: the frames 0.3 s later are not waited for
        assert loop_reader.read(timeout=20)  # woken by them
    finally:
        later.join()


def test_the_backlog_of_a_full_queue_is_bounded_and_keeps_only_the_latest_status():
    """Beyond the queue: at most 256 other events wait, the rest are counted as dropped; statuses replace each other."""
    from firmware_bridge.reader import _EventQueue

    stats = ReaderStats()
    queue = _EventQueue(2, stats)
    links = [LinkEvent("connected", f"port{i}", 0.0) for i in range(300)]
    statuses = [StatusEvent(float(i), 0.0, None, None, False, (), (), 0, 0, (1, 1)) for i in range(3)]
    queue.put(links[:2] + [statuses[0]] + links[2:150] + statuses[1:] + links[150:])
    assert len(queue) == 2 + 1 + 256
    assert (stats.events_dropped, stats.statuses_replaced) == (300 - 2 - 256, 2)
    out = queue.get(timeout=0, max_items=None)
    while len(queue):
        out += queue.get(timeout=0, max_items=None)
    assert out == links[:2] + links[2:150] + [statuses[2]] + links[150:258]
    queue.put(links[:300])  # room again: every waiting slot was given back
    assert stats.events_dropped == 42 + 300 - 2 - 256


# --------------------------------------------------------------------------- reader lifecycle details


def test_close_emits_no_disconnection_and_the_reader_can_be_opened_again():
    reader = SensorReader(BridgeParams(port="loop://"))
    reader.open()
    reader.close()
    assert reader.is_open is False and reader.stats.disconnects == 0
    assert [e.kind for e in reader.read()] == ["connected"]
    reader.open()
    assert reader.is_open is True and reader.stats.connects == 2
    reader.close()


def test_wait_for_config_wakes_up_when_the_hello_arrives(loop_reader):
    hello = wire(device_frames(0)[:1])
    body = threading.Timer(0.3, lambda: loop_reader.port.write(hello[:-1]))
    delimiter = threading.Timer(0.6, lambda: loop_reader.port.write(hello[-1:]))  # completes the hello alone
    body.start()
    delimiter.start()
    try:
        started = time.monotonic()
        assert loop_reader.wait_for_config(timeout=20) == CONFIG
        assert time.monotonic() - started < 10  # notified, not found at the timeout
    finally:
        body.join()
        delimiter.join()


def test_the_config_timeout_message_says_what_to_check(loop_reader):
    with pytest.raises(BridgeError) as info:
        loop_reader.wait_for_config(timeout=0.05)
    assert str(info.value) == ("no device description (hello frame) arrived from loop:// within 0.05 s; "
                               "is a device streaming on this port?")


class _RecordingStop(threading.Event):
    """A stop event whose waits return at once and are recorded; it sets itself after ``limit`` waits."""

    def __init__(self, limit):
        super().__init__()
        self.limit, self.waits = limit, []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if len(self.waits) >= self.limit:
            self.set()
        return self.is_set()


class _UnpluggedPort:
    """An open port whose device is gone: every read fails like a pulled USB cable, with ``error``."""

    in_waiting = 0

    def __init__(self, error):
        self.error = error

    def read(self, size):
        raise self.error

    def close(self):
        pass


def test_reconnection_backs_off_exponentially_up_to_the_maximum_and_restarts_from_the_minimum(monkeypatch, caplog):
    """Opens: ok, 4 failures, ok, failures. Waits: 0.1 after the loss, then 0.1 0.2 0.4 0.5 (capped),
    then 0.1 after the second loss and 0.1 0.2 again."""
    outcomes = iter([serial.SerialException("device disconnected"), None, None, None, None, OSError()] + [None] * 10)

    def serial_for_url(url, **options):
        error = next(outcomes)
        if error is not None:
            return _UnpluggedPort(error)
        raise serial.SerialException(f"could not open port {url}")

    monkeypatch.setattr(serial, "serial_for_url", serial_for_url)
    reader = SensorReader(BridgeParams(port="/dev/ttyFAKE", reconnect_min_s=0.1, reconnect_max_s=0.5))
    reader.open()
    reader._stop_event = stop = _RecordingStop(limit=9)
    with caplog.at_level(logging.DEBUG, logger="firmware_bridge.reader"):
        reader.start()
        wait_until(lambda: not reader.is_running)
    reader.close()
    assert stop.waits == pytest.approx([0.1, 0.1, 0.2, 0.4, 0.5, 0.1, 0.1, 0.2, 0.4])
    stats = reader.stats
    assert (stats.connects, stats.disconnects, stats.open_failures) == (2, 2, 7)
    events = reader.read()
    links = [(e.kind, e.detail) for e in events if isinstance(e, LinkEvent)]
    assert links == [("connected", ""), ("disconnected", "device disconnected"),
                     ("connected", ""), ("disconnected", "OSError")]  # an error without a message: its type
    assert all(e.port == "/dev/ttyFAKE" and e.received_at > 0 for e in events if isinstance(e, LinkEvent))
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(failures) == 7 and all(m.startswith("cannot open serial port '/dev/ttyFAKE'") for m in failures)


def test_a_port_silent_since_its_last_data_is_reopened_and_logged_with_the_reason(caplog):
    params = BridgeParams(port="loop://", stale_after_s=0.15, reconnect_min_s=0.01)
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.reader"):
        with SensorReader(params) as reader:
            send(reader, b"\x00")  # data, then silence
            wait_until(lambda: reader.stats.connects >= 3)
            reader.stop()
            stats = reader.stats
            events = reader.read()
    disconnected = [e for e in events if isinstance(e, LinkEvent) and e.kind == "disconnected"]
    assert stats.disconnects == len(disconnected) >= 2
    assert "lost loop:// (no data for 0.15 s); reconnecting" in [r.getMessage() for r in caplog.records]


class _HangingPort:
    """A port whose read hangs (a driver stuck in a system call) until ``release`` is set, at most 10 s."""

    in_waiting = 0

    def __init__(self):
        self.reading, self.release = threading.Event(), threading.Event()

    def read(self, size):
        self.reading.set()
        self.release.wait(10)
        return b""

    def close(self):
        self.release.set()


def test_stop_names_a_reader_thread_that_does_not_stop_in_time(monkeypatch):
    port = _HangingPort()
    monkeypatch.setattr(serial, "serial_for_url", lambda url, **options: port)
    reader = SensorReader(BridgeParams(port="/dev/ttyFAKE"))
    reader.open()
    reader.start()
    assert port.reading.wait(10)
    with pytest.raises(BridgeError) as info:
        reader.stop(timeout=0.1)
    assert (str(info.value), info.value.code) == (
        "the reader thread of /dev/ttyFAKE did not stop within 0.1 s", "stop_timeout")
    assert reader.is_running
    port.release.set()
    reader.close()
    assert not reader.is_running


@pytest.mark.parametrize("loop_reader", [3], indirect=True)
def test_link_gaps_that_find_the_queue_full_wait_with_their_fields(loop_reader):
    """Queue of 3: connected, session, config fill it; block 0 lost on the link, then blocks 1-2 overflow."""
    send(loop_reader, wire(device_frames(3, skip={0})))
    wait_until(lambda: len(loop_reader._queue) == 3 + 2)
    events = loop_reader.read(timeout=1) + loop_reader.read(timeout=1)
    gaps = [(g.channel, g.first_sample_index, g.n_samples, g.sampling_rate, g.device_time_s, g.reason, g.session)
            for g in events if isinstance(g, GapEvent)]
    assert gaps == [("EDA", 0, 30, 100.0, 0.0, "link+overflow", (1, 9)),
                    ("SpO2", 0, 3, 10.0, 0.0, "link+overflow", (1, 9))]
    assert all(isinstance(g.received_at, float) for g in events if isinstance(g, GapEvent))
    stats = loop_reader.stats
    assert (stats.blocks_queued, stats.queue_overflow_blocks) == (0, 4)


def test_counters_of_queued_blocks(loop_reader):
    send(loop_reader, wire(device_frames(3)))
    wait_until(lambda: len(loop_reader._queue) == 9)
    assert loop_reader.stats.blocks_queued == 6  # 3 blocks of 2 channels


def test_the_reader_thread_is_a_named_daemon_and_cannot_be_started_twice():
    reader = SensorReader(BridgeParams(port="loop://"))
    with pytest.raises(BridgeError, match=r"^call open\(\) before start\(\) \(port loop://\)$"):
        reader.start()
    reader.open()
    reader.start()
    try:
        (thread,) = [t for t in threading.enumerate() if t.name == "SensorReader(loop://)"]
        assert thread.daemon  # never keeps the interpreter alive
        with pytest.raises(BridgeError) as info:
            reader.start()
        assert (str(info.value), info.value.code) == ("the reader of loop:// is already running", "already_running")
    finally:
        reader.close()


def test_a_port_silent_for_less_than_stale_after_stays_connected():
    with SensorReader(BridgeParams(port="loop://", stale_after_s=5.0)) as reader:
        time.sleep(0.5)
        assert (reader.stats.connects, reader.stats.disconnects) == (1, 0)


@pytest.mark.parametrize("options, message", [
    ({"port": "  "}, "port must be a pyserial URL such as '/dev/ttyACM0', 'socket://host:8000' or 'sim://', got '  '"),
    ({"port": None}, "port must be a pyserial URL such as '/dev/ttyACM0', 'socket://host:8000' or 'sim://', got None"),
    ({"baudrate": 9600.0}, "baudrate must be a positive integer, got 9600.0"),
    ({"read_timeout_s": 0}, "read_timeout_s must be in (0, 5] seconds, got 0"),
    ({"queue_blocks": 2.5}, "queue_blocks must be an integer >= 2, got 2.5"),
    ({"reconnect_max_s": 0.05}, "reconnect_min_s and reconnect_max_s must satisfy 0 < min <= max, got 0.1 and 0.05"),
    ({"reconnect_min_s": 0}, "reconnect_min_s and reconnect_max_s must satisfy 0 < min <= max, got 0 and 5.0"),
    ({"max_pending_blocks": -1}, "max_pending_blocks must be an integer >= 0, got -1"),
    ({"max_pending_blocks": 1.0}, "max_pending_blocks must be an integer >= 0, got 1.0"),
    ({"stale_after_s": 0.05}, "stale_after_s must be None or longer than read_timeout_s (0.05 s), got 0.05"),
], ids=lambda value: str(value)[:30])
def test_bad_params_messages_say_what_is_allowed_and_what_was_given(options, message):
    with pytest.raises(ValueError) as info:
        BridgeParams(**{"port": "loop://", **options})
    assert str(info.value) == message


def test_params_accept_the_edges_of_their_ranges():
    params = BridgeParams("loop://", reconnect_min_s=1.0, reconnect_max_s=1.0, max_pending_blocks=0,
                          stale_after_s=0.051)
    assert (params.reconnect_min_s, params.max_pending_blocks, params.stale_after_s) == (1.0, 0, 0.051)


def test_a_new_reader_is_closed_idle_and_knows_nothing():
    with pytest.raises(TypeError, match=r"^params must be a BridgeParams, got str$"):
        SensorReader("loop://")
    reader = SensorReader(BridgeParams(port="loop://"))
    assert (reader.is_open, reader.is_running, reader.is_connected) == (False, False, False)
    assert reader.port is None and reader.config is None and reader.read() == []


def test_max_pending_blocks_bounds_the_blocks_waiting_for_a_hello():
    with SensorReader(BridgeParams(port="loop://", max_pending_blocks=2)) as reader:
        send(reader, wire(device_frames(5)[1:-1]))  # blocks 0-4 and no hello
        assert reader.stats.decoder.unconfigured_dropped == 3  # blocks 0-2 made room for 3 and 4


def test_the_port_is_opened_with_the_params_and_the_connection_logged(monkeypatch, caplog):
    opened, loop_port = [], serial.serial_for_url("loop://")

    def serial_for_url(url, **options):
        opened.append((url, options))
        return loop_port

    monkeypatch.setattr(serial, "serial_for_url", serial_for_url)
    reader = SensorReader(BridgeParams(port="/dev/ttyFAKE", baudrate=9600, read_timeout_s=0.2))
    with caplog.at_level(logging.INFO, logger="firmware_bridge.reader"):
        reader.open()
    before = time.time()
    try:
        assert opened == [("/dev/ttyFAKE", {"baudrate": 9600, "timeout": 0.2, "exclusive": True})]
        assert reader.is_connected and reader.port is not None
        (event,) = reader.read()
        assert (event.kind, event.port, event.detail) == ("connected", "/dev/ttyFAKE", "")
        assert before - 60 < event.received_at <= before
        assert "connected to /dev/ttyFAKE" in [r.getMessage() for r in caplog.records]
        with pytest.raises(BridgeError) as info:
            reader.open()
        assert (str(info.value), info.value.code) == ("the reader of /dev/ttyFAKE is already open", "already_open")
    finally:
        reader.close()


@pytest.mark.parametrize("error", [serial.SerialException("busy"), OSError("busy"), ValueError("busy")])
def test_every_kind_of_open_failure_is_a_port_open_failed_with_hints(monkeypatch, error):
    def serial_for_url(url, **options):
        raise error

    monkeypatch.setattr(serial, "serial_for_url", serial_for_url)
    reader = SensorReader(BridgeParams(port="/dev/ttyFAKE"))
    with pytest.raises(BridgeError) as info:
        reader.open()
    assert info.value.code == "port_open_failed" and info.value.__cause__ is error
    assert str(info.value) == (
        "cannot open serial port '/dev/ttyFAKE': busy. Check that the device is plugged in and that no other "
        "program holds the port (list ports with: python -m serial.tools.list_ports); for the simulator, start "
        "'biomoe simulate-device' first and use the path it prints.")
    assert reader.stats.open_failures == 1 and not reader.is_connected


def test_read_until_idle_by_default_stops_after_half_a_second_without_events(loop_reader):
    later = threading.Timer(1.2, lambda: loop_reader.port.write(wire(device_frames(1))))
    later.start()
    try:
        events = loop_reader.read_until_idle()
    finally:
        later.join()
    assert [type(e) for e in events] == [LinkEvent]  # the frames 1.2 s later came after it returned


@pytest.mark.parametrize("loop_reader", [4], indirect=True)
def test_a_gap_moved_into_the_queue_takes_no_more_samples(loop_reader):
    """SpO2's waiting gap (blocks 0-5) enters the queue when one event is read; SpO2 block 6, overflowing
    right after it, must start a new gap instead of growing the one already queued."""
    frames = device_frames(8)
    send(loop_reader, wire(frames[:7]))  # hello and blocks 0-5
    wait_until(lambda: len(loop_reader._queue) == 4 + 2)
    events = loop_reader.read(max_items=1)
    send(loop_reader, b"".join(encode_frame(f) for f in frames[7:]))  # blocks 6-7 and the closing hello
    events += loop_reader.read_until_idle(idle_s=0.3)
    assert tiles(events, "EDA", 80) and tiles(events, "SpO2", 8)
