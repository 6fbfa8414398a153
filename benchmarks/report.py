"""Benchmark reports: plain-text and markdown tables, ``RESULTS.md`` and the latency plot.

A *section* is one table of a per-area benchmark, as their ``collect()``
functions return it::

    {"title": str, "command": str, "columns": [str, ...], "rows": [[value, ...], ...], "notes": [str, ...]}

A *record* is what :func:`benchmarks.bench.measure` returns, with the
``evaluation`` against the chosen target added (``biomoe bench --json``).
:func:`write_report` turns records and sections into the markdown report and
the per-stage latency plot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from benchmarks.budgets import evaluate
from edge.errors import EdgeError

__all__ = ["text_table", "markdown_table", "render_report", "write_report", "plot_latency"]

#: Latency stages drawn in the plot, in order (present ones only).
PLOT_STAGES = ("bridge_decode", "windowing", "quality", "represent", "infer_window", "end_to_end", "reference")
REGENERATE = "python -m benchmarks.run_all --report benchmarks/RESULTS.md --plot benchmarks/latency.png"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def text_table(section: dict) -> str:
    """A section as aligned plain text: title, header, rows, notes (or its captured ``text``)."""
    if "text" in section:
        return section["title"] + "\n" + section["text"].rstrip()
    cells = [list(section["columns"])] + [[_cell(value) for value in row] for row in section["rows"]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [section["title"]]
    for row in cells:
        lines.append("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(row, widths))).rstrip())
    lines += section.get("notes", [])
    return "\n".join(lines)


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence], text_columns: int = 1) -> str:
    """A GitHub markdown table: the first ``text_columns`` left-aligned, the others (numbers) right-aligned."""
    rows = [[_cell(value) for value in row] for row in rows]
    align = ["---" if i < text_columns else "---:" for i in range(len(columns))]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _machine_section(machine: dict) -> list[str]:
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    load = machine["load_average"]
    return [
        "## Machine", "",
        markdown_table(["", ""], [
            ["CPU", f"{machine['cpu']} ({machine['machine']}), {machine['cores']} cores"],
            ["memory", f"{machine['memory_gib']} GiB"],
            ["OS", machine["os"]],
            ["Python", machine["python"]],
            ["libraries", versions],
            ["load average (1, 5, 15 min) at the start", ", ".join(f"{value:.2f}" for value in load)],
            ["date", machine["date"]],
        ], text_columns=2), "",
    ]


def _stage_table(record: dict) -> str:
    rows = []
    for row in record["rows"]:
        spread = f"{_cell(row['q1'])}-{_cell(row['q3'])}" if row["n"] > 1 else ""
        rows.append([f"`{row['stage']}`", row["what"], f"{_cell(row['median'])} {row['unit']}", spread, row["n"]])
    return markdown_table(["stage", "what", "median", "IQR", "n"], rows, text_columns=2)


def _targets_table(record: dict, evaluations: dict) -> str:
    by_stage = {row["stage"]: row for row in record["rows"]}
    memory_stage = "peak_rss_monitor" if "peak_rss_monitor" in by_stage else "peak_rss_pipeline"
    columns = ["target", "how", "end to end / window", "load", f"peak RSS ({memory_stage})", "bundle", "verdict"]
    rows = []
    for name, evaluation in evaluations.items():
        judged = evaluation["rows"]
        cells = [f"`{name}`", f"estimate (x{evaluation['factor']:g})" if evaluation["estimated"] else "measured"]
        for stage in ("end_to_end", "load", memory_stage, "bundle_size"):
            entry, unit = judged[stage], by_stage[stage]["unit"]
            mark = "" if entry["status"] == "pass" else " **over**"
            cells.append(f"{_cell(entry['on_target'])} / {entry['budget']:g} {unit}{mark}")
        cells.append("PASS" if evaluation["verdict"] == "pass" else "**FAIL**")
        rows.append(cells)
    return markdown_table(columns, rows, text_columns=2)


def _record_section(record: dict, targets: dict) -> list[str]:
    bundle = record["bundle"]
    settings = record["settings"]
    title = f"## Bundle `{bundle['name']}` ({bundle['id']})"
    kind = (f"{bundle['backend']}, {bundle['pipeline']}, {bundle['images_per_window']} images per window "
            f"({', '.join(bundle['fusion'])}), quantization: {bundle['quantization'] or 'none (float32)'}")
    lines = [title, "", kind + ("; **placeholder** (predictions meaningless)" if bundle["placeholder"] else ""), ""]
    if bundle.get("note"):
        lines += [bundle["note"], ""]
    lines += [
        f"Settings: {settings['threads']} inference threads, {settings['warmup']} warm-up + {settings['repeats']} "
        f"timed calls per stage, {settings['processes']} fresh processes for the load time, "
        f"{settings['window_seconds']:g} s window, {settings['hop_seconds']:g} s hop, {settings['stream']}.", "",
        "### Per stage (measured here)", "", _stage_table(record), "",
    ]
    breakdown = record["load_breakdown"]
    lines += ["Load, inside the process (median): " + ", ".join(
        f"{key.removesuffix('_ms').replace('_', ' ')} {value:.0f} ms" for key, value in breakdown.items()) + ".", ""]
    reference = record["reference"]
    by_stage = {row["stage"]: row for row in record["rows"]}
    if "speedup" in reference:
        lines += ["### Against the PyTorch reference (same images, same threads, same run)", "",
                  markdown_table(["model", "ms per window", "ms per image", "ratio"], [
                      [f"bundle ({bundle['backend']})", by_stage["infer_window"]["median"],
                       by_stage["infer_image"]["median"], 1.0],
                      [f"PyTorch eager ({reference['torch']})", by_stage["reference"]["median"],
                       by_stage["reference"]["median"] / bundle["images_per_window"], reference["speedup"]],
                  ]), "",
                  f"Speed-up of the bundle: **{reference['speedup']:.2f}x**. Reference: {reference['model']}.", ""]
    else:
        lines += [f"PyTorch reference: {reference['status']}.", ""]
    evaluations = {name: evaluate(record, target) for name, target in targets.items()}
    lines += ["### Against each target's budget", "",
              "Latency figures for a target of another CPU kind are this machine's times the target's "
              "`x86_slowdown`: **estimates** (see below). Memory and size are as measured.", "",
              _targets_table(record, evaluations), ""]
    return lines


def _budgets_section(targets: dict) -> list[str]:
    rows = [[f"`{t.name}`", t.description, t.window_ms, t.load_ms, t.peak_rss_mb, t.bundle_mb, t.x86_slowdown]
            for t in targets.values()]
    return [
        "## Budgets and where they come from", "",
        markdown_table(["target", "board", "window ms", "load ms", "peak RSS MB", "bundle MB", "x86_slowdown"], rows,
                       text_columns=2),
        "",
        "- **window_ms**: real time. With the default 10 s window and 5 s hop a window arrives every 5 s; it must "
        "be processed well within that: 50 % of the hop (2.5 s), the rest is headroom for the serial reader, "
        "SQLite, the OS, throttling. `dev-x86` is a regression guard (10x faster than real time).",
        "- **load_ms**: after a crash systemd restarts the monitor, which then needs a full 10 s window of samples "
        "before its first result; loading within one window length keeps the gap under ~20 s (two lengths on the "
        "Zero 2 W).",
        "- **peak_rss_mb**: what the smallest variant of the board leaves free after its OS (Raspberry Pi OS Lite, "
        "headless), about half of it: Pi 4/5 1 GB -> ~700 MB free -> 400 MB; Zero 2 W 512 MB - 64 MB GPU/CMA - "
        "~150 MB OS -> ~300 MB free -> 250 MB; Jetson Orin Nano 4 GB shared with the GPU -> 1 GB.",
        "- **bundle_mb**: the runtime keeps the weights and a pre-packed copy in RAM, so a bundle costs about twice "
        "its size: 1/8 of the RSS budget.",
        "- Every number's source is written next to it in `benchmarks/budgets.toml`.", "",
    ]


ESTIMATE_TEXT = [
    "## From these x86 figures to a Raspberry Pi (estimate)", "",
    "These machines are x86; the boards are ARM. A latency measured here is multiplied by the target's "
    "`x86_slowdown` to estimate the board's, and marked as an estimate everywhere. The factor is anchored on "
    "one published figure and one measurement of the same network: MobileNet v1 1.0 224 float runs in 87 ms on "
    "a Raspberry Pi 4 with TensorFlow Lite "
    "([source](https://dev.to/tildalice/mobilenet-vs-efficientnet-lite-pi-4-first-model-38ms-gap-3l84)); "
    "the same network (timm `mobilenetv1_100`, ONNX Runtime float32, 1 thread) takes 10.5 ms on the reference "
    "x86 machine: 87 / 10.5 = 8.3, so **8 for the Pi 4**. The Pi 5 is taken 2x faster than the Pi 4 "
    "(Raspberry Pi's 2-3x; single-core sysbench 2737 vs 1478 events/s, "
    "[source](https://leoncode.co.uk/articles/raspberry-pi-benchmarks)): 4. The Zero 2 W (Cortex-A53, 1 GHz) "
    "3x slower than the Pi 4: 24. The Jetson Orin Nano's CPU (Cortex-A78AE, 1.5 GHz) 1.45x slower than the "
    "Pi 5: 6.",
    "",
    "Limits of the estimate: one factor for every stage (numpy representations, Python bridge code and "
    "inference scale differently); int8 kernels gain more on x86 with VNNI/AMX than on a Cortex-A72 without "
    "dot-product instructions, so an int8 bundle's estimate is optimistic; another x86 machine than the "
    "reference shifts every estimate. **`biomoe bench --target rpi4` run on the Pi itself measures the real "
    "figures** (the target's CPU kind matches, so nothing is scaled).", "",
]


def render_report(records: Sequence[dict], targets: dict, sections: Sequence[dict] = (), plot_name: str | None = None,
                  command: str = REGENERATE) -> str:
    """The markdown report of ``records`` (one per bundle) and the per-area ``sections``."""
    machine = records[0]["machine"]
    load, cores = machine["load_average"][0], machine["cores"] or 1
    lines = ["# Benchmark results", "",
             f"Generated by `{command}` on {machine['date']}. Regenerate with the same command.", ""]
    if load > 0.5 * cores:
        lines += [f"> **Provisional**: measured while the machine was busy (load average {load:.2f} on {cores} "
                  "cores at the start); medians are noisy. Regenerate on a quiet machine.", ""]
    lines += _machine_section(machine)
    if plot_name:
        lines += [f"![Per-stage latency]({plot_name})", "",
                  "Per-stage latency per window, median with inter-quartile range, log scale.", ""]
    if not any(record["bundle"]["quantization"] for record in records) and not any(
            "quantiz" in section["title"].lower() for section in sections):
        lines += ["> **Not yet measured: int8.** No bundle here is quantized and `benchmarks.bench_quantize` is not "
                  "in this build. Run the report again with the int8 bundle (`--bundle DIR`, or once it is the "
                  "default) to get int8 vs PyTorch eager side by side.", ""]
    for record in records:
        lines += _record_section(record, targets)
    for section in sections:
        lines += [f"## {section['title']}", "", f"`{section['command']}`", ""]
        if "text" in section:
            lines += ["```", section["text"].rstrip(), "```", ""]
        else:
            text_columns = next((i for i, value in enumerate(section["rows"][0]) if not isinstance(value, str)), 1)
            lines += [markdown_table(section["columns"], section["rows"], text_columns), ""]
        lines += [f"- {note}" for note in section.get("notes", [])] + [""]
    lines += _budgets_section(targets) + ESTIMATE_TEXT
    return "\n".join(lines).rstrip() + "\n"


def plot_latency(records: Sequence[dict], path: str | Path) -> Path:
    """Horizontal bars of each record's per-stage median latency (IQR whiskers), log scale, as a PNG."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise EdgeError('the latency plot needs matplotlib: pip install ".[plot]", or leave out --plot') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    stages = [stage for stage in PLOT_STAGES if any(stage in _by_stage(r) for r in records)]
    figure, axes = plt.subplots(figsize=(8, 0.5 + 0.45 * len(stages) * len(records)), dpi=110)
    height = 0.8 / len(records)
    for i, record in enumerate(records):
        rows = _by_stage(record)
        positions = np.arange(len(stages)) + i * height
        medians = [rows[s]["median"] if s in rows else np.nan for s in stages]
        errors = [[rows[s]["median"] - rows[s]["q1"] if s in rows else 0 for s in stages],
                  [rows[s]["q3"] - rows[s]["median"] if s in rows else 0 for s in stages]]
        axes.barh(positions, medians, height, xerr=errors, capsize=2, label=record["bundle"]["name"])
    axes.set_yticks(np.arange(len(stages)) + height * (len(records) - 1) / 2, stages)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("ms per window (median, IQR)")
    axes.set_title(f"Per-stage latency, {records[0]['machine']['cpu']}", fontsize=9)
    axes.legend(fontsize=8, loc="upper right")
    axes.grid(axis="x", which="both", alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _by_stage(record: dict) -> dict:
    return {row["stage"]: row for row in record["rows"]}


def write_report(records: dict | Sequence[dict], targets: dict, report: str | Path | None = None,
                 plot: str | Path | None = None, sections: Sequence[dict] = (), command: str = REGENERATE) -> None:
    """Write the plot (PNG) and the markdown report; either may be None."""
    records = [records] if isinstance(records, dict) else list(records)
    plot_name = None
    if plot:
        plot_path = plot_latency(records, plot)
        plot_name = (plot_path.resolve().relative_to(Path(report).resolve().parent).as_posix()
                     if report and plot_path.resolve().is_relative_to(Path(report).resolve().parent)
                     else str(plot_path))
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(render_report(records, targets, sections, plot_name, command), encoding="utf-8")
