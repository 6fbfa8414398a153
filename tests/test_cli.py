import importlib.util
import re
import shlex
import subprocess
import sys

import pytest

from edge.cli import COMMANDS, EXAMPLES, command_parser, main

# Commands whose modules import torch: their examples are checked where it is installed.
_NEEDS_TORCH = ("import-e4", "pretrain", "finetune", "evaluate", "export")


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "no-such-command"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_version():
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert re.fullmatch(r"biomoe \d+\.\d+\.\d+\S* \(Python 3\.\d+\.\d+, \w+\)\n", proc.stdout), proc.stdout


def test_every_command_has_examples_that_parse():
    for name in COMMANDS:
        assert 2 <= len(EXAMPLES[name]) <= 3 or name == "import-e4", name
        if name in _NEEDS_TORCH and importlib.util.find_spec("torch") is None:
            continue  # a device install: the training commands are not there
        parser = command_parser(name)
        assert "\nexamples:\n  " + EXAMPLES[name][0] in parser.format_help()
        for example in EXAMPLES[name]:
            words = shlex.split(example.split("#")[0].split("|")[0])
            assert words[:2] == ["biomoe", name] or words[:3] == ["sudo", "biomoe", name], example
            parser.parse_args(words[words.index(name) + 1:])  # exits on an unknown flag


def test_doctor_is_a_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "doctor" in capsys.readouterr().out
