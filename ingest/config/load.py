"""Build ``Settings`` from defaults < TOML file < ``NEV_<SECTION>_<KEY>`` < command-line flags.

Every failure is a ``UserError`` of one line that names the key, where it came from and what it
accepts, so that ``nev-ingest`` exits 2 before doing anything with a bad configuration.

Typical use in a subcommand::

    add_config_arguments(parser)                      # --config FILE, --set SECTION.KEY=VALUE
    settings = settings_from_args(args, {"pipeline.workers": args.workers})

The reading is generic over a ``Schema`` (a ``Settings`` class and its sections), so that the dev
tools load their larger settings (``devtools.settings``) through the same code; the service's
schema skips the dev tools' tables of a shared TOML file.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from ingest.config.checks import check_database_url, check_listen, check_stall_after
from ingest.config.fields import FieldSpec, Section, show_number, spec_of
from ingest.config.kafka_limits import check_settings as check_kafka_limits
from ingest.config.kafka_settings import RAW_SOURCES
from ingest.config.nat64 import nat64_networks
from ingest.config.settings import DEV_TOOL_SECTIONS, SECTIONS, Settings
from ingest.config.url_list import check_single_url, no_scheme, split_urls
from ingest.errors import UserError, not_utf8

ENV_PREFIX: Final = "NEV_"
ENV_CONFIG: Final = "NEV_CONFIG"
FILE_SUFFIX: Final = "_file"
_N = TypeVar("_N", int, float)

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

S = TypeVar("S", bound=Settings)
# Raw values by section and key, each with where it came from (for the error messages).
_Raw = dict[str, dict[str, tuple[object, str]]]


@dataclass(frozen=True, slots=True)
class Schema(Generic[S]):
    """What one program reads: its settings class, which has one field per section of
    ``sections``, and the TOML tables of other programs that a shared file may hold."""

    settings: type[S]
    sections: Mapping[str, type[Section]]
    skipped: frozenset[str] = frozenset()


SERVICE: Final = Schema(Settings, SECTIONS, DEV_TOOL_SECTIONS)


def load_settings(
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Read the service's configuration; ``environ`` defaults to ``os.environ`` (pass a dict
    in tests).

    ``overrides`` maps ``"section.key"`` to a value from a command-line flag; ``None`` values
    (flags not given) are ignored. ``config_file`` falls back to ``$NEV_CONFIG``.
    """
    return load(SERVICE, config_file=config_file, environ=environ, overrides=overrides)


def load(
    schema: Schema[S],
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> S:
    """``load_settings`` for any schema (the dev tools pass theirs)."""
    env = os.environ if environ is None else environ
    raw: _Raw = {name: {} for name in schema.sections}

    path = config_file if config_file is not None else env.get(ENV_CONFIG) or None
    if path is not None:
        _read_toml(schema, Path(path), raw)
    _read_env(schema, env, raw)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, key = _split_dotted(schema, dotted, "command line")
            _put(schema, raw, section, key, value, "command line")

    # Typed by the schema: one section object per field of its settings class.
    sections: dict[str, Any] = {n: _build_section(c, raw[n], n) for n, c in schema.sections.items()}
    settings = schema.settings(**sections)
    _check_consistency(settings)
    return settings


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and ``--set SECTION.KEY=VALUE`` to a subcommand."""
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--config",
        metavar="FILE",
        help=f"TOML configuration file (default: ${ENV_CONFIG}, else built-in defaults)",
    )
    group.add_argument(
        "--set",
        dest="config_set",
        metavar="SECTION.KEY=VALUE",
        action="append",
        default=[],
        help="override one key, e.g. --set kafka.bootstrap_servers=host:9092 (repeatable)",
    )


def settings_from_args(
    args: argparse.Namespace, flags: Mapping[str, object] | None = None
) -> Settings:
    """Settings for a subcommand: its ``--config``/``--set`` plus its own flags (``flags``)."""
    return load_from_args(SERVICE, args, flags)


def load_from_args(
    schema: Schema[S], args: argparse.Namespace, flags: Mapping[str, object] | None = None
) -> S:
    """``settings_from_args`` for any schema (the dev tools pass theirs)."""
    overrides: dict[str, object] = {}
    for item in getattr(args, "config_set", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item}: expected SECTION.KEY=VALUE")
        overrides[key.strip()] = value
    # A flag not given is None: it must not erase the same key's --set (a dedicated flag that
    # was given wins over --set).
    overrides.update((key, value) for key, value in (flags or {}).items() if value is not None)
    return load(schema, config_file=getattr(args, "config", None), overrides=overrides)


# --- sources -------------------------------------------------------------------------------


def _read_toml(schema: Schema[Any], path: Path, raw: _Raw) -> None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"config file {path} does not exist (from --config or ${ENV_CONFIG})"
        ) from None
    except OSError as exc:
        raise UserError(f"config file {path}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise not_utf8(f"config file {path}", exc) from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path}: not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise UserError(f"config file {path}: arrays or tables nested too deeply") from None
    for section, table in data.items():
        if section in schema.skipped:
            continue  # another program's table in a shared file (it checks it itself)
        if section not in schema.sections:
            known = schema.sections
            raise UserError(f"{path}: unknown section [{section}]{_suggest(section, known)}")
        if not isinstance(table, dict):
            raise UserError(f"{path}: {section} must be a table ([{section}])")
        for key, value in table.items():
            _put(schema, raw, section, key, value, f"{path} [{section}] {key}")


def _read_env(schema: Schema[Any], env: Mapping[str, str], raw: _Raw) -> None:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        # Only variables of a known section are ours: NEV_TEST_* (test services) and variables
        # of other tools (NEV_DEVSTACK_* for the service) may share the prefix.
        if section in schema.sections and key:
            _put(schema, raw, section, key, value, name)


def _split_dotted(schema: Schema[Any], dotted: str, origin: str) -> tuple[str, str]:
    section, sep, key = dotted.partition(".")
    if not sep or section not in schema.sections:
        known = ", ".join(schema.sections)
        raise UserError(f"{origin}: {dotted!r} is not SECTION.KEY (sections: {known})")
    return section, key


def _put(
    schema: Schema[Any], raw: _Raw, section: str, key: str, value: object, origin: str
) -> None:
    fields = {f.name: f for f in dataclasses.fields(schema.sections[section])}  # type: ignore[arg-type]
    if key.endswith(FILE_SUFFIX) and key[: -len(FILE_SUFFIX)] in fields:
        base = key[: -len(FILE_SUFFIX)]
        if not spec_of(fields[base]).is_secret:
            raise UserError(f"{origin}: {section}.{base} is not a secret; set it directly")
        raw[section][base] = (_read_secret_file(value, origin), origin)
        return
    if key not in fields:
        raise UserError(
            f"{origin}: unknown key {section}.{key}{_suggest(key, fields)}"
            f" (keys of [{section}]: {', '.join(fields)})"
        )
    raw[section][key] = (value, origin)


def _read_secret_file(value: object, origin: str) -> str:
    if not isinstance(value, str) or not value:
        raise UserError(f"{origin}: expected the path of a file holding the secret")
    try:
        return Path(value).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(f"{origin}: cannot read secret file {value}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise not_utf8(f"{origin}: secret file {value}", exc) from None


def _suggest(word: str, candidates: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- conversion and validation -------------------------------------------------------------


def _build_section(
    cls: type[Section], values: Mapping[str, tuple[object, str]], section: str
) -> Section:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in values:
            value, origin = values[field.name]
            where = f"{origin}: {section}.{field.name}"
            kwargs[field.name] = _convert(value, hints[field.name], spec_of(field), where)
    return cls(**kwargs)


def _convert(value: object, hint: object, spec: FieldSpec, where: str) -> object:
    if hint is bool:
        out: object = _to_bool(value, where)
    elif hint is int:
        out = _to_int(value, where, spec)
    elif hint is float:
        out = _to_float(value, where, spec)
    elif hint is str:
        if not isinstance(value, str):
            raise UserError(f"{where} = {value!r}: expected a string")
        _check_utf8(value, where)
        if spec.pattern is not None and not spec.pattern.matches(value):
            raise UserError(f"{where} = {value!r}: expected {spec.pattern.meaning}")
        # Stored expanded: ssl, libpq and open() take a "~/ca.pem" literally.
        out = os.path.expanduser(value) if spec.path and value else value
    elif typing.get_origin(hint) is tuple:
        out = _to_str_tuple(value, where, urls=spec.secret == "dsn")  # noqa: S105 - a kind of field
    elif isinstance(hint, types.UnionType):
        raise TypeError(f"{where}: optional settings are not supported; use an empty default")
    else:
        raise TypeError(f"{where}: unsupported setting type {hint!r}")
    if spec.choices:
        items = out if isinstance(out, tuple) else (out,)
        for item in items:
            if item not in spec.choices:
                raise UserError(f"{where} = {item!r}: expected one of {', '.join(spec.choices)}")
    return out


def _to_bool(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise UserError(f"{where} = {value!r}: expected true or false")


def _bounds(spec: FieldSpec) -> str:
    if spec.minimum is not None and spec.maximum is not None:
        return f" from {show_number(spec.minimum)} to {show_number(spec.maximum)}"
    if spec.minimum is not None:
        return f" >= {show_number(spec.minimum)}"
    if spec.maximum is not None:
        return f" <= {show_number(spec.maximum)}"
    return ""


def _check_range(value: float, spec: FieldSpec, where: str, kind: str) -> None:
    low = spec.minimum is not None and value < spec.minimum
    high = spec.maximum is not None and value > spec.maximum
    if low or high or math.isnan(value):
        raise UserError(f"{where} = {value!r}: expected {kind}{_bounds(spec)}")


def _to_int(value: object, where: str, spec: FieldSpec) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        number = _from_text(value, where, spec, lambda t: int(t.replace("_", "")), "an integer")
    _check_range(number, spec, where, "an integer")
    return number


def _to_float(value: object, where: str, spec: FieldSpec) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # a TOML integer beyond any float (~1e308)
            raise UserError(f"{where} = {value}: expected a number{_bounds(spec)}") from None
    else:
        number = _from_text(value, where, spec, float, "a number")
    _check_range(number, spec, where, "a number")
    return number


def _from_text(
    value: object, where: str, spec: FieldSpec, parse: Callable[[str], _N], kind: str
) -> _N:
    """A number given as text (an environment variable, ``--set``); anything else is wrong."""
    if isinstance(value, str):
        try:
            return parse(value.strip())
        except ValueError:
            pass
    raise UserError(f"{where} = {value!r}: expected {kind}{_bounds(spec)}") from None


def _check_utf8(value: str, where: str) -> None:
    """Bytes that are not UTF-8 in the environment or argv arrive as lone surrogates, which
    no client library can send; refuse them here rather than with a traceback later."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Not echoed: the value may be a secret or a DSN with a password.
        raise UserError(f"{where}: not UTF-8 text; give it in UTF-8") from None


def _to_str_tuple(value: object, where: str, *, urls: bool = False) -> tuple[str, ...]:
    """A list given as text: comma-separated; a list of database URLs (``urls``) is split only
    where a new URL begins, not at the commas inside one (``ingest.config.url_list``)."""
    if isinstance(value, str):
        _check_utf8(value, where)
        items = split_urls(value, where) if urls else value.split(",")
        return tuple(item.strip() for item in items if item.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise UserError(f"{where} = {value!r}: expected a list of strings (comma-separated)")


_SCHEMES: Final = ("postgresql://", "postgres://")
# A URL written without its scheme: [user[:password]@]host[:port][,host...]/dbname[?query]
_SCHEMELESS: Final = re.compile(r"(?:[^\s@/=]+@)?[\w.\-:\[\],]+/[\w.\-$]*(?:\?\S*)?")


def _check_consistency(settings: Settings) -> None:
    """Checks that span keys; each names the keys involved and what to change."""
    pg = settings.postgres
    if pg.pool_min_size > pg.pool_max_size:
        raise UserError(
            f"postgres.pool_min_size ({pg.pool_min_size}) is larger than "
            f"postgres.pool_max_size ({pg.pool_max_size})"
        )
    _check_url("postgres.dsn", pg.dsn, _URL + _CREDENTIALS_HINT)
    check_stall_after(settings.pipeline.lag_interval_s, settings.pipeline.stall_after_s)
    _check_shards(settings)
    kafka = settings.kafka
    _check_bootstrap(kafka.bootstrap_servers)
    sasl = kafka.security_protocol.startswith("SASL_")
    if sasl and not (kafka.sasl_username and kafka.sasl_password):
        raise UserError(
            f"kafka.security_protocol = {kafka.security_protocol} needs "
            "kafka.sasl_username and kafka.sasl_password (or kafka.sasl_password_file)"
        )
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        _check_file(f"kafka.{key}", getattr(kafka, key))
    for key in ("sslrootcert", "sslcert", "sslkey"):
        _check_file(f"postgres.{key}", getattr(pg, key))
    _check_gateway_tls(settings)
    nat64_networks("gateway.nat64_prefixes", settings.gateway.nat64_prefixes)
    topics = [getattr(kafka, f"topic_{source}") for source in RAW_SOURCES] + [
        kafka.topic_dlq,
        kafka.topic_alerts,
    ]
    if len(set(topics)) != len(topics):
        raise UserError(f"kafka.topic_*: every topic needs its own name, got {', '.join(topics)}")
    check_listen("tcec.listen", settings.tcec.listen)
    check_kafka_limits(settings)


_URL: Final = "expected a postgresql://user@host:port/dbname URL"
_CREDENTIALS_HINT: Final = " (the password goes in postgres.password or postgres.password_file)"


def _check_url(where: str, dsn: str, expected: str) -> None:
    """A database URL; nothing of a bad one is echoed (a "host=h password=..." string would
    leak)."""
    if not dsn.startswith(_SCHEMES):
        if _SCHEMELESS.fullmatch(dsn):
            # e.g. the second of "postgresql://nev@db0/nev,nev@db1/nev": a URL without its
            # scheme, named by its place (host/dbname; no user or password is echoed)
            raise no_scheme(where, dsn)
        if dsn.lower().startswith(_SCHEMES):
            # libpq reads POSTGRESQL://... as a database name, asyncpg as a URL.
            raise UserError(f"{where}: write the URL's scheme in lower case (postgresql://)")
        raise UserError(f"{where}: {expected}")
    if "#" in dsn:
        # libpq reads a # as part of a value, asyncpg (urllib) as the start of a fragment it
        # drops: the writer and the query CLI would reach different databases or users.
        raise UserError(f"{where}: write a # in the URL as %23 (the two drivers read it apart)")
    check_database_url(where, dsn)


def _check_shards(settings: Settings) -> None:
    """Each shard and the query database a URL of its own (nothing of a bad one is echoed: a
    "host=h password=..." string would leak)."""
    st = settings.storage
    for index, dsn in enumerate(st.shards):
        # An item of a TOML array is not split; its commas are judged here as in the text
        # form (for the text form's items this repeats the split's checks).
        check_single_url(dsn, f"storage.shards[{index}]")
        _check_url(f"storage.shards[{index}]", dsn, _URL + _CREDENTIALS_HINT)
    # Equal strings only: two URLs of one database (127.0.0.1 and localhost) are found when
    # run and migrate ask the databases themselves (storage.shard_map).
    if len(set(st.shards)) != len(st.shards):
        raise UserError(
            "storage.shards: a database is listed twice; give each shard its own database"
        )
    if st.query_dsn:
        _check_url("storage.query_dsn", st.query_dsn, _URL + ", or empty")
    primaries = st.shards or (settings.postgres.dsn,)
    if st.replicas and len(st.replicas) != len(primaries):
        raise UserError(
            f"storage.replicas: {len(st.replicas)} given for {len(primaries)} shard(s); list "
            "one replica per shard, in storage.shards' order"
        )
    for index, dsn in enumerate(st.replicas):
        where = f"storage.replicas[{index}]"
        check_single_url(dsn, where)
        _check_url(where, dsn, _URL + " of a replica (not of a primary)")
        if dsn in primaries:
            raise UserError(f"{where}: {_URL} of a replica (not of a primary)")
    if st.query_dsn and st.query_dsn in (st.shards or (settings.postgres.dsn,)):
        raise UserError(
            "storage.query_dsn: is also a shard; give the query database its own database "
            "(e.g. nev_query on the first shard's server)"
        )


def _check_bootstrap(servers: str) -> None:
    """``host:port[,host:port...]`` with ports 1..65535 ("[::1]:9092" for IPv6 literals)."""
    entries = [e.strip() for e in servers.split(",")]
    for entry in entries:
        host, sep, port = entry.rpartition(":")
        if not entry or not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise UserError(
                f"kafka.bootstrap_servers = {servers!r}: {entry!r} is not host:port "
                "(port 1..65535); give a comma-separated list such as 127.0.0.1:9092"
            )


def _check_gateway_tls(settings: Settings) -> None:
    """The listeners' TLS files come as a certificate with its key: a CA bundle alone would
    leave every listener plaintext, the mutual TLS it asks for silently off. Whether the files
    exist is the gateway's check (ingest.gateway.checks): a worker or operator host sharing the
    configuration has no reason to hold the gateway's private key."""
    gw = settings.gateway
    if bool(gw.tls_certfile) != bool(gw.tls_keyfile) or (gw.tls_cafile and not gw.tls_certfile):
        raise UserError(
            "gateway.tls_certfile and gateway.tls_keyfile go together (set both for TLS); "
            "gateway.tls_cafile (mutual TLS) needs them too"
        )


def _check_file(key: str, value: str) -> None:
    if value and not Path(value).is_file():
        raise UserError(f"{key} = {value!r}: no such file")
