"""The mutation-testing runner's own logic: its mutmut settings, how it reads a mutant, and the README table."""

from __future__ import annotations

import textwrap

import libcst

from tests.mutation.run import (EQUIVALENT_FILE, MODULES, ROOT, changed_lines, equivalents, format_table,
                                function_of, mutmut_settings, tomllib)


def test_the_settings_mutate_one_module_and_run_only_its_own_tests():
    settings = tomllib.loads(mutmut_settings("edge/quality.py", ("tests/test_quality.py",)))["tool"]["mutmut"]
    assert settings["only_mutate"] == ["edge/quality.py"]
    assert settings["pytest_add_cli_args_test_selection"] == ["tests/test_quality.py"]
    assert "edge" in settings["source_paths"]


def test_a_mutant_is_read_as_the_lines_it_changes():
    mutated = libcst.parse_module(textwrap.dedent('''\
        def x_clip__mutmut_orig(value, high):
            """Docstring."""
            if value > high:
                return high
            return value
        def x_clip__mutmut_3(value, high):
            """Docstring."""
            if value >= high:
                return high
            return value
        '''))
    assert changed_lines(mutated, "edge.quality.x_clip__mutmut_3") == ("if value > high:", "if value >= high:")


def test_a_method_mutant_is_named_class_dot_method():
    assert function_of("edge.quality.xǁDeviceFlagsǁprune__mutmut_6") == "DeviceFlags.prune"
    assert function_of("edge.quality.x_signal_quality__mutmut_35") == "signal_quality"


def test_every_listed_equivalent_mutant_says_why_and_names_a_known_module():
    entries = tomllib.loads(EQUIVALENT_FILE.read_text()).get("equivalent", [])
    for entry in entries:
        assert entry["module"] in MODULES and entry["reason"].strip() and entry["original"] != entry["mutant"], entry
    assert sum(len(equivalents(module)) for module in MODULES) == len(entries)  # no duplicate keys


def test_the_table_has_one_row_per_module_and_rounds_the_score():
    rows = [{"module": "edge/quality.py", "mutants": 40, "killed": 33, "equivalent": 2, "score": 33 / 38}]
    assert format_table(rows).splitlines()[2] == "| `edge/quality.py` | 40 | 33 | 2 | 86.8% |"


def test_every_module_of_the_device_path_has_test_files_that_exist():
    assert len(MODULES) == 9
    for module, tests in MODULES.items():
        assert (ROOT / module).is_file() and tests and all((ROOT / test).is_file() for test in tests), module
