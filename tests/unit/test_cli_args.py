"""Argument types and setting ranges: what each accepts, and the one line it says otherwise."""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from devtools.settings import DEV_SECTIONS, load_dev_settings
from devtools.settings import render_docs as render_dev_docs
from ingest.cli.args import (
    DurationTooLong,
    OneLineParser,
    duration,
    float_range,
    int_range,
    kafka_topic,
    login_name,
    parse_duration,
    sql_name,
    text,
    time_or_ago,
)
from ingest.config.bounds import SQL_IDENTIFIER
from ingest.config.docs import render_docs
from ingest.config.fields import spec_of
from ingest.config.load import load_settings
from ingest.errors import UserError
from storage.params import check_identifier

pytestmark = pytest.mark.unit


def _rejects(convert: typing.Callable[[str], object], value: str) -> str:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        convert(value)
    return str(info.value)


def test_int_range_is_inclusive_and_says_its_bounds() -> None:
    limit = int_range(1, 10_000_000)
    assert limit("1") == 1
    assert limit("10_000_000") == 10_000_000
    for bad in ("0", "-1", "10000001", "99999999999999999999", "1.5", "ten", ""):
        assert _rejects(limit, bad) == f"expected an integer from 1 to 10000000, got {bad!r}"


def test_float_range_rejects_nan_infinity_and_an_open_bound() -> None:
    share = float_range(0, 1)
    assert share("0") == 0.0
    assert share("1") == 1.0
    for bad in ("5", "-1", "nan", "inf", "-inf", "x"):
        assert "expected a number from 0 to 1" in _rejects(share, bad)
    positive = float_range(0, 600, low_open=True)
    assert positive("0.001") == 0.001
    assert _rejects(positive, "0") == "expected a number > 0 and <= 600, got '0'"


@pytest.mark.parametrize("bad", ["99999999999999d", "10000000000000000000000d", "1" * 400 + "s"])
def test_a_duration_too_long_for_timedelta_is_a_value_error_not_an_overflow(bad: str) -> None:
    with pytest.raises(DurationTooLong):
        parse_duration(bad)


def test_duration_range() -> None:
    every = duration(timedelta(seconds=1), timedelta(days=366))
    assert every("5m") == timedelta(minutes=5)
    assert every("366d") == timedelta(days=366)
    for bad in ("0m", "0.5s", "367d", "99999999999999d", "5 weeks"):
        message = _rejects(every, bad)
        assert message.startswith("expected a duration from 1s to 366d (like 30s, 5m, 2h, 7d)")


def test_a_time_or_a_duration_ago() -> None:
    # dlq --since and query --from share it: the zone applies only to times without an offset,
    # and a duration past the floor (however long) lands just before it, for the caller to
    # clamp (dlq) or refuse (query).
    tz = timezone(timedelta(hours=8))
    now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    floor = datetime(1970, 1, 1, tzinfo=UTC)
    assert time_or_ago("2h", tz, now, floor) == datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    assert time_or_ago(" 2026-12-07T08:00 ", tz, now, floor) == now - timedelta(hours=8)
    assert time_or_ago("2026-12-07T08:00Z", tz, now, floor) == now
    for far in ("30000d", "99999999999999d"):
        assert time_or_ago(far, tz, now, floor) == floor - timedelta(microseconds=1)
    with pytest.raises(ValueError, match="duration ago"):
        time_or_ago("yesterday", tz, now, floor)


def test_text_refuses_what_no_driver_can_send() -> None:
    vin = text(64)
    assert vin("LNEVSIM0000000001") == "LNEVSIM0000000001"
    # A byte that is not UTF-8 in argv arrives as a lone surrogate (surrogateescape).
    for bad in ("\udcff", "", "a\x00b", "a\nb", "x" * 65):
        assert _rejects(vin, bad).startswith("expected 1 to 64 printable characters")


def test_names_match_kafka_and_sql_rules() -> None:
    assert kafka_topic("nev.vehicle-raw_2") == "nev.vehicle-raw_2"
    for bad in ("bad topic!", ".", "..", "", "x" * 250, "nev/raw"):
        assert "expected a Kafka topic name" in _rejects(kafka_topic, bad)
    assert sql_name("nev_2") == "nev_2"
    assert "expected a plain SQL name" in _rejects(sql_name, "nev; drop table x")
    for reserved in ("user", "all", "pg_catalog", "current_user"):
        assert "not a reserved SQL word" in _rejects(sql_name, reserved)
    assert sql_name("public") == "public"  # a schema may be called so, a login not
    assert login_name("nev_oem") == "nev_oem"
    assert "nor public or none" in _rejects(login_name, "public")
    assert "nor public or none" in _rejects(login_name, "none")
    assert "not a reserved SQL word" in _rejects(login_name, "pg_monitor")
    assert "not a reserved SQL word" in _rejects(sql_name, "system_user")  # PostgreSQL 16+


# user, select: reserved words; pg_x: PostgreSQL's own prefix (CREATE SCHEMA and CREATE ROLE
# refuse each of them unquoted); users_x and pgx are plain names.
NAMES = ["nev", "_x", "a" * 63, "Nev", "1nev", "a" * 64, "nev; x", "", "user", "select", "pg_x"]


@pytest.mark.parametrize("name", [*NAMES, "users_x", "pgx", "public"])
def test_the_schema_pattern_agrees_with_the_storage_layer(name: str) -> None:
    try:
        check_identifier(name)
        storage_ok = True
    except ValueError:
        storage_ok = False
    assert SQL_IDENTIFIER.matches(name) == storage_ok


def test_parser_errors_are_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    parser = OneLineParser(prog="nev-ingest x")
    parser.add_argument("--limit", type=int_range(1, 5))
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--limit", "9"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "nev-ingest x: error: argument --limit: expected an integer from 1 to 5, got '9' "
        "(see nev-ingest x --help)\n"
    )


def _numeric_fields() -> list[tuple[str, dataclasses.Field[typing.Any]]]:
    out = []
    for name, cls in DEV_SECTIONS.items():  # the service's sections and the dev tools' own
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            if hints[field.name] in (int, float):
                out.append((f"{name}.{field.name}", field))
    return out


@pytest.mark.parametrize(("key", "field"), _numeric_fields(), ids=lambda v: str(v))
def test_every_numeric_setting_has_a_documented_range(
    key: str, field: dataclasses.Field[typing.Any]
) -> None:
    spec = spec_of(field)
    assert spec.minimum is not None and spec.maximum is not None, f"{key}: give minimum/maximum"
    default: float = field.default  # type: ignore[assignment]
    assert spec.minimum <= default <= spec.maximum
    section, name = key.split(".")
    env = f"`NEV_{section.upper()}_{name.upper()}`"
    docs = render_docs() + render_dev_docs()
    row = next(line for line in docs.splitlines() if env in line)
    assert "–" in row  # the docs show "integer LOW–HIGH"
    too_big = spec.maximum * 10 + 1 if math.isfinite(spec.maximum) else 1e308
    value = str(int(too_big)) if isinstance(default, int) else repr(too_big)
    with pytest.raises(UserError, match=rf"^command line: {key} = .*: expected .* to "):
        load_dev_settings(environ={}, overrides={key: value})


def test_absurd_workers_are_refused() -> None:
    with pytest.raises(UserError) as info:
        load_settings(environ={}, overrides={"pipeline.workers": "99999999999999999999999"})
    assert str(info.value) == (
        "command line: pipeline.workers = 99999999999999999999999: "
        "expected an integer from 1 to 256"
    )


def test_oauthbearer_is_not_offered() -> None:
    # aiokafka needs a token provider object for OAUTHBEARER, which no setting can give.
    with pytest.raises(UserError, match=r"kafka.sasl_mechanism = 'OAUTHBEARER': expected one of"):
        load_settings(
            environ={"NEV_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            overrides={"kafka.sasl_mechanism": "OAUTHBEARER"},
        )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("storage.schema", "nev; drop table x", "expected a plain SQL name"),
        ("kafka.topic_dlq", "dead letters", "expected a Kafka topic name"),
    ],
)
def test_names_in_settings_are_checked(key: str, value: str, expected: str) -> None:
    with pytest.raises(UserError, match=expected):
        load_settings(environ={}, overrides={key: value})


def test_config_file_not_utf8_or_nested_too_deeply(tmp_path: Path) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[kafka]\nclient_id = "caf\xe9"\n')
    with pytest.raises(UserError, match=r"not UTF-8 text \(byte 0xe9 at offset 24\)"):
        load_settings(config_file=latin, environ={})
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(UserError, match="nested too deeply"):
        load_settings(config_file=deep, environ={})


def test_text_that_is_not_utf8_is_refused_without_echoing_it() -> None:
    # Bytes that are not UTF-8 in the environment arrive as lone surrogates.
    dsn = "postgresql://nev:hunter2\udcff@db/nev"
    with pytest.raises(UserError) as info:
        load_settings(environ={"NEV_POSTGRES_DSN": dsn})
    assert str(info.value) == "NEV_POSTGRES_DSN: postgres.dsn: not UTF-8 text; give it in UTF-8"
