"""Intake: message schemas and validation, the simulator, and the Kafka → PostGIS store worker."""

from ingest.catalogue import Catalogue, Metric, VideoEventType, load_catalogue
from ingest.errors import IngestError
from ingest.schemas import Parsed, Problem, Reading, VideoEvent, parse_message

__all__ = ["Catalogue", "IngestError", "Metric", "Parsed", "Problem", "Reading", "VideoEvent",
           "VideoEventType", "load_catalogue", "parse_message"]
