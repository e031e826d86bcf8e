"""The ingest package's exception root."""

from tongguan import TongguanError


class IngestError(TongguanError):
    """An ingest operation failed; the message says how to fix it."""
