"""``biomoe``: one console command, one subcommand per job.

Subcommands live in the package that owns the job and are imported only when
chosen, so ``biomoe render`` or ``biomoe monitor`` never import torch. A command
module provides ``configure_parser(parser)`` and ``run(args) -> int``; its
``--help`` ends with real invocations (:data:`EXAMPLES`). ``biomoe --version``
prints the package version.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys

# name -> (module, one-line help). The module is imported only when the command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "render": ("edge.render", "write the six representation PNGs of each window of a signal CSV"),
    "monitor": ("edge.monitor", "monitor pain continuously from a serial port or the simulated hub"),
    "doctor": ("edge.doctor", "check this machine, the bundle, the serial port and the database before monitoring"),
    "history": ("edge.history", "print, export (CSV) or plot the results stored by the monitor"),
    "dashboard": ("edge.dashboard.viewer", "serve the bedside page of a results database (read-only, followed)"),
    "install-service": ("edge.service", "write a systemd unit that runs the monitor"),
    "deploy": ("edge.deploy.archive", "build an offline installer archive for a Raspberry Pi hub"),
    "simulate-device": ("edge.recording.simulate", "stream simulated sensor frames on a pty or port"),
    "synth": ("training.synth", "generate a synthetic cohort in the AI4PAIN layout"),
    "import-e4": ("training.e4", "import Empatica E4 sessions with per-second labels into the AI4PAIN layout"),
    "import": ("training.import_recordings",
               "import EDF/BDF, WFDB, E4 or CSV recordings with labelled intervals into the AI4PAIN layout"),
    "pretrain": ("training.pretrain", "multi-task pretraining of the backbone on biosignal images"),
    "finetune": ("training.finetune", "train a fusion head (frozen backbone) or fine-tune fully"),
    "evaluate": ("training.evaluate", "evaluate a trained model or a bundle: metrics, confusion matrix, fusion table"),
    "export": ("quantize.export", "export a trained model to an ONNX/TFLite bundle, optionally int8"),
    "bench": ("benchmarks.bench", "measure a bundle's latency, memory and size against a device budget"),
}

# name -> real invocations, shown at the end of `biomoe NAME --help`.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "render": (
        "biomoe render eda.csv --fs 4 --out images/                  # the six PNGs of each 10 s window",
        "biomoe render session.csv --fs 100 --column Bvp --hop-seconds 5 --out images/",
    ),
    "monitor": (
        "biomoe monitor --simulate --windows 12 --speed 10           # no hardware: the simulated hub",
        "biomoe monitor --port /dev/ttyACM0 --db results.sqlite      # a sensor board on USB",
        "biomoe monitor --config /etc/biomoe/monitor.toml --format jsonl | jq .smoothed_label",
    ),
    "doctor": (
        "biomoe doctor                                               # this machine, the bundle, the database",
        "biomoe doctor --port /dev/ttyACM0                           # and the sensor board on that port",
        "biomoe doctor --config /etc/biomoe/monitor.toml --target rpi4",
    ),
    "history": (
        "biomoe history results.sqlite --last 20                     # a table on a terminal",
        "biomoe history results.sqlite --format jsonl | jq .smoothed_label",
        "biomoe history results.sqlite --csv results.csv --plot timeline.png",
    ),
    "dashboard": (
        "biomoe dashboard --db results.sqlite                        # the page on http://127.0.0.1:8080/",
        "biomoe dashboard --db /var/lib/biomoe/results.sqlite --listen 0.0.0.0:8080 --token ~/.biomoe-token",
    ),
    "install-service": (
        "sudo biomoe install-service --config /etc/biomoe/monitor.toml",
        "biomoe install-service --config /etc/biomoe/monitor.toml --print   # show the unit, write nothing",
    ),
    "deploy": (
        "biomoe deploy build --target rpi-arm64 --out biomoe-hub.tar.gz   # then on the Pi: sudo biomoe-hub/install.sh",
        "biomoe deploy build --target rpi-arm64 --bundle bundles/mine --config monitor.toml --out hub.tar.gz",
    ),
    "simulate-device": (
        "biomoe simulate-device --link /tmp/hub                      # then: biomoe monitor --port /tmp/hub",
        "biomoe simulate-device --speed 10 --conditions flat:RESP:20-40,disconnect:60-65",
        "biomoe simulate-device --link /tmp/hub --replay lab.edf --map EDA=GSR,BVP=Pleth",
    ),
    "synth": (
        "biomoe synth --out data/synth                               # 41 train / 12 validation / 12 test subjects",
        "biomoe synth --out data/heldout --seed 1",
    ),
    "import-e4": (
        "biomoe import-e4 sessions/S* --labels labels_per_second.csv.gz --out data/stress",
    ),
    "import": (
        "biomoe import lab/*.edf --annotations --out data/lab          # labels from the EDF+ annotations",
        "biomoe import session.csv --rate 100 --map EDA=GSR --labels intervals.csv --out data/mine",
    ),
    "pretrain": (
        "biomoe pretrain --out runs/pretrain",
        "biomoe pretrain --out runs/pretrain_s1 --steps 100 --seed 1 --threads 2",
        "biomoe pretrain --out runs/big --corpus-size 1000000 --global-batch 256 --trainable all --workers 8"
        "   # a GPU; N of them: torchrun --nproc-per-node N --no-python biomoe pretrain ...",
    ),
    "finetune": (
        "biomoe finetune --data data/synth --out runs/fusion         # the defaults: frozen backbone, fusion head",
        "biomoe finetune --data data/stress --out runs/stress --cv k-fold 5",
    ),
    "evaluate": (
        "biomoe evaluate --run runs/fusion --data data/synth --split validation --json report.json",
        "biomoe evaluate --bundle edge/bundles/default --data data/heldout --rest-windows --out runs/bundle_heldout",
        "biomoe evaluate --fusion-table --data data/synth --eval-data data/heldout --backbone random:0 --out runs/table_heldout",
    ),
    "export": (
        "biomoe export --checkpoint backbone.pth --head head.pt --out bundles/mine/",
        "biomoe export --checkpoint backbone.pth --head head.pt --out bundles/int8/ --int8 --int8-scheme weight-only "
        "--run-config runs/fusion/config.json",
    ),
    "bench": (
        "biomoe bench --target rpi4                                  # the shipped bundle against a Pi 4's budget",
        "biomoe bench --bundle bundles/mine --target rpi-zero-2w --json bench.json",
        "biomoe bench --quick --no-reference                         # a smoke run, well under a minute",
    ),
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


def version() -> str:
    """``biomoe X.Y.Z`` with the Python it runs on (the installed package's version; the source's if not installed)."""
    try:
        number = importlib.metadata.version("tiny-biomoe-edge")
    except importlib.metadata.PackageNotFoundError:
        number = "unknown (not installed: pip install -e .)"
    return f"biomoe {number} (Python {sys.version.split()[0]}, {sys.platform})"


class _Parser(argparse.ArgumentParser):
    """A parser whose help ends with lines kept as written (examples), the rest wrapped as usual."""

    def __init__(self, *args, tail: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tail = tail

    def format_help(self) -> str:
        text = super().format_help()
        return text + "\n" + self.tail + "\n" if self.tail else text


def _examples(name: str) -> str | None:
    examples = EXAMPLES.get(name)
    return "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None


def _top_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="biomoe",
        description="Tiny-BioMoE Edge: continuous pain monitoring from biosignals on edge devices.",
        tail="start here:\n  biomoe monitor --simulate --windows 12 --speed 10\n  biomoe doctor --port /dev/ttyACM0\n"
             "details of a command: biomoe COMMAND --help",
    )
    parser.add_argument("--version", action="version", version=version())
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


def command_parser(name: str, module=None) -> argparse.ArgumentParser:
    """The argument parser of ``biomoe NAME`` (its module imported unless given)."""
    module = module or _load_command(name)
    parser = _Parser(prog=f"biomoe {name}", description=COMMANDS[name][1], tail=_examples(name))
    module.configure_parser(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``biomoe`` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        parser.parse_args(argv or ["--help"])  # prints help or the usage error, exits
        return 2
    name, rest = argv[0], argv[1:]
    module = _load_command(name)
    args = command_parser(name, module).parse_args(rest)
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
