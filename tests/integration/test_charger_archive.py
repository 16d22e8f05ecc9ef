"""The raw_frames archive of a pile that sends several frames in one second, through the batch
writer's COPY on the real PostgreSQL (migration 0080): every frame keeps its archive row, on the
hot path (no conflict fallback), and the same records written again are no-ops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from contract.clock import CHINA_TZ
from storage import (
    LoaderKind,
    OffsetRange,
    StorageWriter,
)
from storage.batch import Decoded
from tests.integration.conftest import OpenWriter
from tests.integration.kinds_frames import CHARGER, charger_realtime, connector

pytestmark = pytest.mark.integration

CHG = ("nev.charger.raw", 0)
T0 = datetime.now(CHINA_TZ).replace(microsecond=0) - timedelta(minutes=50)


@pytest.fixture
def writers(open_writers: OpenWriter) -> Callable[[str], Awaitable[StorageWriter]]:
    """Opens a writer of consumer group GROUP that archives raw frames, by COPY."""

    def make(group: str) -> Awaitable[StorageWriter]:
        return open_writers(consumer_group=group, raw_frames=True, loader=LoaderKind.COPY)

    return make


async def write(w: StorageWriter, frames: Sequence[tuple[bytes, Decoded]], start: int) -> Any:
    return await w.write_batch(
        [rows for _, rows in frames],
        {CHG: OffsetRange(start or None, start + len(frames))},
        partitions=[CHG] * len(frames),
        kafka_offsets=list(range(start, start + len(frames))),
        raw=[raw for raw, _ in frames],
    )


async def test_every_frame_of_a_pile_in_one_second_is_archived(writers: Any) -> None:
    # One frame per connector, all real-time at T0: same header code, time and command.
    frames = [
        charger_realtime(T0, connector(k), output=(400.0, 100.0 + k, 40.0, 1.0, 30))
        for k in range(3)
    ]
    w = await writers("g")
    first = await write(w, frames[:2], 0)
    assert first.rows["raw_frames"] == 2
    assert first.duplicates_skipped == 0 and first.conflict_fallbacks == 0
    later = await write(w, frames[2:], 2)  # the same second, a later batch
    assert later.rows["raw_frames"] == 1 and later.conflict_fallbacks == 0
    # The same records again (another consumer group: not fenced) are no second rows.
    again = await write(await writers("other"), frames, 0)
    assert again.rows.get("raw_frames", 0) == 0 and again.duplicates_skipped > 0
    async with w.pool.acquire() as conn:
        archived = await conn.fetch(
            "SELECT kafka_offset, frame FROM raw_frames WHERE vin = $1 AND ts = $2 "
            "ORDER BY kafka_offset",
            CHARGER,
            T0,
        )
        currents = await conn.fetch(
            "SELECT current_a FROM charger_telemetry WHERE charger_id = $1 ORDER BY connector_id",
            CHARGER,
        )
    assert [(r["kafka_offset"], r["frame"]) for r in archived] == [
        (k, raw) for k, (raw, _) in enumerate(frames)
    ]
    assert [r["current_a"] for r in currents] == [100.0, 101.0, 102.0]
