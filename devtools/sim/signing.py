"""Test-only signing for GB/T 32960-2025 frames: keys and signatures made by the ``openssl``
CLI (no crypto package is a dependency), so the native RustCrypto verifier is checked against
another implementation. Keys are made per test in a temporary directory and protect nothing."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devtools.sim.envelope import frame, time_bytes

SM2_ID: Final = "1234567812345678"
RSA: Final = 0x02
SM2: Final = 0x01
# An engine block (2025, 2 bytes): a real-time frame the decoder stores (rtm_con's vector).
ENGINE_BLOCK: Final = bytes.fromhex("04FFFF")


def _openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def _der_integers(der: bytes) -> tuple[bytes, bytes]:
    """r and s of a DER ``SEQUENCE { INTEGER r, INTEGER s }`` (what openssl writes for SM2)."""
    assert der[0] == 0x30
    pos = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = []
    for _ in range(2):
        assert der[pos] == 0x02
        n = der[pos + 1]
        out.append(der[pos + 2 : pos + 2 + n].lstrip(b"\0").rjust(32, b"\0"))
        pos += 2 + n
    return out[0], out[1]


@dataclass(frozen=True)
class SigningKey:
    algorithm: int
    private_pem: Path
    public_pem: bytes
    raw: bytes  # the activation's form: RSA modulus||exponent, SM2 x||y

    def sign(self, data: bytes) -> tuple[bytes, bytes]:
        """(r, s) of Table 8 for ``data``."""
        if self.algorithm == RSA:
            return _openssl("dgst", "-sha256", "-sign", str(self.private_pem), data=data), b""
        der = _openssl(
            "dgst", "-sm3", "-sign", str(self.private_pem), "-sigopt", f"distid:{SM2_ID}",
            data=data,
        )  # fmt: skip
        return _der_integers(der)


def make_key(directory: Path, algorithm: int, name: str = "key") -> SigningKey:
    path = directory / f"{name}-{algorithm}.pem"
    if algorithm == RSA:
        _openssl(
            "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path)
        )
        modulus = _openssl("rsa", "-in", str(path), "-noout", "-modulus").decode()
        raw = bytes.fromhex(modulus.strip().split("=", 1)[1]) + b"\x01\x00\x01"
    else:
        _openssl("genpkey", "-algorithm", "SM2", "-out", str(path))
        spki = _openssl("pkey", "-in", str(path), "-pubout", "-outform", "DER")
        raw = spki[-64:]  # SPKI ends with the BIT STRING 04 || x || y
    public_pem = _openssl("pkey", "-in", str(path), "-pubout")
    return SigningKey(algorithm, path, public_pem, raw)


def table8(algorithm: int, r: bytes, s: bytes) -> bytes:
    return bytes((algorithm,)) + len(r).to_bytes(2, "big") + r + len(s).to_bytes(2, "big") + s


def realtime(
    vin: str, ts_ms: int, key: SigningKey | None, *, forge: bool = False, claim: int | None = None
) -> bytes:
    """A 2025 real-time frame signed by ``key`` (unsigned when None); ``forge`` changes a
    signed byte after signing (the BCC stays right: only the signature can tell); ``claim``:
    the signature type written (the key's own by default)."""
    body = time_bytes(ts_ms) + ENGINE_BLOCK
    unit = body
    if key is not None:
        r, s = key.sign(body)
        if forge:
            unit = body[:-1] + bytes((body[-1] ^ 0x01,))
        unit += b"\xff" + table8(key.algorithm if claim is None else claim, r, s)
    return frame(2025, 0x02, vin, unit)


def activation(vin: str, ts_ms: int, key: SigningKey, chip: str = "CHIPTEST00000001") -> bytes:
    """A 2025 activation (0x09, Table B.3) registering ``key``, signed with it (time..VIN)."""
    body = time_bytes(ts_ms) + chip.encode().ljust(16)[:16]
    body += len(key.raw).to_bytes(2, "big") + key.raw + vin.encode()
    r, s = key.sign(body)
    return frame(2025, 0x09, vin, body + table8(key.algorithm, r, s))
