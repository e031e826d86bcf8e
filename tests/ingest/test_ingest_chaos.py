"""Chaos, measured and kept: the same fault injections as `tongguan bench chaos` (ingest.chaos),
shorter. Zero lost and zero doubled readings for worker kills and a database outage; after a
broker kill, the loss of the memory broker is measured and the stream after it all stored."""

import json

import pytest

from ingest import chaos

pytestmark = pytest.mark.integration


def test_sigkill_the_store_worker_repeatedly_loses_and_doubles_nothing(settings, engine, tmp_path):
    out = chaos.worker_kills(settings, engine, kills=5, rate=300, workdir=tmp_path)
    print(json.dumps(out))
    assert out["produced"] > 0 and out["not_acknowledged"] == 0
    assert (out["lost"], out["doubled"]) == (0, 0), out
    assert out["rollups_equal_raw"]
    assert out["restarts_without_progress"] == 0, out


def test_postgres_stopped_hard_mid_stream_pauses_then_resumes_losing_nothing(settings, engine, services, tmp_path):
    out = chaos.db_outage(settings, engine, services.postgres, outage_s=6, rate=300, workdir=tmp_path)
    print(json.dumps(out))
    assert out["worker_alive_through_outage"], out
    assert out["produced"] > 0 and (out["lost"], out["doubled"]) == (0, 0), out
    assert out["rollups_equal_raw"]
    # The worker probes every 2 s at most: back within a few seconds of the database.
    assert out["db_back_to_first_row_s"] is not None


def test_broker_sigkill_mid_stream_workers_reconnect_and_the_loss_is_measured(settings, engine, services, tmp_path):
    from apps.health import probe_broker

    out = chaos.broker_kill(settings, engine, services.kafka, down_s=3, rate=300, workdir=tmp_path,
                            status_probe=lambda: probe_broker(settings.kafka_bootstrap))
    print(json.dumps(out))
    assert out["status_during_outage"]["up"] is False  # /status shows the outage while it lasts
    assert out["worker_alive"] and out["broker_back_to_first_row_s"] is not None, out
    assert out["doubled"] == 0 and out["rollups_equal_raw"]
    # What the memory broker held unconsumed is gone with it; what came after is all stored.
    assert out["lost"] <= out["acknowledged_before_kill"], out
    assert out["acknowledged_after_restart"] > 0 and out["lost_after_restart"] == 0, out


def test_bench_chaos_refuses_an_unknown_fault_in_one_line():
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([str(Path(sys.executable).with_name("tongguan")), "bench", "chaos", "--faults", "nope"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "worker-kill" in out.stderr
