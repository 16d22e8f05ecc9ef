"""The ``security`` section: what the worker does with GB/T 32960-2025 vehicle signatures
(docs/security.md, "Signatures"). One line in ``ingest.config.settings`` hooks it in."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.config.fields import Section, setting

__all__ = ["SecuritySettings"]


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class SecuritySettings(Section):
    signatures: str = setting(
        "flag",
        "2025 frame signatures. off: not checked; flag: stored, and a bad, unknown-key or "
        "missing signature is recorded in signature_events; reject: a bad or unknown-key "
        "signature sends the frame to the dead-letter topic (bad_signature).",
        choices=("off", "flag", "reject"),
    )
    verify: str = setting(
        "first_per_session",
        "Which signed frames are verified. every: all (a core verifies ~6,000 RSA-2048 or "
        "~1,000 SM2 frames/s, docs/security.md); first_per_session: a vehicle's first after a "
        "worker start, a new key or a failure, then sample; sample: sample_per_mille of them.",
        choices=("every", "first_per_session", "sample"),
    )
    sample_per_mille: int = setting(
        10,
        "Frames per thousand verified after the first (first_per_session, sample).",
        minimum=0,
        maximum=1000,
    )
    activation_keys: str = setting(
        "tofu",
        "Activation frames (0x09). tofu: register the key of a VIN that has none (trust on "
        "first use); admin_only: keys only through nev-ingest keys add.",
        choices=("tofu", "admin_only"),
    )
    key_refresh_s: float = setting(
        60.0, "Seconds between reloads of device_keys into a worker.", minimum=1.0, maximum=3600.0
    )
    key_cache_size: int = setting(
        1_000_000,
        "Most device keys a worker keeps (about 300 B each for RSA-2048).",
        minimum=1,
        maximum=10_000_000,
    )
