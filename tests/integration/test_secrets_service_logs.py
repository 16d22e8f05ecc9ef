"""Secrets never reach the service's output: ``nev-ingest run`` at DEBUG on a secure stack, with
the Kafka and PostgreSQL passwords given as values (not files) and inside the DSN, produces,
stores, dead-letters and stops; neither its log nor ``config show`` / ``config check`` in the
same environment holds any of the secrets."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.devstack import kafka_secure as ks
from tests.integration import pipeline_support as ps
from tests.integration import secure_support as ss
from tests.integration.secure_support import SecureStack
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

KEY_PASSWORD = "KeyPw7distinctive0Secret"  # kafka.ssl_key_password: set, unused (no key file)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    stack = SecureStack(tmp_path_factory.mktemp("secrets"))
    try:
        yield stack
    finally:
        stack.stop()


async def test_no_secret_in_service_logs_or_config_output(
    secure: SecureStack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    database = unique_name("secrets")
    await secure.new_database(database)
    env = secure.env(database, tmp_path, unique_name(ss.GROUP_PREFIX))
    kafka_password = secure.files.password(ks.SERVICE)
    pg_password = secure.files.password("postgres-service")
    secrets = [kafka_password, pg_password, KEY_PASSWORD]
    # The secrets as values, and the PostgreSQL password in the DSN too (masked there).
    del env.extra["NEV_KAFKA_SASL_PASSWORD_FILE"], env.extra["NEV_POSTGRES_PASSWORD_FILE"]
    env.extra["NEV_KAFKA_SASL_PASSWORD"] = kafka_password
    env.extra["NEV_KAFKA_SSL_KEY_PASSWORD"] = KEY_PASSWORD
    env.extra["NEV_POSTGRES_PASSWORD"] = pg_password
    env.dsn = env.dsn.replace("nev_service@", f"nev_service:{pg_password}@")

    messages = recent_fleet(5, 2, bad_ratio=0.1)
    async with ps.serving(env, "secrets", NEV_LOG_LEVEL="DEBUG") as svc:
        await ss.produce(secure, ks.GATEWAY, env.topic, messages)
        await ps.until(
            lambda: ss.caught_up(secure, database, env.group, env.topic),
            timeout_s=90,
            what="every offset committed",
        )
    log = svc.log.read_text(errors="replace")
    assert any(r.get("level") == "debug" for r in svc.logs()), "the log is not at DEBUG"
    assert "frame sent to the dead-letter topic" in log  # the error paths were logged too

    outputs = {"run": log}
    for command in ("show", "show --format json", "check"):
        outputs[f"config {command}"] = _cli(env, ["config", *command.split()])
    leaks = {(where, s[:4]) for where, text in outputs.items() for s in secrets if s in text}
    assert leaks == set()


def _cli(env: ps.PipelineEnv, argv: list[str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ingest", *argv],
        env=env.environ(NEV_LOG_LEVEL="DEBUG"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr
