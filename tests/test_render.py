import struct
import subprocess
import sys

import numpy as np
import pytest

from edge.cli import main
from edge.png import encode_png
from edge.render import read_signal_csv
from edge.representations import REPRESENTATIONS, RepresentationSpec, represent

FS = 100.0


def write_csv(path, columns: dict[str, np.ndarray]) -> None:
    """AI4PAIN layout: a header, one column per segment, shorter columns padded with empty cells."""
    length = max(values.size for values in columns.values())
    lines = [",".join(columns)]
    for row in range(length):
        cells = [repr(float(values[row])) if row < values.size else "" for values in columns.values()]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def signal(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    return np.sin(2 * np.pi * 1.1 * t) + 0.2 * np.sin(2 * np.pi * 0.3 * t) + 0.05 * rng.standard_normal(n)


def png_size(path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def test_renders_every_window_of_every_column(tmp_path, capsys):
    bvp, low = signal(2500, 0), signal(1100, 1)
    write_csv(tmp_path / "s.csv", {"Bvp": bvp, "2_LOW_3": low})
    out = tmp_path / "out"
    assert main(["render", str(tmp_path / "s.csv"), "--fs", "100", "--out", str(out)]) == 0
    assert "wrote 18 PNGs (3 windows x 6 representations) of 2 column(s)" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "Bvp").iterdir()) == sorted(
        f"w{index:03d}_{kind}.png" for index in (0, 1) for kind in REPRESENTATIONS
    )
    assert sorted(p.name for p in (out / "2_LOW_3").iterdir()) == sorted(f"w000_{kind}.png" for kind in REPRESENTATIONS)
    expected = represent(bvp[1000:2000], RepresentationSpec(), sampling_rate=FS)
    for kind, image in zip(REPRESENTATIONS, expected):
        assert (out / "Bvp" / f"w001_{kind}.png").read_bytes() == encode_png(image)


def test_hop_window_length_and_column_selection(tmp_path):
    write_csv(tmp_path / "s.csv", {"Eda": signal(2000, 2), "Resp": signal(2000, 3)})
    out = tmp_path / "out"
    code = main(["render", str(tmp_path / "s.csv"), "--fs", "100", "--out", str(out),
                 "--window-seconds", "5", "--hop-seconds", "2.5", "--column", "Resp"])
    assert code == 0
    assert not (out / "Eda").exists()
    assert len(list((out / "Resp").glob("*_waveform.png"))) == 7  # starts 0, 250, ..., 1500
    five_seconds = represent(signal(2000, 3)[250:750], RepresentationSpec(window_seconds=5.0), sampling_rate=FS)
    assert (out / "Resp" / "w001_scalogram.png").read_bytes() == encode_png(five_seconds[4])


def test_window_with_nan_inside_is_skipped_with_a_warning(tmp_path, capsys):
    values = signal(3000, 4)
    values[1500] = np.nan
    write_csv(tmp_path / "s.csv", {"Bvp": values})
    assert main(["render", str(tmp_path / "s.csv"), "--fs", "100", "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "warning: column 'Bvp' window 1 (samples 1000-1999) has 1 missing or non-finite samples; skipped" in captured.err
    assert sorted({p.name[:4] for p in (tmp_path / "out" / "Bvp").iterdir()}) == ["w000", "w002"]


def test_spec_file_sets_the_settings(tmp_path):
    write_csv(tmp_path / "s.csv", {"Bvp": signal(1000, 5)})
    (tmp_path / "spec.json").write_text(RepresentationSpec(image_size=64).to_json())
    out = tmp_path / "out"
    args = ["render", str(tmp_path / "s.csv"), "--out", str(out), "--spec", str(tmp_path / "spec.json")]
    assert main([*args, "--fs", "100"]) == 0
    assert png_size(out / "Bvp" / "w000_recurrence.png") == (64, 64)
    assert main([*args, "--fs", "250"]) == 1


def test_short_columns_are_skipped_but_all_short_is_an_error(tmp_path, capsys):
    write_csv(tmp_path / "s.csv", {"LOW_1": signal(990, 6), "Baseline": signal(1200, 7)})
    assert main(["render", str(tmp_path / "s.csv"), "--fs", "100", "--out", str(tmp_path / "a")]) == 0
    assert "column 'LOW_1' has 990 samples, fewer than one window of 1000 samples" in capsys.readouterr().err
    code = main(["render", str(tmp_path / "s.csv"), "--fs", "100", "--out", str(tmp_path / "b"), "--column", "LOW_1"])
    assert code == 1
    assert "every column has fewer samples than one window of 1000 samples" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("Bvp\n1.0\nabc\n", "line 3, column 'Bvp': 'abc' is not a number"),
        ("", "the file is empty"),
        ("1.0,2.0\n3.0,4.0\n", "the first row must name the columns"),
        ("A,A\n1,2\n", "column names must be unique"),
        ("A\n1,2\n", "line 2 has 2 cells but the header names 1 columns"),
        ("Eda\n1.0\n1e307\n", "line 3, column 'Eda': 1e307 is beyond +-1e+12, far outside any sensor's range"),
        ("3.5\n-2e13\n", "line 2, column 's': -2e13 is beyond +-1e+12"),
    ],
)
def test_bad_csv_is_a_clear_error(tmp_path, capsys, content, message):
    (tmp_path / "s.csv").write_text(content)
    assert main(["render", str(tmp_path / "s.csv"), "--fs", "100", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("biomoe render: error: ") and message in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--hop-seconds", "inf"], "--hop-seconds must be a finite number of seconds, at least one sample"),
        (["--hop-seconds", "nan"], "--hop-seconds must be a finite number of seconds"),
        (["--hop-seconds", "0.001"], "at least one sample (1 / 100 s); got 0.001"),
        (["--fs", "1e308"], "window_seconds x sampling_rate must be at most 100000 samples; got 10 s x 1e+308 Hz"),
        (["--window-seconds", "1e308"], "window_seconds x sampling_rate must be at most 100000 samples"),
        (["--fs", "nan"], "sampling_rate must be a finite number > 0; got nan"),
    ],
)
def test_non_finite_or_absurd_settings_are_one_line_naming_the_parameter(tmp_path, options, message):
    write_csv(tmp_path / "s.csv", {"Eda": signal(1000, 9)})
    command = ["render", str(tmp_path / "s.csv"), "--out", str(tmp_path / "out"), "--fs", "100", *options]
    result = subprocess.run([sys.executable, "-m", "edge.cli", *command], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("biomoe render: error: ") and message in result.stderr


def test_a_hop_past_the_end_renders_the_first_window(tmp_path):
    write_csv(tmp_path / "s.csv", {"Eda": signal(2500, 10)})
    assert main(["render", str(tmp_path / "s.csv"), "--fs", "100", "--out", str(tmp_path / "out"),
                 "--hop-seconds", "1e300"]) == 0
    assert sorted(path.name[:4] for path in (tmp_path / "out" / "Eda").iterdir()) == ["w000"] * len(REPRESENTATIONS)


def test_a_headerless_single_column_is_one_signal_named_after_the_file(tmp_path, capsys):
    values = 530 + 40 * signal(2000, 11)
    (tmp_path / "gsr_dump.csv").write_text("".join(f"{value:.2f}\n" for value in values))
    assert main(["render", str(tmp_path / "gsr_dump.csv"), "--fs", "100", "--out", str(tmp_path / "out")]) == 0
    assert "2 windows" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "gsr_dump").glob("w001_*.png"))) == len(REPRESENTATIONS)
    columns = read_signal_csv(tmp_path / "gsr_dump.csv")
    assert list(columns) == ["gsr_dump"]
    np.testing.assert_allclose(columns["gsr_dump"], np.round(values, 2))


def test_unknown_column_lists_the_columns(tmp_path, capsys):
    write_csv(tmp_path / "s.csv", {"Eda": signal(1000, 8)})
    assert main(["render", str(tmp_path / "s.csv"), "--fs", "100", "--out", str(tmp_path), "--column", "Bvp"]) == 1
    assert "--column ['Bvp'] not in the file; its columns are ['Eda']" in capsys.readouterr().err


def test_every_window_missing_is_an_error(tmp_path, capsys):
    (tmp_path / "s.csv").write_text("Eda\n" + "nan\n" * 999 + "1.0\n")
    assert main(["render", str(tmp_path / "s.csv"), "--fs", "100", "--out", str(tmp_path / "out")]) == 1
    assert "no window could be rendered" in capsys.readouterr().err


def test_missing_file_gives_one_line_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "render", str(tmp_path / "nope.csv"), "--fs", "100", "--out", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"biomoe render: error: signal file {tmp_path / 'nope.csv'} does not exist (or is not a file)"


def test_read_signal_csv_trims_trailing_padding_only(tmp_path):
    (tmp_path / "s.csv").write_text(" A , B\n1,5\n,6\nnan,\n3,\n,\n")
    columns = read_signal_csv(tmp_path / "s.csv")
    assert list(columns) == ["A", "B"]
    np.testing.assert_array_equal(columns["A"], [1.0, np.nan, np.nan, 3.0])
    np.testing.assert_array_equal(columns["B"], [5.0, 6.0])
