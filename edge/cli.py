"""``biomoe``: one console command, one subcommand per job.

Subcommands live in the package that owns the job and are imported only when
chosen, so ``biomoe render`` or ``biomoe monitor`` never import torch. A command
module provides ``configure_parser(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line help). The module is imported only when the command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "render": ("edge.render", "write the six representation PNGs of each window of a signal CSV"),
    "monitor": ("edge.monitor", "monitor pain continuously from a serial port or the simulated hub"),
    "history": ("edge.history", "print, export (CSV) or plot the results stored by the monitor"),
    "install-service": ("edge.service", "write a systemd unit that runs the monitor"),
    "simulate-device": ("firmware_bridge.simulator", "stream simulated sensor frames on a pty or port"),
    "synth": ("training.synth", "generate a synthetic cohort in the AI4PAIN layout"),
    "import-e4": ("training.e4", "import Empatica E4 sessions with per-second labels into the AI4PAIN layout"),
    "pretrain": ("training.pretrain", "multi-task pretraining of the backbone on biosignal images"),
    "finetune": ("training.finetune", "train a fusion head (frozen backbone) or fine-tune fully"),
    "evaluate": ("training.evaluate", "evaluate a trained model: metrics, confusion matrix, fusion table"),
    "export": ("quantize.export", "export a trained model to an ONNX/TFLite bundle, optionally int8"),
    "bench": ("benchmarks.bench", "measure a bundle's latency, memory and size against a device budget"),
}

# Optional dependencies and the install extra that brings each.
_EXTRA_OF_MODULE = {
    "torch": "train", "timm": "train", "tqdm": "train", "matplotlib": "plot",
    "onnx": "train,export", "onnxscript": "train,export", "litert_torch": "train,export",
    "ai_edge_quantizer": "train,export",
}

# Exceptions that mean "the user asked for something that cannot be done":
# printed on one line, never with a traceback (set BIOMOE_DEBUG=1 to see one).
_USER_ERROR_NAMES = ("edge.errors:EdgeError", "firmware_bridge.errors:BridgeError")


def _user_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ValueError, OSError]
    for spec in _USER_ERROR_NAMES:
        module_name, _, attr = spec.partition(":")
        try:
            found.append(getattr(importlib.import_module(module_name), attr))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="biomoe",
        description="Tiny-BioMoE Edge: continuous pain monitoring from biosignals on edge devices.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _load_command(name: str):
    module_name, _ = COMMANDS[name]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "a module"
        extra = _EXTRA_OF_MODULE.get(missing.split(".")[0])
        if extra:
            raise SystemExit(
                f"biomoe {name}: needs {missing}, which is not installed; "
                f'install the extras: pip install -e ".[{extra}]"'
            ) from None
        if missing == module_name or module_name.startswith(missing + "."):
            raise SystemExit(f"biomoe {name}: this command is not available in this build") from None
        raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``biomoe`` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        parser.parse_args(argv or ["--help"])  # prints help or the usage error, exits
        return 2
    name, rest = argv[0], argv[1:]
    module = _load_command(name)
    parser = argparse.ArgumentParser(prog=f"biomoe {name}", description=COMMANDS[name][1])
    module.configure_parser(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except _user_errors() as exc:
        if os.environ.get("BIOMOE_DEBUG"):
            raise
        print(f"biomoe {name}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
