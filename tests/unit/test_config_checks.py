"""Values the loader refuses beyond a key's type, range and pattern: one line, exit 2, naming
the key (and never echoing a password)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from ingest.config.load import load_settings
from ingest.errors import UserError
from ingest.gateway.checks import check_settings
from ingest.wiring import postgres_dsn

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


_PW = "s3cr3t"


@pytest.mark.parametrize(
    "key", ["postgres.dsn", "storage.shards", "storage.query_dsn", "storage.replicas"]
)
@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        (f"postgresql://u:{_PW}@h:abc/db", "a port in the URL is not a number 1..65535"),
        (f"postgresql://u:{_PW}@h:70000/db", "a port in the URL is not a number 1..65535"),
        (f"postgresql://u:{_PW}@h:0/db", "a port in the URL is not a number 1..65535"),
        (f"postgresql://u:{_PW}@[::1]:x/db", "a port in the URL is not a number 1..65535"),
        # An unencoded / in the password: what follows looks like the host and the port.
        (f"postgresql://u:{_PW}/x@h/db", "a port in the URL is not a number 1..65535"),
        (f"postgresql://u:{_PW}@[::1/db", "the URL's host is not valid"),
        (f"postgresql://u:{_PW}@::1]/db", "the URL's host is not valid"),
        (f"postgresql://u:{_PW}@[h]/db", "the URL's host is not valid"),
        (f"postgresql://u:{_PW}@h/db?sslmode=bogus", "sslmode in the URL must be one of"),
        (f"postgresql://u:{_PW}@h/db?port=x", "port in the URL's query is not a number"),
        # asyncpg refused these only when `run` or `config check` connected: a traceback.
        (
            f"postgresql://u:{_PW}@h/db?target_session_attrs=bogus",
            "target_session_attrs in the URL must be one of any, read-write",
        ),
        (f"postgresql://u:{_PW}@h/db?sslnegotiation=tls", "sslnegotiation in the URL must be"),
        # Empty: asyncpg's default, but libpq (query, alerts) refuses it when it connects.
        (f"postgresql://u:{_PW}@h/db?target_session_attrs=", "target_session_attrs in the URL"),
        (f"postgresql://u:{_PW}@h/db?sslnegotiation=", "sslnegotiation in the URL must be"),
        # A repeated key: both drivers take the last value.
        (
            f"postgresql://u:{_PW}@h/db?target_session_attrs=any&target_session_attrs=bogus",
            "target_session_attrs in the URL must be one of",
        ),
        (f"postgresql://u:{_PW}@h/db?sslmode=bogus&sslmode=", "sslmode in the URL must be one of"),
        # libpq refuses a parameter without =, asyncpg drops it: here the rest of a second URL
        # whose password holds an unencoded ? (the first URL's hosts "h" and "u:5432").
        (f"postgresql://u@h,u:5432?{_PW}@h1/db", "a parameter in the URL's query has no ="),
        (f"postgresql://u@h/db?sslmode=require&{_PW}", "a parameter in the URL's query has no ="),
        # A ? before the @: libpq reads the user and password up to the @ and reaches db0,
        # asyncpg ends the host part at the ? (host nev, port 2024) and drops the rest into
        # a query parameter; with an = after the ? the check above let it load.
        (f"postgresql://nev:2024?Zq={_PW}@db0/nev", "a ? comes before the URL's @"),
        (f"postgresql://nev:?k={_PW}@db0/nev", "a ? comes before the URL's @"),
        (f"postgresql://nev?x={_PW}@db0:5432/nev", "a ? comes before the URL's @"),
        (f"postgresql://db0?application_name={_PW}@b", "a ? comes before the URL's @"),
        # A second = in a query parameter: libpq refuses it, asyncpg keeps it in the value.
        (f"postgresql://u:{_PW}@h/db?application_name=a=b", "a value in the URL's query holds"),
        (f"postgresql://u:{_PW}@h/db?options=-csearch_path=nev", "write it as %3D"),
        # An unencoded @ in a password: both drivers read "ss@db0" as a host.
        (f"postgresql://u:p@{_PW}@db0/nev", "the URL's host part holds a second @"),
        (f"postgresql://u:{_PW}@ss@[::1]:5432,[::2]:5433/nev", "holds a second @"),
        # Given before the ? and in the query: libpq takes the query's, asyncpg the other
        # (the writer on db0, the query CLI and the alerts on db1).
        (f"postgresql://u:{_PW}@db0/nev?host=db1", "host is given in the URL's query and also"),
        (f"postgresql://u:{_PW}@db0/nev?hostaddr=10.0.0.1", "hostaddr is given in the URL's"),
        (f"postgresql://u:{_PW}@db0/nev?port=5433", "port is given in the URL's query and also"),
        (f"postgresql://u:{_PW}@db0:5433/nev?port=5433", "port is given in the URL's query"),
        (f"postgresql://u:{_PW}@db0/nev?dbname=other", "dbname is given in the URL's query"),
        (f"postgresql://u:{_PW}@db0/?dbname=other", "dbname is given in the URL's query"),
        (f"postgresql://u:{_PW}@db0/nev?user=other", "user is given in the URL's query"),
        (f"postgresql://u:x@db0/nev?password={_PW}", "password is given in the URL's query"),
    ],
)
def test_malformed_database_urls_are_refused(key: str, dsn: str, message: str) -> None:
    variable = "NEV_" + key.upper().replace(".", "_")
    text = _refused({variable: dsn})
    assert text.startswith(key), text
    assert message in text
    assert _PW not in text


def test_each_host_of_a_multi_host_url_is_checked() -> None:
    # storage.shards from the environment is comma-separated, so postgres.dsn alone here.
    text = _refused({"NEV_POSTGRES_DSN": f"postgresql://u:{_PW}@a:5432,b:x/db"})
    assert text.startswith("postgres.dsn: a port in the URL is not a number 1..65535")


def test_malformed_replica_url_is_refused() -> None:
    env = {"NEV_STORAGE_REPLICAS": f"postgresql://u:{_PW}@h:abc/db"}
    text = _refused(env)
    assert text.startswith("storage.replicas[0]: a port in the URL is not a number")
    assert _PW not in text


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:p@h:5432/db?sslmode=verify-full",
        "postgres://u@[::1]:5432/db",
        "postgresql://u@h1:5432,h2:5433/db",
        "postgresql:///nev?host=/run/postgresql&port=5433",
        "postgresql://u@h/db?sslmode=",
        "postgresql://u:p%2Fq%40r@h/db",
        # an empty port is the default port to libpq and asyncpg alike
        "postgresql://u@h:/db",
        "postgresql://u@h1:,h2:5433/db",
        "postgresql://u@/db?port=5432,",
        "postgresql://u@/db?host=h1,h2&port=5432,5433&dbname=db&user=u",
        "postgresql://u:p%40q@h/db?password=p@q&user=u&dbname=db",  # the same values
        "postgresql://u@h1,h2/db?target_session_attrs=read-write",
        # a repeated key counts with its last value, to libpq and asyncpg alike
        "postgresql://u@h/db?target_session_attrs=bogus&target_session_attrs=any",
        "postgresql://u@h/db?sslnegotiation=tls&sslnegotiation=postgres",
        "postgresql://u@h/db?sslmode=bogus&sslmode=prefer",
    ],
)
def test_well_formed_database_urls_are_accepted(dsn: str) -> None:
    assert load_settings(environ={"NEV_POSTGRES_DSN": dsn}).postgres.dsn == dsn


@pytest.mark.parametrize("key", ["group_id", "client_id"])
@pytest.mark.parametrize("value", ["", " ", " nev"])
def test_empty_kafka_group_or_client_id_is_refused(key: str, value: str) -> None:
    text = _refused({f"NEV_KAFKA_{key.upper()}": value})
    assert f"kafka.{key} = {value!r}: expected a non-empty name" in text


@pytest.mark.parametrize(("lag", "stall"), [("60", "60"), ("300", "100"), ("30.5", "60")])
def test_lag_interval_not_well_under_stall_after_is_refused(lag: str, stall: str) -> None:
    env = {"NEV_PIPELINE_LAG_INTERVAL_S": lag, "NEV_PIPELINE_STALL_AFTER_S": stall}
    text = _refused(env)
    assert text.startswith(f"pipeline.lag_interval_s ({lag}) must be at most half of ")
    assert f"pipeline.stall_after_s ({stall})" in text


def test_lag_interval_half_of_stall_after_is_accepted() -> None:
    env = {"NEV_PIPELINE_LAG_INTERVAL_S": "30", "NEV_PIPELINE_STALL_AFTER_S": "60"}
    assert load_settings(environ=env).pipeline.lag_interval_s == 30


def test_tls_paths_with_a_tilde_are_stored_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ssl and libpq open "~/ca.pem" literally: the settings must hold the real path.
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ca.pem").write_text("-")
    keys = ["KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"]
    keys += ["POSTGRES_SSLROOTCERT", "POSTGRES_SSLCERT", "POSTGRES_SSLKEY"]
    settings = load_settings(environ={f"NEV_{key}": "~/ca.pem" for key in keys})
    expanded = str(tmp_path / "ca.pem")
    assert settings.kafka.ssl_cafile == settings.kafka.ssl_keyfile == expanded
    assert settings.postgres.sslrootcert == settings.postgres.sslkey == expanded
    assert f"sslrootcert={quote(expanded, safe='')}" in postgres_dsn(settings.postgres)


def _pem(tmp_path: Path) -> str:
    path = tmp_path / "tls.pem"
    path.write_text("-")
    return str(path)


@pytest.mark.parametrize(
    "keys", [["CAFILE"], ["CERTFILE"], ["KEYFILE"], ["CAFILE", "CERTFILE"], ["CAFILE", "KEYFILE"]]
)
def test_gateway_tls_files_come_as_certificate_and_key(tmp_path: Path, keys: list[str]) -> None:
    # tls_cafile alone used to start plaintext listeners: mutual TLS silently off.
    text = _refused({f"NEV_GATEWAY_TLS_{key}": _pem(tmp_path) for key in keys})
    assert text.startswith("gateway.tls_certfile and gateway.tls_keyfile go together")


@pytest.mark.parametrize("key", ["tls_certfile", "tls_keyfile", "tls_cafile"])
def test_gateway_tls_files_must_exist_for_the_gateway_only(tmp_path: Path, key: str) -> None:
    # A worker or operator host sharing the configuration need not hold the gateway's key
    env = {f"NEV_GATEWAY_{k.upper()}": _pem(tmp_path) for k in ("tls_certfile", "tls_keyfile")}
    env[f"NEV_GATEWAY_{key.upper()}"] = str(tmp_path / "missing.pem")
    settings = load_settings(environ=env)
    with pytest.raises(UserError, match=r"gateway TLS files cannot be loaded .*fix gateway\.tls_"):
        check_settings(settings)


def test_gateway_tls_certificate_key_and_ca_are_accepted(tmp_path: Path) -> None:
    keys = ("TLS_CERTFILE", "TLS_KEYFILE", "TLS_CAFILE")
    settings = load_settings(environ={f"NEV_GATEWAY_{key}": _pem(tmp_path) for key in keys})
    assert settings.gateway.tls_cafile == _pem(tmp_path)


def test_secret_file_not_utf8_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "pg-password"
    secret.write_bytes(b"pass\xffword\n")
    text = _refused({"NEV_POSTGRES_PASSWORD_FILE": str(secret)})
    assert text.startswith(f"NEV_POSTGRES_PASSWORD_FILE: secret file {secret}: not UTF-8 text")
    assert "word" not in text.replace("password", "")


def test_toml_integer_beyond_any_float_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nev.toml"
    path.write_text("[pipeline]\nshutdown_timeout_s = 1" + "0" * 400 + "\n")
    with pytest.raises(UserError) as caught:
        load_settings(config_file=path, environ={})
    text = str(caught.value)
    assert "pipeline.shutdown_timeout_s = 1000" in text
    assert ": expected a number from 0 to 3600" in text
    assert "\n" not in text


def test_multiproc_dir_naming_a_file_is_refused(tmp_path: Path) -> None:
    from ingest.cli.run import run_service

    file = tmp_path / "metrics"
    file.write_text("not a directory")
    settings = load_settings(environ={"NEV_METRICS_MULTIPROC_DIR": str(file)})
    with pytest.raises(UserError) as caught:
        run_service(settings)
    assert str(caught.value).startswith(f"metrics.multiproc_dir = {file}: cannot use it")
    assert file.read_text() == "not a directory"
