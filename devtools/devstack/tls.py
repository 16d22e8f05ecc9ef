"""Certificates and passwords of the secure dev stack (``devstack up --secure``), made with the
``openssl`` CLI (``cryptography`` is not a dependency of nev-ingest, openssl is on every machine
that has PostgreSQL).

Layout under ``<state_dir>/tls/``::

    ca.crt, ca.key          the stack's own CA (clients trust ca.crt: ssl_cafile, sslrootcert)
    server.crt, server.key  the broker's and PostgreSQL's certificate, for IP 127.0.0.1 only:
                            a client that connects by another name (localhost) fails the host
                            name check, which the tests rely on
    broker.p12              server.key + server.crt as the broker's PKCS#12 key store
    secrets/<name>.password one password a file (users of Kafka and PostgreSQL, the key store)

Every key and password file is 0600: readable by whoever runs the stack, nobody else.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devtools.devstack.process import run
from ingest.errors import UserError

HOST_IP: Final = "127.0.0.1"
DAYS: Final = 825  # the longest validity that macOS / browsers accept for a server certificate


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA: its certificate (what clients trust) and its key (what signs server certificates)."""

    cert: Path
    key: Path


def _openssl(args: list[str], what: str) -> None:
    run(["openssl", *args], what=f"openssl: {what} (is the openssl CLI installed?)")


def _private(path: Path) -> None:
    os.chmod(path, 0o600)


def make_ca(directory: Path, name: str = "nev-ingest devstack CA") -> Authority:
    """A new self-signed CA in ``directory`` (``ca.crt``, ``ca.key``), unless one is there."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = Authority(cert=directory / "ca.crt", key=directory / "ca.key")
    if ca.cert.is_file() and ca.key.is_file():
        return ca
    _openssl(
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",  # RSA: Java's PKCS#12 and every TLS stack read it without options
            "-nodes",
            "-keyout",
            str(ca.key),
            "-out",
            str(ca.cert),
            "-days",
            str(DAYS * 4),
            "-subj",
            f"/CN={name}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        "CA certificate",
    )
    _private(ca.key)
    return ca


def issue_server(ca: Authority, directory: Path, name: str = "server") -> tuple[Path, Path]:
    """``<name>.crt`` / ``<name>.key`` for IP 127.0.0.1, signed by ``ca`` (kept if present)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    if cert.is_file() and key.is_file():
        return cert, key
    csr = directory / f"{name}.csr"
    _openssl(
        [
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            f"/CN={HOST_IP}",
        ],
        f"{name} key and request",
    )
    _private(key)
    with tempfile.NamedTemporaryFile("w", suffix=".ext", dir=directory, delete=False) as ext:
        ext.write(
            f"subjectAltName=IP:{HOST_IP}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
        )
    try:
        _openssl(
            [
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(ca.cert),
                "-CAkey",
                str(ca.key),
                "-CAcreateserial",
                "-out",
                str(cert),
                "-days",
                str(DAYS),
                "-extfile",
                ext.name,
            ],
            f"{name} certificate",
        )
    finally:
        os.unlink(ext.name)
        csr.unlink(missing_ok=True)
    return cert, key


def pkcs12(cert: Path, key: Path, ca: Authority, out: Path, password_file: Path) -> Path:
    """``cert`` + ``key`` (+ the CA) as a PKCS#12 key store, for the broker's JVM."""
    if not out.is_file():
        _openssl(
            [
                "pkcs12",
                "-export",
                "-in",
                str(cert),
                "-inkey",
                str(key),
                "-certfile",
                str(ca.cert),
                "-name",
                "broker",
                "-out",
                str(out),
                "-passout",
                f"file:{password_file}",
            ],
            "broker key store",
        )
        _private(out)
    return out


def password(directory: Path, name: str) -> Path:
    """The file holding ``name``'s password (made once, 0600): ``<directory>/<name>.password``.

    32 URL-safe characters: nothing a properties file, a JAAS line or SQL would need to quote.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / f"{name}.password"
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24) + "\n")
    return path


def read_password(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise UserError(f"devstack: cannot read {path}: {exc.strerror}") from None
