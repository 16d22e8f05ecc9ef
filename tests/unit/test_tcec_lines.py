"""ingest.cli.tcec_lines: the envelope of the T/CEC push lines of ``decode --profile tcec``
and ``rules test --kind charger``."""

from __future__ import annotations

import pytest

from ingest.cli import tcec_lines
from ingest.decoders.charger import tcec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seq"),
    [("0001", True), ("9999", True), ("001", False), ("00001", False), ("٠٠٠١", False),
     ("00²1", False), ("-001", False)],
)  # fmt: skip
def test_one_seq_check_for_the_decoder_and_the_cli(text: str, seq: bool) -> None:
    # It was written out twice (the CLI's --seq and push_time), free to drift apart: a --seq
    # the CLI took could be a bad_time on every line, or the reverse.
    assert vars(tcec_lines)["is_seq"] is tcec.is_seq
    assert tcec.is_seq(text) is seq
