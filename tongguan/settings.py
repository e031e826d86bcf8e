"""One settings object, read from ``TONGGUAN_*`` environment variables at the edge."""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tongguan import TongguanError

TOPICS = ("city.iot.readings", "city.video.events", "city.alerts", "city.deadletter")
DEVELOPMENT_SECRET = "dev-only-secret-change-me"
DEMO_WEBHOOK_RECEIVER = "127.0.0.1:8099"  # `tongguan subscriptions demo` (tongguan demo) listens here


# ``scheme://user:password@`` in a URL (databases, brokers, webhooks with basic auth).
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")


def mask_url(text: str | None) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    >>> mask_url("postgresql+psycopg://tongguan_owner:s3cr%2Ft@127.0.0.1:5432/tongguan failed")
    'postgresql+psycopg://tongguan_owner:***@127.0.0.1:5432/tongguan failed'
    """
    return _URL_PASSWORD.sub(r"\1***@", str(text or ""))


class MaskingFormatter(logging.Formatter):
    """A log formatter that never writes a URL's password (messages, arguments and tracebacks)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_url(super().format(record))


def _default_home() -> Path:
    """The repository's ``.tongguan/`` when running from a checkout, else ``./.tongguan``."""
    repo = Path(__file__).resolve().parents[1]
    if (repo / "setup.cfg").is_file():
        return repo / ".tongguan"
    return Path.cwd() / ".tongguan"


class Settings(BaseSettings):
    """Everything configurable about a tongguan deployment.

    When ``database_url`` and ``kafka_bootstrap`` are unset, the command line starts and owns
    managed local services (PostgreSQL+PostGIS and a Tansu broker) under ``home``.
    """

    model_config = SettingsConfigDict(env_prefix="TONGGUAN_", extra="ignore")

    env: str = "development"
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    home: Path = _default_home()
    pg_port: int = 55432
    kafka_port: int = 59092
    partitions: int = 4
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    dash_host: str = "127.0.0.1"
    dash_port: int = 8050
    # Seconds `tongguan serve` reuses a view query's result for the same caller scope and
    # arguments (apps.view_cache); 0 turns the cache off.
    view_cache_s: float = 2.0
    # Seconds `tongguan serve` reuses a rendered province / city / county page for callers of one
    # home region and roles (apps.view_cache.page_layout; a changed alert renders it anew, the
    # first live tick brings the other figures up to date); 0 turns it off.
    layout_cache_s: float = 10.0
    # The store worker's Kafka client: "rdkafka" (the default: librdkafka through confluent-kafka,
    # tongguan.rdkafka; a third less worker CPU a reading on single messages, since fetching and
    # decoding run in its C threads) or "kafka-python" (what detect and notify use).
    store_consumer: Literal["rdkafka", "kafka-python"] = "rdkafka"
    log_level: str = "INFO"
    # A consumer with lag that has not committed for this long is stalled: it rejoins its group
    # (then exits non-zero for its supervisor) and `status` and /status show it red.
    stall_after_s: float = 60.0
    # A worker with nothing assigned while messages wait and no member of its group committing for
    # this long takes its group for wedged: it rejoins with a fresh member id (then exits with 75).
    # Keep it above the consumers' 6 s session timeout, so an ordinary rebalance is not a wedge.
    wedge_after_s: float = 15.0
    # Diagnosis only (tongguan.memtrace): seconds between the live detector's tracemalloc reports
    # of what grew since a baseline; 0 is off. Tracing slows the process several times.
    tracemalloc_s: float = 0.0
    tracemalloc_frames: int = 3
    # Prepended to every topic name; empty in production (the contract's names), unique per test.
    topic_prefix: str = ""
    # Outgoing e-mail of alert notifications (analytics.alerting.channels).
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "tongguan@localhost"
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout: float = 10.0
    # Internal webhook targets the URL guard admits (tongguan.netguard, entries parsed by tongguan.allowlist): "127.0.0.1:8099" (one
    # address and port) or "10.20.0.0/16" (a network), comma-separated. Unset: the demo's own
    # receiver in development, nothing otherwise.
    webhook_allow: str | None = None

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> "Settings":
        if self.env != "development" and self.secret_key.get_secret_value() == DEVELOPMENT_SECRET:
            raise TongguanError(
                "TONGGUAN_SECRET_KEY must be set outside development (TONGGUAN_ENV="
                f"{self.env}); generate one with: python -c 'import secrets;print(secrets.token_hex(32))'"
            )
        if self.webhook_allow is None:
            self.webhook_allow = DEMO_WEBHOOK_RECEIVER if self.env == "development" else ""
        from tongguan.allowlist import parse_allow

        parse_allow(self.webhook_allow)  # a bad entry is an error at start, not at the first delivery
        if self.partitions < 1:
            raise TongguanError("TONGGUAN_PARTITIONS must be at least 1")
        return self

    def topic(self, name: str) -> str:
        """Full topic name for one of ``TOPICS`` (``readings``, ``video``, ``alerts``, ``deadletter``
        or the contract name itself)."""
        short = {"readings": TOPICS[0], "video": TOPICS[1], "alerts": TOPICS[2], "deadletter": TOPICS[3]}
        full = short.get(name, name)
        if full not in TOPICS:
            raise TongguanError(f"unknown topic {name!r}; expected one of {', '.join(TOPICS)}")
        return self.topic_prefix + full

    def check_serving_secret(self, *, dev: bool = False) -> None:
        """Before serving the web: the development secret signs sessions anyone can forge, so it is
        refused unless development is explicit (``--dev`` or ``TONGGUAN_ENV=development`` set in
        the environment), and then loudly warned about."""
        import os
        import sys

        if self.secret_key.get_secret_value() != DEVELOPMENT_SECRET:
            return
        if not (dev or os.environ.get("TONGGUAN_ENV") == "development"):
            raise TongguanError(
                "refusing to serve with the development TONGGUAN_SECRET_KEY (anyone could forge a session); "
                "set TONGGUAN_SECRET_KEY (python -c 'import secrets;print(secrets.token_hex(32))'), or pass "
                "--dev / TONGGUAN_ENV=development on a development machine")
        print("\n  !!! WARNING: serving with the DEVELOPMENT secret key: sessions can be forged.\n"
              "  !!! Never expose this server; set TONGGUAN_SECRET_KEY for anything but a laptop.\n",
              file=sys.stderr, flush=True)

    @property
    def managed(self) -> bool:
        """True when tongguan must start its own services (no external URLs configured)."""
        return not (self.database_url and self.kafka_bootstrap)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"TONGGUAN_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise TongguanError(f"bad settings: {problems}") from None
