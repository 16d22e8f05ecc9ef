"""``ingest.decoders.errors.REASONS`` is every reason the decoders name, and each is documented
where the reasons are listed (docs/kafka.md) and in its protocol's document."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.decoders import charger, pack_code
from ingest.decoders.errors import FRAME_REASONS, PACK_CODE_REASONS, REASONS, TCEC_REASONS

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_public_list_holds_the_profiles_the_pushes_and_the_pack_codes() -> None:
    assert REASONS == FRAME_REASONS | TCEC_REASONS | PACK_CODE_REASONS
    assert charger.TCEC_REASONS is TCEC_REASONS
    assert pack_code.PACK_CODE_REASONS is PACK_CODE_REASONS
    assert {"bad_json", "unknown_interface", "missing_field", "bad_code", "bad_time"} == (
        TCEC_REASONS
    )
    assert not FRAME_REASONS & TCEC_REASONS and not FRAME_REASONS & PACK_CODE_REASONS


@pytest.mark.parametrize(
    ("reasons", "doc"),
    [
        (REASONS, "kafka.md"),
        (FRAME_REASONS, "protocols/gbt32960.md"),
        (TCEC_REASONS | {"bad_field", "bad_identity", "unknown_command"}, "protocols/charger.md"),
        (PACK_CODE_REASONS | {"bad_identity", "bad_field"}, "protocols/battery.md"),
    ],
)
def test_every_reason_is_documented(reasons: frozenset[str], doc: str) -> None:
    text = (DOCS / doc).read_text(encoding="utf-8")
    assert [r for r in sorted(reasons) if f"`{r}`" not in text] == []
