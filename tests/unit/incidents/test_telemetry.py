import threading

from incidents.telemetry import PipelineCounters, format_progress


def test_counters_add_up_across_threads():
    counters = PipelineCounters()

    def work():
        for _ in range(1000):
            counters.add("points", 2)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counters.snapshot()["points"] == 8000
    counters.reset()
    assert counters.snapshot()["points"] == 0


def test_progress_line_shows_every_counter_and_the_rate():
    values = {"points": 12000, "windows": 30, "anomalies": 2, "incidents": 1, "late_points": 3}
    line = format_progress(values, 4.0)
    assert "points=12,000 (3,000/s)" in line
    assert "windows=30" in line and "incidents=1" in line and "late=3" in line
    assert "(500/s)" in format_progress(values, 4.0, recent_rate=500)
