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
