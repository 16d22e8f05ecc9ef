"""``nev-ingest config show`` with every secret setting set to a distinctive value (given
directly, by ``<key>_file``, and as a password inside each DSN setting): none appears in its
output, in either format. The list of secrets comes from the settings' own field specs, so a
secret added later is covered without touching this test."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.config.fields import spec_of
from ingest.config.load import SERVICE

pytestmark = pytest.mark.unit


def _secret_keys() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(section, key) of every secret field, and of every DSN field (a password inside)."""
    secrets, dsns = [], []
    for section, cls in SERVICE.sections.items():
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            kind = spec_of(f).secret
            if kind == "secret":  # the kind of field, not a password
                secrets.append((section, f.name))
            elif kind == "dsn":
                dsns.append((section, f.name))
    return secrets, dsns


def _environ(tmp_path: Path, *, by_file: bool) -> tuple[dict[str, str], list[str]]:
    secrets, dsns = _secret_keys()
    assert ("kafka", "sasl_password") in secrets and ("postgres", "password") in secrets
    assert ("postgres", "dsn") in dsns
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEV_")}
    env["NEV_KAFKA_SECURITY_PROTOCOL"] = "SASL_SSL"
    env["NEV_KAFKA_SASL_USERNAME"] = "svc"
    values = []
    for i, (section, key) in enumerate(secrets):
        value = f"Zq{i}SecretValue{section}{key}Xv"
        values.append(value)
        name = f"NEV_{section.upper()}_{key.upper()}"
        if by_file:
            path = tmp_path / f"{section}-{key}.txt"
            path.write_text(value + "\n")
            env[f"{name}_FILE"] = str(path)
        else:
            env[name] = value
    for i, (section, key) in enumerate(dsns):
        value = f"Wk{i}DsnPassword{key}Yj"
        values.append(value)
        dsn = f"postgresql://nev:{value}@127.0.0.1:5432/db{i}?sslmode=require&password={value}"
        env[f"NEV_{section.upper()}_{key.upper()}"] = dsn
    return env, values


@pytest.mark.parametrize("by_file", [False, True], ids=["values", "files"])
@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_config_show_prints_no_secret(tmp_path: Path, fmt: str, by_file: bool) -> None:
    env, values = _environ(tmp_path, by_file=by_file)
    result = subprocess.run(
        [sys.executable, "-m", "ingest", "config", "show", "--format", fmt],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    # Control: the settings were read (the user name is not a secret and is shown).
    assert "svc" in result.stdout and "SASL_SSL" in result.stdout
    leaked = [value for value in values if value in output]
    assert leaked == [], output
