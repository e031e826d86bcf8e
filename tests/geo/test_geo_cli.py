"""The geo subcommands, run through the real command-line entry point."""

import json

import pytest

from tongguan.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(db_url, monkeypatch, capsys):
    monkeypatch.setenv("TONGGUAN_DATABASE_URL", db_url)
    from tongguan.settings import get_settings

    get_settings.cache_clear()

    def run(*argv):
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run
    get_settings.cache_clear()


def test_locate(cli):
    code, out, _ = cli("geo", "locate", "113.3245", "23.1064")
    assert code == 0
    answer = json.loads(out)
    assert answer["county"] == {"adcode": "440105", "name": "海珠区", "name_en": "Haizhu District"}
    assert answer["city"]["adcode"] == "440100" and answer["province"]["name"] == "广东省"
    assert answer["grid_id"].startswith("440105-1000-") and answer["outside"] is False
    code, out, _ = cli("geo", "locate", "114.5", "21.5")
    assert code == 0 and json.loads(out) == {"lon": 114.5, "lat": 21.5, "outside": True}


def test_tree(cli):
    code, out, _ = cli("geo", "tree", "440100")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].startswith("440100 广州市") and len(lines) == 12
    assert any(line.strip().startswith("440106 天河区") for line in lines)


def test_user_errors_are_one_line(cli):
    code, _, err = cli("geo", "grid", "--size", "huge")
    assert code == 1 and err.count("\n") == 1 and "500m" in err
    code, _, err = cli("geo", "locate", "23.1", "113.3")
    assert code == 1 and "LON LAT" in err
    code, _, err = cli("geo", "tree", "449999")
    assert code == 1 and "unknown region" in err


def test_bench_geo_runs_and_agrees_with_postgis(cli):
    code, out, _ = cli("bench", "geo", "--points", "3000")
    assert code == 0, out  # exit status 1 would mean a disagreement with PostGIS
    assert "points/s" in out and "100.0000% of points" in out


def test_grid_takes_several_counties(cli, engine):
    import sqlalchemy as sa

    code, out, _ = cli("geo", "grid", "--size", "2km", "--county", "440103", "440104", "--no-progress")
    assert code == 0 and json.loads(out)["size_m"] == 2000
    with engine.connect() as conn:
        counties = conn.execute(sa.text(
            "SELECT DISTINCT county FROM grid_cells WHERE size_m = 2000 ORDER BY 1")).scalars().all()
    assert counties == ["440103", "440104"]
