"""Settings from the environment and the command line's one-line errors (no services needed)."""

import subprocess
import sys

import pytest

from tongguan import TongguanError
from tongguan.cli import main
from tongguan.settings import Settings, get_settings


def test_settings_read_tongguan_prefixed_environment(monkeypatch):
    monkeypatch.setenv("TONGGUAN_DATABASE_URL", "postgresql://u@db.example:5432/x")
    monkeypatch.setenv("TONGGUAN_KAFKA_BOOTSTRAP", "k1:9092")
    monkeypatch.setenv("TONGGUAN_PARTITIONS", "8")
    s = Settings()
    assert s.database_url == "postgresql://u@db.example:5432/x"
    assert s.kafka_bootstrap == "k1:9092"
    assert s.partitions == 8
    assert not s.managed


def test_unset_urls_mean_managed_services():
    s = Settings(database_url=None, kafka_bootstrap=None)
    assert s.managed
    assert s.home.name == ".tongguan"


def test_topic_names_follow_the_contract_with_optional_prefix():
    assert Settings().topic("readings") == "city.iot.readings"
    assert Settings(topic_prefix="t1.").topic("city.deadletter") == "t1.city.deadletter"
    with pytest.raises(TongguanError, match="unknown topic"):
        Settings().topic("nope")


def test_default_secret_refused_outside_development():
    with pytest.raises(TongguanError, match="TONGGUAN_SECRET_KEY must be set"):
        Settings(env="production")
    assert Settings(env="production", secret_key="x" * 32).env == "production"


def test_bad_environment_value_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("TONGGUAN_PG_PORT", "not-a-port")
    get_settings.cache_clear()
    try:
        with pytest.raises(TongguanError, match="TONGGUAN_PG_PORT"):
            get_settings()
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("argv", [["bogus"], ["db"], ["db", "frobnicate"], ["up", "--nope"]])
def test_bad_arguments_get_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err


def test_bad_environment_through_the_real_command_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "tongguan.cli", "status"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "TONGGUAN_PG_PORT": "x"})
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("tongguan: error: bad settings: TONGGUAN_PG_PORT")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv, says", [
    (["simulate", "--rate", "-5"], "--rate: must be a number greater than 0, got '-5'"),
    (["simulate", "--rate", "nan"], "--rate: must be a number greater than 0, got 'nan'"),
    (["simulate", "--sensors", "1.5"], "--sensors: must be a whole number greater than 0, got '1.5'"),
    (["simulate", "--duration", "-1"], "--duration: must be a number of seconds, 0 or more, got '-1'"),
    (["simulate", "--start", "2026-06-01"], "--start: must be a time with a time-zone offset"),
])
def test_bad_simulate_values_say_what_is_wrong(argv, says, capsys):
    """Issue 14: `simulate --rate -5` said "invalid float value" (a negative number is a float)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and says in err and "invalid" not in err


def test_log_lines_and_errors_never_carry_a_url_password(capsys):
    import logging

    from tongguan.settings import MaskingFormatter, mask_url

    fmt = MaskingFormatter("%(message)s")
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "cannot reach %s", ("postgresql://owner:hunter2@db:5432/t",),
                            None)
    assert fmt.format(rec) == "cannot reach postgresql://owner:***@db:5432/t"
    try:
        raise RuntimeError("via http://u:hunter2@hook.example/x")
    except RuntimeError:
        import sys as _sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), _sys.exc_info())
    assert "hunter2" not in fmt.format(rec) and "http://u:***@hook.example/x" in fmt.format(rec)
    assert mask_url("kafka1:9092,kafka2:9092") == "kafka1:9092,kafka2:9092"  # nothing to hide, nothing changed


def test_env_of_external_services_does_not_repeat_the_password(monkeypatch, capsys):
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    try:
        monkeypatch.setenv("TONGGUAN_DATABASE_URL", f"postgresql://owner:hunter2@127.0.0.1:{port}/t")
        monkeypatch.setenv("TONGGUAN_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
        get_settings.cache_clear()
        assert main(["env"]) == 0
    finally:
        srv.close()
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "hunter2" not in out and "owner:***@" in out
    assert f"export TONGGUAN_KAFKA_BOOTSTRAP=127.0.0.1:{port}" in out
