"""Intake: message schemas and validation, the simulator, and the Kafka → PostGIS store worker.

Public surface::

    parse_message(raw_bytes, now=None) -> Parsed        # validation of reading/1, readings/1, video_event/1
    load_catalogue() -> Catalogue                         # metrics, video event types, themes, limits
    Simulator(seed=..., counties=counties_from_db(engine), start=..., duration_s=..., interval_s=...)
        .iter_messages() / .incidents / .truth()          # deterministic stream + ground truth, no Kafka
    StoreWorker(settings, WorkerConfig(until_idle=True)).run() -> Stats
"""

from ingest.catalogue import Catalogue, Metric, VideoEventType, load_catalogue
from ingest.errors import IngestError
from ingest.schemas import Parsed, Problem, Reading, VideoEvent, parse_message
from ingest.simulator import County, Incident, Message, Simulator, counties_from_db, write_truth
from ingest.worker import Stats, StoreWorker, WorkerConfig

__all__ = ["Catalogue", "County", "Incident", "IngestError", "Message", "Metric", "Parsed", "Problem", "Reading",
           "Simulator", "Stats", "StoreWorker", "VideoEvent", "VideoEventType", "WorkerConfig", "counties_from_db",
           "load_catalogue", "parse_message", "write_truth"]
