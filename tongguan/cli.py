"""The ``tongguan`` command line.

Subcommands are registered by the packages that own them: each module in ``COMMAND_MODULES``
has ``register(subparsers)`` which adds its parsers and sets ``func(args, ctx)``.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import sys
from functools import cached_property

from tongguan import TongguanError
from tongguan.settings import MaskingFormatter, mask_url

COMMAND_MODULES = (
    "tongguan.commands",
    "tongguan.bench",
    "geo.cli",
    "apps.cli",
    "apps.screenshot",
    "apps.users_cli",
    "ingest.cli",
    "analytics.cli",
    "analytics.alerting.cli",
)


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments get one line that says what is wrong and where help is, not a usage dump."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class Context:
    """What a command needs from the outside world, resolved lazily at the edge.

    When no external URL is configured, ``require`` starts the managed services; those a
    command started itself are stopped when it exits (``tongguan up`` keeps them running).
    """

    def __init__(self, settings=None, keep_services: bool = False):
        self._settings = settings
        self.keep_services = keep_services
        self._ready_db = False
        self._ready_kafka = False

    @cached_property
    def settings(self):
        if self._settings is None:
            from tongguan.settings import get_settings

            self._settings = get_settings()
        return self._settings

    @cached_property
    def services(self):
        from tongguan.services import LocalServices

        return LocalServices(self.settings)

    def require(self, *, kafka: bool = True):
        """Make sure the database (and, with ``kafka``, the broker) answer, starting managed ones;
        return the services."""
        if self._ready_kafka or (self._ready_db and not kafka):
            return self.services
        started = self.services.up(kafka=kafka)
        self._ready_db = True
        self._ready_kafka = kafka
        if started and not self.keep_services:
            logging.getLogger("tongguan").info(
                "started %s for this command; they stop when it exits (`tongguan up` keeps them running)",
                ", ".join(started))
            atexit.register(self.services.down, list(started))
        return self.services

    @property
    def database_url(self) -> str:
        return self.require(kafka=False).database_url

    def role_url(self, purpose: str) -> str:
        """The database URL of an ``app`` (web) or ``worker`` process (see LocalServices.role_url)."""
        return self.require(kafka=False).role_url(purpose)

    @property
    def kafka_bootstrap(self) -> str:
        return self.require().kafka_bootstrap

    @cached_property
    def engine(self):
        from tongguan.db import engine_for

        return engine_for(self.database_url)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tongguan", description="tongguan (统管): smart-city unified management")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(keep_services=getattr(args, "keep_services", False))
    level = logging.DEBUG if args.verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))  # no URL passwords
    logging.basicConfig(level=level, handlers=[handler])
    for noisy in ("kafka", "alembic", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    try:
        return int(args.func(args, ctx) or 0)
    except TongguanError as exc:
        print(f"tongguan: error: {mask_url(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
