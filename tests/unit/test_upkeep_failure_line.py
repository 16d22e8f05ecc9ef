"""``describe_failure``: one line without a traceback only when the database is away (down,
refusing, not answering); anything else, a bug in the upkeep's SQL included, keeps its
traceback (``None``)."""

from __future__ import annotations

import asyncpg
import pytest

from ingest.pipeline.upkeep import describe_failure
from storage.errors import StorageUnavailable

pytestmark = pytest.mark.unit


def _noted(e: Exception, shard: int) -> Exception:
    e.add_note(f"storage maintenance of shard {shard}")
    return e


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError("no connection within 120 s"),
        ConnectionRefusedError(111, "Connection refused"),
        StorageUnavailable("shard 1 is down"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.InterfaceError("connection is closed"),
    ],
)
def test_a_database_away_is_one_line_naming_the_shard(error: Exception) -> None:
    line = describe_failure(_noted(error, 1))
    assert line is not None and line.startswith("storage maintenance of shard 1: ")


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InterfaceError("the server expects 1 argument for this query, 0 were passed"),
        FileNotFoundError(2, "No such file or directory"),
        asyncpg.exceptions.UndefinedTableError('relation "nev.x" does not exist'),
        ValueError("a bug"),
    ],
)
def test_anything_else_keeps_its_traceback(error: Exception) -> None:
    assert describe_failure(_noted(error, 0)) is None


def test_several_shards_are_one_line_only_when_each_is_away() -> None:
    away = _noted(TimeoutError("no answer within 3 s"), 0)
    bug = _noted(asyncpg.InterfaceError("the server expects 1 argument"), 1)
    both = ExceptionGroup("storage maintenance failed on several shards", [away, bug])
    assert describe_failure(both) is None
    two = ExceptionGroup("x", [away, _noted(TimeoutError("no connection within 120 s"), 1)])
    line = describe_failure(two)
    assert line is not None and "shard 0" in line and "shard 1" in line
