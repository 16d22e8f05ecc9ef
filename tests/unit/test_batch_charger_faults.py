"""A batch's charger fault rows of one key (several frames of one pile with one time) are
joined into one row by ``rows_by_table`` (storage/batch.py ``_faults_joined``):

* each key's row is built once, its codes gathered in one list: adding the lists row by row
  copied the codes so far each time, quadratic in the frames of one key (1,000 frames x 1,276
  codes took seconds);
* keys that do not repeat keep their rows as they are, in first-seen order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from contract.charger import ChargerFaultRow, ChargerRows
from storage.batch import rows_by_table
from storage.tables import CHARGER_FAULTS

pytestmark = pytest.mark.unit

OPERATOR = "MA01H3BQ2"
PILE = OPERATOR + "P0000001"
T = datetime(2026, 12, 7, 8, 0, 0, tzinfo=UTC)

rebuilt: list[int] = []  # the number of codes of each row _replace built


class Counted(ChargerFaultRow):
    """A fault row that records each rebuild of it (``_replace``) and its size."""

    __slots__ = ()

    def _replace(self, **kwargs: Any) -> Counted:
        row = super()._replace(**kwargs)
        rebuilt.append(len(row.fault_codes))
        return row


def frame(connector: str, codes: list[int]) -> ChargerRows:
    rows = ChargerRows(operator_id=OPERATOR, charger_id=PILE, command=0x02, ts_ms=0)
    rows.faults.append(Counted(OPERATOR, connector, T, PILE, codes, "frame"))
    return rows


def faults(frames: list[ChargerRows]) -> list[Any]:
    (rows,) = [r for t, r in rows_by_table(frames, range(len(frames))) if t is CHARGER_FAULTS]
    return rows


def test_each_keys_row_is_built_once_however_many_frames_repeat_it() -> None:
    rebuilt.clear()
    frames = [frame("", [100 * i + 1, 100 * i + 2]) for i in range(50)]
    (row,) = faults(frames)
    assert row.fault_codes == [c for i in range(50) for c in (100 * i + 1, 100 * i + 2)]
    assert rebuilt == [100]  # one row of 100 codes, not 49 growing copies


def test_keys_that_do_not_repeat_keep_their_rows_in_first_seen_order() -> None:
    rebuilt.clear()
    frames = [frame("", [1]), frame("C1", [2]), frame("", [3]), frame("C2", [4])]
    rows = faults(frames)
    joined = [(r.connector_id, r.fault_codes) for r in rows]
    assert joined == [("", [1, 3]), ("C1", [2]), ("C2", [4])]
    assert rows[1] is frames[1].faults[0] and rows[2] is frames[3].faults[0]
    assert rebuilt == [2]
