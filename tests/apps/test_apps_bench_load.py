"""``tongguan bench load``, briefly: a few operators for a few seconds against the production
server and the development server, with ingest running, on the real services. Checks that
every request kind was made and answered without an error and that the figures are coherent
(no timed assertion: how fast is the benchmark's business, not the test's)."""

from __future__ import annotations

import math

import pytest

from tests.apps.conftest import drop_db, make_seeded_db

pytestmark = pytest.mark.integration


@pytest.fixture
def load_db(services, template_db):
    name, url, _ = make_seeded_db(services, template_db, sensors_per_county=2, cameras_per_county=1,
                                  events_per_county=2, hours=6, series_every_min=120, alerts=20)
    try:
        yield url
    finally:
        drop_db(services, name, url)


def test_bench_load_reports_zero_errors_and_sane_figures(services, load_db, settings_factory, tmp_path):
    from apps.bench_load import PROFILES, bench, format_comparison, format_run
    from tongguan.cli import Context

    settings = settings_factory(database_url=load_db)
    ctx = Context(settings=settings, keep_services=True)
    result = bench(ctx, load_db, users=[len(PROFILES)], duration=8, stress=True, ingest_rate=200,
                   workers=2, threads=2, topic_prefix=settings.topic_prefix, log_dir=tmp_path, log=lambda *_: None)

    assert set(result["servers"]) == {"production", "development (baseline)"}
    for name, server in result["servers"].items():
        runs = server["runs"]
        assert [(r["users"], r["stress"]) for r in runs] == [(len(PROFILES), False), (len(PROFILES), True)]
        for run in runs:
            kinds = {r["kind"]: r for r in run["rows"]}
            # one operator of each profile: province, city and county pages and the live tick
            assert {"province page view", "city page view", "county page view", "live tick"} <= set(kinds), (name, kinds)
            assert sum(r["errors"] for r in run["rows"]) == 0, (name, run["error_samples"])
            for r in run["rows"]:
                assert r["n"] > 0 and r["per_s"] > 0
                assert 0 < r["p50"] <= r["p95"] <= r["p99"] < math.inf
            assert run["callbacks_per_s"] > 0
            assert run["ingested_per_s"] > 0, "the store worker wrote nothing during the run"
            assert "callbacks/s" in format_run(name, run)
    assert "saturation" in format_comparison(result)
