"""The secure dev stack's certificates and passwords (``devtools/devstack/tls.py``, openssl CLI):
the server certificate chains to the stack's CA and names IP 127.0.0.1 only, every key and
password is readable by its owner only, and a second ``prepare`` keeps what the first made."""

from __future__ import annotations

import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from devtools.devstack import kafka_secure as ks
from devtools.devstack import tls

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
    assert gateway == {
        (ks.GATEWAY, "TOPIC", "LITERAL", t, op) for t in raw for op in ("WRITE", "DESCRIBE")
    }
    service_writes = {a[3] for a in acls if a[0] == ks.SERVICE and a[4] == "WRITE"}
    assert service_writes == {"dlq", "alerts"}
    service_reads = {a[3] for a in acls if a[0] == ks.SERVICE and a[4] == "READ"}
    assert service_reads == {"veh", "chg", "grp"}
    assert not any(a[0] == ks.ADMIN for a in acls)  # the super user needs none
