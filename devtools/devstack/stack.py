"""up / down / status / env of the whole dev stack, under the state directory's lock."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devtools.devstack import (
    kafka,
    kafka_secure,
    postgres,
    postgres_secure,
    prereq,
    replica,
    timescale,
)
from devtools.devstack.state import (
    MAX_SHARDS,
    REPLICA_SERVICES,
    SERVICES,
    SHARD_SERVICES,
    STATE_FILE,
    ServiceState,
    StackState,
    locked,
)
from devtools.settings import DevSettings
from ingest.errors import UserError

DEFAULT_SERVICES: Final = ("postgres", "kafka")
OPTIONAL_SERVICES: Final = ("timescale",)
STOP_TIMEOUT_S: Final = 60.0

# The variables `devstack env` prints and the test fixtures read.
ENV_KAFKA: Final = "NEV_KAFKA_BOOTSTRAP_SERVERS"
ENV_POSTGRES: Final = "NEV_POSTGRES_DSN"
ENV_TIMESCALE: Final = "NEV_TEST_TIMESCALE_DSN"
ENV_SHARDS: Final = "NEV_STORAGE_SHARDS"
ENV_QUERY_DSN: Final = "NEV_STORAGE_QUERY_DSN"
ENV_REPLICAS: Final = "NEV_STORAGE_REPLICAS"


@dataclass(frozen=True, slots=True)
class Paths:
    state_dir: Path
    cache_dir: Path

    @classmethod
    def from_settings(cls, settings: DevSettings) -> Paths:
        dev = settings.devstack
        if dev.cache_dir:
            cache = Path(dev.cache_dir).expanduser()
        else:
            xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            cache = Path(xdg) / "nev-ingest"
        return cls(state_dir=Path(dev.state_dir).expanduser().absolute(), cache_dir=cache)


def _services(with_: Iterable[str], only: Iterable[str] | None) -> tuple[str, ...]:
    names = tuple(only) if only is not None else DEFAULT_SERVICES + tuple(with_)
    for name in names:
        if name not in SERVICES:
            raise UserError(f"devstack: unknown service {name!r}; known: {', '.join(SERVICES)}")
    return tuple(dict.fromkeys(names))


# Kept in the postgres service's state (carried over its restarts): how many shards the stack
# has. Only `up --shards N` sets it; a test fixture that starts postgres-1 on its own does not,
# so the stack's `env` stays what the developer asked for.
_SHARDS_KEY: Final = "shards"


def shard_services(state: StackState) -> tuple[str, ...]:
    """The PostgreSQL clusters of the stack's shards, shard 0 first: ``postgres`` and the
    ``postgres-<i>`` of the last ``up --shards N``."""
    pg = state.services.get("postgres")
    count = int(pg.extra.get(_SHARDS_KEY, 1)) if pg is not None else 1
    return ("postgres", *SHARD_SERVICES[: count - 1])


def _with_shards(state: StackState, shards: int | None) -> tuple[str, ...]:
    """The extra shard clusters ``up`` starts: ``--shards N`` asks for N, else what ran before."""
    recorded = shard_services(state)[1:]
    if shards is None:
        return recorded
    if not 1 <= shards <= MAX_SHARDS:
        raise UserError(f"devstack: --shards {shards}: give 1 to {MAX_SHARDS}")
    if shards < len(recorded) + 1:
        raise UserError(
            f"devstack: the stack has {len(recorded) + 1} shards, --shards {shards} would drop "
            "one with its data; run devstack down --purge to start over"
        )
    return SHARD_SERVICES[: shards - 1]


def _with_replicas(state: StackState, shards: tuple[str, ...], wanted: bool) -> tuple[str, ...]:
    """The replicas ``up`` starts: one per shard cluster with ``--replica``, or when an earlier
    ``up --replica`` made them (a plain ``up`` brings the whole stack back)."""
    names = tuple(replica.replica_name(shard) for shard in shards)
    made = any(name in state.services for name in REPLICA_SERVICES)
    return names if wanted or made else ()


def core_services(settings: DevSettings) -> tuple[str, ...]:
    """What must run for the stack to be up: postgres, kafka and the shards' clusters."""
    state = StackState.load(Paths.from_settings(settings).state_dir)
    return (*DEFAULT_SERVICES, *shard_services(state)[1:])


def up(
    settings: DevSettings,
    with_: Iterable[str] = (),
    *,
    shards: int | None = None,
    replicas: bool = False,
    only: Iterable[str] | None = None,
    report: bool = True,
    secure: bool = False,
) -> StackState:
    """Start what is not running yet; a service already running is left alone (idempotent).

    ``secure``: Kafka on SASL_SSL with SCRAM users and ACLs, PostgreSQL with TLS and
    scram-sha-256 (certificates and passwords under ``<state_dir>/tls``); a service once
    started secure stays secure over restarts.

    Starts postgres and kafka plus ``with_`` and the shard clusters (``shards``, else those of
    an earlier ``up --shards``) and, with ``replicas`` (or after an earlier ``up --replica``),
    a streaming replica of each shard cluster; ``only`` names the services exactly instead.
    With two shards or more, the query database (``nev_query``) is created on the first
    cluster.
    """
    paths = Paths.from_settings(settings)
    with locked(paths.state_dir):
        state = StackState.load(paths.state_dir)
        extra = _with_shards(state, shards) if only is None else ()
        if only is None:
            extra += _with_replicas(state, ("postgres", *extra), replicas)
        wanted = _services((*with_, *extra), only)
        _preflight([name for name in wanted if not state.running(name)], settings)
        for name in wanted:
            if state.running(name):
                _say(report, f"{name}: already running at {state.services[name].url}")
                if name == "kafka":
                    # The broker creates no topics itself: topics configured since it started
                    # are created now, so `up` always leaves every configured topic in place.
                    url = state.services[name].url
                    topics = settings.kafka.topic_partitions()
                    rf = settings.kafka.replication_factor
                    options = kafka.admin_options(state.services[name])
                    asyncio.run(kafka.ensure_topics(url, topics, rf, options))
                continue
            began = time.monotonic()
            previous = state.services.get(name)
            svc = _start(name, settings, paths, previous, state, secure)
            if previous is not None and _SHARDS_KEY in previous.extra:
                svc.extra[_SHARDS_KEY] = previous.extra[_SHARDS_KEY]
            state.services[name] = svc
            state.save()  # record each service as soon as it runs: a later failure keeps it
            _say(report, f"{name}: started at {svc.url} ({time.monotonic() - began:.1f}s)")
        if shards is not None and only is None:
            state.services["postgres"].extra[_SHARDS_KEY] = shards
            state.save()
        if "postgres" in wanted and len(shard_services(state)) > 1:
            query = postgres.ensure_database(state.services["postgres"], postgres.QUERY_DATABASE)
            _say(report, f"query database: {query}")
    return state


def _preflight(names: list[str], settings: DevSettings) -> None:
    """Check every prerequisite before starting anything, so a missing one leaves no half stack."""
    for name in names:
        if name.startswith("postgres"):
            prereq.postgres(settings.devstack.postgres_bin_dir)
        elif name == "kafka":
            prereq.java()
            prereq.maven()
        elif name == "timescale":
            prereq.node()
            prereq.npm()


def _start(
    name: str,
    settings: DevSettings,
    paths: Paths,
    previous: ServiceState | None,
    state: StackState,
    secure: bool,
) -> ServiceState:
    dev = settings.devstack
    if name in REPLICA_SERVICES:
        # secure or not as its primary: the base backup copies its TLS, pg_hba.conf and roles
        primary = state.services.get(replica.primary_name(name))
        if primary is None:
            raise UserError(f"devstack: start {replica.primary_name(name)} before {name}")
        return replica.up(
            paths.state_dir, primary, previous, dev.postgres_bin_dir, dev.start_timeout_s, name=name
        )
    if name.startswith("postgres"):
        return postgres.up(
            paths.state_dir,
            previous,
            dev.postgres_bin_dir,
            dev.start_timeout_s,
            name=name,
            secure=secure,
        )
    if name == "kafka":
        return kafka.up(
            paths.state_dir,
            previous,
            cache_dir=paths.cache_dir,
            version=dev.kafka_version,
            heap=dev.kafka_heap,
            topics=settings.kafka.topic_partitions(),
            replication_factor=1,  # one broker: the configured factor is for production
            timeout_s=dev.start_timeout_s,
            secure=secure,
            acl_group=settings.kafka.group_id,
        )
    return timescale.up(
        paths.state_dir, previous, cache_dir=paths.cache_dir, timeout_s=dev.start_timeout_s
    )


def down(
    settings: DevSettings,
    *,
    only: Iterable[str] | None = None,
    report: bool = True,
    purge: bool = False,
) -> StackState:
    """Stop the services ``up`` started (by their recorded pids), timescale first. ``purge``:
    then delete their data, in the state directory (which stays, with its lock file) and the
    clusters kept in /tmp for it; checked first, so that a refused purge stops nothing."""
    paths = Paths.from_settings(settings)
    names = SERVICES if only is None else _services((), only)
    if purge and only is not None:
        raise ValueError("purge removes the whole stack: stop it all (only=None)")
    with locked(paths.state_dir):
        state = StackState.load(paths.state_dir)
        if purge:
            _may_purge(paths.state_dir, state)
        for name in reversed(SERVICES):
            if name not in names:
                continue
            svc = state.services.get(name)
            if svc is None or not svc.running:
                continue
            began = time.monotonic()
            if name.startswith("postgres"):
                postgres.down(svc, STOP_TIMEOUT_S)
            elif name == "kafka":
                kafka.down(svc, STOP_TIMEOUT_S)
            else:
                timescale.down(svc, STOP_TIMEOUT_S)
            svc.pid = svc.started = None
            state.save()
            _say(report, f"{name}: stopped ({time.monotonic() - began:.1f}s)")
        if purge:
            _purge(paths.state_dir, state, report)
        elif not any(svc.running for svc in state.services.values()):
            _say(report, f"devstack: nothing running (state kept in {paths.state_dir})")
    return state


def _may_purge(state_dir: Path, state: StackState) -> None:
    """Refuse, before anything is stopped or deleted, a purge whose state directory cannot be
    judged (a damaged ``state.json``) or whose demo still runs."""
    if (state_dir / STATE_FILE).exists() and not state.services:
        raise UserError(
            f"devstack: {state_dir / STATE_FILE} is damaged or from another version, so what "
            f"runs from this directory is unknown; nothing was stopped or deleted: stop its "
            f"services by hand, then delete the directory and any {postgres.fallback_root_glob()}"
        )
    demo = _live_demo(state_dir)
    if demo:
        files = ", ".join(str(f) for f in demo)
        raise UserError(
            f"devstack: the demo still runs ({files}); nothing was stopped or deleted: stop it "
            "with nev-ingest demo --stop, then purge again"
        )


def _purge(state_dir: Path, state: StackState, report: bool) -> None:
    """Delete the stopped stack's data: its clusters kept in /tmp (``postgres.home_of``),
    then what it keeps in the state directory, by name (the directory itself and its lock
    file stay: a process waiting on the lock must not end up with a lock of its own). Every
    cluster is checked for a running server before the first is deleted."""
    running = [name for name, svc in state.services.items() if svc.running]
    if running:
        raise UserError(
            f"devstack: {', '.join(running)} did not stop (see the logs in {state_dir}); stop "
            "them, then run devstack down --purge again; nothing was deleted"
        )
    homes: dict[str, Path] = {}
    for name in SERVICES:
        if name.startswith("postgres"):
            svc = state.services.get(name)
            home = postgres.fallback_home(
                state_dir, name, svc.extra.get("data_dir") if svc else None
            )
            if home is not None:
                homes[name] = home
            for where in (home, state_dir / name):
                if where is not None:
                    postgres.refuse_if_live(where / "data")
    for name, home in homes.items():
        if postgres.remove_home(state_dir, name, str(home / "data")) is not None:
            _say(report, f"{name}: deleted {home}")
    for entry in (STATE_FILE, f"{Path(STATE_FILE).stem}.tmp", "tls", "demo", *SERVICES):
        path = state_dir / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    _say(report, f"devstack: deleted the stack's data in {state_dir}; the next up starts afresh")


def _live_demo(state_dir: Path) -> list[Path]:
    """The demo's pid files (devtools/demo) whose process still runs, by the demo's own
    tests of its processes' command lines (a dead demo's pid may be anyone's now)."""
    live = []
    for pid_file, words in (("run.pid", (b"run", b"ingest")), ("gateway.pid", (b"gateway",))):
        path = state_dir / "demo" / pid_file
        try:
            command = Path(f"/proc/{int(path.read_text())}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if all(w in command for w in words):
            live.append(path)
    return live


def not_running(missing: list[str], state: StackState) -> UserError:
    """The error for services that are not up; when no stack was ever started from this
    state directory, where that is (it is relative to the current directory by default, and
    from another one the advice to start a stack would start a second one)."""
    if not state.path.exists():
        return UserError(
            f"devstack: no dev stack in {state.state_dir} (devstack.state_dir, relative to the "
            "current directory): run this where you ran nev-ingest devstack up, or start one "
            "here with it"
        )
    return UserError(
        f"devstack: {', '.join(missing)} not running; start it: nev-ingest devstack up"
    )


def status(settings: DevSettings) -> list[tuple[str, bool, ServiceState | None]]:
    """Each service (a shard cluster once something started it): running, state."""
    state = StackState.load(Paths.from_settings(settings).state_dir)
    optional = (*SHARD_SERVICES, *REPLICA_SERVICES)
    names = [n for n in SERVICES if n not in optional or n in state.services]
    return [(name, state.running(name) is not None, state.services.get(name)) for name in names]


def env_lines(settings: DevSettings) -> list[str]:
    """``export NEV_...=...`` for every running service; fails if the core stack is not up."""
    state = StackState.load(Paths.from_settings(settings).state_dir)
    lines: list[str] = []
    shards = shard_services(state)
    missing = [name for name in (*DEFAULT_SERVICES, *shards) if state.running(name) is None]
    missing = list(dict.fromkeys(missing))
    if missing:
        raise not_running(missing, state)
    pg = state.services["postgres"]
    lines.append(f"export {ENV_POSTGRES}={shlex.quote(pg.url)}")
    lines.append(f"export {ENV_KAFKA}={shlex.quote(state.services['kafka'].url)}")
    lines += [f"export {k}={shlex.quote(v)}" for k, v in secure_env(state).items()]
    lines += _other_kafka_users(state)
    if len(shards) > 1:
        urls = ",".join(state.services[name].url for name in shards)
        lines.append(f"export {ENV_SHARDS}={shlex.quote(urls)}")
        query = postgres.dsn(pg.port, postgres.QUERY_DATABASE)
        lines.append(f"export {ENV_QUERY_DSN}={shlex.quote(query)}")
    replicas = [state.running(replica.replica_name(name)) for name in shards]
    if all(svc is not None for svc in replicas):
        urls = ",".join(svc.url for svc in replicas if svc is not None)
        lines.append(f"export {ENV_REPLICAS}={shlex.quote(urls)}")
    ts = state.running("timescale")
    if ts is not None:
        lines.append(f"export {ENV_TIMESCALE}={shlex.quote(ts.url)}")
    return lines


def secure_env(state: StackState) -> dict[str, str]:
    """The service's NEV_* security settings of a ``--secure`` stack (passwords by file)."""
    out: dict[str, str] = {}
    kafka_svc = state.services.get("kafka")
    if kafka_svc is not None and kafka_svc.extra.get("secure"):
        files = kafka_secure.SecureFiles(Path(kafka_svc.extra["tls_dir"]))
        out.update(kafka_secure.settings_env(files))
    pg_files = postgres.secure_files(state.services["postgres"])
    if pg_files is not None:
        out.update(postgres_secure.settings_env(pg_files))
    return out


def _other_kafka_users(state: StackState) -> list[str]:
    """Comment lines (eval ignores them): how the gateways' and the tools' users log in, e.g.
    for `nev-ingest loadgen` (it produces raw frames, which only those users may)."""
    svc = state.services["kafka"]
    if not svc.extra.get("secure"):
        return []
    files = kafka_secure.SecureFiles(Path(svc.extra["tls_dir"]))
    return [
        f"# as {user}: NEV_KAFKA_SASL_USERNAME={user} "
        f"NEV_KAFKA_SASL_PASSWORD_FILE={shlex.quote(str(files.password_file(user)))}"
        for user in (kafka_secure.GATEWAY, kafka_secure.TOOLS)
    ]


def _say(report: bool, line: str) -> None:
    if report:
        print(line, flush=True)
