import argparse
import doctest
from pathlib import Path

import pytest

import edge.config
from edge.config import (
    BudgetConfig,
    MonitorConfig,
    SmoothingConfig,
    add_config_arguments,
    config_from_args,
    example_config_path,
    load_config,
)
from edge.errors import EdgeError


def _write(tmp_path, text):
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    return path


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_without_a_file():
    config = load_config()
    assert config == MonitorConfig()
    assert config.smoothing == SmoothingConfig("ema", 0.5, 5)
    assert config.budgets == BudgetConfig(None, 512.0, 2, 60.0)


def test_the_shipped_example_is_valid_and_documents_every_key():
    path = example_config_path()
    config = load_config(path)
    assert config.port == "/dev/ttyACM0" and config.simulate is False
    assert config.database == Path("/var/lib/biomoe/results.sqlite")
    assert config.hop_seconds == 10.0 and config.threads == 2
    text = path.read_text()
    for key in ("port", "simulate", "bundle", "database", "window_seconds", "hop_seconds", "threads",
                "log_level", "method", "alpha", "windows", "window_ms", "memory_mb", "max_pending_windows",
                "status_interval_seconds", "stale_after_seconds"):
        assert f"{key} =" in text, key


def test_file_values_and_relative_paths(tmp_path):
    path = _write(tmp_path, """
port = "/dev/ttyUSB1"
bundle = "bundles/trained"
database = "/data/results.sqlite"
window_seconds = 8
hop_seconds = 2.5
threads = 3
log_level = "debug"
[smoothing]
method = "majority"
windows = 7
[budgets]
window_ms = 1500
max_pending_windows = 4
""")
    config = load_config(path)
    assert config.port == "/dev/ttyUSB1"
    assert config.bundle == tmp_path / "bundles" / "trained"
    assert config.database == Path("/data/results.sqlite")
    assert (config.window_seconds, config.hop_seconds, config.threads) == (8.0, 2.5, 3)
    assert isinstance(config.window_seconds, float)
    assert config.smoothing == SmoothingConfig("majority", 0.5, 7)
    assert config.budgets.window_ms == 1500.0 and config.budgets.max_pending_windows == 4


def test_command_line_flags_override_the_file(tmp_path):
    path = _write(tmp_path, 'port = "/dev/ttyACM0"\nhop_seconds = 10.0\n[smoothing]\nmethod = "ema"\n')
    args = _parse(["--config", str(path), "--hop", "5", "--smoothing", "none", "--port", "/dev/ttyS0",
                   "--db", "out.sqlite"])
    config = config_from_args(args)
    assert config.hop_seconds == 5.0 and config.smoothing.method == "none"
    assert config.port == "/dev/ttyS0" and config.database == Path("out.sqlite")
    assert config_from_args(_parse(["--config", str(path)])).hop_seconds == 10.0  # flags not given: file wins
    assert config_from_args(_parse(["--stale-after", "45"])).stale_after_seconds == 45.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("hop_seconds = -1", "hop_seconds = -1 is not valid; allowed: a number in (0, 3600]"),
        ("threads = 0", "threads = 0 is not valid; allowed: a whole number from 1 to 64"),
        ("threads = 2.5", "threads = 2.5 is not valid"),
        ('log_level = "verbose"', 'log_level = \'verbose\' is not valid; allowed: one of "debug", "info"'),
        ('[smoothing]\nmethod = "median"', "smoothing.method = 'median' is not valid; allowed: one of \"ema\""),
        ("[smoothing]\nalpha = 0", "smoothing.alpha = 0 is not valid; allowed: a number in (0, 1]"),
        ('simulate = "yes"', "simulate = 'yes' is not valid; allowed: true or false"),
        ('port = ""', "port = '' is not valid; allowed: a non-empty string"),
        ("hop = 5", "unknown key 'hop'; allowed keys: port, simulate"),
        ("[budget]\nmemory_mb = 5", "unknown key 'budget'"),
        ('smoothing = "ema"', "smoothing must be a table [smoothing]"),
        ("hop_seconds = ", "not valid TOML"),
        ("stale_after_seconds = 0", "stale_after_seconds = 0 is not valid; allowed: a number in (0, 86400]"),
    ],
)
def test_bad_file_values_name_file_key_value_and_allowed(tmp_path, text, expected):
    path = _write(tmp_path, text + "\n")
    with pytest.raises(EdgeError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"config {path}: ")
    assert expected in message
    assert "\n" not in message


def test_bad_flag_names_the_option():
    with pytest.raises(EdgeError, match=r"^option --hop: hop_seconds = 0.0 is not valid"):
        config_from_args(_parse(["--hop", "0"]))
    with pytest.raises(EdgeError, match=r"^option --threads: threads = 100 is not valid"):
        config_from_args(_parse(["--threads", "100"]))


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(EdgeError, match="not found; copy .*monitor.example.toml"):
        load_config(tmp_path / "nope.toml")


def test_a_sensor_source_is_required():
    with pytest.raises(EdgeError, match="no sensor port: pass --port PORT"):
        load_config().require_source()
    load_config(overrides={"simulate": True}).require_source()
    load_config(overrides={"port": "/dev/ttyACM0"}).require_source()


def test_to_dict_is_plain():
    data = load_config(overrides={"bundle": "/b", "hop_seconds": 5}).to_dict()
    assert data["bundle"] == "/b" and data["database"] == "biomoe-results.sqlite"
    assert data["smoothing"] == {"method": "ema", "alpha": 0.5, "windows": 5}


def test_docstring_examples_run():
    results = doctest.testmod(edge.config)
    assert results.attempted > 0 and results.failed == 0
