"""The secure dev stack's certificates and passwords (``devtools/devstack/tls.py``, openssl CLI):
the server certificate chains to the stack's CA and names IP 127.0.0.1 only, every key and
password is readable by its owner only, and a second ``prepare`` keeps what the first made."""

from __future__ import annotations

import os
import shlex
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from devtools.devstack import ServiceState, StackState, stack, tls
from devtools.devstack import kafka_secure as ks
from devtools.devstack.process import start_time
from devtools.settings import load_dev_settings
from ingest.config.load import load_settings

pytestmark = pytest.mark.unit


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_server_certificate_chains_to_the_ca_for_127_0_0_1_only(tmp_path: Path) -> None:
    files = ks.prepare(tmp_path)
    cert = files.tls_dir / "server.crt"
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(files.ca), "-verify_ip", "127.0.0.1", str(cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    wrong = subprocess.run(
        ["openssl", "verify", "-CAfile", str(files.ca), "-verify_hostname", "localhost", str(cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert wrong.returncode != 0  # the tests' "wrong host name" depends on this
    other = tls.make_ca(tmp_path / "other", "another CA")
    untrusted = subprocess.run(
        ["openssl", "verify", "-CAfile", str(other.cert), str(cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert untrusted.returncode != 0
    ssl.create_default_context(cafile=str(files.ca))  # a CA file Python's ssl loads


def test_keys_and_passwords_are_private_and_kept(tmp_path: Path) -> None:
    files = ks.prepare(tmp_path)
    private = [files.tls_dir / "ca.key", files.tls_dir / "server.key", files.keystore]
    private += sorted(files.secrets.glob("*.password"))
    assert len(private) == 3 + len(ks.USERS) + 3
    assert {p.name: _mode(p) for p in private} == {p.name: 0o600 for p in private}
    assert _mode(files.secrets) == 0o700
    passwords = {user: files.password(user) for user in ks.USERS}
    assert len(set(passwords.values())) == len(ks.USERS)  # one password per user
    cert = (files.tls_dir / "server.crt").read_bytes()
    again = ks.prepare(tmp_path)
    assert {user: again.password(user) for user in ks.USERS} == passwords
    assert (files.tls_dir / "server.crt").read_bytes() == cert


def test_acls_give_each_role_its_job_only() -> None:
    raw = ["veh", "chg"]
    acls = set(ks.acls(raw, "dlq", "alerts", "grp"))
    gateway = {a for a in acls if a[0] == ks.GATEWAY}
    # the raw topics and dead letters (the frames it refuses; its start check wants the DLQ
    # and reads each topic's max.message.bytes: DESCRIBE_CONFIGS, or that check is not made)
    assert gateway == {
        (ks.GATEWAY, "TOPIC", "LITERAL", t, op)
        for t in [*raw, "dlq"]
        for op in ("WRITE", "DESCRIBE", "DESCRIBE_CONFIGS")
    }
    service_writes = {a[3] for a in acls if a[0] == ks.SERVICE and a[4] == "WRITE"}
    assert service_writes == {"dlq", "alerts"}
    service_reads = {a[3] for a in acls if a[0] == ks.SERVICE and a[4] == "READ"}
    assert service_reads == {"veh", "chg", "grp"}
    assert not any(a[0] == ks.ADMIN for a in acls)  # the super user needs none


def test_devstack_env_of_a_secure_stack_configures_the_service(tmp_path: Path) -> None:
    """``devstack env``'s lines, read by the service's own config loader: SASL_SSL as
    nev-service and verify-full as nev_service, with the passwords read from their files."""
    files = ks.prepare(tmp_path)
    me, started = os.getpid(), start_time(os.getpid())  # "running": this process stands in
    state = StackState(state_dir=tmp_path)
    secure = {"secure": True, "tls_dir": str(files.tls_dir)}
    state.services["postgres"] = ServiceState(
        "postgres", 5432, "postgresql://nev_service@127.0.0.1:5432/nev", "", me, started, secure
    )
    state.services["kafka"] = ServiceState(
        "kafka", 9093, "127.0.0.1:9093", "", me, started, dict(secure)
    )
    state.save()
    dev = load_dev_settings(environ={"NEV_DEVSTACK_STATE_DIR": str(tmp_path)})
    lines = stack.env_lines(dev)

    environ = {}
    for line in lines:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            environ[name] = shlex.split(value)[0]
    settings = load_settings(environ=environ)
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_username == ks.SERVICE
    assert settings.kafka.sasl_password == files.password(ks.SERVICE)
    assert settings.kafka.ssl_cafile == str(files.ca)
    assert settings.postgres.password == files.password("postgres-service")
    assert settings.postgres.sslmode == "verify-full"
    # No password by value in what a shell history or a CI log would keep.
    text = "\n".join(lines)
    assert not any(files.password(user) in text for user in ks.USERS)
    assert f"NEV_KAFKA_SASL_USERNAME={ks.GATEWAY}" in text  # the gateways' login, as a comment
