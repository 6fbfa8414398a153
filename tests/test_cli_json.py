"""``--json FILE`` on the commands that write a report: the file, and its path on the last line printed."""

from __future__ import annotations

import json

from conftest import require_module

from edge.cli import main


def test_evaluate_json_writes_the_report_and_names_it_last(tmp_path, monkeypatch, capsys):
    evaluate = require_module("training.evaluate")  # needs torch
    report = {"accuracy": 0.5, "macro_f1": 0.4, "per_class_recall": {"No Pain": 0.5}}
    monkeypatch.setattr(evaluate, "evaluate_run", lambda *args, **kwargs: report)
    out = tmp_path / "reports" / "report.json"
    assert main(["evaluate", "--data", str(tmp_path), "--run", str(tmp_path / "run"), "--json", str(out)]) == 0
    assert json.loads(out.read_text()) == report
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {out}"
    # Without --json the last line names the report the run folder holds.
    assert main(["evaluate", "--data", str(tmp_path), "--run", str(tmp_path / "run")]) == 0
    report_path = tmp_path / "run" / "evaluation" / "validation" / "report.json"
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {report_path}"


def test_fusion_table_json(tmp_path, monkeypatch, capsys):
    evaluate = require_module("training.evaluate")

    def fake_table(data, backbone, out, **kwargs):
        (out / "fusion_table.md").write_text("| table |\n")
        return {"rows": [], "wall_seconds": 1.0}

    monkeypatch.setattr(evaluate, "fusion_table", fake_table)
    out = tmp_path / "table.json"
    assert main(["evaluate", "--fusion-table", "--data", str(tmp_path), "--backbone", "random:0",
                 "--out", str(tmp_path), "--json", str(out)]) == 0
    assert json.loads(out.read_text()) == {"rows": [], "wall_seconds": 1.0}
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {out}"


def test_bench_json_path_is_the_last_line(tmp_path, monkeypatch, capsys):
    import benchmarks.bench as bench

    monkeypatch.setattr(bench, "measure", lambda bundle, progress, **settings: {"rows": []})
    monkeypatch.setattr(bench, "evaluate", lambda results, target: {"verdict": "pass"})
    monkeypatch.setattr(bench, "format_table", lambda results, evaluation: "verdict for dev-x86: PASS")
    out = tmp_path / "bench.json"
    assert main(["bench", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["evaluation"] == {"verdict": "pass"}
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {out}"
