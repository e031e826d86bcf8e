"""A librdkafka consumer (confluent-kafka) behind the part of kafka-python's ``KafkaConsumer``
that tongguan's workers and :mod:`tongguan.consumer` use.

Why: the store worker's main thread spent about 40 % of its time inside kafka-python's ``poll``
(Python decoding every record batch, and waiting on the lock of its network thread), time the
Python work of the next batch needed. librdkafka fetches and decodes in its own C threads, so a
poll only hands over what is already there (measured here: 50,000 messages from Tansu in 0.17 s
against 0.43 s, one core's CPU 0.14 s against 0.36 s).

What stays as with kafka-python: offsets are committed only by an explicit synchronous
``commit`` (``enable.auto.commit`` and ``enable.auto.offset.store`` are off), partitions,
records and offsets are kafka-python's ``TopicPartition`` and a record type with the same
attribute names (``topic``, ``partition``, ``offset``, ``timestamp``, ``key``, ``value``,
``headers``), ``highwater`` is the high watermark of the last fetch response (librdkafka's
cached watermark), and ``position`` is the offset of the next record ``poll`` returns.

The store worker's default (``TONGGUAN_STORE_CONSUMER=kafka-python`` for the old client); the
detector and the notifier keep kafka-python. An earlier version stalled under ``tongguan bench
load``'s live traffic against Tansu (stored ~1,000 then 0 readings/s); with poll handing over
what is there, ``isolation.level=read_uncommitted`` (below) and the worker polling within its
max poll interval during slow writes, the same load (50 operators, ~2,000 readings/s in, load
average 7-10) stored 1,863 readings/s with the lag at 0-72 messages throughout.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException
from confluent_kafka import TopicPartition as RdTP
from kafka.structs import TopicPartition

log = logging.getLogger(__name__)

_INVALID = -1001  # librdkafka's OFFSET_INVALID: not known (yet)


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: list


class RdKafkaConsumer:
    """``KafkaConsumer(*topics, ...)`` with kafka-python's argument names, on librdkafka."""

    def __init__(self, *topics: str, bootstrap_servers: str, group_id: str, client_id: str = "tongguan",
                 auto_offset_reset: str = "earliest", session_timeout_ms: int = 6000,
                 heartbeat_interval_ms: int = 1000, max_poll_interval_ms: int = 300000,
                 fetch_max_wait_ms: int = 10, fetch_max_bytes: int = 64 * 1024 * 1024,
                 max_partition_fetch_bytes: int = 16 * 1024 * 1024, max_poll_records: int = 5000,
                 enable_auto_commit: bool = False, **_ignored):
        if enable_auto_commit:
            raise ValueError("tongguan's workers commit after their writes: enable_auto_commit must be False")
        self.max_poll_records = max_poll_records
        self._paused: set[TopicPartition] = set()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap_servers, "group.id": group_id, "client.id": client_id,
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": auto_offset_reset,
            "session.timeout.ms": session_timeout_ms, "heartbeat.interval.ms": heartbeat_interval_ms,
            "max.poll.interval.ms": max(max_poll_interval_ms, session_timeout_ms),
            # kafka-python's default assignors: a group may mix both clients (tests, a rolling upgrade).
            "partition.assignment.strategy": "range,roundrobin",
            # kafka-python's isolation, not librdkafka's read_committed: tongguan's producers are
            # not transactional, and Tansu answers the last stable offset like ListOffsets (the
            # base offset of a partition's last record batch): read_committed held back the newest
            # batch of every partition until the next one came (measured: a steady lag of one
            # producer batch against a live stream, 0 with read_uncommitted), for good on a
            # partition that goes quiet.
            "isolation.level": "read_uncommitted",
            "fetch.wait.max.ms": fetch_max_wait_ms, "fetch.max.bytes": fetch_max_bytes,
            "max.partition.fetch.bytes": max_partition_fetch_bytes,
            "error_cb": self._on_error, "logger": log,
        })
        self._consumer.subscribe(list(topics))

    @staticmethod
    def _on_error(err) -> None:
        # Transport errors (a broker down) are retried by librdkafka itself; say so in the log.
        log.warning("kafka: %s", err)

    # -- records ------------------------------------------------------------------------------
    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Record]]:
        """What is there now, up to ``max_records``; when nothing is, wait up to ``timeout_ms``
        for the first record (kafka-python's semantics). librdkafka's ``consume(n, timeout)``
        waits until it has ``n`` or the time is up: a worker at a few hundred messages a second
        would then spend the whole timeout on every poll."""
        limit = max_records or self.max_poll_records
        msgs = self._consumer.consume(limit, timeout=0)
        if not msgs and timeout_ms > 0:
            first = self._consumer.poll(timeout_ms / 1000)
            if first is not None:
                msgs = [first, *self._consumer.consume(limit - 1, timeout=0)] if limit > 1 else [first]
        out: dict[TopicPartition, list[Record]] = {}
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                log.warning("kafka: %s", err)  # e.g. a topic not created yet: nothing to hand over
                continue
            tp = TopicPartition(m.topic(), m.partition())
            ts_type, ts = m.timestamp()
            out.setdefault(tp, []).append(Record(tp.topic, tp.partition, m.offset(), ts if ts_type else None,
                                                 m.key(), m.value(), m.headers() or []))
        return out

    def commit(self, offsets: dict) -> None:
        """Synchronously commit ``{TopicPartition: OffsetAndMetadata}`` (raises when it failed,
        e.g. the partitions were taken away by a rebalance)."""
        self._consumer.commit(offsets=[RdTP(tp.topic, tp.partition, om.offset) for tp, om in offsets.items()],
                              asynchronous=False)

    # -- assignment and positions -------------------------------------------------------------
    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(p.topic, p.partition) for p in self._consumer.assignment()}

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        (p,) = self._consumer.position([RdTP(tp.topic, tp.partition)])
        return p.offset if p.offset >= 0 else None

    def highwater(self, tp: TopicPartition) -> int | None:
        _low, high = self._consumer.get_watermark_offsets(RdTP(tp.topic, tp.partition), cached=True)
        return high if high is not None and high >= 0 else None

    def committed(self, tp: TopicPartition) -> int | None:
        (p,) = self._consumer.committed([RdTP(tp.topic, tp.partition)], timeout=10)
        return p.offset if p.offset >= 0 else None

    def end_offsets(self, tps) -> dict[TopicPartition, int]:
        return {tp: self._consumer.get_watermark_offsets(RdTP(tp.topic, tp.partition), timeout=10)[1] for tp in tps}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        return set(meta.partitions) if meta is not None and meta.error is None else None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(RdTP(tp.topic, tp.partition, offset))

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        """To the log's first offset, asked of the broker, as an absolute seek: the position is
        then known at once. (A logical OFFSET_BEGINNING is resolved by librdkafka later; once in
        four clean-clone runs a partition rewound that way after a broker restart stayed past the
        new log's end.) Falls back to the logical offset when the broker cannot say."""
        for tp in tps or self.assignment():
            try:
                low, _high = self._consumer.get_watermark_offsets(RdTP(tp.topic, tp.partition), timeout=2,
                                                                  cached=False)
            except KafkaException as exc:
                log.warning("kafka: low watermark of %s[%d] unknown (%s); seeking to the beginning",
                            tp.topic, tp.partition, exc)
                low = None
            self.seek(tp, low if low is not None and low >= 0 else OFFSET_BEGINNING)

    def pause(self, *tps: TopicPartition) -> None:
        if tps:
            self._consumer.pause([RdTP(tp.topic, tp.partition) for tp in tps])
            self._paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        if tps:
            self._consumer.resume([RdTP(tp.topic, tp.partition) for tp in tps])
            self._paused.difference_update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused) & self.assignment()

    def close(self, autocommit: bool = False) -> None:
        # Nothing is auto-committed either way (the workers commit after their writes).
        self._consumer.close()
