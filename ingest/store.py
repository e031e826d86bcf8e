"""The PostGIS writer: COPY into a staging table, INSERT … ON CONFLICT DO NOTHING, rollups.

One call of :meth:`Store.write` is one database transaction: the new readings and video events,
the per-region rollups of exactly the rows that were new (so a replay changes nothing), and the
sensors and cameras seen for the first time. The caller commits Kafka offsets only after it
returns.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Sequence

import psycopg

from geo.tree import region_path_sql
from ingest.catalogue import Catalogue, load_catalogue
from tongguan.consumer import HEARTBEAT_SQL

log = logging.getLogger(__name__)

# Columns staged by COPY (binary); geom is built in SQL from lon/lat.
READING_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS stage_readings (
    ts timestamptz, event_id text, sensor_id text, metric text, value float8, quality text,
    county text, city text, province text, grid_id text, lon float8, lat float8,
    gateway_id text, src_topic text, src_partition int4, src_offset int8
) ON COMMIT DELETE ROWS
"""
READING_COLUMNS = ("ts", "event_id", "sensor_id", "metric", "value", "quality", "county", "city", "province",
                   "grid_id", "lon", "lat", "gateway_id", "src_topic", "src_partition", "src_offset")
READING_TYPES = ("timestamptz", "text", "text", "text", "float8", "text", "text", "text", "text",
                 "text", "float8", "float8", "text", "text", "int4", "int8")

VIDEO_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS stage_video (
    event_id text, camera_id text, type text, theme text, confidence float8, ts timestamptz, count int4,
    attributes jsonb, snapshot_uri text, county text, city text, province text, grid_id text,
    lon float8, lat float8, src_topic text, src_partition int4, src_offset int8
) ON COMMIT DELETE ROWS
"""
VIDEO_COLUMNS = ("event_id", "camera_id", "type", "theme", "confidence", "ts", "count", "attributes",
                 "snapshot_uri", "county", "city", "province", "grid_id", "lon", "lat", "src_topic",
                 "src_partition", "src_offset")
VIDEO_TYPES = ("text", "text", "text", "text", "float8", "timestamptz", "int4", "jsonb", "text", "text",
               "text", "text", "text", "float8", "float8", "text", "int4", "int8")


def _rollup_upsert(kind: str, unit: str, source: str) -> str:
    """INSERT … ON CONFLICT DO UPDATE that merges a batch aggregate into an existing bucket."""
    if kind == "reading":
        return f"""INSERT INTO reading_rollups_{unit} AS t (adcode, metric, bucket, n, vmin, vmax, vsum, last_value, last_ts)
    {source}
    ON CONFLICT (adcode, metric, bucket) DO UPDATE SET
        n = t.n + excluded.n, vmin = least(t.vmin, excluded.vmin), vmax = greatest(t.vmax, excluded.vmax),
        vsum = t.vsum + excluded.vsum,
        last_value = CASE WHEN excluded.last_ts > t.last_ts
                               OR (excluded.last_ts = t.last_ts AND excluded.last_value > t.last_value)
                          THEN excluded.last_value ELSE t.last_value END,
        last_ts = greatest(t.last_ts, excluded.last_ts)
    RETURNING 1"""
    return f"""INSERT INTO video_rollups_{unit} AS t (adcode, type, bucket, n, count_sum, max_confidence, last_ts)
    {source}
    ON CONFLICT (adcode, type, bucket) DO UPDATE SET
        n = t.n + excluded.n, count_sum = t.count_sum + excluded.count_sum,
        max_confidence = greatest(t.max_confidence, excluded.max_confidence),
        last_ts = greatest(t.last_ts, excluded.last_ts)
    RETURNING 1"""


# The region levels of a county row (geo's region path): itself, its city (unless the city has
# no counties and the "county" is the city itself, as in Dongguan and Zhongshan), its province.
LEVELS = region_path_sql("c.county", "c.city", "c.province", alias="x")

def _latest(value: str, ts: str) -> str:
    """The aggregate ``value`` of the row with the latest ``ts`` (on a tie, the larger value).

    The max of a two-element array compares the epoch first: one pass, no sort, where
    ``(array_agg(value ORDER BY ts DESC))[1]`` sorts every group (a measurable share of the
    rollup's CPU). ``date_part`` is float8; at today's epochs its resolution is below 1 µs."""
    return f"(max(ARRAY[date_part('epoch', {ts}), {value}]))[2]"


READING_HOUR_SOURCE = f"""SELECT adcode, metric, date_trunc('hour', bucket), sum(n), min(vmin), max(vmax), sum(vsum),
           {_latest("last_value", "last_ts")}, max(last_ts)
    FROM lv GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
VIDEO_HOUR_SOURCE = """SELECT adcode, type, date_trunc('hour', bucket), sum(n), sum(count_sum), max(max_confidence),
           max(last_ts) FROM lv GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""

def _insert_readings(assume_new: bool) -> str:
    """The readings of ``stage_readings`` and their rollups, in one statement.

    ``assume_new=False``: only the rows that were new (RETURNING of ON CONFLICT DO NOTHING) feed
    the rollups, so a replayed batch inserts nothing and adds nothing.

    ``assume_new=True``, the fast path of a batch none of whose readings is stored yet (the normal
    case; a replay or a producer's re-send is the exception): a plain INSERT, which the primary key
    refuses as a whole on the first row already there (the batch then goes the other way), and
    rollups of the staged rows themselves. It skips ON CONFLICT's speculative insertion and the
    materialised RETURNING rows.

    Aggregation runs county-first: the city and province rows are built from the (few) county
    aggregates, the hour rows from the minute rows, never from the raw rows again."""
    conflict, source = ("", "stage_readings") if assume_new else (
        "ON CONFLICT DO NOTHING\n    RETURNING ts, metric, value, county, city, province", "ins")
    # A data-modifying CTE without RETURNING cannot be counted: the caller knows the count.
    count = "NULL" if assume_new else "(SELECT count(*) FROM ins)"
    return f"""
WITH ins AS (
    INSERT INTO readings (ts, event_id, sensor_id, metric, value, quality, county, city, province, grid_id,
                          geom, gateway_id, src_topic, src_partition, src_offset, ingested_at)
    SELECT ts, event_id, sensor_id, metric, value, quality, county, city, province, grid_id,
           ST_SetSRID(ST_MakePoint(lon, lat), 4326), gateway_id, src_topic, src_partition, src_offset, now()
    FROM stage_readings
    {conflict}
), c AS (
    SELECT county, city, province, metric, date_trunc('minute', ts) AS bucket, count(*) AS n,
           min(value) AS vmin, max(value) AS vmax, sum(value) AS vsum,
           {_latest("value", "ts")} AS last_value, max(ts) AS last_ts
    FROM {source} GROUP BY 1, 2, 3, 4, 5
), lv AS (
    SELECT x.adcode, c.metric, c.bucket, sum(c.n) AS n, min(c.vmin) AS vmin, max(c.vmax) AS vmax,
           sum(c.vsum) AS vsum, {_latest("c.last_value", "c.last_ts")} AS last_value,
           max(c.last_ts) AS last_ts
    FROM c CROSS JOIN LATERAL {LEVELS}
    WHERE x.adcode IS NOT NULL GROUP BY 1, 2, 3
), m AS (
    {_rollup_upsert("reading", "minute", "SELECT * FROM lv ORDER BY 1, 2, 3")}
), h AS (
    {_rollup_upsert("reading", "hour", READING_HOUR_SOURCE)}
)
SELECT {count}, (SELECT count(*) FROM m), (SELECT count(*) FROM h)
"""


INSERT_READINGS = _insert_readings(assume_new=False)
INSERT_READINGS_NEW = _insert_readings(assume_new=True)

INSERT_VIDEO = f"""
WITH ins AS (
    INSERT INTO video_events (event_id, camera_id, type, theme, confidence, ts, count, attributes, snapshot_uri,
                              county, city, province, grid_id, geom, src_topic, src_partition, src_offset,
                              ingested_at)
    SELECT event_id, camera_id, type, theme, confidence, ts, count, attributes, snapshot_uri,
           county, city, province, grid_id, ST_SetSRID(ST_MakePoint(lon, lat), 4326),
           src_topic, src_partition, src_offset, now()
    FROM stage_video
    ON CONFLICT DO NOTHING
    RETURNING type, ts, confidence, count, county, city, province
), lv AS (
    SELECT x.adcode, c.type, date_trunc('minute', c.ts) AS bucket, count(*) AS n,
           coalesce(sum(c.count), 0) AS count_sum, max(c.confidence) AS max_confidence, max(c.ts) AS last_ts
    FROM ins c CROSS JOIN LATERAL {LEVELS}
    WHERE x.adcode IS NOT NULL GROUP BY 1, 2, 3
), m AS (
    {_rollup_upsert("video", "minute", "SELECT * FROM lv ORDER BY 1, 2, 3")}
), h AS (
    {_rollup_upsert("video", "hour", VIDEO_HOUR_SOURCE)}
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM m), (SELECT count(*) FROM h)
"""


# Registration on first sight; afterwards last_seen/last_value move only when they are at least
# a minute newer, so a busy sensor does not rewrite its row in every batch.
UPSERT_SENSORS = """
INSERT INTO sensors AS s (sensor_id, metric, theme, gateway_id, geom, county, city, province, grid_id,
                          first_seen, last_seen, last_value)
SELECT u.sensor_id, u.metric, u.theme, u.gateway_id, ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326),
       u.county, u.city, u.province, nullif(u.grid_id, ''), u.ts, u.ts, u.value
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::text[],
            %s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::float8[])
     AS u(sensor_id, metric, theme, gateway_id, lon, lat, county, city, province, grid_id, ts, value)
ORDER BY u.sensor_id
ON CONFLICT (sensor_id) DO UPDATE SET last_seen = excluded.last_seen, last_value = excluded.last_value
WHERE s.last_seen < excluded.last_seen
"""

UPSERT_CAMERAS = """
INSERT INTO cameras AS c (camera_id, geom, county, city, province, grid_id, first_seen, last_seen)
SELECT u.camera_id, ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326), u.county, u.city, u.province,
       nullif(u.grid_id, ''), u.ts, u.ts
FROM unnest(%s::text[], %s::float8[], %s::float8[], %s::text[], %s::text[], %s::text[], %s::text[],
            %s::timestamptz[]) AS u(camera_id, lon, lat, county, city, province, grid_id, ts)
ORDER BY u.camera_id
ON CONFLICT (camera_id) DO UPDATE SET last_seen = excluded.last_seen
WHERE c.last_seen < excluded.last_seen
"""

# Free-text personal data inside attribute values (mainland mobile numbers, plates).
PHONE_RE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
PLATE_RE = re.compile(r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领][A-Z][A-Z0-9]{4,5}[A-Z0-9挂学警港澳]")


class Desensitiser:
    """Replace personal data in video-event attributes by a keyed HMAC token.

    Equal inputs give equal tokens (so an analyst can still count repeat offenders), but without
    the key the raw value cannot be recovered or brute-forced from a rainbow table.

    >>> d = Desensitiser(b"k", {"plate"})
    >>> out = d.clean({"plate": "粤A12345", "note": "call 13812345678", "colour": "red"})
    >>> out["plate"].startswith("hmac:") and "13812345678" not in out["note"] and out["colour"]
    'red'
    """

    def __init__(self, key: bytes, personal_keys: Iterable[str]):
        self.key = key
        self.personal = {k.lower() for k in personal_keys}

    def token(self, value: object) -> str:
        digest = hmac.new(self.key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()
        return "hmac:" + digest[:24]

    def _text(self, s: str) -> str:
        if any(c.isdigit() for c in s):
            s = PHONE_RE.sub(lambda m: self.token(m.group(0)), s)
            s = PLATE_RE.sub(lambda m: self.token(m.group(0)), s)
        return s

    def clean(self, value, key: str | None = None):
        if key is not None and key.lower() in self.personal and not isinstance(value, (dict, list)):
            return None if value is None else self.token(value)
        if isinstance(value, dict):
            return {k: self.clean(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.clean(v, key) for v in value]
        if isinstance(value, str):
            return self._text(value)
        return value


def day_of(ts: datetime) -> date:
    return ts.astimezone(timezone.utc).date()


class Store:
    """A psycopg 3 connection that writes validated, region-assigned records in one transaction."""

    def __init__(self, url: str, *, catalogue: Catalogue | None = None, application_name: str = "tongguan-ingest"):
        from tongguan.db import normalise_url

        self.url = normalise_url(url).replace("postgresql+psycopg://", "postgresql://")
        self.catalogue = catalogue or load_catalogue()
        self.application_name = application_name
        self.conn: psycopg.Connection | None = None
        self.known_days: set[date] = set()
        self._ahead_checked = float("-inf")
        self._slow_batches = 0      # batches still to write the ON CONFLICT way
        self._slow_after_miss = 0   # how many the last fast-path miss asked for
        self.fast_path_misses = 0

    # -- connection ------------------------------------------------------------------------
    def connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.close()
            self.conn = psycopg.connect(self.url, autocommit=False, application_name=self.application_name,
                                        connect_timeout=5)
            with self.conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
                cur.execute(READING_STAGE)
                cur.execute(VIDEO_STAGE)
                cur.execute("""SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                               WHERE i.inhparent = 'readings'::regclass""")
                self.known_days = {datetime.strptime(n[-8:], "%Y%m%d").date() for (n,) in cur.fetchall()
                                   if n.startswith("readings_p")}
            self.conn.commit()
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self.conn = None

    # -- partitions ------------------------------------------------------------------------
    def ensure_partitions(self, days: Iterable[date], ahead: int = 0) -> int:
        """Create the daily partitions of ``days`` (and ``ahead`` days after the last) if missing."""
        wanted = set(days)
        if ahead and wanted:
            last = max(wanted)
            wanted.update(last + timedelta(days=i) for i in range(1, ahead + 1))
        missing = sorted(wanted - self.known_days)
        if not missing:
            return 0
        conn = self.connect()
        created = 0
        with conn.cursor() as cur:
            # Contiguous runs become one call each; a lone far-away day does not fill the gap.
            run_start = prev = missing[0]
            for d in missing[1:] + [None]:
                if d is not None and d == prev + timedelta(days=1):
                    prev = d
                    continue
                cur.execute("SELECT ingest_ensure_readings_partitions(%s, %s)", (run_start, prev))
                created += cur.fetchone()[0]
                if d is not None:
                    run_start = prev = d
        conn.commit()
        self.known_days.update(missing)
        if created:
            log.info("created %d daily partition(s) of readings (%s … %s)", created, missing[0], missing[-1])
        return created

    # -- writing ---------------------------------------------------------------------------
    def write(self, reading_rows: Sequence[tuple], video_rows: Sequence[tuple],
              sensor_rows: Sequence[tuple] = (), camera_rows: Sequence[tuple] = (),
              heartbeat: dict | None = None) -> tuple[int, int]:
        """Write one batch in one transaction; returns (new readings, new video events).

        ``reading_rows`` follow ``READING_COLUMNS``, ``video_rows`` ``VIDEO_COLUMNS``;
        ``sensor_rows``: (sensor_id, metric, theme, gateway_id, lon, lat, county, city, province,
        grid_id, ts, value); ``camera_rows``: (camera_id, lon, lat, county, city, province,
        grid_id, ts); ``heartbeat``: the parameters of ``tongguan.consumer.HEARTBEAT_SQL``, written
        in the same transaction. On any error the transaction is rolled back and the error re-raised.
        """
        import time

        if time.monotonic() - self._ahead_checked > 3600:
            # Partitions ahead (today … +2 days) for a worker that runs across midnight.
            today = datetime.now(timezone.utc).date()
            self.ensure_partitions([today + timedelta(days=i) for i in range(3)])
            self._ahead_checked = time.monotonic()
        if reading_rows:
            self.ensure_partitions({day_of(r[0]) for r in reading_rows})
        if reading_rows and self._slow_batches <= 0:
            try:
                return self._write_tx(reading_rows, video_rows, sensor_rows, camera_rows, heartbeat, new=True)
            except psycopg.errors.UniqueViolation:
                # Some reading is stored already (a replay, a re-send): this batch, and the next
                # few (replays come in runs), take the ON CONFLICT way. Nothing was written.
                self.fast_path_misses += 1
                self._slow_after_miss = min(self.MAX_SLOW_BATCHES, max(1, 2 * self._slow_after_miss))
                self._slow_batches = self._slow_after_miss
        self._slow_batches -= 1
        result = self._write_tx(reading_rows, video_rows, sensor_rows, camera_rows, heartbeat, new=False)
        if reading_rows and result[0] == len(reading_rows):
            self._slow_after_miss = 0  # every reading was new after all: back to the fast path soon
        return result

    # Batches written the ON CONFLICT way after a fast-path miss, doubling on each miss in a row.
    MAX_SLOW_BATCHES = 64

    def _write_tx(self, reading_rows, video_rows, sensor_rows, camera_rows, heartbeat, *, new: bool) -> tuple[int, int]:
        """One transaction; ``new``: the readings are asserted new (``INSERT_READINGS_NEW``, which
        fails with a unique violation otherwise), else ``INSERT_READINGS``."""
        conn = self.connect()
        stored_r = stored_v = 0
        try:
            with conn.cursor() as cur:
                if reading_rows:
                    with cur.copy(f"COPY stage_readings ({', '.join(READING_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp:
                        cp.set_types(READING_TYPES)
                        for row in reading_rows:
                            cp.write_row(row)
                    if new:
                        cur.execute(INSERT_READINGS_NEW)
                        stored_r = len(reading_rows)
                    else:
                        cur.execute(INSERT_READINGS)
                        stored_r = cur.fetchone()[0]
                if video_rows:
                    with cur.copy(f"COPY stage_video ({', '.join(VIDEO_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp:
                        cp.set_types(VIDEO_TYPES)
                        for row in video_rows:
                            cp.write_row(row)
                    cur.execute(INSERT_VIDEO)
                    stored_v = cur.fetchone()[0]
                if sensor_rows:
                    cur.execute(UPSERT_SENSORS, [list(c) for c in zip(*sensor_rows)])
                if camera_rows:
                    cur.execute(UPSERT_CAMERAS, [list(c) for c in zip(*camera_rows)])
                if heartbeat is not None:
                    cur.execute(HEARTBEAT_SQL, heartbeat)
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001 - the connection may be gone; reconnect next time
                self.close()
            raise
        return stored_r, stored_v

    def heartbeat(self, params: dict) -> None:
        """Write the worker's row of ``worker_heartbeats`` (``tongguan.consumer.heartbeat_params``)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(HEARTBEAT_SQL, params)
            conn.commit()
        except BaseException:
            self.close()
            raise


def copy_ceiling(url: str, rows: Sequence[tuple]) -> float:
    """Seconds for a bare COPY of ``rows`` (READING_COLUMNS order) straight into ``readings``.

    The benchmark's ceiling: the same table, partitions and indexes, but no staging, no conflict
    check, no rollups, no Kafka. The rows are rolled back afterwards.
    """
    import time

    store = Store(url)
    store.ensure_partitions({day_of(r[0]) for r in rows})
    conn = store.connect()
    cols = [c for c in READING_COLUMNS if c not in ("lon", "lat")] + ["geom", "ingested_at"]
    import struct

    now = datetime.now(timezone.utc)
    # EWKB point with SRID 4326, built in Python so the database only parses it (as COPY would).
    head = struct.pack("<BII", 1, 0x20000001, 4326)
    prepared = [(*r[:10], *r[12:], (head + struct.pack("<dd", r[10], r[11])).hex(), now) for r in rows]
    t0 = time.perf_counter()
    try:
        with conn.cursor() as cur:
            with cur.copy(f"COPY readings ({', '.join(cols)}) FROM STDIN") as cp:
                for row in prepared:
                    cp.write_row(row)
            conn.commit()
        return time.perf_counter() - t0
    finally:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM readings WHERE ingested_at = %s", (now,))
        conn.commit()
        store.close()

