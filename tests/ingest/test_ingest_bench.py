"""`tongguan bench ingest` on the real services, as the CLI runs it: the worker writes with the
worker role (under row-level security) and the bare-COPY ceiling runs as the tables' owner."""

from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from ingest.cli import _bench_once

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("batch", [1, 50])
def test_bench_ingest_stores_every_reading_and_measures_the_copy_ceiling(settings, engine, db_url, worker_db_url,
                                                                         batch):
    ctx = SimpleNamespace(engine=engine, database_url=db_url)
    live = settings.model_copy(update={"database_url": worker_db_url})
    r = _bench_once(ctx, live, "single" if batch == 1 else f"batched({batch})", 400, batch, 5000, None)
    assert r["readings"] == 400 and r["messages"] == 400 // batch
    assert r["readings_per_s"] > 0 and r["copy_readings_per_s"] > 0 and r["ratio"] > 0
    with engine.connect() as conn:  # the ceiling's rows were rolled back
        assert conn.execute(sa.text("SELECT count(*) FROM readings WHERE event_id LIKE '%-ceiling'")).scalar() == 0
