from __future__ import annotations

import tracemalloc

from tongguan.memtrace import MemTrace


def test_reports_nothing_until_due_then_a_baseline_then_what_grew_with_its_call_site():
    now = [0.0]
    was_tracing = tracemalloc.is_tracing()
    trace = MemTrace("test", 10, frames=4, clock=lambda: now[0])
    try:
        assert trace.maybe_report() is None  # not due yet
        now[0] = 10.0
        thread = trace.maybe_report()
        thread.join()
        assert trace._baseline is not None
        kept = [bytearray(4096) for _ in range(500)]  # about 2 MiB that stays
        now[0] = 15.0
        assert trace.maybe_report() is None
        now[0] = 20.0
        report = trace.report(tracemalloc.take_snapshot())
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert len(kept) == 500
    assert report[0].startswith("memtrace test: +")
    growth = float(report[0].split()[2])
    assert growth >= 1.9  # MiB
    # the site that grew most is this test's line, named with its file and line number
    assert any(line.strip().startswith(__file__ + ":") for line in report[1:6])
