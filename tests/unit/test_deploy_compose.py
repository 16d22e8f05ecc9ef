"""deploy/docker-compose.yml, checked with what runs here (no Docker engine: `docker compose up`
is not run on this machine): the compose-spec JSON schema (check-jsonschema's vendored copy),
then what the schema cannot know: every ``nev-ingest`` command parses with the real CLI parser,
every ``NEV_*`` variable is a setting the service loads, start order and health conditions
hold, the topics created are the ones configured, and the mounted files exist."""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ingest.cli import build_parser
from ingest.config import Settings
from ingest.config.load import load_settings
from ingest.config.settings import SECTIONS
from ingest.gateway.server import stop_s

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
TOOLS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nev-ingest/deploy-tools"

_TO_JSON = "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"


def _tool(name: str) -> Path:
    path = TOOLS / "venv" / "bin" / name
    assert path.exists(), f"{path} is missing; run ./dev setup (it installs the deploy/ linters)"
    return path


@functools.cache
def load_yaml(path: Path) -> list[Any]:
    """Every document of a YAML file (PyYAML of the linters' venv: the service has no YAML)."""
    done = subprocess.run(
        [_tool("python"), "-c", _TO_JSON, path], capture_output=True, text=True, check=True
    )
    return list(json.loads(done.stdout))


def check_command(argv: list[str]) -> argparse.Namespace:
    """Parse ``nev-ingest ARGV`` with the real parser (SystemExit on an unknown command/flag)."""
    return build_parser(argv[0]).parse_args(argv)


def check_settings(env: dict[str, str], tmp_path: Path) -> Settings:
    """Every NEV_ variable names a known section and key (the loader ignores unknown sections,
    so that is checked here), and the whole set loads (values in range, files readable: the
    files under /run/secrets are replaced by a file of this test)."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    for name in env:
        assert name.startswith("NEV_"), name
        section = name[4:].lower().partition("_")[0]
        assert section in SECTIONS, (
            f"{name}: no settings section {section!r} (docs/configuration.md)"
        )
    files = {k: str(secret) if v.startswith("/run/secrets/") else v for k, v in env.items()}
    return load_settings(environ=files)


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(COMPOSE)[0]
    return doc


def _nev_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in doc["services"].items() if s.get("image", "").startswith("nev-ingest")}


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def test_compose_file_is_valid_against_the_compose_spec(tmp_path: Path) -> None:
    check = _tool("check-jsonschema")
    done = subprocess.run(
        [check, "--builtin-schema", "vendor.compose-spec", COMPOSE],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "compose.yml"
    broken.write_text(COMPOSE.read_text().replace("depends_on:", "depends_onn:", 1))
    caught = subprocess.run(
        [check, "--builtin-schema", "vendor.compose-spec", broken],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert caught.returncode != 0  # the schema check really checks


def test_every_nev_ingest_command_parses_and_every_setting_loads(tmp_path: Path) -> None:
    services = _nev_services(_compose())
    assert {"migrate", "nev-ingest", "nev-gateway", "loadgen"} <= set(services)
    for name, service in services.items():
        check_command(service["command"])
        check_settings(_env(service), tmp_path)
        # a *_FILE setting whose secret is not mounted would stop the container at start
        mounted = {f"/run/secrets/{name}" for name in service.get("secrets") or []}
        for key, value in _env(service).items():
            if value.startswith("/run/secrets/"):
                assert value in mounted, f"{name}: {key} = {value}, a secret it does not mount"


def test_the_service_runs_two_workers_after_migrate_and_topics() -> None:
    doc = _compose()
    ingest = doc["services"]["nev-ingest"]
    assert check_command(ingest["command"]).workers == 2
    assert ingest["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert ingest["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert check_command(doc["services"]["migrate"]["command"]).command == "migrate"
    # a stop flushes: longer than pipeline.shutdown_timeout_s + 20 s (docs/operations.md)
    grace = int(ingest["stop_grace_period"].rstrip("s"))
    assert grace > load_settings(environ={}).pipeline.shutdown_timeout_s + 20


def test_the_gateway_s_grace_exceeds_its_worst_case_stop(tmp_path: Path) -> None:
    # It was 30 s against a worst case of 34 s (docs/gateway.md "Stop"): a stalled broker got
    # the gateway killed mid-stop instead of exiting 0. The worst case is the code's own
    # (ingest.gateway.server.stop_s), so a step added to the stop, or a bound raised, that
    # takes it past the grace fails here.
    service = _compose()["services"]["nev-gateway"]
    grace = int(service["stop_grace_period"].rstrip("s"))
    gateway = check_settings(_env(service), tmp_path).gateway
    assert grace > stop_s(gateway.shutdown_timeout_s)


def test_health_conditions_have_health_checks_and_the_demo_is_a_profile() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                hc = services[dep].get("healthcheck")
                image_hc = services[dep].get("image", "").startswith("nev-ingest:")
                assert (hc and not hc.get("disable")) or image_hc, f"{dep} has no health check"
    # the image's HEALTHCHECK asks the service's /healthz: any other command overrides it
    for name, service in _nev_services(_compose()).items():
        if service["command"][0] != "run":
            assert "healthcheck" in service, f"{name}: the image's health check is for `run`"
    assert services["loadgen"]["profiles"] == ["demo"]
    assert services["loadgen"]["build"]["target"] == "demo"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb")
    # latest_state's merge plan: 2.4x per row at the default 4 (docs/performance.md)
    db = services["timescaledb"]["command"]
    assert db[0] == "postgres" and "random_page_cost=1.1" in db


def test_the_gateway_holds_the_demo_loadgens_connections(tmp_path: Path) -> None:
    # The loadgen connects from one container address, one connection per vehicle: over the
    # gateway's per-address share (1,000 by default) the rest were refused.
    services = _compose()["services"]
    loadgen = check_command(services["loadgen"]["command"])
    assert loadgen.via_gateway and not loadgen.source_addrs and not loadgen.platforms
    gateway = check_settings(_env(services["nev-gateway"]), tmp_path).gateway
    assert gateway.max_connections_per_peer >= loadgen.vehicles
    assert gateway.max_connections >= loadgen.vehicles


def test_the_topics_created_are_the_topics_configured() -> None:
    doc = _compose()
    script = "\n".join(doc["services"]["kafka-init"]["command"])
    created = set()
    for topics in re.findall(r"for t in ([^;]+);", script):
        created |= set(topics.split())
    configured = {v for k, v in doc["x-nev-env"].items() if k.startswith("NEV_KAFKA_TOPIC_")}
    assert created == configured
    settings = load_settings(environ={})  # every topic the service needs is configured
    needed = {f"NEV_KAFKA_TOPIC_{t.upper()}" for t in ("vehicle", "charger", "battery", "tcec")}
    assert needed | {"NEV_KAFKA_TOPIC_DLQ", "NEV_KAFKA_TOPIC_ALERTS"} <= set(doc["x-nev-env"])
    assert settings.kafka.topic_dlq in created


def test_secrets_come_from_the_env_file_and_mounted_paths_exist() -> None:
    doc = _compose()
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name, secret in doc["secrets"].items():
        assert secret["environment"] in example, f"secret {name}: add it to deploy/.env.example"
        assert example[secret["environment"]].startswith("change-me"), "no real secret committed"
    for service in doc["services"].values():
        for used in service.get("secrets") or []:
            assert used in doc["secrets"]
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{volume}: {DEPLOY / source} is missing"
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().split()


def test_prometheus_scrapes_the_services_where_they_serve(tmp_path: Path) -> None:
    doc = _compose()
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")[0]
    targets = {
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    for name in ("nev-ingest", "nev-gateway"):
        service = doc["services"][name]
        s = check_settings(_env(service), tmp_path)
        gateway = service["command"][0] == "gateway"
        port = s.gateway.metrics_port if gateway else s.metrics.port
        host = s.gateway.metrics_host if gateway else s.metrics.host
        assert f"{name}:{port}" in targets, f"prometheus.yml does not scrape {name}:{port}"
        assert host == "0.0.0.0", f"{name} serves its metrics on loopback only"  # noqa: S104
    grafana = doc["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    provider = load_yaml(DEPLOY / "grafana/provisioning/dashboards/dashboards.yml")[0]
    (path,) = [p["options"]["path"] for p in provider["providers"]]
    assert mounts["./grafana/dashboards"] == path  # the dashboards are where Grafana looks


def test_kafka_keeps_its_log_on_the_data_volume() -> None:
    """apache/kafka's own server.properties puts the log in /tmp/kraft-combined-logs, in the
    container's layer: without KAFKA_LOG_DIRS pointing at the mounted volume a re-created
    container starts with no topics and no retained frames (a restore from Kafka impossible)."""
    kafka = _compose()["services"]["kafka"]
    volumes = dict(v.split(":")[:2] for v in kafka["volumes"])
    assert _env(kafka).get("KAFKA_LOG_DIRS") == volumes["kafka-data"], "set KAFKA_LOG_DIRS"


def test_the_database_is_healthy_only_over_tcp_and_migrate_retries() -> None:
    """TimescaleDB's first start runs its init scripts on a socket-only server: pg_isready
    without -h calls that ready, migrate (over TCP) fails, and the service, waiting for
    migrate's success, never starts. The check asks TCP, and a failed migrate runs again."""
    services = _compose()["services"]
    test = services["timescaledb"]["healthcheck"]["test"]
    assert "pg_isready" in test and "-h" in test, "pg_isready -h 127.0.0.1: over TCP"
    assert test[test.index("-h") + 1] == "127.0.0.1"
    assert services["migrate"]["restart"] == "on-failure"
