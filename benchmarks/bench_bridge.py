"""Decoding throughput of the serial bridge: ``python -m benchmarks.bench_bridge``.

Encodes one hour of a 4-channel, 100 Hz device (EDA, BVP, RESP, SpO2 from the
simulator's generator, int16, with a status frame every second and a hello
every 5 s), then decodes it with :class:`~firmware_bridge.protocol.FrameDecoder`
in 4 KiB chunks, as the reader gets them from a port. Reports MB/s, seconds
per hour of data and the multiple of real time, for 100 ms and 1 s blocks,
for the decoder alone and with the reader's conversion to per-channel blocks
in physical units (:class:`~firmware_bridge.reader.StreamAssembler`).
Goal: one hour decoded in under 2 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.report import text_table
from firmware_bridge.protocol import FrameDecoder, Hello, SampleBlock, Status, encode_frame
from firmware_bridge.reader import StreamAssembler
from firmware_bridge.simulator import SignalGenerator, generator_config

GOAL_S_PER_HOUR = 2.0


def encode_hour(block_ms: int, seconds: int = 3600, seed: int = 0, spo2_rate_hz: float = 100) -> tuple[bytes, int]:
    """Wire bytes of ``seconds`` of the 4-channel device (EDA, BVP, RESP at 100 Hz, SpO2 at
    ``spo2_rate_hz``), and the number of frames."""
    config = generator_config(block_ms=block_ms, signal_rate_hz=100, spo2_rate_hz=spo2_rate_hz)
    period_s = config.block_duration_s
    rates = {name: config.sampling_rate(name) for name in config.channel_names}
    generator = SignalGenerator(rates, np.random.default_rng(seed))
    chunks, seq = [b"\x00"], 0
    blocks_per_second = round(1 / period_s)
    for block in range(round(seconds / period_s)):
        t_ms = block * block_ms
        if block % (5 * blocks_per_second) == 0:
            chunks.append(encode_frame(Hello(1, 7, seq & 0xFFFF, t_ms, block, config)))
            seq += 1
        physical = generator.block(block * period_s, period_s)
        raw = tuple(spec.to_raw(physical[spec.name]) for spec in config.channels)
        chunks.append(encode_frame(SampleBlock(1, 7, seq & 0xFFFF, t_ms, block, raw)))
        seq += 1
        if block % blocks_per_second == 0:
            chunks.append(encode_frame(Status(1, 7, seq & 0xFFFF, t_ms, 3900, 80)))
            seq += 1
    return b"".join(chunks), seq


def decode(data: bytes, assemble: bool, chunk: int = 4096) -> tuple[float, FrameDecoder]:
    """Seconds to decode ``data`` fed in ``chunk``-byte pieces (best of the calls made by the caller)."""
    decoder = FrameDecoder()
    assembler = StreamAssembler() if assemble else None
    view = memoryview(data)
    start = time.perf_counter()
    for offset in range(0, len(data), chunk):
        items = decoder.feed(view[offset : offset + chunk])
        if assembler is not None:
            assembler.process(items, received_at=0.0)
    return time.perf_counter() - start, decoder


def collect(seconds: int = 3600, repeat: int = 3) -> list[dict]:
    """Decode ``seconds`` of stream per block size and stage; one section (see :mod:`benchmarks.report`)."""
    rows, worst = [], 0.0
    for block_ms in (100, 1000):
        data, frames = encode_hour(block_ms, seconds)
        for stage, assemble in (("decoder", False), ("decoder+assembler", True)):
            decode_s, decoder = min((decode(data, assemble) for _ in range(repeat)), key=lambda r: r[0])
            if decoder.stats.frames_ok != frames or decoder.stats.samples_lost:
                raise RuntimeError(f"decoding lost frames: {decoder.stats}")
            s_per_hour = decode_s * 3600 / seconds
            if stage == "decoder":
                worst = max(worst, s_per_hour)
            rows.append([f"{block_ms} ms", stage, len(data) / 1e6, frames, decode_s, len(data) / decode_s / 1e6,
                         s_per_hour, seconds / decode_s])
    verdict = "meets" if worst < GOAL_S_PER_HOUR else "MISSES"
    return [{
        "title": "Serial bridge: decoding throughput",
        "command": "python -m benchmarks.bench_bridge",
        "columns": ["block", "stage", "MB", "frames", "s", "MB/s", "s/hour", "x real time"],
        "rows": rows,
        "notes": [f"{seconds} s of a 4 x 100 Hz device fed in 4 KiB chunks, best of {repeat} runs",
                  f"decoder: worst {worst:.3f} s per hour of data, {verdict} the goal of < {GOAL_S_PER_HOUR:g} s"],
        "goal_met": worst < GOAL_S_PER_HOUR,
    }]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3600, help="stream length to encode (default 3600)")
    parser.add_argument("--repeat", type=int, default=3, help="decode runs; the best is reported (default 3)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    sections = collect(args.seconds, args.repeat)
    print(text_table(sections[0]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(sections, handle, indent=1)
    return 0 if sections[0]["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
