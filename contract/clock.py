"""The frame clock: GB/T 32960.3 times are China Standard Time, UTC+8 (§1.3), with no DST."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Final

__all__ = ["CHINA_TZ"]

# The one definition of the zone of every frame time; its name shows as "GMT+8" in tzname().
CHINA_TZ: Final = timezone(timedelta(hours=8), "GMT+8")
