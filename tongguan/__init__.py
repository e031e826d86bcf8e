"""tongguan (统管): shared plumbing — settings, database, migrations, services, command line."""

__all__ = ["TongguanError", "__version__"]
__version__ = "0.1.0"


class TongguanError(Exception):
    """Root of the errors the command line reports as one clear line (no traceback).

    Messages say what went wrong and how to fix it.
    """
