"""The mutation-testing runner's own logic: which mutants count as equivalent, and the README table."""

from __future__ import annotations

import textwrap

from tests.mutation.run import MODULES, ROOT, _annotation_spans, format_table


def test_annotations_are_found_only_where_nothing_evaluates_them():
    source = textwrap.dedent('''\
        from __future__ import annotations
        limit: int | None = None
        def f(x: dict | None, *, y: float = 0.5) -> list[int]:
            return [x | y]
        ''')
    spans = _annotation_spans(source)
    inside = lambda line, col: any(start <= (line, col) < end for start, end in spans)  # noqa: E731
    assert inside(2, 11)  # int | None
    assert inside(3, 16) and inside(3, 29) and inside(3, 44)  # dict | None, float, list[int]
    assert not inside(3, 37)  # the default 0.5 is evaluated
    assert not inside(4, 14)  # x | y in the body
    assert _annotation_spans(source.replace("from __future__ import annotations\n", "")) == []


def test_the_table_has_one_row_per_module_and_rounds_the_score():
    rows = [{"module": "edge/quality.py", "mutants": 40, "killed": 33, "equivalent": 2, "score": 33 / 38}]
    assert format_table(rows).splitlines()[2] == "| `edge/quality.py` | 40 | 33 | 2 | 87% |"


def test_every_module_of_the_device_path_has_test_files_that_exist():
    assert len(MODULES) == 9
    for module, tests in MODULES.items():
        assert (ROOT / module).is_file() and tests and all((ROOT / test).is_file() for test in tests), module
