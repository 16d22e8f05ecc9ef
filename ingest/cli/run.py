"""``nev-ingest run``: the ingest service (Kafka -> decode -> database, with alerts).

Checks that Kafka and the database answer, that the topics exist (and the dead-letter topic
takes the largest dead letter), and that the schema is migrated (one-line errors, exit 2), then
runs ``--workers`` supervised worker processes and the metrics endpoint until SIGTERM/SIGINT.
See docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ingest.cli.args import int_range
from ingest.config import Settings
from ingest.config.bounds import MAX_WORKERS, PORT_MAX, PORT_MIN
from ingest.config.load import add_config_arguments, settings_from_args
from ingest.errors import UserError
from ingest.pipeline.closing import STOP_GRACE_S
from ingest.pipeline.logs import configure_logging

__all__ = ["check_rules", "check_write_timeout", "register", "run_service", "run_settings"]

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    p = subparsers.add_parser(
        "run",
        help="run the ingest service: consume raw frames, store rows, raise alerts",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument(
        "--workers",
        type=int_range(1, MAX_WORKERS),
        help=f"worker processes, 1..{MAX_WORKERS} (pipeline.workers)",
    )
    p.add_argument(
        "--metrics-port",
        type=int_range(PORT_MIN, PORT_MAX),
        help="port of /metrics, /healthz, /readyz (metrics.port)",
    )
    p.add_argument("--group", help="Kafka consumer group (kafka.group_id)")
    p.add_argument(
        "--skip-checks",
        action="store_true",
        help="start without checking Kafka, the database and the schema first",
    )
    add_config_arguments(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    settings = run_settings(args)
    configure_logging(settings.log.level, static={"worker": "supervisor"}, fmt=settings.log.format)
    check_write_timeout(settings)
    check_rules(settings)
    if not args.skip_checks:
        asyncio.run(preflight(settings))
    return run_service(settings)


def run_settings(args: argparse.Namespace) -> Settings:
    """The settings of ``run``: its --config/--set, then the flags it was given."""
    return settings_from_args(
        args,
        {
            "pipeline.workers": args.workers,
            "metrics.port": args.metrics_port,
            "kafka.group_id": args.group,
        },
    )


def check_write_timeout(settings: Settings) -> None:
    """A write limit at or under one statement's timeout stops ``run`` (and ``config check``):
    a batch's transaction is several statements, each allowed the statement timeout, so a
    healthy but slow batch would be cut at every attempt, never commit, and hold its shard down
    for good. Checked here, not at load: read-only commands do not write and must not be
    refused for it."""
    write_s = settings.storage.write_timeout_s
    statement_ms = settings.postgres.statement_timeout_ms
    if statement_ms and write_s * 1000 <= statement_ms:
        raise UserError(
            f"storage.write_timeout_s ({write_s:g} s) is not above postgres.statement_timeout_ms "
            f"({statement_ms} ms): a batch the server still lets run would be cut at every "
            "attempt; raise storage.write_timeout_s well above it (or lower the statement timeout)"
        )


def check_rules(settings: Settings) -> None:
    """A rule file that would stop every worker at its first assignment stops ``run`` now,
    with one line (a local check: ``--skip-checks`` skips only the services)."""
    a = settings.alerts
    if not a.enabled:
        return
    from ingest.pipeline.rule_snapshot import accepted_rules

    accepted_rules(a.rules_file, a.models_file)


async def preflight(settings: Settings) -> None:
    """Fail fast, with what to do, when a dependency is missing (raises ``UserError``)."""
    from ingest.pipeline.process import raw_topic_keys
    from ingest.pipeline.schema_check import check_schema
    from ingest.wiring import check_kafka, check_postgres, check_topics, databases

    k = settings.kafka
    log.info(await check_kafka(k, 15))
    topics = raw_topic_keys(settings)  # every raw topic: vehicle, charger, T/CEC, battery
    topics[k.topic_dlq] = "kafka.topic_dlq"
    topics[k.topic_alerts] = "kafka.topic_alerts"
    log.info(await check_topics(k, topics, 15, dlq_topic=k.topic_dlq))
    for key, pg in databases(settings):  # the shards, or postgres.dsn
        log.info(await check_postgres(pg, 15, key))
    await check_schema(settings)


def run_service(settings: Settings) -> int:
    """Run the supervisor until stopped; returns the process exit code."""
    from ingest.pipeline.multiproc_dir import prepare_multiproc_dir
    from ingest.pipeline.process import worker_process
    from ingest.pipeline.rule_snapshot import RuleSnapshot
    from ingest.pipeline.supervisor import Supervisor, SupervisorOptions

    m, p, a = settings.metrics, settings.pipeline, settings.alerts
    own_dir = not m.multiproc_dir
    path = Path(m.multiproc_dir or tempfile.mkdtemp(prefix="nev-ingest-metrics-"))
    try:
        prepare_multiproc_dir(path)
    except OSError as exc:  # a file there, no permission, a read-only file system
        raise UserError(
            f"metrics.multiproc_dir = {path}: cannot use it for the workers' metric files "
            f"({exc.strerror}); give a directory nev-ingest may write"
        ) from None
    try:
        rules_dir = Path(tempfile.mkdtemp(prefix="nev-ingest-rules-"))
    except OSError as exc:
        raise UserError(
            f"{tempfile.gettempdir()}: cannot create the directory of the rules in force "
            f"({exc.strerror}); set TMPDIR to a directory nev-ingest may write"
        ) from None
    try:
        # The workers load the rules the supervisor accepted (at start, on SIGHUP), never the
        # operator's file as it is when they start: a file refused on SIGHUP would otherwise
        # crash every worker restarted after it (ingest/pipeline/rule_snapshot.py).
        snapshot = RuleSnapshot(rules_dir, a.rules_file, a.models_file)
        reload = None
        if a.enabled:
            log.info(snapshot.refresh())
            reload = snapshot.refresh
            settings = replace(
                settings,
                alerts=replace(a, rules_file=snapshot.rules_path, models_file=snapshot.models_path),
            )
        supervisor = Supervisor(
            SupervisorOptions(
                workers=p.workers,
                metrics_host=m.host,
                metrics_port=m.port,
                multiproc_dir=path,
                # Workers get shutdown_timeout_s to flush, then STOP_GRACE_S for the steps
                # after it (each bounded, closing.after_drain_s() at most in all: merge
                # latest_state, outbox, commit, clients, pools, ...); the supervisor kills them
                # after that, so a worker stuck in a system call cannot hold the stop forever.
                shutdown_timeout_s=p.shutdown_timeout_s,
                stop_grace_s=STOP_GRACE_S,
                stall_after_s=p.stall_after_s,
            ),
            functools.partial(worker_process, settings=settings),
            reload=reload,
        )
        return supervisor.run()
    finally:
        shutil.rmtree(rules_dir, ignore_errors=True)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if own_dir:
            shutil.rmtree(path, ignore_errors=True)
