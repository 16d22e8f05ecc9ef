"""``nev-ingest devstack up|down|status|env|prune-topics``: the local Kafka + PostgreSQL
(+ TimescaleDB)."""

from __future__ import annotations

import argparse
import sys

from devtools.devstack import stack, topics
from devtools.devstack.state import StackState
from devtools.settings import (
    DOCS_PATH,
    DevSettings,
    dev_settings_from_args,
    render_docs,
    update_docs,
)
from ingest.config.load import add_config_arguments


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "devstack",
        help="run real Kafka / PostgreSQL / TimescaleDB locally for development and tests",
        description="Run Apache Kafka (KRaft), PostgreSQL and optionally PGlite-TimescaleDB as "
        "local processes on free loopback ports. State, data and logs live in devstack.state_dir "
        "(default .devstack/).",
    )
    sub = parser.add_subparsers(dest="devstack_command", metavar="ACTION", required=True)

    up = sub.add_parser("up", help="start the services that are not running (idempotent)")
    up.add_argument(
        "--with",
        dest="with_",
        action="append",
        default=[],
        choices=stack.OPTIONAL_SERVICES,
        help="also start an optional service (timescale: PGlite-TimescaleDB, one connection)",
    )
    up.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="N PostgreSQL clusters, one per storage shard, and the query database nev_query "
        "on the first (default: as the last up, else 1)",
    )
    up.add_argument(
        "--replica",
        action="store_true",
        help="also a streaming read replica of each shard's cluster (pg_basebackup -R, its own "
        "port; kept for later ups); env exports NEV_STORAGE_REPLICAS",
    )
    up.add_argument(
        "--secure",
        "--tls",
        action="store_true",
        help="Kafka on SASL_SSL (SCRAM-SHA-512 users, ACLs) and PostgreSQL with TLS and "
        "scram-sha-256; CA, certificates and passwords in <state_dir>/tls (docs/security.md)",
    )
    up.set_defaults(func=_up)

    down = sub.add_parser("down", help="stop the services that up started (by pid)")
    down.add_argument(
        "--purge",
        action="store_true",
        help="then delete their data: what the stack keeps in the state directory (its lock "
        "file stays) and any cluster kept in /tmp for it; the next up starts afresh, and the "
        "downloaded Kafka stays in the cache",
    )
    down.set_defaults(func=_down)

    status = sub.add_parser(
        "status", help="show what runs where; exit 1 if postgres/kafka are down"
    )
    status.set_defaults(func=_status)

    prune = sub.add_parser(
        "prune-topics",
        help="delete the Kafka topics tests and benchmarks left (run it when none runs)",
        description=f"Delete the running broker's topics with {topics.MATCHES}. The stack's "
        "own topics and Kafka's internal ones stay, and so does any other name (orders, "
        "orders_1765130000). A test or benchmark that runs meanwhile loses its topics. Run it "
        "with --dry-run first: it lists what it would delete and deletes nothing. `status` "
        f"warns over {topics.CROWDED:,} partitions.",
    )
    prune.add_argument(
        "--dry-run",
        action="store_true",
        help="only list the topics it would delete (run this first)",
    )
    prune.set_defaults(func=_prune_topics)

    env = sub.add_parser("env", help='print export lines: eval "$(nev-ingest devstack env)"')
    env.set_defaults(func=_env)

    smoke = sub.add_parser(
        "smoke", help="produce/consume a message and write/read a row on the running stack"
    )
    smoke.set_defaults(func=_smoke)

    docs = sub.add_parser(
        "config-docs",
        help="print the reference of the [devstack] keys (the service's: nev-ingest config docs)",
    )
    docs.add_argument(
        "--write", action="store_true", help=f"update it in {DOCS_PATH.name} instead of printing"
    )
    docs.set_defaults(func=_config_docs)

    for action in (up, down, status, prune, env, smoke):
        add_config_arguments(action)


def _up(args: argparse.Namespace) -> int:
    stack.up(
        dev_settings_from_args(args),
        args.with_,
        shards=args.shards,
        replicas=args.replica,
        secure=args.secure,
    )
    print('devstack: ready; point commands at it with: eval "$(nev-ingest devstack env)"')
    _warn_if_crowded(dev_settings_from_args(args))
    return 0


def _down(args: argparse.Namespace) -> int:
    stack.down(dev_settings_from_args(args), purge=args.purge)
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = dev_settings_from_args(args)
    rows = stack.status(settings)
    core = stack.core_services(settings)
    core_up = True
    for name, running, svc in rows:
        if running and svc is not None:
            print(f"{name:<10} running  pid {svc.pid:<8} {svc.url}  (log {svc.log})")
        else:
            print(f"{name:<10} stopped")
            core_up = core_up and name not in core
    _warn_if_crowded(settings)
    return 0 if core_up else 1


def _warn_if_crowded(settings: DevSettings) -> None:
    """On stderr, when the running broker holds more than topics.CROWDED partitions: how
    many, and how to clean up. Counting must never fail `up` or `status`: a broker that
    does not answer is said in one line instead."""
    svc = _state(settings).running("kafka")
    if svc is None:
        return
    try:
        warning = topics.crowding(svc).warning()
    except Exception as exc:  # any failure to count is reported, not raised
        warning = f"devstack: could not count Kafka's partitions at {svc.url}: {exc}"
    if warning:
        print(warning, file=sys.stderr)


def _state(settings: DevSettings) -> StackState:
    return StackState.load(stack.Paths.from_settings(settings).state_dir)


def _prune_topics(args: argparse.Namespace) -> int:
    settings = dev_settings_from_args(args)
    state = _state(settings)
    svc = state.running("kafka")
    if svc is None:
        raise stack.not_running(["kafka"], state)
    names = topics.prune(svc, dry_run=args.dry_run)
    for name in names:
        print(name)
    done = "would delete" if args.dry_run else "deleted"
    print(f"devstack: {done} {len(names):,} topics tests and benchmarks left", file=sys.stderr)
    return 0


def _env(args: argparse.Namespace) -> int:
    for line in stack.env_lines(dev_settings_from_args(args)):
        print(line)
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from devtools.devstack.smoke import run_smoke

    for line in run_smoke(dev_settings_from_args(args)):
        print(line)
    return 0


def _config_docs(args: argparse.Namespace) -> int:
    if not args.write:
        print(render_docs())
        return 0
    text = DOCS_PATH.read_text(encoding="utf-8")
    DOCS_PATH.write_text(update_docs(text), encoding="utf-8")
    print(f"devstack: wrote the [devstack] keys into {DOCS_PATH}")
    return 0
