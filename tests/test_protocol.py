"""firmware_bridge.protocol: COBS, CRC, frames, the shared vectors and the decoder's guarantees."""

from __future__ import annotations

import dataclasses
import logging
import re
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.protocol import (
    MAX_FRAME_SIZE,
    BlocksLost,
    ChannelSpec,
    DeviceConfig,
    FrameDecoder,
    FrameType,
    Hello,
    SampleBlock,
    SampleFormat,
    SessionStarted,
    Status,
    cobs_decode,
    cobs_encode,
    crc32,
    encode_frame,
    pack_frame,
)
from firmware_bridge.vectors import config_for_samples, frame_from_inputs, load_vectors

FRAME_TYPES = (Hello, SampleBlock, Status)

CONFIG = DeviceConfig(
    100_000,
    (
        ChannelSpec("EDA", "uS", 10, scale=0.0005, offset=16.384),
        ChannelSpec("BVP", "a.u.", 10, scale=1e-4),
        ChannelSpec("SpO2", "%", 1, SampleFormat.INT32, 0, 10000, 0.01),
    ),
)


def frames_only(items):
    return [item for item in items if isinstance(item, FRAME_TYPES)]


def make_stream(n_blocks, config=CONFIG, boot_id=0x2A17, first_block=0, seed=0, hello_every=10, status_every=4):
    """A device's frames: hello, blocks with a status and a hello now and then, a closing hello."""
    rng = np.random.default_rng(seed)
    frames = []
    seq = 0

    def header(block):
        nonlocal seq
        values = (3, boot_id, seq & 0xFFFF, (block * config.block_period_us // 1000) & 0xFFFFFFFF)
        seq += 1
        return values

    frames.append(Hello(*header(first_block), next_block_index=first_block, config=config))
    for block in range(first_block, first_block + n_blocks):
        if block > first_block and block % hello_every == 0:
            frames.append(Hello(*header(block), next_block_index=block, config=config))
        samples = tuple(
            rng.integers(c.raw_min, c.raw_max, c.samples_per_block, endpoint=True).astype(c.sample_format.dtype)
            for c in config.channels
        )
        frames.append(SampleBlock(*header(block), block, samples))
        if block % status_every == 0:
            frames.append(Status(*header(block), 3900, 80, 0, int(rng.integers(0, 8)), int(rng.integers(0, 8))))
    frames.append(Hello(*header(first_block + n_blocks), next_block_index=first_block + n_blocks, config=config))
    return frames


def feed_in_chunks(decoder, data, sizes):
    out, position, i = [], 0, 0
    while position < len(data):
        size = sizes[i % len(sizes)]
        out += decoder.feed(data[position : position + size])
        position += size
        i += 1
    return out


def cobs_reference(data: bytes) -> bytes:
    """Byte-at-a-time COBS, written independently of the module (Cheshire & Baker)."""
    out, code_at, code = bytearray([0]), 0, 1
    for i, byte in enumerate(data):
        if byte:
            out.append(byte)
            code += 1
        if not byte or code == 0xFF:
            out[code_at] = code
            code = 1
            code_at = len(out)
            if not byte or i < len(data) - 1:
                out.append(0)
    if code_at < len(out):
        out[code_at] = code
    return bytes(out)


# --------------------------------------------------------------------------- CRC, COBS


def test_crc32_check_value():
    assert crc32(b"123456789") == 0xCBF43926


@pytest.mark.parametrize(
    "raw, encoded",
    [
        ("00", "0101"),
        ("0000", "010101"),
        ("11220033", "0311220233"),
        ("11223344", "0511223344"),
        ("11000000", "02110101 01".replace(" ", "")),
        ("01" * 254, "ff" + "01" * 254),
    ],
)
def test_cobs_known_examples(raw, encoded):
    assert cobs_encode(bytes.fromhex(raw)).hex() == encoded
    assert cobs_decode(bytes.fromhex(encoded)) == bytes.fromhex(raw)


@given(st.binary(max_size=1200))
@settings(max_examples=150)
def test_cobs_matches_reference_and_round_trips(data):
    encoded = cobs_encode(data)
    assert encoded == cobs_reference(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(encoded) == data


@pytest.mark.parametrize("data", [b"\x05\x11\x22", b"\x02\x11\x00\x01"], ids=["past the end", "zero code"])
def test_cobs_decode_rejects_a_block_past_the_end_or_a_zero_code(data):
    with pytest.raises(ValueError, match="^invalid COBS data$"):
        cobs_decode(data)


# --------------------------------------------------------------------------- shared vectors, PROTOCOL.md


def test_python_codec_reproduces_the_shared_vectors():
    vectors = load_vectors()
    assert vectors["crc32"] and vectors["cobs"] and vectors["frames"]
    for case in vectors["crc32"]:
        assert f"{crc32(bytes.fromhex(case['input_hex'])):08x}" == case["crc32_hex"]
    for case in vectors["cobs"]:
        assert cobs_encode(bytes.fromhex(case["input_hex"])).hex() == case["encoded_hex"]
    for case in vectors["frames"]:
        frame = frame_from_inputs(case["inputs"])
        assert pack_frame(frame).hex() == case["raw_hex"], case["name"]
        assert encode_frame(frame).hex() == case["wire_hex"], case["name"]


def test_decoder_reads_back_every_vector_frame():
    for case in load_vectors()["frames"]:
        frame = frame_from_inputs(case["inputs"])
        decoder = FrameDecoder()
        if isinstance(frame, SampleBlock):  # a sample block needs its layout from a hello first
            decoder.feed(encode_frame(Hello(frame.device_id, frame.boot_id, (frame.seq - 1) & 0xFFFF, 1,
                                            frame.block_index, config_for_samples(case["inputs"]))))
        assert frames_only(decoder.feed(bytes.fromhex(case["wire_hex"])))[-1] == frame, case["name"]


def test_protocol_md_worked_examples_match_the_vectors():
    text = (Path(__file__).resolve().parents[1] / "firmware_bridge" / "PROTOCOL.md").read_text()
    frames = {case["name"]: case for case in load_vectors()["frames"]}
    for name in ("samples_worked_example", "status_worked_example"):
        for kind in ("raw", "wire"):
            match = re.search(rf"<!-- {name} {kind} -->\s*```\s*(.*?)```", text, re.S)
            assert match, f"PROTOCOL.md lacks the {kind} bytes of {name}"
            assert "".join(match.group(1).split()).lower() == frames[name][f"{kind}_hex"]


# --------------------------------------------------------------------------- validation


def test_channel_spec_errors_name_the_parameter():
    with pytest.raises(ValueError, match="samples_per_block of channel EDA"):
        ChannelSpec("EDA", "uS", 0)
    with pytest.raises(ValueError, match="channel name"):
        ChannelSpec("TOO_LONG_NAME", "uS", 10)
    with pytest.raises(ValueError, match="distinct"):
        DeviceConfig(1000, (ChannelSpec("A", "", 1), ChannelSpec("A", "", 1)))
    with pytest.raises(ValueError, match="frame limit"):
        DeviceConfig(1000, (ChannelSpec("A", "", 5000, SampleFormat.INT32),))


def test_names_and_units_fill_their_eight_bytes_on_the_wire():
    hello = Hello(1, 0x2A17, 0, 0, 0, DeviceConfig(100_000, (ChannelSpec("RESPIRAT", "mmHg_abs", 10),)))
    (decoded,) = frames_only(FrameDecoder().feed(encode_frame(hello)))
    assert decoded.config.channels[0].name == "RESPIRAT" and decoded.config.channels[0].unit == "mmHg_abs"
    for name, unit in (("RESPIRATE", "uS"), ("EDA", "microsiem")):
        with pytest.raises(ValueError, match="1 to 8 printable ASCII characters"):
            ChannelSpec(name, unit, 10)


def test_block_duration_is_the_block_period_in_seconds():
    assert DeviceConfig(100_000, CONFIG.channels).block_duration_s == 0.1
    assert DeviceConfig(250_000, CONFIG.channels).block_duration_s == 0.25


@pytest.mark.parametrize("field, value", [("flags", 0xFF), ("flags", 0), ("lead_off_mask", 0xFFFF)])
def test_status_fields_accept_their_whole_range(field, value):
    assert getattr(Status(1, 0x2A17, 5, 0, **{field: value}), field) == value


@pytest.mark.parametrize("field, value", [("flags", 0x100), ("flags", -1), ("lead_off_mask", 0x10000)])
def test_status_fields_refuse_values_beyond_their_bytes(field, value):
    with pytest.raises(ValueError, match=field):
        Status(1, 0x2A17, 5, 0, **{field: value})


def test_physical_scaling_round_trips_within_half_a_step():
    spec = CONFIG.channel("EDA")
    physical = np.array([0.0, 1.2345, 16.384, 30.0])
    raw = spec.to_raw(physical)
    assert raw.dtype == np.int16
    assert np.all(np.abs(spec.to_physical(raw) - physical) <= spec.scale / 2 + 1e-9)
    assert spec.to_raw([1e9])[0] == spec.raw_max


def test_sampling_rates_come_from_the_configuration():
    assert CONFIG.sampling_rate("EDA") == 100.0
    assert CONFIG.sampling_rate("SpO2") == 10.0
    assert CONFIG.mask_names(0b101) == ("EDA", "SpO2")
    with pytest.raises(KeyError, match="EDA"):
        CONFIG.channel("ECG")


# --------------------------------------------------------------------------- decoder guarantees


@given(st.binary(max_size=3000), st.lists(st.integers(1, 500), min_size=1, max_size=10))
@settings(max_examples=150)
def test_arbitrary_bytes_never_raise(data, chunks):
    decoder = FrameDecoder()
    feed_in_chunks(decoder, data, chunks)
    decoder.flush()
    assert decoder.stats.bytes == len(data)


@given(
    st.integers(0, 3),
    st.integers(0, 5),
    st.binary(min_size=6, max_size=6),
    st.binary(max_size=700),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_frames_with_a_valid_crc_but_arbitrary_content_never_raise(version, frame_type, header_rest, payload):
    """Garbage that passes the CRC reaches the field parsers: they must reject, not raise."""
    decoder = FrameDecoder()
    decoder.feed(encode_frame(Hello(0, 0, 0, 0, 0, CONFIG)))
    body = bytes([version, frame_type]) + header_rest + b"\x00\x00\x00\x00" + payload
    out = decoder.feed(cobs_encode(body + struct.pack("<I", zlib.crc32(body))) + b"\x00")
    for frame in frames_only(out):  # whatever was accepted re-encodes to something that decodes the same
        again = FrameDecoder()
        if isinstance(frame, SampleBlock):
            again.feed(encode_frame(Hello(frame.device_id, frame.boot_id, frame.seq ^ 1, 5, frame.block_index, CONFIG)))
        assert frames_only(again.feed(encode_frame(frame)))[-1] == frame


@st.composite
def damaged_streams(draw):
    n_blocks = draw(st.integers(3, 30))
    frames = make_stream(n_blocks, seed=draw(st.integers(0, 2**16)), hello_every=draw(st.integers(2, 12)))
    fates = ["keep"] + draw(
        st.lists(st.sampled_from(["keep", "keep", "drop", "dup"]), min_size=len(frames) - 2, max_size=len(frames) - 2)
    ) + ["keep"]
    wire = bytearray(b"\x00")
    copies = []  # (frame index, first byte, one past its trailing delimiter)
    for index, (frame, fate) in enumerate(zip(frames, fates)):
        for _ in range({"keep": 1, "drop": 0, "dup": 2}[fate]):
            encoded = encode_frame(frame)
            copies.append((index, len(wire), len(wire) + len(encoded)))
            wire += encoded
    # Flip bytes anywhere between the first and the last frame (a decoder cannot
    # learn about frames lost before the first or after the last it receives).
    low, high = copies[0][2], copies[-1][1] - 2  # keep the delimiters around the first and last frames
    flips = []
    if high >= low:
        positions = st.tuples(st.integers(low, high), st.integers(1, 255))
        flips = draw(st.lists(positions, max_size=6, unique_by=lambda flip: flip[0]))
    flipped = set()
    for position, mask in flips:
        wire[position] ^= mask
        flipped.add(position)
    intact = {
        index
        for index, start, end in copies
        if not any(start - 1 <= position < end for position in flipped)  # body and both delimiters
    }
    chunks = draw(st.lists(st.integers(1, 400), min_size=1, max_size=8))
    return frames, intact, bytes(wire), chunks, n_blocks


@given(damaged_streams())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_damaged_stream_decodes_to_exactly_the_untouched_frames_and_accounts_every_sample(stream):
    frames, intact, wire, chunks, n_blocks = stream
    decoder = FrameDecoder()
    out = feed_in_chunks(decoder, wire, chunks)
    assert frames_only(out) == [frame for index, frame in enumerate(frames) if index in intact]

    delivered = {item.block_index for item in out if isinstance(item, SampleBlock)}
    lost = set()
    for item in out:
        if isinstance(item, BlocksLost):
            lost.update(range(item.first_block_index, item.first_block_index + item.n_blocks))
    assert delivered | lost == set(range(n_blocks)) and not delivered & lost
    for spec in CONFIG.channels:
        sent = n_blocks * spec.samples_per_block
        assert decoder.stats.samples_ok.get(spec.name, 0) + decoder.stats.samples_lost.get(spec.name, 0) == sent


def test_corrupted_and_duplicated_frames_are_counted():
    frames = make_stream(10)
    good = [encode_frame(f) for f in frames]
    bad = bytearray(good[3])
    bad[5] ^= 0x40
    wire = b"".join(good[:3]) + bytes(bad) + b"".join(good[4:6]) + good[5] + b"".join(good[6:])
    decoder = FrameDecoder()
    out = decoder.feed(wire)
    assert decoder.stats.crc_errors + decoder.stats.cobs_errors == 1
    assert decoder.stats.duplicates == 1
    assert decoder.stats.frames_lost == 1
    assert len(frames_only(out)) == len(frames) - 1


def _raw_frame(version, frame_type, payload=b""):
    body = struct.pack("<BBHHHI", version, frame_type, 3, 0x2A17, 99, 0) + payload
    return cobs_encode(body + struct.pack("<I", zlib.crc32(body))) + b"\x00"


def test_unknown_version_and_type_are_counted_and_skipped_with_a_warning(caplog):
    frames = make_stream(4)
    decoder = FrameDecoder()
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.protocol"):
        out = decoder.feed(encode_frame(frames[0]) + _raw_frame(2, 2, b"\x01\x02") + _raw_frame(1, 9, b"\x00")
                           + _raw_frame(2, 2) + b"".join(encode_frame(f) for f in frames[1:]))
    assert decoder.stats.unknown_version == 2
    assert decoder.stats.unknown_type == 1
    assert frames_only(out) == frames
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("unknown protocol version 2" in m for m in messages)
    assert any("unknown type 9" in m for m in messages)
    assert len(messages) == 2  # once per kind and value, not once per frame


def test_device_restart_is_a_new_session_not_a_huge_gap():
    before = make_stream(30, boot_id=1)
    after = make_stream(5, boot_id=2, seed=1)
    decoder = FrameDecoder()
    out = decoder.feed(b"".join(encode_frame(f) for f in before + after))
    sessions = [item for item in out if isinstance(item, SessionStarted)]
    assert [(s.boot_id, s.restarted) for s in sessions] == [(1, False), (2, True)]
    assert not any(isinstance(item, BlocksLost) for item in out)
    assert decoder.stats.frames_lost == 0 and decoder.stats.samples_lost == {}
    assert decoder.stats.samples_ok["EDA"] == 35 * 10


def _index_of_block(frames, block_index):
    return next(i for i, f in enumerate(frames) if isinstance(f, SampleBlock) and f.block_index == block_index)


def test_a_repeated_first_hello_is_a_duplicate_not_a_restart(caplog):
    frames = make_stream(20)
    repeated = frames[: _index_of_block(frames, 3) + 1] + [frames[0]] + frames[_index_of_block(frames, 3) + 1 :]
    decoder = FrameDecoder()
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.protocol"):
        out = decoder.feed(b"".join(encode_frame(f) for f in repeated + [frames[0]]))
    assert [(s.boot_id, s.restarted) for s in out if isinstance(s, SessionStarted)] == [(0x2A17, False)]
    assert frames_only(out) == frames
    assert decoder.stats.duplicates == 2 and decoder.stats.sessions == 1
    assert decoder.stats.samples_ok == {"EDA": 200, "BVP": 200, "SpO2": 20} and decoder.stats.samples_lost == {}
    warnings = [r.getMessage() for r in caplog.records if "repeated hello" in r.getMessage()]
    assert len(warnings) == 1  # logged once
    assert warnings[0].startswith("dropping a repeated hello of the current device session (counted")


def test_a_hello_overtaken_by_later_blocks_is_a_duplicate_not_a_restart():
    frames = make_stream(30, hello_every=10)
    hello = next(f for f in frames if isinstance(f, Hello) and f.next_block_index == 10)
    late = [f for f in frames if f is not hello]
    late.insert(_index_of_block(late, 12) + 1, hello)  # arrives after blocks 10-12
    decoder = FrameDecoder()
    out = decoder.feed(b"".join(encode_frame(f) for f in late))
    assert sum(isinstance(item, SessionStarted) for item in out) == 1
    assert [f.block_index for f in out if isinstance(f, SampleBlock)] == list(range(30))
    assert decoder.stats.duplicates == 1 and decoder.stats.samples_lost == {}


def test_a_restart_that_keeps_its_boot_id_is_a_new_session_not_hours_of_repeats(caplog):
    """Firmware passing a constant boot id restarts after 300 blocks: block index, clock and sequence numbers
    start again under the same boot id. A new session, said once and counted; nothing dropped or lost."""
    before, after = make_stream(300, boot_id=5), make_stream(20, boot_id=5, seed=1)
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.protocol"):
        decoder, out = _decode(before[:-1] + after)  # no closing hello: the board crashed
    assert [(s.boot_id, s.restarted) for s in out if isinstance(s, SessionStarted)] == [(5, False), (5, True)]
    assert frames_only(out) == before[:-1] + after
    stats = decoder.stats
    assert (stats.restarts_same_boot_id, stats.sessions, stats.duplicates, stats.frames_lost) == (1, 2, 0, 0)
    assert stats.samples_ok["EDA"] == 320 * 10 and stats.samples_lost == {}
    assert [r.getMessage().partition(" (counted")[0] for r in caplog.records] == [
        "the device restarted without changing its boot id 5 (block index, clock and sequence number started "
        "again): taken as a new session; its firmware should change boot_id at every boot"]


def test_a_restart_that_keeps_its_boot_id_is_recognised_from_two_blocks_when_its_hello_is_lost():
    before, after = make_stream(300, boot_id=5), make_stream(20, boot_id=5, seed=1, hello_every=10)
    decoder, out = _decode(before[:-1] + after[1:])  # the new boot's first hello never came
    restart = next(i for i, item in enumerate(out) if isinstance(item, SessionStarted) and item.restarted)
    assert [f.block_index for f in out[restart:] if isinstance(f, SampleBlock)] == list(range(20))
    assert decoder.stats.restarts_same_boot_id == 1 and decoder.stats.samples_lost == {}
    assert decoder.stats.duplicates == decoder.stats.unconfigured_dropped == 0


def test_an_old_block_or_hello_repeated_long_after_is_still_a_duplicate(caplog):
    """Frames of this boot repeated with their own sequence number and time, past the duplicate window:
    each is dropped and counted (the next frame does not carry on from it), and no frame counts as lost."""
    frames = make_stream(100, hello_every=10)
    old_block = frames[_index_of_block(frames, 5)]
    old_hello = next(f for f in frames if isinstance(f, Hello) and f.next_block_index == 10)
    at = _index_of_block(frames, 90) + 1
    replayed = frames[:at] + [old_block] + frames[at:at + 3] + [old_hello] + frames[at + 3:]
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.protocol"):
        decoder, out = _decode(replayed)
    assert frames_only(out) == frames
    stats = decoder.stats
    assert (stats.duplicates, stats.frames_lost, stats.sessions, stats.restarts_same_boot_id) == (2, 0, 1, 0)
    assert [r.getMessage().partition(" (counted")[0] for r in caplog.records] == [
        "dropping a repeated hello of the current device session"]


def test_joining_mid_stream_counts_nothing_before_the_first_frame():
    frames = make_stream(40, first_block=1000, hello_every=15)
    late = [f for f in frames if not (isinstance(f, Hello) and f.next_block_index < 1015)]
    late = late[late.index(next(f for f in late if isinstance(f, SampleBlock) and f.block_index == 1005)) :]
    decoder = FrameDecoder()
    out = decoder.feed(b"".join(encode_frame(f) for f in late))
    blocks = [item.block_index for item in out if isinstance(item, SampleBlock)]
    assert blocks == list(range(1005, 1040))  # the blocks before the first hello waited for it
    assert decoder.stats.samples_lost == {}


def test_too_many_blocks_before_a_hello_are_dropped_and_reported_lost():
    frames = [f for f in make_stream(30, hello_every=100) if not isinstance(f, Hello)]
    frames.append(Hello(3, 0x2A17, 999, 3000, next_block_index=30, config=CONFIG))
    decoder = FrameDecoder(max_pending_blocks=8)
    out = decoder.feed(b"".join(encode_frame(f) for f in frames))
    assert [item.block_index for item in out if isinstance(item, SampleBlock)] == list(range(22, 30))
    assert decoder.stats.unconfigured_dropped == 22
    assert decoder.stats.samples_lost["EDA"] == 22 * 10


def test_a_hello_reveals_blocks_lost_at_the_end_of_a_stream():
    frames = make_stream(10, hello_every=100)
    kept = [f for f in frames if not (isinstance(f, SampleBlock) and f.block_index >= 8)]
    decoder = FrameDecoder()
    out = decoder.feed(b"".join(encode_frame(f) for f in kept))
    gaps = [item for item in out if isinstance(item, BlocksLost)]
    assert [(g.first_block_index, g.n_blocks) for g in gaps] == [(8, 2)]
    assert decoder.stats.samples_lost == {"EDA": 20, "BVP": 20, "SpO2": 2}


def test_blocks_lost_before_a_hello_that_changes_the_rates_are_counted_at_the_rates_they_were_sent_at():
    """Blocks 8 and 9 (10 EDA samples each) never arrive; the hello announcing block 10 changes EDA to 25
    samples a block: the loss is 20 samples of the old description, not 50 of the new."""
    faster = dataclasses.replace(CONFIG, channels=(dataclasses.replace(CONFIG.channels[0], samples_per_block=25),
                                                   *CONFIG.channels[1:]))
    kept = [f for f in make_stream(8, hello_every=100) if not isinstance(f, Hello) or f.next_block_index == 0]
    kept.append(Hello(3, 0x2A17, 900, 1000, next_block_index=10, config=faster))
    decoder = FrameDecoder()
    out = decoder.feed(b"".join(encode_frame(f) for f in kept))
    (gap,) = [item for item in out if isinstance(item, BlocksLost)]
    assert (gap.first_block_index, gap.n_blocks, gap.config) == (8, 2, CONFIG)
    assert decoder.stats.samples_lost == {"EDA": 20, "BVP": 20, "SpO2": 2}
    assert decoder.config == faster


def test_gaps_longer_than_the_sequence_number_range_are_exact():
    frames = make_stream(2)
    far = SampleBlock(3, 0x2A17, 7, 9_000_000, 100_002, frames[1].samples)
    closing = Hello(3, 0x2A17, 8, 9_000_100, 100_003, CONFIG)  # the device carries on from the jump
    decoder = FrameDecoder()
    decoder.feed(b"".join(encode_frame(f) for f in frames[:-1] + [far, closing]))
    assert decoder.stats.samples_lost["EDA"] == (100_002 - 2) * 10


def test_one_stray_block_index_far_ahead_is_dropped_not_taken_as_a_jump(caplog):
    """A single frame with block index 4294967000 (valid CRC) among blocks 0-9: the stream goes on."""
    frames = make_stream(10)
    at = _index_of_block(frames, 3) + 1
    stray = SampleBlock(3, 0x2A17, 900, 350, 4_294_967_000, frames[at - 1].samples)
    decoder = FrameDecoder()
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.protocol"):
        out = decoder.feed(b"".join(encode_frame(f) for f in frames[:at] + [stray] + frames[at:]))
    assert [f.block_index for f in out if isinstance(f, SampleBlock)] == list(range(10))
    assert decoder.stats.jumps_refused == 1 and decoder.stats.samples_lost == {}
    assert decoder.stats.samples_ok["EDA"] == 100
    assert any("block index 4294967000" in r.getMessage() for r in caplog.records)


def test_a_block_index_jump_the_device_carries_on_from_is_counted_in_constant_memory():
    jump = 2**32 - 300
    frames = make_stream(10, hello_every=100)
    jumped = [f if not isinstance(f, SampleBlock) or f.block_index < 5 else
              SampleBlock(f.device_id, f.boot_id, f.seq, f.timestamp_ms, f.block_index + jump, f.samples)
              for f in frames[:-1]]
    closing = frames[-1]
    jumped.append(Hello(closing.device_id, closing.boot_id, closing.seq, closing.timestamp_ms, 10 + jump, CONFIG))
    decoder = FrameDecoder()
    out = decoder.feed(b"".join(encode_frame(f) for f in jumped))
    gaps = [(g.first_block_index, g.n_blocks) for g in out if isinstance(g, BlocksLost)]
    assert gaps == [(5, jump)]
    assert [f.block_index for f in out if isinstance(f, SampleBlock)] == [*range(5), *range(5 + jump, 10 + jump)]
    for spec in CONFIG.channels:  # delivered + lost == what the indices say was sent
        sent = (10 + jump) * spec.samples_per_block
        assert decoder.stats.samples_ok[spec.name] + decoder.stats.samples_lost[spec.name] == sent
    assert decoder.stats.jumps_refused == 0


def _hello_payload(block_period_us, channels):
    """A hello payload with arbitrary field values (DeviceConfig would refuse some of them)."""
    payload = struct.pack("<IIHBB", block_period_us, 0, 1, len(channels), 0)
    for name, per_block in channels:
        payload += struct.pack("<8s8sHBBiiff", name, b"", per_block, 1, 0, -32768, 32767, 1.0, 0.0)
    return payload


@pytest.mark.parametrize("payload, reason", [
    (_hello_payload(0, [(b"EDA", 10)]), "block_period_us must be an integer in"),
    (_hello_payload(100_000, [(b"EDA", 0)]), "samples_per_block of channel EDA"),
    (_hello_payload(100_000, []), "a device has 1 to 16 channels, got 0"),
    (_hello_payload(100_000, [(f"C{i}".encode(), 1) for i in range(40)]), "a device has 1 to 16 channels, got 40"),
    (_hello_payload(100_000, [(b"EDA", 10)])[:-4], "has 48 bytes, got 44"),
], ids=["period 0", "rate 0", "no channel", "40 channels", "short"])
def test_a_refused_description_is_logged_once_and_a_valid_one_is_still_taken(payload, reason, caplog):
    body = struct.pack("<BBHHHI", 1, 1, 3, 0x2A17, 0, 0) + payload
    refused = cobs_encode(body + struct.pack("<I", zlib.crc32(body))) + b"\x00"
    decoder = FrameDecoder()
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.protocol"):
        assert frames_only(decoder.feed(refused + refused)) == []
        assert decoder.config is None
        frames = make_stream(3)
        out = decoder.feed(b"".join(encode_frame(f) for f in frames[1:]))
    assert decoder.config == CONFIG  # the blocks waited for the next valid hello
    assert [f.block_index for f in out if isinstance(f, SampleBlock)] == [0, 1, 2]
    assert decoder.stats.malformed == 2
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("refusing a device description: ") and reason in messages[0]


def test_oversize_garbage_is_dropped_with_bounded_memory():
    decoder = FrameDecoder()
    frames = make_stream(2)
    for _ in range(5):
        decoder.feed(b"\x01" * 5000)
    out = decoder.feed(b"\x00" + b"".join(encode_frame(f) for f in frames))
    assert decoder.stats.oversize == 1
    assert frames_only(out) == frames
    assert MAX_FRAME_SIZE < 5 * 5000


def _frame_of_size(size: int, zeros: bool) -> bytes:
    """A frame of an unknown type, ``size`` bytes before COBS, with a valid CRC; with ``zeros`` False, no zero byte."""
    header = struct.pack("<BBHHHI", 1, 9, 0x0303, 0x2A17, 0x0101, 0x01010101)
    for salt in range(1, 256):
        payload = bytes(size - len(header) - 5) + bytes([salt]) if zeros else bytes([salt]) * (size - len(header) - 4)
        body = header + payload
        crc = struct.pack("<I", zlib.crc32(body))
        if b"\x00" not in crc and (zeros or b"\x00" not in body):
            return cobs_encode(body + crc) + b"\x00"
    raise AssertionError("no salt gives a CRC without zero bytes")


def test_a_frame_of_the_largest_size_is_taken_one_byte_more_is_oversize():
    for zeros in (False, True):  # without zeros COBS adds a byte per 254; with them, almost nothing
        decoder = FrameDecoder()
        largest = _frame_of_size(MAX_FRAME_SIZE, zeros)
        decoder.feed(largest[:-1])  # all of it waits in the buffer for its delimiter
        decoder.feed(largest[-1:])
        assert (decoder.stats.oversize, decoder.stats.unknown_type) == (0, 1), zeros
        decoder.feed(_frame_of_size(MAX_FRAME_SIZE + 1, zeros))
        assert (decoder.stats.oversize, decoder.stats.unknown_type) == (1, 1), zeros


def test_sample_block_of_the_wrong_length_is_malformed():
    frames = make_stream(1)
    short = SampleBlock(3, 0x2A17, 50, 0, 1, (np.zeros(3, np.int16),))
    decoder = FrameDecoder()
    decoder.feed(encode_frame(frames[0]) + encode_frame(short))
    assert decoder.stats.malformed == 1


def test_flush_ends_a_frame_cut_by_a_disconnection():
    frames = make_stream(3)
    wire = [encode_frame(f) for f in frames]
    decoder = FrameDecoder()
    out = decoder.feed(wire[0] + wire[1][:10])
    out += decoder.flush()
    out += decoder.feed(b"".join(wire[2:]))
    assert frames_only(out) == [frames[0]] + frames[2:]
    assert decoder.stats.crc_errors + decoder.stats.cobs_errors == 1


# --------------------------------------------------------------------------- field limits and messages


@pytest.mark.parametrize("name", ["!", "~", "A!~", "!EDA~"])
def test_labels_take_every_printable_ascii_character_from_bang_to_tilde(name):
    """'!' (33) and '~' (126) are the ends of the allowed range; they survive the wire."""
    hello = Hello(1, 2, 0, 0, 0, DeviceConfig(100_000, (ChannelSpec(name, name, 1),)))
    (decoded,) = frames_only(FrameDecoder().feed(encode_frame(hello)))
    assert decoded.config.channels[0].name == name and decoded.config.channels[0].unit == name


@pytest.mark.parametrize("label", [" ", "A B", "\x7f", "DEL\x7f", "é"])
def test_labels_refuse_space_delete_and_non_ascii(label):
    with pytest.raises(ValueError, match=r"^channel name must be 1 to 8 printable ASCII"):
        ChannelSpec(label, "", 1)
    with pytest.raises(ValueError, match=r"^unit of channel EDA must be 1 to 8 printable ASCII"):
        ChannelSpec("EDA", label, 1)


def test_a_unit_may_be_empty_a_name_may_not():
    assert ChannelSpec("EDA", "", 1).unit == ""
    with pytest.raises(ValueError, match=r"^channel name must be"):
        ChannelSpec("", "uS", 1)


def test_trailing_capital_x_in_names_and_units_is_kept_on_the_wire():
    """Only the NUL padding is stripped from the eight bytes, not a trailing letter."""
    config = DeviceConfig(100_000, (ChannelSpec("ACC_X", "LUX", 10),))
    (decoded,) = frames_only(FrameDecoder().feed(encode_frame(Hello(1, 2, 0, 0, 0, config))))
    assert decoded.config == config


@pytest.mark.parametrize("options, message", [
    ({"sample_format": 7}, r"^sample_format of channel A must be one of \['INT16', 'INT32'\], got 7"),
    ({"raw_min": -40_000}, r"^raw_min of channel A must be an integer in \[-32768, 32767\]"),
    ({"raw_min": 10, "raw_max": 5}, r"^raw_max of channel A must be an integer in \[10, 32767\]"),
    ({"scale": 0.0}, r"^scale and offset of channel A must be finite float32 values"),
    ({"scale": float("inf")}, r"^scale and offset of channel A"),
    ({"scale": 1e39}, r"^scale and offset of channel A"),  # finite in float64, inf in float32
    ({"offset": float("nan")}, r"^scale and offset of channel A"),
])
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_channel_spec_refusals_name_the_channel_and_the_field(options, message):
    with pytest.raises(ValueError, match=message):
        ChannelSpec("A", "", 1, **options)


def test_to_raw_clips_at_both_ends_of_the_adc_range():
    spec = CONFIG.channel("SpO2")  # raw 0..10000
    assert spec.to_raw([-1e9, 1e9]).tolist() == [0, 10000]


def test_the_physical_range_is_what_samples_at_the_raw_limits_decode_to():
    """Exactly, so the quality gate can count samples at the limits; a negative scale swaps the ends."""
    eda = CONFIG.channel("EDA")
    assert eda.physical_range == tuple(eda.to_physical(np.array([eda.raw_min, eda.raw_max], np.int16)).tolist())
    inverted = ChannelSpec("A", "", 1, raw_min=-300, raw_max=300, scale=-0.5, offset=1.0)
    assert inverted.physical_range == (-149.0, 151.0)


def test_to_raw_works_in_double_precision_even_for_float32_input():
    """(16.5992508 - 16.3840004) / 0.0005 = 430.5008 rounds to 431; in float32 it would give 430."""
    spec = CONFIG.channel("EDA")
    assert spec.to_raw(np.array([16.59925079345703], np.float32)).tolist() == [431]


def test_device_config_limits_and_messages():
    assert DeviceConfig(1, CONFIG.channels).block_period_us == 1
    with pytest.raises(ValueError, match=r"^firmware_version must be an integer in \[0, 65535\]"):
        DeviceConfig(1000, CONFIG.channels, firmware_version=-1)
    from_list = DeviceConfig(1000, list(CONFIG.channels))
    assert isinstance(from_list.channels, tuple) and hash(from_list) == hash(DeviceConfig(1000, CONFIG.channels))


def test_the_largest_sample_block_fills_the_frame_limit_exactly():
    """12-byte header + 4-byte block index + 4086 int16 samples + 4-byte CRC = 8192 bytes."""
    DeviceConfig(1000, (ChannelSpec("A", "", 4086),))
    with pytest.raises(ValueError, match="takes 8194 bytes"):
        DeviceConfig(1000, (ChannelSpec("A", "", 4087),))
    assert len(pack_frame(SampleBlock(1, 2, 0, 0, 0, (np.zeros(4086, np.int16),)))) == MAX_FRAME_SIZE
    with pytest.raises(ValueError, match=r"^frame of 8194 bytes exceeds MAX_FRAME_SIZE=8192"):
        pack_frame(SampleBlock(1, 2, 0, 0, 0, (np.zeros(4087, np.int16),)))


@pytest.mark.parametrize("make, field", [
    (lambda: Status(-1, 0, 0, 0), "device_id"),
    (lambda: Status(0, 1 << 16, 0, 0), "boot_id"),
    (lambda: Status(0, 0, 1 << 16, 0), "seq"),
    (lambda: Status(0, 0, 0, 1 << 32), "timestamp_ms"),
    (lambda: Hello(0, 0, 0, 0, -1, CONFIG), "next_block_index"),
    (lambda: SampleBlock(0, 0, 0, 0, 1 << 32, ()), "block_index"),
    (lambda: Status(0, 0, 0, 0, battery_mv=1 << 16), "battery_mv"),
    (lambda: Status(0, 0, 0, 0, flags=0x100), "flags"),
    (lambda: Status(0, 0, 0, 0, lead_off_mask=-1), "lead_off_mask"),
    (lambda: Status(0, 0, 0, 0, saturated_mask=1 << 16), "saturated_mask"),
])
def test_frame_field_errors_start_with_the_field_name(make, field):
    with pytest.raises(ValueError, match=rf"^{field} must be an integer in \[0, "):
        make()


@pytest.mark.parametrize("percent", [0, 100, 255])
def test_battery_percent_takes_0_to_100_and_255_for_unknown(percent):
    assert Status(0, 0, 0, 0, battery_percent=percent).battery_percent == percent


@pytest.mark.parametrize("percent", [-1, 101, 254])
def test_battery_percent_refuses_everything_else(percent):
    with pytest.raises(ValueError, match=r"^battery_percent must be 0-100 or 255 \(unknown\)"):
        Status(0, 0, 0, 0, battery_percent=percent)


@pytest.mark.parametrize("values", [
    [1, 2], np.zeros((2, 2), np.int16), np.zeros(2, np.float32), np.zeros(2, np.int8), np.zeros(2, np.int64),
], ids=["list", "2-D", "float32", "int8", "int64"])
def test_sample_blocks_take_only_1d_int16_or_int32_arrays(values):
    with pytest.raises(ValueError, match=r"^samples\[1\] must be a 1-D int16 or int32 numpy array"):
        SampleBlock(0, 0, 0, 0, 0, (np.zeros(2, np.int16), values))


def test_sample_blocks_are_equal_only_with_equal_header_and_samples():
    samples = (np.arange(3, dtype=np.int16),)
    block = SampleBlock(1, 2, 3, 4, 5, samples)
    assert block == SampleBlock(1, 2, 3, 4, 5, (np.arange(3, dtype=np.int32),))
    assert block != SampleBlock(1, 2, 4, 4, 5, samples)  # another sequence number
    assert block != SampleBlock(1, 2, 3, 4, 5, (np.arange(1, 4, dtype=np.int16),))
    assert block != SampleBlock(1, 2, 3, 4, 5, samples + samples)


def test_crc32_continues_a_running_value():
    assert crc32(b"6789", crc32(b"12345")) == 0xCBF43926


def test_packing_something_that_is_not_a_frame_names_its_type():
    impostor = SimpleNamespace(frame_type=FrameType.STATUS, device_id=1, boot_id=2, seq=0, timestamp_ms=0)
    with pytest.raises(TypeError, match=r"^expected a Hello, SampleBlock or Status frame, got SimpleNamespace"):
        pack_frame(impostor)


# --------------------------------------------------------------------------- decoder bookkeeping


def _blocks(indices, boot_id=0x2A17, first_seq=1):
    """Sample blocks of CONFIG with the given block indices and consecutive sequence numbers."""
    samples = tuple(np.zeros(c.samples_per_block, c.sample_format.dtype) for c in CONFIG.channels)
    return [SampleBlock(3, boot_id, (first_seq + i) & 0xFFFF, 100 * index, index, samples)
            for i, index in enumerate(indices)]


def _decode(frames, **options):
    decoder = FrameDecoder(**options)
    return decoder, decoder.feed(b"".join(encode_frame(f) for f in frames))


def test_flush_with_nothing_buffered_counts_nothing():
    decoder = FrameDecoder()
    assert decoder.flush() == [] and decoder.flush() == []
    assert decoder.stats == type(decoder.stats)()


def test_flush_delivers_a_whole_frame_that_only_lacks_its_delimiter():
    hello = make_stream(1)[0]
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(hello)[:-1]) == []
    assert frames_only(decoder.flush()) == [hello]


def test_every_delivered_frame_and_every_gap_is_counted_once():
    frames = make_stream(12, hello_every=5)
    kept = [f for f in frames if not (isinstance(f, SampleBlock) and f.block_index in (3, 7, 8))]
    decoder, out = _decode(kept)
    assert decoder.stats.frames_ok == len(kept)
    gaps = [item for item in out if isinstance(item, BlocksLost)]
    assert [(g.device_id, g.boot_id, g.first_block_index, g.n_blocks, g.config) for g in gaps] == [
        (3, 0x2A17, 3, 1, CONFIG), (3, 0x2A17, 7, 2, CONFIG)]
    assert (decoder.stats.gaps, decoder.stats.blocks_lost) == (2, 3)
    assert all(block.config == CONFIG for block in out if isinstance(block, SampleBlock))


def test_repeated_frames_and_old_blocks_are_each_counted_as_duplicates():
    stream = make_stream(4, hello_every=100, status_every=100)
    status = Status(3, 0x2A17, 50, 400, 3900, 80)
    late = _blocks([1, 2], first_seq=51)  # blocks already delivered, under new sequence numbers
    decoder, out = _decode(stream + [status, status, status] + late)
    assert decoder.stats.duplicates == 4
    assert [f.block_index for f in out if isinstance(f, SampleBlock)] == [0, 1, 2, 3]


def test_each_malformed_sample_block_is_counted():
    short = SampleBlock(3, 0x2A17, 50, 0, 1, (np.zeros(3, np.int16),))
    longer = SampleBlock(3, 0x2A17, 51, 0, 1, (np.zeros(300, np.int16),))
    decoder, _ = _decode(make_stream(1)[:1] + [short, longer])
    assert decoder.stats.malformed == 2


def test_the_duplicate_window_remembers_exactly_the_last_frames_asked_for():
    hello = make_stream(1)[0]
    statuses = [Status(3, 0x2A17, seq, 10 * seq) for seq in (1, 2, 3)]
    # window 2: after statuses 1-3 only 2 and 3 are remembered, so 1 is new again, 3 a duplicate.
    decoder, out = _decode([hello, *statuses, statuses[0], statuses[2]], duplicate_window=2)
    assert frames_only(out) == [hello, *statuses, statuses[0]]
    assert decoder.stats.duplicates == 1


def test_repeated_warnings_are_logged_once_then_at_debug_level(caplog):
    frame = _raw_frame(2, 2)
    decoder = FrameDecoder()
    with caplog.at_level(logging.DEBUG, logger="firmware_bridge.protocol"):
        decoder.feed(frame + frame)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "skipping frames of unknown protocol version 2 (counted in FrameDecoder.stats; "
                          "further ones are logged at debug level)"),
        (logging.DEBUG, "skipping frames of unknown protocol version 2"),
    ]


def test_a_description_with_non_ascii_names_is_refused_with_the_reason(caplog):
    body = struct.pack("<BBHHHI", 1, 1, 3, 0x2A17, 0, 0) + _hello_payload(100_000, [(b"\xc9DA", 10)])
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.protocol"):
        FrameDecoder().feed(cobs_encode(body + struct.pack("<I", zlib.crc32(body))) + b"\x00")
    assert [r.getMessage().partition(" (counted")[0] for r in caplog.records] == [
        "refusing a device description: a channel name or unit is not ASCII"]


def test_sessions_are_counted_logged_and_drop_their_unconfigured_blocks(caplog):
    waiting = _blocks(range(5), boot_id=1)  # no hello in boot 1: its blocks wait, then go with it
    restarted = [Hello(3, 2, 0, 0, 0, CONFIG), Hello(3, 2, 1, 0, 0, CONFIG), *_blocks([0], boot_id=2, first_seq=2)]
    with caplog.at_level(logging.INFO, logger="firmware_bridge.protocol"):
        decoder, out = _decode(waiting + restarted + [Hello(3, 7, 0, 0, 0, CONFIG)], max_pending_blocks=2)
    sessions = [(s.device_id, s.boot_id, s.restarted) for s in out if isinstance(s, SessionStarted)]
    assert sessions == [(3, 1, False), (3, 2, True), (3, 7, True)]
    assert decoder.stats.sessions == 3
    assert decoder.stats.unconfigured_dropped == 5  # 3 pushed out of the 2-block wait, 2 left when boot 1 ended
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["device session changed from (3, 1) to (3, 2) (device restarted)",
                     "device session changed from (3, 2) to (3, 7) (device restarted)"]


def test_after_a_restart_blocks_missing_from_index_0_are_lost():
    first = make_stream(3, boot_id=1)
    second = [Hello(3, 2, 0, 0, 3, CONFIG), *_blocks([3, 4], boot_id=2)]  # the new boot's blocks 0-2 never came
    decoder, out = _decode(first + second)
    gaps = [(g.boot_id, g.first_block_index, g.n_blocks) for g in out if isinstance(g, BlocksLost)]
    assert gaps == [(2, 0, 3)]


def test_a_hello_far_ahead_is_taken_once_a_block_carries_on_from_it():
    frames = make_stream(5, hello_every=100, status_every=100)[:-1]
    jump = Hello(3, 0x2A17, 20, 100_000, 1000, CONFIG)
    decoder, out = _decode(frames + [jump, *_blocks([1000], first_seq=21)])
    assert [(g.first_block_index, g.n_blocks) for g in out if isinstance(g, BlocksLost)] == [(5, 995)]
    assert frames_only(out)[-2:] == [jump, *_blocks([1000], first_seq=21)]
    assert decoder.stats.jumps_refused == 0


def test_a_frame_behind_a_far_one_does_not_confirm_its_jump():
    """Blocks 0-4, strays 1000 then 999, then 5 and 6: both strays are dropped, nothing is lost."""
    decoder, out = _decode(make_stream(1)[:1] + _blocks([0, 1, 2, 3, 4, 1000, 999, 5, 6]))
    assert [f.block_index for f in out if isinstance(f, SampleBlock)] == list(range(7))
    assert decoder.stats.jumps_refused == 2 and decoder.stats.samples_lost == {}


def test_jumps_of_exactly_max_jump_blocks_are_taken_at_once_and_confirm_at_the_limit():
    hello = make_stream(1)[0]
    decoder, out = _decode([hello, *_blocks([0, 1, 6])], max_jump_blocks=4)  # 6 is 4 past the expected 2
    assert [f.block_index for f in out if isinstance(f, SampleBlock)] == [0, 1, 6]
    # 20 is 13 past the expected 7: held; 25 is 4 past the 21 that would follow it: confirms it.
    out = decoder.feed(b"".join(encode_frame(f) for f in _blocks([20, 25], first_seq=10)))
    assert [f.block_index for f in out if isinstance(f, SampleBlock)] == [20, 25]
    assert [(g.first_block_index, g.n_blocks) for g in out if isinstance(g, BlocksLost)] == [(7, 13), (21, 4)]


@pytest.mark.parametrize("option, value, message", [
    ("max_pending_blocks", -1, r"^max_pending_blocks must be an integer in \[0, 1048576\]"),
    ("max_pending_blocks", 1 << 20 | 1, r"^max_pending_blocks must be an integer in \[0, 1048576\]"),
    ("duplicate_window", 0, r"^duplicate_window must be an integer in \[1, 1048576\]"),
    ("max_jump_blocks", 0, r"^max_jump_blocks must be an integer in \[1, 4294967295\]"),
])
def test_decoder_options_are_checked_and_named(option, value, message):
    with pytest.raises(ValueError, match=message):
        FrameDecoder(**{option: value})


def test_decoder_options_take_their_smallest_values():
    decoder, out = _decode(_blocks([0, 1]) + [make_stream(1)[0], *_blocks([2, 3], first_seq=3)],
                           max_pending_blocks=0, duplicate_window=1, max_jump_blocks=1)
    assert [f.block_index for f in out if isinstance(f, SampleBlock)] == [2, 3]
    assert decoder.stats.unconfigured_dropped == 2


def test_decoder_defaults_are_the_documented_64():
    hello = make_stream(1)[0]
    decoder, out = _decode(_blocks(range(70)) + [Hello(3, 0x2A17, 99, 0, 70, CONFIG)])
    assert decoder.stats.unconfigured_dropped == 70 - 64  # 64 blocks wait for the hello
    statuses = [Status(3, 0x2A17, seq, 0) for seq in range(1, 66)]
    decoder, out = _decode([hello, *statuses, statuses[1], statuses[0]])  # the last 64 remembered: 2 is, 1 not
    assert decoder.stats.duplicates == 1 and frames_only(out)[-1] == statuses[0]
    decoder, out = _decode([hello, *_blocks([0, 65])])  # a jump of 64 past the expected block 1: taken
    assert [f.block_index for f in out if isinstance(f, SampleBlock)] == [0, 65]
    decoder, out = _decode([hello, *_blocks([0, 66])])  # 65: held until a frame confirms it
    assert [f.block_index for f in out if isinstance(f, SampleBlock)] == [0]


def test_an_oversize_frame_is_counted_as_soon_as_it_is_too_long_and_each_one_once():
    decoder = FrameDecoder()
    decoder.feed(b"\x01" * 9000)  # no delimiter yet: already longer than any frame
    assert decoder.stats.oversize == 1
    decoder.feed(b"\x01" * 9000 + b"\x00" + b"\x01" * 9000)
    assert decoder.stats.oversize == 2  # the same frame, then a new one
    decoder.feed(b"\x00" + b"\x01" * 9000 + b"\x00")  # a whole oversize frame in one chunk
    assert decoder.stats.oversize == 3


def test_each_invalid_cobs_frame_is_counted():
    decoder = FrameDecoder()
    decoder.feed(b"\x05\x11\x00\x09\x22\x00")  # both blocks run past the end of their frame
    assert decoder.stats.cobs_errors == 2


def test_each_damaged_frame_is_counted_once_in_its_category():
    hello = encode_frame(make_stream(1)[0])
    too_short = cobs_encode(bytes(range(1, 16))) + b"\x00"  # 15 bytes: less than a header and a CRC
    bad_crc = bytearray(pack_frame(Status(3, 0x2A17, 7, 0)))
    bad_crc[-1] ^= 0xFF
    bad_crc = cobs_encode(bytes(bad_crc)) + b"\x00"
    decoder = FrameDecoder()
    decoder.feed(hello + too_short * 2 + bad_crc * 2 + _raw_frame(1, 2, b"\x01\x02") * 2
                 + _raw_frame(1, 3, b"\x01") * 2 + _frame_of_size(MAX_FRAME_SIZE + 1, zeros=True) * 2)
    stats = decoder.stats
    assert (stats.crc_errors, stats.malformed, stats.oversize, stats.frames_ok) == (4, 4, 2, 1)


def test_each_unknown_version_and_type_is_warned_about_once_and_every_frame_counted(caplog):
    decoder = FrameDecoder()
    with caplog.at_level(logging.WARNING, logger="firmware_bridge.protocol"):
        out = decoder.feed(_raw_frame(2, 2) + _raw_frame(3, 2) + _raw_frame(2, 2) + _raw_frame(1, 9)
                           + _raw_frame(1, 10) + _raw_frame(1, 9) + encode_frame(Status(3, 0x2A17, 99, 0)))
    assert [r.getMessage().partition(" (counted")[0] for r in caplog.records] == [
        "skipping frames of unknown protocol version 2", "skipping frames of unknown protocol version 3",
        "skipping frames of unknown type 9", "skipping frames of unknown type 10"]
    assert (decoder.stats.unknown_version, decoder.stats.unknown_type) == (3, 3)
    assert frames_only(out) == []  # the status repeats the unknown frames' sequence number and timestamp


def test_a_malformed_sample_frame_still_uses_its_sequence_number():
    """Seq 1 carries only a block index (malformed); seq 2 follows it, so no frame is counted lost."""
    hello = make_stream(1)[0]
    body = struct.pack("<BBHHHI", 1, 2, 3, 0x2A17, 1, 0) + struct.pack("<I", 0)
    index_only = cobs_encode(body + struct.pack("<I", zlib.crc32(body))) + b"\x00"
    decoder = FrameDecoder()
    decoder.feed(encode_frame(hello) + index_only + encode_frame(Status(3, 0x2A17, 2, 0)))
    assert (decoder.stats.malformed, decoder.stats.frames_lost, decoder.stats.frames_ok) == (1, 0, 2)


def test_a_duplicate_needs_the_same_sequence_number_and_timestamp():
    """PROTOCOL.md: a frame is repeated when both match; a block reusing a sequence number at another time is new."""
    hello = make_stream(1)[0]
    first, second = _blocks([0, 1], first_seq=5)
    reused = SampleBlock(3, 0x2A17, 5, second.timestamp_ms, 1, second.samples)
    later_hello = Hello(3, 0x2A17, hello.seq, 500, 2, CONFIG)  # the first hello's number, 0.5 s later
    decoder, out = _decode([hello, first, reused, reused, later_hello])
    assert [f.block_index for f in out if isinstance(f, SampleBlock)] == [0, 1]
    assert frames_only(out)[-1] == later_hello
    assert decoder.stats.duplicates == 1
