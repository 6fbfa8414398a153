"""``biomoe simulate-device``: the options table and the command.

The table maps each option to a :class:`SimulatorParams` field; it serves the CLI
(:func:`configure_parser`, :func:`run`) and the ``sim://`` URL (:func:`params_from_options`).
"""

from __future__ import annotations

import argparse
from typing import Callable

from firmware_bridge.simulator.device import SimulatedDevice, SimulatorParams
from firmware_bridge.simulator.replay import ReplayRecording

__all__ = ["params_from_options", "configure_parser", "run"]


# (option, params field, type, help). Shared by the CLI and the sim:// URL
# (firmware_bridge.protocol_sim), where an option is a query key without dashes.
_OPTIONS: list[tuple[str, str, Callable, str]] = [
    ("--speed", "speed", float, "multiple of real time; 0 = as fast as possible (default 1)"),
    ("--duration", "duration_s", float, "stream seconds to send (default: forever; a replay: its length)"),
    ("--block-ms", "block_ms", int, "duration of one sample block in ms (default 1000)"),
    ("--signal-rate", "signal_rate_hz", float, "generator rate of EDA, BVP, RESP in Hz (default 100)"),
    ("--spo2-rate", "spo2_rate_hz", float, "generator rate of SpO2 in Hz (default 1)"),
    ("--replay", "replay_dir", str, "replay an AI4PAIN-format folder (root or split, with --subject) instead of the "
                                    "generator; biomoe simulate-device also replays EDF/BDF, WFDB, E4 and CSV files"),
    ("--subject", "subject", str, "AI4PAIN subject id to replay (the CSV name without .csv)"),
    ("--loop", "loop_replay", bool, "start the replay again when it ends"),
    ("--device-id", "device_id", int, "device id in the frame headers (default 1)"),
    ("--boot-id", "boot_id", int, "first boot id (default: drawn from the seed)"),
    ("--seed", "seed", int, "seed of the signals, the faults and the boot ids (default 0)"),
    ("--flip-rate", "flip_rate", float, "probability to flip each byte on the wire (default 0)"),
    ("--drop-rate", "drop_rate", float, "probability to drop each frame (default 0)"),
    ("--duplicate-rate", "duplicate_rate", float, "probability to send a frame twice (default 0)"),
    ("--stall-every", "stall_every_s", float, "stall the link every S stream seconds"),
    ("--stall-duration", "stall_s", float, "length of each stall, s (default 2)"),
    ("--disconnect-every", "disconnect_every_s", float, "disconnect the link every S stream seconds"),
    ("--disconnect-duration", "disconnect_s", float, "length of each disconnection, s (default 2)"),
    ("--conditions", "conditions", str,
     "scheduled conditions, repeatable and comma-separated: flat|saturate|leadoff:CHANNEL:START-END, "
     "pain:low|high:START-END, disconnect|reboot|stall:START-END (stream seconds)"),
    ("--hello-every", "hello_every_s", float, "seconds between hello frames (default 5)"),
    ("--status-every", "status_every_s", float, "seconds between status frames (default 1)"),
]


def params_from_options(options: dict[str, object], **extra) -> SimulatorParams:
    """:class:`SimulatorParams` from option names (``"flip-rate"``) and text or typed values.

    Unknown names raise ``ValueError`` listing the known ones. Used for the
    ``sim://?flip-rate=0.001&conditions=flat:EDA:3-6`` URL.
    """
    known = {option.lstrip("-"): (name, kind) for option, name, kind, _ in _OPTIONS}
    values: dict[str, object] = dict(extra)
    for key, value in options.items():
        if key not in known:
            raise ValueError(f"unknown simulator option {key!r}; known options: {', '.join(sorted(known))}")
        name, kind = known[key]
        if name == "conditions":
            values[name] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        elif kind is bool:
            values[name] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "")
        else:
            try:
                values[name] = kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"simulator option {key!r} expects {kind.__name__}, got {value!r}") from None
    return SimulatorParams(**values)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``biomoe simulate-device``."""
    parser.description = (
        "Stream simulated sensor frames (biomoe protocol) on a new pseudo-terminal, whose path is printed, "
        "or on --port. Faults and conditions make the link and the signals misbehave at known times."
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", help="write to this pyserial URL instead of a new pty (a UART, socket://...)")
    where.add_argument("--link", help="keep a symlink at this path pointing to the current pty "
                                      "(readers reconnect through it after a simulated disconnection)")
    parser.add_argument("--baudrate", type=int, default=115200, help="baud rate for --port (default 115200)")
    for option, name, kind, help_text in _OPTIONS:
        if kind is bool:
            parser.add_argument(option, dest=name, action="store_true", help=help_text)
        elif name == "conditions":
            parser.add_argument(option, dest=name, action="append", default=[], metavar="SPEC", help=help_text)
        else:
            default = getattr(SimulatorParams, name)
            parser.add_argument(option, dest=name, type=kind, default=default, help=help_text)
    parser.add_argument("--quiet", action="store_true", help="print only the path")


def run(args: argparse.Namespace, recording: ReplayRecording | None = None, recording_name: str = "") -> int:
    """Run ``biomoe simulate-device``: stream until the duration is over or Ctrl-C.

    ``recording`` (read from a file by ``edge.recording``) replaces ``--replay DIR --subject ID``.
    """
    fields = {name: getattr(args, name) for _, name, _, _ in _OPTIONS}
    params = SimulatorParams(port=args.port, link=args.link, baudrate=args.baudrate, **fields)
    device = SimulatedDevice(params, recording=recording)
    path = device.open()
    try:
        if args.quiet:
            print(path, flush=True)
        else:
            channels = ", ".join(
                f"{c.name} {device.config.sampling_rate(c.name):g} Hz [{c.unit}]" for c in device.config.channels
            )
            source = (f"replay of subject {params.subject}" if params.replay_dir
                      else f"replay of {recording_name}" if recording is not None else "built-in generator")
            print(f"biomoe simulate-device: streaming on {path}", flush=True)
            if params.link:
                print(f"  (currently {device.pty_path})", flush=True)
            pace = f"{params.speed:g}x real time" if params.speed else "as fast as the link takes it"
            print(f"  {source}: {channels}; {pace}", flush=True)
        device.start()
        while not device.wait(timeout=0.5):
            pass
    finally:
        device.close()
        stats = device.snapshot()
        if not args.quiet:
            print(
                f"sent {stats.frames_sent} frames ({stats.bytes_sent} bytes), {stats.blocks_generated} blocks; "
                f"faults: {stats.frames_dropped} dropped, {stats.frames_duplicated} duplicated, "
                f"{stats.bytes_flipped} bytes flipped, {stats.frames_unsent} unsent, {stats.stalls} stalls, "
                f"{stats.disconnects} disconnections, {stats.reboots} reboots",
                flush=True,
            )
    return 0

