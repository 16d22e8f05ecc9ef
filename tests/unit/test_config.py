"""Configuration: precedence, validation messages, secrets, and the generated reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import Settings
from ingest.config.docs import DOCS_PATH, render_docs, show_json, show_toml
from ingest.config.fields import MASK, mask_dsn
from ingest.config.load import load_settings
from ingest.errors import UserError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nev.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_source() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.kafka.raw_topic("vehicle") == "nev.vehicle.raw"
    assert settings.kafka.topic_partitions()["nev.battery.raw"] == 12
    assert settings.kafka.topic_partitions()["nev.charger.tcec"] == 12
    assert settings.kafka.raw_topics() == {
        "nev.vehicle.raw": "vehicle",
        "nev.charger.raw": "charger",
        "nev.charger.tcec": "charger",
        "nev.battery.raw": "battery",
    }


def test_each_source_overrides_the_one_before(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[kafka]\nclient_id = "file"\ngroup_id = "file"\npartitions = 6\n')
    env = {"NEV_KAFKA_GROUP_ID": "env", "NEV_KAFKA_PARTITIONS": "8"}
    settings = load_settings(
        config_file=path, environ=env, overrides={"kafka.partitions": 24, "kafka.client_id": None}
    )
    assert settings.kafka.client_id == "file"  # file over default; a flag not given is None
    assert settings.kafka.group_id == "env"  # env over file
    assert settings.kafka.partitions == 24  # flag over env


def test_config_file_comes_from_nev_config(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[metrics]\nport = 9100\n")
    assert load_settings(environ={"NEV_CONFIG": str(path)}).metrics.port == 9100


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"NEV_KAFKA_BOOTSRAP_SERVERS": "x"},
            "NEV_KAFKA_BOOTSRAP_SERVERS: unknown key kafka.bootsrap_servers "
            "(did you mean 'bootstrap_servers'?)",
        ),
        (
            {"NEV_METRICS_PORT": "70000"},
            "NEV_METRICS_PORT: metrics.port = 70000: expected an integer from 1 to 65535",
        ),
        (
            {"NEV_METRICS_PORT": "http"},
            "NEV_METRICS_PORT: metrics.port = 'http': expected an integer from 1 to 65535",
        ),
        (
            {"NEV_POSTGRES_SSLMODE": "on"},
            "expected one of disable, allow, prefer, require, verify-ca, verify-full",
        ),
        ({"NEV_STORAGE_RAW_FRAMES": "maybe"}, "storage.raw_frames = 'maybe': expected true or"),
        (
            {"NEV_POSTGRES_POOL_MIN_SIZE": "9"},
            "postgres.pool_min_size (9) is larger than postgres.pool_max_size (4)",
        ),
        (
            {"NEV_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "needs kafka.sasl_username and kafka.sasl_password",
        ),
        ({"NEV_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "kafka.ssl_cafile = "),
        ({"NEV_KAFKA_TOPIC_DLQ": "nev.alerts"}, "every topic needs its own name"),
        ({"NEV_KAFKA_TOPIC_TCEC": "nev.charger.raw"}, "every topic needs its own name"),
        (
            {"NEV_KAFKA_BOOTSTRAP_SERVERS": "a:9092,b:99999"},
            "kafka.bootstrap_servers = 'a:9092,b:99999': 'b:99999' is not host:port",
        ),
        ({"NEV_KAFKA_BOOTSTRAP_SERVERS": "broker"}, "'broker' is not host:port"),
        ({"NEV_KAFKA_BOOTSTRAP_SERVERS": "a:9092,"}, "'' is not host:port"),
    ],
)
def test_bad_values_name_the_key_and_what_it_accepts(env: dict[str, str], message: str) -> None:
    with pytest.raises(UserError) as caught:
        load_settings(environ=env)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert caught.value.exit_code == 2


def test_a_refused_dsn_is_not_echoed() -> None:
    # A key=value DSN may hold a password: the error says what is expected, not what was given.
    with pytest.raises(UserError, match=r"postgres\.dsn: expected a postgresql://") as caught:
        load_settings(environ={"NEV_POSTGRES_DSN": "host=h password=s3cr3t"})
    assert "s3cr" not in str(caught.value)


def test_toml_errors_say_where(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[kafka]\npartitions = true\n")
    with pytest.raises(UserError, match=r"nev.toml \[kafka\] partitions: kafka.partitions = True"):
        load_settings(config_file=path, environ={})
    path.write_text("[kafak]\n")
    with pytest.raises(UserError, match=r"unknown section \[kafak\] \(did you mean 'kafka'\?\)"):
        load_settings(config_file=path, environ={})
    path.write_text("[kafka\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_settings(config_file=path, environ={})
    with pytest.raises(UserError, match="does not exist"):
        load_settings(config_file=tmp_path / "missing.toml", environ={})


def test_variables_of_other_tools_are_ignored() -> None:
    # NEV_TEST_* belong to the test services; a section-less NEV_ variable is not ours.
    env = {"NEV_TEST_TIMESCALE_DSN": "postgresql://x", "NEV_SOMETHING": "1"}
    assert load_settings(environ=env) == Settings()


def test_types_are_converted_from_text() -> None:
    env = {
        "NEV_STORAGE_RAW_FRAMES": "yes",
        "NEV_PIPELINE_SHUTDOWN_TIMEOUT_S": "2.5",
        "NEV_PIPELINE_BATCH_MAX_FRAMES": "10_000",
    }
    settings = load_settings(environ=env)
    assert settings.storage.raw_frames is True
    assert settings.pipeline.shutdown_timeout_s == 2.5
    assert settings.pipeline.batch_max_frames == 10000


def test_secret_from_file_is_read_and_masked(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("s3cret-from-file\n")
    env = {
        "NEV_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "NEV_KAFKA_SASL_USERNAME": "ingest",
        "NEV_KAFKA_SASL_PASSWORD_FILE": str(secret),
        "NEV_POSTGRES_DSN": "postgresql://nev:dsn-secret@db:5432/nev",
        "NEV_POSTGRES_PASSWORD": "pg-secret",
    }
    settings = load_settings(environ=env)
    assert settings.kafka.sasl_password == "s3cret-from-file"
    for text in (show_toml(settings), show_json(settings), repr(settings)):
        assert "s3cret-from-file" not in text
        assert "dsn-secret" not in text
        assert "pg-secret" not in text
        assert MASK in text
    assert "postgresql://nev:********@db:5432/nev" in show_toml(settings)


def test_file_companion_only_for_secrets(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"kafka\.client_id is not a secret"):
        load_settings(environ={"NEV_KAFKA_CLIENT_ID_FILE": str(tmp_path)})
    with pytest.raises(UserError, match="cannot read secret file"):
        load_settings(environ={"NEV_POSTGRES_PASSWORD_FILE": str(tmp_path / "nope")})


def test_mask_dsn() -> None:
    assert mask_dsn("postgresql://u:p@h:1/db?sslmode=require") == (
        "postgresql://u:********@h:1/db?sslmode=require"
    )
    assert mask_dsn("postgresql://u@h/db") == "postgresql://u@h/db"
    # libpq also takes the password (and the TLS key's) as URI query parameters.
    assert mask_dsn("postgresql://u@h/db?sslmode=require&password=s3cr3t&sslpassword=k") == (
        "postgresql://u@h/db?sslmode=require&password=********&sslpassword=********"
    )
    assert mask_dsn("postgresql://u:p@h/db?Password=s3cr3t") == (
        "postgresql://u:********@h/db?Password=********"
    )


def test_show_toml_round_trips_through_the_loader(tmp_path: Path) -> None:
    settings = load_settings(environ={"NEV_METRICS_PORT": "9999", "NEV_LOG_FORMAT": "text"})
    path = _toml(tmp_path, show_toml(settings))
    assert load_settings(config_file=path, environ={}) == settings


def test_committed_reference_is_up_to_date() -> None:
    committed = (ROOT / DOCS_PATH).read_text(encoding="utf-8")
    assert committed == render_docs(), (
        "docs/configuration.md is stale: run `nev-ingest config docs > docs/configuration.md`"
    )


def test_reference_documents_every_key() -> None:
    docs = render_docs()
    for line in show_toml(Settings()).splitlines():
        if " = " in line:
            key = line.split(" = ", 1)[0]
            assert f"| `{key}`" in docs
