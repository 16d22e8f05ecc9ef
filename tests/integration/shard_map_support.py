"""Helpers of the shard map tests (test_shard_map, test_reshard_procedure): `nev-ingest migrate`
over a list of shards, and what `nev-ingest run`'s start check says about that list."""

from __future__ import annotations

import asyncio

import pytest

from ingest.cli import main
from ingest.config.load import load_settings
from ingest.errors import UserError
from ingest.pipeline.schema_check import check_schema


def shards_set(*dsns: str) -> list[str]:
    """The CLI flags naming ``dsns`` as storage.shards, in that order."""
    return ["--set", f"storage.shards={','.join(dsns)}"]


def migrate_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`nev-ingest migrate ARGS`: its exit code, stdout and stderr."""
    capsys.readouterr()
    rc = main(["migrate", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def run_check(*dsns: str) -> str:
    """What `nev-ingest run`'s start check says ("" when it passes)."""
    settings = load_settings(environ={"NEV_STORAGE_SHARDS": ",".join(dsns)})
    try:
        asyncio.run(check_schema(settings))
    except UserError as exc:
        return str(exc)
    return ""
