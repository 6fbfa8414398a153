"""benchmarks.bench_forms: every form of the backbone timed against the authors' code (or eager without it)."""

import json

import pytest

from benchmarks.bench_forms import authors_backbone, main


def test_a_folder_that_is_not_the_authors_repository_is_refused_on_one_line(tmp_path, capsys):
    with pytest.raises(ValueError, match="not the authors' Tiny-BioMoE repository"):
        authors_backbone(tmp_path, tmp_path / "none.pth")
    assert main(["--authors", str(tmp_path), "--repeats", "1"]) == 1
    error = capsys.readouterr().err.strip()
    assert "not the authors' Tiny-BioMoE repository" in error and "\n" not in error


@pytest.mark.slow
def test_without_the_authors_code_the_ratios_are_to_eager(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BIOMOE_AUTHORS_CODE", raising=False)
    out = tmp_path / "forms.json"
    assert main(["--repeats", "1", "--warmup", "0", "--images-per-window", "2", "--json", str(out)]) == 0
    assert "the authors' code was not given" in capsys.readouterr().out
    results = json.loads(out.read_text())
    rows = {row["form"]: row for row in results["rows"]}
    assert set(rows) == {"eager", "onnx", "onnx-int8-wo", "tflite", "tflite-int8"}
    assert results["reference"] == "eager" and rows["eager"]["window_ratio"] == 1.0
    assert 2.5 < results["model_gflops_per_image"] < 3.5  # the authors state 3.04 GFLOPs
    assert 0 < results["fastest"]["fraction_of_peak"] < 1
