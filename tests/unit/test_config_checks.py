"""Values the loader refuses beyond a key's type, range and pattern: one line, exit 2, naming
the key (and never echoing a password)."""

from __future__ import annotations

import pytest

from ingest.config.load import load_settings
from ingest.errors import UserError

pytestmark = pytest.mark.unit


def _refused(env: dict[str, str]) -> str:
    with pytest.raises(UserError) as caught:
        load_settings(environ=env)
    text = str(caught.value)
    assert "\n" not in text
    assert caught.value.exit_code == 2
    return text


@pytest.mark.parametrize("listen", ["0.0.0.0:65536", "127.0.0.1:99999", "[::1]:70000"])
def test_tcec_listen_port_above_65535_is_refused(listen: str) -> None:
    text = _refused({"NEV_TCEC_LISTEN": listen})
    assert text.startswith(f"tcec.listen = {listen!r}: port ")
    assert "0..65535" in text


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "127.0.0.1:65535", "[::1]:8090", ":8090"])
def test_tcec_listen_ports_in_range_are_accepted(listen: str) -> None:
    assert load_settings(environ={"NEV_TCEC_LISTEN": listen}).tcec.listen == listen
