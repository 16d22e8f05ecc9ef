"""The public surface of ``ingest.decoders`` is pinned; the package stays pure; the registry
refuses duplicates; the envelope and checksum helpers the fast path imports keep working."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devtools.sim.framebuilder import build
from ingest.decoders.blocks import engine, vehicle
from ingest.decoders.checksum import bcc
from ingest.decoders.envelope import HEADER, HEADER_SIZE, Envelope, parse_envelope
from ingest.decoders.registry import VEHICLE, Registry

pytestmark = pytest.mark.unit


def test_decoders_import_no_io_packages() -> None:
    code = (
        "import sys, ingest.decoders, ingest.decoders.jsonview;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('asyncio', 'aiokafka', 'asyncpg', 'psycopg', 'socket')];"
        "print(','.join(bad))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == ""


def test_registry_refuses_duplicate_keys() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        VEHICLE.extended([(2016, 0x04, engine.CODEC_2016)])
    with pytest.raises(ValueError, match="registered twice"):
        Registry([(2016, 0x01, vehicle.CODEC_2016), (2016, 0x50, vehicle.CODEC_2016)])
    assert len(VEHICLE.keys()) == 9 + 11


def test_envelope_contract() -> None:
    frame = build(2025, 0x02, "190A1B140202", vin="HAUV4BGN6S5002219")
    env = parse_envelope(frame)
    assert env == Envelope(2025, 0x02, 0xFE, "HAUV4BGN6S5002219", 0x01, 6)
    assert not env.encrypted
    assert HEADER_SIZE == HEADER.size == 24
    assert parse_envelope(memoryview(frame)) == env
    assert bcc(frame, 2, len(frame) - 1) == frame[-1]
    assert bcc(b"", 0, 0) == 0
