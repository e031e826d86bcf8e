"""Store.write's fast path (plain INSERT, rollups of the staged rows) and its fall-back to
ON CONFLICT when a batch holds readings that are stored already: counts and rollups exact."""

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from ingest.store import Store

pytestmark = pytest.mark.integration

PLACES = [("440106", "440100", "440000"), ("441900", "441900", "440000")]  # Tianhe; Dongguan (no counties)


def rows(ids, base):
    out = []
    for i in ids:
        county, city, province = PLACES[i % 2]
        out.append((base + timedelta(seconds=7 * i), f"fp-{i}", f"s-{i % 5}", "water_level", float(i % 13), None,
                    county, city, province, None, 113.36, 23.12, None, "t", 0, i))
    return out


def test_a_replayed_batch_falls_back_to_on_conflict_and_rollups_stay_exact(worker_db_url, engine):
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=20)
    store = Store(worker_db_url)
    try:
        assert store.write(rows(range(0, 200), base), []) == (200, 0)
        assert store.fast_path_misses == 0
        # Half of this batch is stored already: the plain INSERT is refused, nothing of it stays,
        # and the ON CONFLICT way stores exactly the other half.
        assert store.write(rows(range(100, 300), base), []) == (100, 0)
        assert store.fast_path_misses == 1
        # Wholly new again: stored in full (by either way), then the fast path is back.
        assert store.write(rows(range(300, 400), base), []) == (100, 0)
        assert store.write(rows(range(400, 500), base), []) == (100, 0)
        assert store.write(rows(range(400, 450), base), []) == (0, 0)
        assert store.fast_path_misses == 2
    finally:
        store.close()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT event_id) FROM readings")).one() == (500, 500)
        for unit in ("minute", "hour"):
            direct = conn.execute(sa.text(f"""
                SELECT adcode, date_trunc('{unit}', ts), count(*), min(value), max(value), sum(value), max(ts)
                FROM (SELECT DISTINCT ON (event_id, adcode) * FROM readings,
                      LATERAL (VALUES (county), (city), (province)) l(adcode)) d
                GROUP BY 1, 2 ORDER BY 1, 2""")).fetchall()
            rolled = conn.execute(sa.text(f"""SELECT adcode, bucket, n, vmin, vmax, vsum, last_ts
                                              FROM reading_rollups_{unit} ORDER BY 1, 2""")).fetchall()
            assert [tuple(r) for r in rolled] == [tuple(r) for r in direct]
