"""``tongguan bench chaos-alerts`` on a small stream: it runs against the real services and reports
zero extra / missing alerts after detector kills and zero undelivered / duplicate deliveries
after a notifier kill and a receiver outage (the figures the bench prints)."""

import pytest

from analytics.chaos_bench import run_chaos_alerts

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)  # a replayed stream, detected twice, one of them killed again and again
def test_chaos_alerts_bench_small_run(settings, services, loopback_webhooks_allowed):
    out = run_chaos_alerts(settings, services, kills=2, sensors=100, hours=2.0, n_alerts=3, outage=2.0)
    d, n = out["detector"], out["notifier"]["kill_and_outage"]
    assert d["baseline_alerts"] > 0 and d["alerts"] == d["baseline_alerts"]
    assert (d["extra"], d["missing"], d["differing"], d["outbox_left"]) == (0, 0, 0, 0)
    assert d["kills"] >= 1 and len(d["restart_to_progress_s"]) == d["kills"]
    assert (n["undelivered"], n["duplicates_after_dedupe"], n["missing_alerts"]) == (0, 0, 0)
    assert n["resent"] >= 1 and out["notifier"]["baseline"]["undelivered"] == 0
