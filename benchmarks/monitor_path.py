"""The monitor's per-window path, piece by piece, for timing and memory measurements.

Serial bytes from the simulated hub go through the bridge
(:class:`~firmware_bridge.protocol.FrameDecoder`,
:class:`~firmware_bridge.reader.StreamAssembler`), the
:class:`~edge.windows.Windower` and the :class:`~edge.pipeline.WindowProcessor`
(quality, images, inference, smoothing), as ``biomoe monitor`` runs them, but
without threads, so each stage can be timed on its own.

Run as a module, it is the child process ``biomoe bench`` measures start-up
time and peak memory on (only device-side packages are imported)::

    python -m benchmarks.monitor_path load --bundle DIR --threads 2
    python -m benchmarks.monitor_path pipeline --bundle DIR --stream FILE --windows 5
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()  # before the heavy imports: the load child reports from here

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from edge.backends import Backend, create_backend  # noqa: E402
from edge.bundle import Bundle, load_bundle  # noqa: E402
from edge.bundle_images import FusionImages, bundle_representation_spec  # noqa: E402
from edge.errors import EdgeError  # noqa: E402
from edge.pipeline import WindowProcessor  # noqa: E402
from edge.representations import RepresentationSpec  # noqa: E402
from edge.smoothing import create_smoother  # noqa: E402
from edge.windows import Window, Windower  # noqa: E402
from firmware_bridge.protocol import FrameDecoder  # noqa: E402
from firmware_bridge.reader import ChannelBlock, StreamAssembler  # noqa: E402

__all__ = ["CHUNK_BYTES", "representation_spec", "bundle_images_for", "decode_stream", "cut_windows", "MonitorPath"]

#: Bytes handed to the decoder at a time, as a serial read returns them.
CHUNK_BYTES = 4096


def representation_spec(bundle: Bundle) -> RepresentationSpec:
    """The bundle's :class:`~edge.representations.RepresentationSpec`, as the monitor builds it."""
    return bundle_representation_spec(bundle)


def bundle_images_for(bundle: Bundle) -> Callable[[np.ndarray], np.ndarray]:
    """``images_for(signals)`` for :class:`~edge.pipeline.WindowProcessor`: the monitor's own fusion images."""
    return FusionImages(bundle.fusion, representation_spec(bundle))


def decode_stream(data: bytes) -> list:
    """Reader events of ``data`` fed to a new decoder and assembler in :data:`CHUNK_BYTES` pieces."""
    decoder, assembler = FrameDecoder(), StreamAssembler()
    view = memoryview(data)
    events: list = []
    for offset in range(0, len(data), CHUNK_BYTES):
        events += assembler.process(decoder.feed(view[offset:offset + CHUNK_BYTES]), received_at=0.0)
    return events


def cut_windows(windower: Windower, events: list) -> list[Window]:
    """Push the channel blocks of ``events`` the windower knows into it; the windows it cuts."""
    windows: list[Window] = []
    for event in events:
        if isinstance(event, ChannelBlock) and event.channel in windower.channels:
            windows += windower.push(event.channel, event.device_time_s, event.samples)
    return windows


class MonitorPath:
    """One bundle's monitor path over a recorded or simulated stream.

    Parameters
    ----------
    bundle : Bundle
        The loaded bundle.
    channel_rates : dict of str to float
        The device's rate of each of the bundle's channels (Hz).
    threads : int
        Inference threads.
    hop_seconds : float, optional
        Window hop; default the window length.
    """

    def __init__(self, bundle: Bundle, channel_rates: dict[str, float], threads: int = 2,
                 hop_seconds: float | None = None):
        missing = [name for name in bundle.channel_names if name not in channel_rates]
        if missing:
            raise EdgeError(
                f"bundle {bundle.name} needs channel(s) {', '.join(missing)} which the stream does not carry "
                f"(it has {', '.join(channel_rates)})"
            )
        self.bundle = bundle
        self.rates = {name: float(channel_rates[name]) for name in bundle.channel_names}
        self.hop_seconds = hop_seconds
        self.backend: Backend = create_backend(bundle, threads=threads)
        self.images_for = bundle_images_for(bundle)
        self.processor = WindowProcessor(bundle, self.backend, create_smoother("ema"), self.images_for)

    def windower(self) -> Windower:
        """A new windower over the bundle's channels, rate and window."""
        return Windower(self.rates, self.bundle.sampling_rate, self.bundle.window_seconds, self.hop_seconds)

    def run(self, data: bytes) -> list:
        """Every window of ``data``, from bytes to results (what the monitor does, end to end)."""
        windows = cut_windows(self.windower(), decode_stream(data))
        return [self.processor.process(window, wall_time=0.0) for window in windows]

    def close(self) -> None:
        self.backend.close()


def window_scalars_stand_in(bundle: Bundle) -> np.ndarray | None:
    """Zero scalars (a window at the patient's baseline) for a bundle whose head reads them; else None."""
    return np.zeros(len(bundle.scalars), np.float32) if bundle.scalars else None


def _load(args: argparse.Namespace) -> dict:
    """Start-up of a monitor: bundle checked and loaded, backend ready, first window inferred."""
    imported = time.perf_counter()
    bundle = load_bundle(args.bundle)
    loaded = time.perf_counter()
    backend = create_backend(bundle, threads=args.threads)
    ready = time.perf_counter()
    backend.predict(np.zeros((bundle.n_images, 3, bundle.image_size, bundle.image_size), np.float32),
                    window_scalars_stand_in(bundle))
    first = time.perf_counter()
    return {
        "import_ms": (imported - _STARTED) * 1e3,
        "bundle_ms": (loaded - imported) * 1e3,
        "backend_ms": (ready - loaded) * 1e3,
        "first_inference_ms": (first - ready) * 1e3,
    }


def _pipeline(args: argparse.Namespace) -> dict:
    """Load the bundle and process the windows of a stream file, as a monitor would."""
    bundle = load_bundle(args.bundle)
    rates = json.loads(args.rates)
    path = MonitorPath(bundle, rates, threads=args.threads, hop_seconds=args.hop)
    data = Path(args.stream).read_bytes()
    processed = 0
    while processed < args.windows:
        processed += len(path.run(data))
    path.close()
    return {"windows": processed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.monitor_path", description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("load", "pipeline"))
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stream", help="pipeline: file of serial bytes")
    parser.add_argument("--rates", default="{}", help="pipeline: JSON {channel: Hz} of the stream")
    parser.add_argument("--hop", type=float, help="pipeline: window hop in seconds")
    parser.add_argument("--windows", type=int, default=5, help="pipeline: windows to process at least")
    args = parser.parse_args(argv)
    try:
        result = _load(args) if args.mode == "load" else _pipeline(args)
    except (EdgeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
