import doctest
import threading
import time

import numpy as np
import pytest

import edge.budget
from edge.budget import BudgetTracker, QueueClosed, SkippingQueue, StageTimer, peak_memory_mb, process_memory_mb


def test_stage_timer_measures_each_stage_and_the_total():
    timer = StageTimer()
    with timer.stage("represent"):
        time.sleep(0.03)
    with timer.stage("infer"):
        time.sleep(0.01)
    with timer.stage("infer"):
        time.sleep(0.01)
    latency = timer.latency_ms()
    assert latency["represent"] >= 30.0 and latency["infer"] >= 20.0
    assert latency["total"] >= latency["represent"] + latency["infer"]


def test_stage_timer_records_a_failing_stage():
    timer = StageTimer()
    with pytest.raises(RuntimeError):
        with timer.stage("infer"):
            raise RuntimeError("model failed")
    assert "infer" in timer.latency_ms()


def test_queue_drops_the_oldest_when_full_and_counts_it():
    queue = SkippingQueue(2)
    dropped = [queue.put(i) for i in range(5)]
    assert dropped == [None, None, 0, 1, 2]
    assert queue.skipped == 3 and len(queue) == 2
    assert [queue.get(), queue.get()] == [3, 4]


def test_queue_never_grows_past_its_size_with_a_slow_consumer():
    queue = SkippingQueue(3)
    taken = []

    def slow_worker():
        while True:
            try:
                taken.append(queue.get(timeout=5))
            except QueueClosed:
                return
            time.sleep(0.002)

    worker = threading.Thread(target=slow_worker)
    worker.start()
    longest = 0
    dropped = []
    for i in range(300):
        item = queue.put(i)
        if item is not None:
            dropped.append(item)
        longest = max(longest, len(queue))
    queue.close()
    worker.join(timeout=10)
    assert longest <= 3
    assert sorted(taken + dropped) == list(range(300))  # every window either processed or skipped
    assert queue.skipped == len(dropped) > 0
    assert taken == sorted(taken)  # order kept


def test_queue_get_times_out_and_reports_closing():
    queue = SkippingQueue(1)
    with pytest.raises(TimeoutError):
        queue.get(timeout=0.01)
    queue.put("last")
    queue.close()
    assert queue.get(timeout=0.01) == "last"
    with pytest.raises(QueueClosed):
        queue.get(timeout=0.01)
    with pytest.raises(ValueError, match="maxsize"):
        SkippingQueue(0)


def test_memory_readings_follow_allocations():
    before = process_memory_mb()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    after = process_memory_mb()
    assert after - before > 50
    assert peak_memory_mb() >= after - 1
    del block


def test_budget_tracker_counts_slow_windows_and_reports():
    tracker = BudgetTracker(window_ms=100.0, memory_mb=1e6)
    results = [tracker.observe(ms) for ms in (50.0, 80.0, 150.0, 90.0)]
    assert results == [True, True, False, True]
    status = tracker.status(skipped=2, bridge_lost=17)
    assert status["windows"] == 4 and status["over_time_budget"] == 1
    assert status["latency_ms"]["max"] == 150.0 and status["latency_ms"]["mean"] == 92.5
    assert status["skipped"] == 2 and status["bridge_lost"] == 17
    line = tracker.status_line(skipped=2, bridge_lost=17, resyncs=1)
    assert "4 windows processed" in line and "2 skipped" in line and "17 samples lost" in line
    assert "1 over the 100 ms budget" in line and "1 resyncs" in line and "OVER BUDGET" not in line


def test_budget_tracker_flags_memory_over_budget():
    tracker = BudgetTracker(window_ms=1000.0, memory_mb=1.0)  # any Python process uses more
    assert tracker.observe(10.0) is False
    assert "OVER BUDGET" in tracker.status_line(skipped=0, bridge_lost=0)
    with pytest.raises(ValueError, match="memory_mb"):
        BudgetTracker(window_ms=10.0, memory_mb=0)


def test_docstring_examples_run():
    results = doctest.testmod(edge.budget)
    assert results.attempted > 0 and results.failed == 0
