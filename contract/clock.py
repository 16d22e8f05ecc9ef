"""The frame clock: GB/T 32960.3 times are China Standard Time, UTC+8 (§1.3), with no DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Final

__all__ = ["CHINA_TZ", "EARLIEST", "EARLIEST_MS"]

# The one definition of the zone of every frame time; its name shows as "GMT+8" in tzname().
CHINA_TZ: Final = timezone(timedelta(hours=8), "GMT+8")

# 2000-01-01T00:00:00Z: no NEV telemetry, charge or order is older (GB/T 32960 times are 20YY;
# a T/CEC 102 push sends a full year, and "0001-01-01 00:00:00", .NET's DateTime.MinValue, is
# a common "unset"). The one bound of every path: the decoders refuse a time before it
# (bad_time) and the pipeline's frame-time window never stores one (ingest.pipeline.timewindow).
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
EARLIEST_MS: Final = 946_684_800_000
