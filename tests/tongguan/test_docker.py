"""docker/ cannot run here (no Docker engine): check its syntax and what it defines."""

from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _compose():
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def test_compose_defines_kraft_kafka_postgis_and_the_product_roles():
    services = _compose()["services"]
    assert {"kafka", "postgis", "migrate", "ingest", "detect", "notify", "app"} <= set(services)
    kafka = services["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"] and "KAFKA_ZOOKEEPER_CONNECT" not in kafka
    assert services["postgis"]["image"].startswith("postgis/postgis:")
    assert services["app"]["ports"] == ["8050:8050"]


def test_product_services_point_at_the_compose_services_not_managed_ones():
    services = _compose()["services"]
    for role in ("migrate", "ingest", "detect", "notify", "app"):
        env = services[role]["environment"]
        assert env["TONGGUAN_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert "@postgis:5432/" in env["TONGGUAN_DATABASE_URL"]
        assert env["TONGGUAN_ENV"] == "production" and "TONGGUAN_SECRET_KEY" in env
        assert services[role]["build"]["dockerfile"] == "docker/Dockerfile"


def test_commands_the_compose_file_runs_exist_in_the_cli():
    from tongguan.cli import build_parser

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    for role in ("migrate", "ingest", "detect", "notify", "app"):
        cmd = _compose()["services"][role]["command"]
        words = cmd[-1].replace("&&", " ").split() if cmd[0] == "sh" else cmd
        for i, word in enumerate(words):
            if word == "tongguan":
                assert words[i + 1] in commands, f"{role} runs unknown command {words[i + 1]}"


def test_dockerfile_installs_the_package_and_runs_the_cli():
    text = (DOCKER / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11" in text
    for pkg in ("tongguan", "geo", "ingest", "analytics", "apps"):
        assert f"COPY {pkg} ./{pkg}" in text
    assert 'CMD ["tongguan", "serve"]' in text


def test_the_image_health_check_asks_the_health_endpoint_and_refuses_redirects():
    line = next(x for x in (DOCKER / "Dockerfile").read_text().splitlines() if x.startswith("HEALTHCHECK"))
    assert "/healthz" in line and "--max-redirs 0" in line and "-f" in line


def test_each_product_service_logs_in_as_its_own_non_superuser_role():
    """Issue 13 item 2 in docker/: the superuser only runs the init script that creates the roles."""
    services = _compose()["services"]
    roles = {name: services[name]["environment"]["TONGGUAN_DATABASE_URL"].split("//")[1].split(":")[0]
             for name in ("migrate", "ingest", "detect", "app")}
    assert roles == {"migrate": "tongguan_owner", "ingest": "tongguan_worker", "detect": "tongguan_worker",
                     "app": "tongguan_app"}
    pg = services["postgis"]
    assert "./initdb:/docker-entrypoint-initdb.d:ro" in pg["volumes"]
    assert "scram-sha-256" in pg["environment"]["POSTGRES_INITDB_ARGS"]
    script = (DOCKER / "initdb" / "10-roles.sh").read_text()
    for role in ("tongguan_owner", "tongguan_app", "tongguan_worker", "tongguan_scoped"):
        line = next(x for x in script.splitlines() if x.startswith(f"CREATE ROLE {role} "))
        assert "NOSUPERUSER" in line and "NOBYPASSRLS" in line
    assert "GRANT tongguan_scoped TO tongguan_owner, tongguan_app;" in script
