"""The row limits of a decoded frame (``ingest.config.limits``: drive motors, pack rows, cell
voltages, probe temperatures per frame) and the ``over_limit`` error of each: one text for the
two places that judge them, ``ingest.pipeline.limits.limit_rows`` over built rows and the
native vehicle decoder over its counts, before it builds any (``VEHICLE_ROW_LIMITS``).
"""

from __future__ import annotations

from typing import Final

from ingest.config.limits import (
    CELLS_PER_FRAME,
    MOTORS_PER_FRAME,
    OVER_LIMIT,
    PACK_ROWS_PER_FRAME,
    PROBES_PER_FRAME,
)
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import RowLimits

__all__ = ["SEE", "VEHICLE_ROW_LIMITS", "over_limit"]

SEE: Final = "docs/security.md, Input limits"

# Row limit -> its value, what it counts, how a sender stays within it.
_ROW_LIMITS: Final = {
    "motors_per_frame": (
        MOTORS_PER_FRAME,
        "drive motors",
        "a frame holds one 0x02 block of at most 253",
    ),
    "pack_rows_per_frame": (
        PACK_ROWS_PER_FRAME,
        "pack rows",
        "a frame holds at most 250 subsystems per battery block",
    ),
    "cells_per_frame": (CELLS_PER_FRAME, "cell voltages", "split the cells over several frames"),
    "probes_per_frame": (
        PROBES_PER_FRAME,
        "probe temperatures",
        "split the probes over several frames",
    ),
}


def over_limit(limit: str, count: int) -> FrameError:
    """The ``over_limit`` error of the row limit ``limit`` (a key of ``_ROW_LIMITS``) crossed
    with ``count``."""
    value, what, fix = _ROW_LIMITS[limit]
    return FrameError(
        OVER_LIMIT, 0, f"{count} {what} is over the limit {limit} ({value}): {fix} ({SEE})"
    )


# The native vehicle decoder counts these before it builds a frame's rows and gives
# ``over_limit``'s error instead of a frame over one (``decode_rows_batch``'s ``limits``): the
# same frames, the same errors as ``limit_rows``, without the rows a hostile frame would make.
VEHICLE_ROW_LIMITS: Final[RowLimits] = (
    MOTORS_PER_FRAME,
    PACK_ROWS_PER_FRAME,
    CELLS_PER_FRAME,
    PROBES_PER_FRAME,
    over_limit,
)
