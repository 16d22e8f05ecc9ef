"""``devstack env`` (and ``smoke``) run where no stack was ever started: the error says where
it looked (``devstack.state_dir`` is relative to the current directory) instead of advising to
start a stack, which from another directory would start a second one."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.devstack import stack
from devtools.settings import DevSettings, DevstackSettings
from ingest.errors import UserError

pytestmark = pytest.mark.unit


def test_no_state_says_where_it_looked(tmp_path: Path) -> None:
    nowhere = tmp_path / "elsewhere" / ".devstack"
    settings = DevSettings(devstack=DevstackSettings(state_dir=str(nowhere)))
    with pytest.raises(UserError) as info:
        stack.env_lines(settings)
    message = str(info.value)
    assert f"no dev stack in {nowhere}" in message
    assert "run this where you ran nev-ingest devstack up" in message
