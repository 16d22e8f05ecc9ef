"""Storage: the schema (plain PostgreSQL or TimescaleDB), its migrations, the exactly-once batch
writer, maintenance, and the regulators' queries. See docs/storage.md.

The pipeline's use, in short::

    writer = await StorageWriter.open(PoolParams(dsn=...), WriterParams(consumer_group=...))
    start = await writer.load_offsets(assigned)          # seek each partition there
    result = await writer.write_batch(frames, {tp: OffsetRange(start, next)}, partitions=...)
    # result.committed / result.fenced (seek there) / result.rejected (dead letters)

Library code only: every parameter is explicit (``storage.params``); ``ingest`` maps settings.
"""

from storage.batch import BatchOutcome, RejectedFrame, WriteResult, WriterHooks
from storage.connect import PoolParams, ServerInfo
from storage.errors import MigrationError, SchemaError, StorageError, StorageUnavailable
from storage.maintenance import run as run_maintenance
from storage.migrate import MigrationReport, migrate
from storage.offsets import OffsetRange
from storage.params import (
    Dedupe,
    LoaderKind,
    PlainParams,
    RetryParams,
    SchemaMode,
    StorageParams,
    TimescaleParams,
    WriterParams,
)
from storage.writer import StorageWriter

__all__ = [
    "BatchOutcome",
    "Dedupe",
    "LoaderKind",
    "MigrationError",
    "MigrationReport",
    "OffsetRange",
    "PlainParams",
    "PoolParams",
    "RejectedFrame",
    "RetryParams",
    "SchemaError",
    "SchemaMode",
    "ServerInfo",
    "StorageError",
    "StorageParams",
    "StorageUnavailable",
    "StorageWriter",
    "TimescaleParams",
    "WriteResult",
    "WriterHooks",
    "WriterParams",
    "migrate",
    "run_maintenance",
]
