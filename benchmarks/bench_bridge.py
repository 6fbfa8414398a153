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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3600, help="stream length to encode (default 3600)")
    parser.add_argument("--repeat", type=int, default=3, help="decode runs; the best is reported (default 3)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    results = []
    print(f"{'block':>6} {'stage':<18} {'MB':>6} {'frames':>7} {'s':>7} {'MB/s':>7} {'s/hour':>7} {'x real time':>12}")
    for block_ms in (100, 1000):
        t0 = time.perf_counter()
        data, frames = encode_hour(block_ms, args.seconds)
        encode_s = time.perf_counter() - t0
        for stage, assemble in (("decoder", False), ("decoder+assembler", True)):
            seconds, decoder = min((decode(data, assemble) for _ in range(args.repeat)), key=lambda r: r[0])
            assert decoder.stats.frames_ok == frames and not decoder.stats.samples_lost, decoder.stats
            row = {
                "block_ms": block_ms,
                "stage": stage,
                "bytes": len(data),
                "frames": frames,
                "stream_s": args.seconds,
                "decode_s": seconds,
                "mb_per_s": len(data) / seconds / 1e6,
                "s_per_hour": seconds * 3600 / args.seconds,
                "x_real_time": args.seconds / seconds,
                "encode_s_python": encode_s,
            }
            results.append(row)
            print(f"{block_ms:>4}ms {stage:<18} {len(data) / 1e6:6.2f} {frames:7d} {seconds:7.3f} "
                  f"{row['mb_per_s']:7.2f} {row['s_per_hour']:7.3f} {row['x_real_time']:12.0f}")
    worst = max(r["s_per_hour"] for r in results if r["stage"] == "decoder")
    verdict = "meets" if worst < GOAL_S_PER_HOUR else "MISSES"
    print(f"decoder: worst {worst:.3f} s per hour of 4 x 100 Hz data, {verdict} the goal of < {GOAL_S_PER_HOUR:g} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0 if worst < GOAL_S_PER_HOUR else 1


if __name__ == "__main__":
    sys.exit(main())
