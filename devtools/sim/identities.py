"""Millions of distinct, valid device identities as pure functions of (seed, index): nothing is
stored, so the load generator's memory does not grow with ``--devices``.

- ``vin``: 17 characters of the GB 16735 / ISO 3779 alphabet (no I, O, Q) with the check
  digit in position 9 (weights 8 7 6 5 4 3 2 10 0 9 8 7 6 5 4 3 2, sum mod 11, 10 = ``X``).
  Positions 11-17 carry the index (plant character + 6-digit serial), so VINs are distinct up
  to ``MAX_DEVICES``; positions 4-8 carry the run (from the seed), so two seeds do not collide.
- ``pack_code``: a GB/T 34014 code (``plans.standalone_pack_code``: 24 characters, a valid
  date code, serial from the index).
- ``charger_id`` / ``connector_ids``: the charger profile's 17-character header code
  (OperatorID + pile number) and the entity ids ``operator_id:connector_id`` that storage
  keys chargers by (docs/storage.md).
"""

from __future__ import annotations

from typing import Final

from devtools.sim import plans
from devtools.sim.options import FleetOptions

__all__ = [
    "MAX_DEVICES",
    "VIN_ALPHABET",
    "charger_entity_ids",
    "charger_id",
    "pack_code",
    "vin",
    "vin_check_digit",
]

VIN_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"  # GB 16735: no I, O, Q
_LETTERS: Final = "ABCDEFGHJKLMNPRSTUVWXYZ"
# ISO 3779 transliteration of letters to numbers, and the position weights.
_VALUE: Final = dict(
    zip(
        _LETTERS, (1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9), strict=True
    )
)
_VALUE.update({str(d): d for d in range(10)})
_WEIGHTS: Final = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_MODEL_YEARS: Final = "JKLMNPRST"  # 2018 .. 2026
_WMI: Final = "LSV"  # a made-up Chinese (L) manufacturer code for simulated vehicles
# One plant character (33 values) times a 6-digit serial.
MAX_DEVICES: Final = len(VIN_ALPHABET) * 1_000_000


def vin_check_digit(v: str) -> str:
    """The ISO 3779 check digit of a 17-character VIN (position 9 is ignored: weight 0)."""
    total = sum(_VALUE[c] * w for c, w in zip(v, _WEIGHTS, strict=True))
    r = total % 11
    return "X" if r == 10 else str(r)


def _run(seed: int) -> str:
    """Five VIN characters naming the run (the VDS, positions 4-8), from the seed."""
    n = int(plans.unit(seed, 1) * len(VIN_ALPHABET) ** 5)
    out = ""
    for _ in range(5):
        n, r = divmod(n, len(VIN_ALPHABET))
        out += VIN_ALPHABET[r]
    return out


def vin(seed: int, i: int) -> str:
    """The VIN of simulated vehicle ``i`` (0 <= i < ``MAX_DEVICES``) of run ``seed``."""
    if not 0 <= i < MAX_DEVICES:
        raise ValueError(f"vehicle index {i} outside 0..{MAX_DEVICES - 1}")
    plant, serial = divmod(i, 1_000_000)
    year = _MODEL_YEARS[int(plans.unit(seed, 2, i) * len(_MODEL_YEARS))]
    body = f"{_WMI}{_run(seed)}0{year}{VIN_ALPHABET[plant]}{serial:06d}"
    return body[:8] + vin_check_digit(body) + body[9:]


def _fleet(seed: int, piles: int, packs: int) -> FleetOptions:
    """The options ``plans`` derives charger and pack identities from (a run tag per seed)."""
    return FleetOptions(
        vehicles=0, chargers=piles, packs=packs, seed=seed, runaway=False, vin_prefix=f"S{seed}"
    )


def pack_code(seed: int, k: int) -> str:
    """The GB/T 34014 code of standalone pack ``k`` of run ``seed``."""
    return plans.standalone_pack_code(_fleet(seed, 0, k + 1), k)


def charger_id(seed: int, pile: int, piles: int) -> str:
    """The 17-character header code (OperatorID + 8-digit pile number) of pile ``pile``."""
    return plans.charger_id_of(pile, piles, plans.tag_of(f"S{seed}"))


def charger_entity_ids(seed: int, pile: int, piles: int) -> tuple[str, ...]:
    """``operator_id:connector_id`` of each connector of pile ``pile``: the ids storage keeps
    charger state under."""
    tag = plans.tag_of(f"S{seed}")
    op = plans.operator_of(pile, piles, tag)
    return tuple(
        f"{op}:{plans.connector_id_of(pile, gun, piles, tag)}"
        for gun in range(plans.CONNECTORS_PER_PILE)
    )
