"""Tables every service database has: the transactional outbox, the consumer dedupe log and the
dead letters (records the outbox relay could not send or a consumer could not store)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

runtime_metadata = MetaData()

# BigInteger primary keys autoincrement on PostgreSQL; SQLite needs INTEGER for rowid aliasing.
_id_type = BigInteger().with_variant(Integer(), "sqlite")

outbox = Table(
    "outbox",
    runtime_metadata,
    Column("id", _id_type, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

processed_events = Table(
    "processed_events",
    runtime_metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False),
    # Pruning deletes a consumer's oldest rows (runtime/consumer.py).
    Index("idx_processed_events_consumer_at", "consumer", "processed_at"),
)

# One quarantined record: `source` is "outbox" or the consumer group that could not handle it;
# `value` is the record as it was (an outbox row's or a Kafka record's bytes).
dead_letters = Table(
    "dead_letters",
    runtime_metadata,
    Column("id", _id_type, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("event_id", String(36)),
    Column("event_type", String(100)),
    Column("topic", String(200), nullable=False),
    Column("key", String(200)),
    Column("kafka_partition", Integer),
    Column("kafka_offset", BigInteger),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("idx_dead_letters_source", "source", "id"),
)
