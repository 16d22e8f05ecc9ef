"""``nev-ingest keys`` on a real, migrated PostgreSQL: add (PEM, raw hex), list, refuse a
second key without ``--replace``, rotate, revoke; unreadable keys get a one-line error."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest

from devtools.sim.signing import RSA, SM2, make_key
from ingest.cli import main
from storage import keys
from tests.integration.pipeline_support import SCHEMA, until

pytestmark = pytest.mark.integration

VIN = "LKEYCLI0000000001"


async def cli(*argv: str) -> int:
    """``nev-ingest ARGV`` (it runs its own event loop: off this test's thread)."""
    return await asyncio.to_thread(main, list(argv))


async def _list(capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert await cli("keys", "list", "--format", "json", *extra) == 0
    return [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]


async def test_add_list_replace_revoke(
    migrated_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NEV_POSTGRES_DSN", migrated_database)
    rsa, sm2 = make_key(tmp_path, RSA), make_key(tmp_path, SM2)
    pem = tmp_path / "rsa.pem"
    pem.write_bytes(rsa.public_pem)
    assert await cli("keys", "add", VIN, "--algorithm", "rsa", "--key-file", str(pem)) == 0
    (row,) = await _list(capsys)
    assert (row["vin"], row["algorithm"], row["source"]) == (VIN, "rsa", "admin")

    # A second key is not taken silently.
    assert await cli("keys", "add", VIN, "--algorithm", "sm2", "--key-hex", sm2.raw.hex()) != 0
    assert "rotate it with --replace" in capsys.readouterr().err
    argv = ["keys", "add", VIN, "--algorithm", "sm2", "--key-hex", sm2.raw.hex(), "--replace"]
    assert await cli(*argv) == 0
    assert [r["algorithm"] for r in await _list(capsys)] == ["sm2"]
    assert [r["revoked_at"] is None for r in await _list(capsys, "--all")] == [False, True]

    conn = await asyncpg.connect(migrated_database)
    try:
        loaded = await keys.load(conn, SCHEMA, 10)
    finally:
        await conn.close()
    assert loaded[VIN].public_key == sm2.raw and loaded[VIN].algorithm == SM2

    assert await cli("keys", "revoke", VIN) == 0
    assert await _list(capsys) == []
    assert await cli("keys", "revoke", VIN) != 0
    assert "has no active key" in capsys.readouterr().err


def test_an_unreadable_key_is_refused_in_one_line(
    migrated_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEV_POSTGRES_DSN", migrated_database)
    assert main(["keys", "add", VIN, "--algorithm", "rsa", "--key-hex", "0102"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "give the key as DER or PEM" in err
    assert main(["keys", "add", VIN, "--algorithm", "sm2", "--key-hex", "00" * 64]) != 0
    assert "SM2 key unreadable" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad", ["abc", "lkeycli0000000001", "LKEY CLI000000001", "LKEYCLI00000000011"]
)
def test_a_key_only_for_a_vin(
    bad: str,
    migrated_database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No frame can carry such an ID (the decoders refuse it: bad_identity), so a key under it
    # would never verify one, and the vehicle meant stays unverified.
    monkeypatch.setenv("NEV_POSTGRES_DSN", migrated_database)
    with pytest.raises(SystemExit) as exit_:  # argparse's refusal, before the key is read
        main(["keys", "add", bad, "--algorithm", "sm2", "--key-hex", "00" * 64])
    assert exit_.value.code == 2
    assert "expected a VIN of 17 digits and upper-case letters" in capsys.readouterr().err


def test_a_database_that_refuses_is_a_one_line_error(
    migrated_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A missing database (so too a wrong password or user): the server answers, and refuses.
    missing = urlsplit(migrated_database)._replace(path="/no_such_database").geturl()
    monkeypatch.setenv("NEV_POSTGRES_DSN", missing)
    assert main(["keys", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("nev-ingest: error: cannot connect")
    assert "InvalidCatalogNameError" in err and "Traceback" not in err
    assert "--dsn" not in err and "NEV_POSTGRES_DSN" in err  # keys has no --dsn


async def test_a_replace_racing_another_registration_says_so(
    migrated_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Two admins rotate one VIN's key at once: the second's revoke waits for the first's row
    # lock, then finds no active key to revoke (the first revoked it) and its INSERT meets the
    # first's new key (the partial unique index). It said "already has a ... key; rotate it
    # with --replace", to someone who had given --replace.
    old, other, mine = (make_key(tmp_path, RSA, n) for n in ("old", "other", "mine"))
    for name, key in (("old", old), ("mine", mine)):
        (tmp_path / f"{name}.pem").write_bytes(key.public_pem)
    monkeypatch.setenv("NEV_POSTGRES_DSN", migrated_database)
    add = ["keys", "add", VIN, "--algorithm", "rsa"]
    assert await cli(*add, "--key-file", f"{tmp_path}/old.pem") == 0
    first = await asyncpg.connect(migrated_database)
    watch = await asyncpg.connect(migrated_database)
    try:
        tx = first.transaction()
        await tx.start()
        # the other admin's rotation, not committed yet: the old key's row stays locked
        await first.execute(
            f"UPDATE {SCHEMA}.device_keys SET revoked_at = now()"
            " WHERE vin = $1 AND revoked_at IS NULL",
            VIN,
        )
        await first.execute(
            f"INSERT INTO {SCHEMA}.device_keys (vin, algorithm, public_key, source)"
            " VALUES ($1, $2, $3, 'admin')",
            VIN,
            RSA,
            other.public_pem,
        )
        # in a process of its own: it waits on the row lock while this test goes on
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingest", *add, "--key-file", f"{tmp_path}/mine.pem",
            "--replace", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

        async def waiting() -> bool:
            # from another connection: in a transaction pg_stat_activity is read once
            found = await watch.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'nev-ingest-keys' AND wait_event_type = 'Lock'"
            )
            return bool(found)

        await until(waiting, timeout_s=30, what="the second keys add to wait for the row lock")
        await tx.commit()
        _, err_bytes = await second.communicate()
    finally:
        await first.close()
        await watch.close()
    err = err_bytes.decode()
    assert second.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert "rotate it with --replace" not in err and "added a key meanwhile" in err, err
    fingerprint = hashlib.sha256(other.public_pem).hexdigest()[:16]
    assert f"rsa key {fingerprint} (admin)" in err, err
    # nothing of the second command stayed: the other admin's key is the active one
    (row,) = await _list(capsys)
    assert row["fingerprint"] == fingerprint
