"""``nev-ingest config check`` connects to every database the service and the query CLI use:
the shards (not ``postgres.dsn`` when shards are set), ``storage.query_dsn`` and each replica,
naming the setting of the one that does not answer. Against the real PostgreSQL."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
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


class _Kerberos(socketserver.BaseRequestHandler):
    """Answers a startup message with AuthenticationKerberosV5, which asyncpg does not
    implement (no real PostgreSQL here: it plays a server configured so)."""

    def handle(self) -> None:
        stream = self.request.makefile("rb")
        while head := stream.read(4):
            body = stream.read(struct.unpack("!I", head)[0] - 4)
            if struct.unpack("!I", body[:4])[0] in (80877103, 80877104):  # SSL / GSS request
                self.request.sendall(b"N")
                continue
            self.request.sendall(b"R" + struct.pack("!II", 8, 2))
        # read returned b"": the client hung up


@pytest.fixture
def kerberos_server() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Kerberos)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"postgresql://u@127.0.0.1:{server.server_address[1]}/db"
    finally:
        server.shutdown()
        server.server_close()


def test_a_driver_error_that_is_not_the_url_does_not_blame_the_url(
    kerberos_server: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every asyncpg InterfaceError was reported as "the driver refuses the URL ...; fix or
    # remove that option of the URL's query", for a URL with no query too.
    monkeypatch.setenv("NEV_POSTGRES_DSN", kerberos_server)
    monkeypatch.delenv("NEV_STORAGE_SHARDS", raising=False)
    monkeypatch.delenv("NEV_STORAGE_QUERY_DSN", raising=False)
    monkeypatch.delenv("NEV_STORAGE_REPLICAS", raising=False)
    assert main(["config", "check", "--skip", "kafka"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nev-ingest: error: cannot connect to postgres.dsn = ")
    assert "kerberosv5" in err and "pg_hba.conf" in err and err.count("\n") == 1, err
    assert "refuses the URL" not in err


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
