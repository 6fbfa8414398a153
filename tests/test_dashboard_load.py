"""benchmarks/dashboard_load.py: one monitor run with the dashboard and its clients, the in-process costs."""

import re

from benchmarks.dashboard_load import format_report, import_cost, monitor_run, publish_cost_ms


def test_a_run_with_the_dashboard_feeds_every_client_every_window(tmp_path):
    run = monitor_run(dashboard=True, windows=3, speed=10.0, hop=10.0, clients=2, folder=tmp_path)
    assert run["returncode"] == 0 and run["windows"] == 3
    # the snapshot, one event per window (and a link event when a client was there before the link came up)
    assert len(run["events_per_client"]) == 2 and all(count >= 4 for count in run["events_per_client"])
    assert run["peak_rss_mb"] > 0 and run["total_ms_median"] > 0


def test_the_in_process_costs_and_the_report():
    publish = publish_cost_ms(clients=3, repeats=20)
    imported = import_cost()
    assert 0 < publish < 100 and 0 < imported["seconds"] < 10
    run = {"dashboard": False, "windows": 3, "skipped": 0, "total_ms_median": 500.0, "total_ms_p95": 600.0,
           "queue_ms_median": 0.0, "store_ms_median": 2.0, "peak_rss_mb": 240.0, "events_per_client": None}
    medians = {"off": {"total_ms": 500.0, "peak_rss_mb": 240.0}, "on": {"total_ms": 510.0, "peak_rss_mb": 243.0}}
    report = {"windows": 3, "speed": 10.0, "hop": 10.0, "clients": 3, "runs": [run, {**run, "dashboard": True}],
              "medians": medians, "ratios": {"total_ms": 1.02, "peak_rss_mb": 243 / 240},
              "publish_ms": publish, "import": imported}
    text = format_report(report)
    assert re.search(r"\| 2 \| on \| 3 \| 0 \| 500 / 600 \|", text) and "(+3.0 MiB)" in text
