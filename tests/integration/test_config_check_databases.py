"""``nev-ingest config check`` connects to every database the service and the query CLI use:
the shards (not ``postgres.dsn`` when shards are set), ``storage.query_dsn`` and each replica,
naming the setting of the one that does not answer. Against the real PostgreSQL."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from ingest.cli import main
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration


def _nobody() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://nev@127.0.0.1:{port}/nev"


def test_a_good_shard_passes_though_postgres_dsn_is_unused_and_down(
    postgres_dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEV_POSTGRES_DSN", _nobody())
    monkeypatch.setenv("NEV_STORAGE_SHARDS", postgres_dsn)
    monkeypatch.delenv("NEV_STORAGE_QUERY_DSN", raising=False)
    monkeypatch.delenv("NEV_STORAGE_REPLICAS", raising=False)
    assert main(["config", "check", "--skip", "kafka"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("postgres (storage.shards[0]): server ")
    assert out[-1] == "configuration ok"


@pytest.mark.parametrize(
    "option", ["ssl_min_protocol_version=SSLv3", "gsslib=nope", "sslnegotiation=direct"]
)
def test_a_url_option_the_driver_refuses_is_one_line_naming_the_key(
    option: str,
    postgres_dsn: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # asyncpg refuses these before connecting (ClientConfigurationError); `config check` and
    # `run` (the same check_postgres) ended in its traceback.
    monkeypatch.setenv("NEV_POSTGRES_DSN", f"{postgres_dsn}?{option}")
    monkeypatch.delenv("NEV_STORAGE_SHARDS", raising=False)
    monkeypatch.delenv("NEV_STORAGE_QUERY_DSN", raising=False)
    monkeypatch.delenv("NEV_STORAGE_REPLICAS", raising=False)
    assert main(["config", "check", "--skip", "kafka"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nev-ingest: error: postgres.dsn = ") and err.count("\n") == 1, err
    assert "the driver refuses the URL" in err and "NEV_POSTGRES_DSN" in err


@pytest.mark.parametrize("command", [["query", "latest", "LSVAU2180N2183294"], ["alerts", "list"]])
def test_a_url_option_libpq_does_not_know_is_one_line(
    command: list[str], postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # psycopg (the query and alerts CLIs) refuses it with a ProgrammingError, which the CLIs
    # did not catch (asyncpg passes it to the server, which names it).
    assert main([*command, "--dsn", f"{postgres_dsn}?bogus_option=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nev-ingest: error: cannot connect to the database: ")
    assert "bogus_option" in err and err.count("\n") == 1, err


def test_a_replica_that_does_not_answer_is_named(
    postgres_dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    down = _nobody()
    monkeypatch.setenv("NEV_POSTGRES_DSN", postgres_dsn)
    monkeypatch.delenv("NEV_STORAGE_SHARDS", raising=False)
    # a database of its own (the settings refuse a query database that is also a shard)
    query = urlsplit(postgres_dsn)._replace(path="/template1").geturl()
    monkeypatch.setenv("NEV_STORAGE_QUERY_DSN", query)
    monkeypatch.setenv("NEV_STORAGE_REPLICAS", down)
    assert main(["config", "check", "--skip", "kafka"]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith(f"nev-ingest: error: storage.replicas[0] = {down}: cannot connect")
    assert "fix storage.replicas[0]" in err
    assert captured.out == ""  # the lines of the databases that answered come only with "ok"


async def test_the_service_starts_on_its_shards_while_postgres_dsn_is_down(
    env: PipelineEnv,
) -> None:
    # run's preflight checks the databases it writes: with storage.shards set, postgres.dsn is
    # none of them, and a stale one must not keep the service from starting.
    messages = recent_fleet(5, 1)
    async with ps.serving(
        env, "shards-only", NEV_STORAGE_SHARDS=env.dsn, NEV_POSTGRES_DSN=_nobody()
    ) as svc:
        await ps.produce_and_store(env, messages, timeout_s=60)
        assert await ps.stored_rows(env.dsn) == ps.Expected.of(messages).rows
        assert "postgres (storage.shards[0]): server" in svc.log.read_text()
