"""Generated telemetry for rule tests and the alerts benchmark (decoded-row form).

- ``normal_day``: one ordinary day of a fleet: morning and evening drives, AC or DC charging,
  the 3 minutes of data after power-off, realistic load sag, heating, sensor spreads, a few
  sentinel values, duplicate reissues and a delayed (reissued) stretch after a network gap.
  Nothing in it is a safety event, so the default rules must raise nothing.
- ``thermal_runaway``: one vehicle whose cell heats at 1.5 °C/s while its voltage collapses,
  reported at 10 s until the BMS alarms, then at 1 Hz (GB/T 32960.3 Annex B: 1 s period during
  level-3 alarms), with the 30 s before the alarm re-sent as reissue (0x03) frames.

Deterministic for a seed. Frames come out in each vehicle's delivery order.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from contract.clock import CHINA_TZ
from contract.rows import FrameRows, PackRow, VehicleRow
from devtools.sim import envelope

__all__ = ["DAY_START_MS", "normal_day", "thermal_runaway", "vin_of"]

DAY_START_MS = 1_782_835_200_000  # 2026-07-01 00:00 +08:00, the day GB 38031-2025 applies
_F = VehicleRow._fields.index
_TEMPLATE: list[object] = [None] * len(VehicleRow._fields)
_TEMPLATE[_F("run_mode")] = 1
_TEMPLATE[_F("fault_count")] = 0
_TEMPLATE[_F("signature_missing")] = False  # NOT NULL in the table; generated frames are signed
_I_VIN, _I_TS, _I_ED, _I_CMD = _F("vin"), _F("ts"), _F("edition"), _F("command")
_I_STATE, _I_CHG, _I_SPEED, _I_ODO = (
    _F("vehicle_state"), _F("charging_state"), _F("speed_kmh"), _F("odometer_km")
)  # fmt: skip
_I_U, _I_I, _I_SOC, _I_DCDC = (
    _F("total_voltage_v"), _F("total_current_a"), _F("soc_pct"), _F("dcdc_state")
)  # fmt: skip
_I_GEAR, _I_INS, _I_CMAX, _I_CMIN = (
    _F("gear"), _F("insulation_kohm"), _F("max_cell_voltage_v"), _F("min_cell_voltage_v")
)  # fmt: skip
_I_TMAX, _I_TMIN, _I_DER = _F("max_temp_c"), _F("min_temp_c"), _F("extremes_derived")
_I_LVL, _I_FLAGS = _F("max_alarm_level"), _F("general_flags")
_EPOCH = datetime(1970, 1, 1, 8, tzinfo=CHINA_TZ)  # the Unix epoch, in Beijing time


def _ts(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)  # cheaper than fromtimestamp, same value


_CELLS = 96  # cells in series per pack (a 350 V class pack)


def vin_of(i: int, prefix: str = "LNEVTEST") -> str:
    """A 17-character VIN for scenario vehicle ``i``."""
    return envelope.vin_of(i, prefix)


def _ocv(soc: float) -> float:
    """Open-circuit cell voltage of an NMC cell, roughly, from SOC %."""
    return 3.40 + 0.0075 * soc


class _Vehicle:
    """The physical state of one generated vehicle, advanced frame by frame."""

    def __init__(self, vin: str, rng: random.Random) -> None:
        self.vin = vin
        self.rng = rng
        self.edition = 2025 if rng.random() < 0.4 else 2016
        self.soc = rng.uniform(45.0, 90.0)
        self.ambient = rng.uniform(18.0, 33.0)
        self.temp = self.ambient + rng.uniform(0.0, 3.0)
        self.odo = rng.uniform(1_000.0, 90_000.0)
        self.insulation = rng.choice((3_000, 8_000, 20_000, 60_000))
        self.cell_spread = rng.uniform(0.008, 0.035)
        self.probe_spread = rng.randint(1, 4)

    def frame(
        self, t: int, *, state: int, charging: int, current: float, speed: float, command: int = 2
    ) -> FrameRows:
        rng = self.rng
        ocv = _ocv(self.soc)
        cell_min = ocv - current * 0.0009 - self.cell_spread  # load sag of the weakest cell
        cell_max = ocv - current * 0.0007
        pack_v = round((ocv - current * 0.0008) * _CELLS, 1)
        t_max = round(self.temp)
        t_min = t_max - self.probe_spread
        flags, level = 0, 0
        if self.soc < 15:
            flags, level = 1 << 4, 1  # SOC-low, level 1: not a safety rule
        row = _TEMPLATE.copy()  # positional: ~3x cheaper than VehicleRow(**fields)
        row[_I_VIN] = self.vin
        row[_I_TS] = ts = _ts(t)
        row[_I_ED] = self.edition
        row[_I_CMD] = command
        row[_I_STATE] = state
        row[_I_CHG] = charging
        row[_I_SPEED] = round(speed, 1)
        row[_I_ODO] = round(self.odo, 1)
        row[_I_U] = pack_v
        row[_I_I] = round(current, 1)
        row[_I_SOC] = int(self.soc)
        row[_I_DCDC] = 1 if state == 1 else 2
        row[_I_GEAR] = 0x0E if speed else 0x0F
        row[_I_INS] = self.insulation
        row[_I_CMAX] = round(cell_max, 3)
        row[_I_CMIN] = round(cell_min, 3)
        row[_I_TMAX] = t_max
        row[_I_TMIN] = t_min
        row[_I_DER] = self.edition == 2025
        row[_I_LVL] = level
        row[_I_FLAGS] = flags
        if rng.random() < 0.005:  # an "abnormal"/"invalid" sentinel now and then
            row[rng.choice((_I_TMAX, _I_CMIN, _I_SOC, _I_FLAGS))] = None
        pack = PackRow(
            self.vin, ts, 1, pack_v, round(current, 1), _CELLS, 1, b"", b"",
            round(cell_min * 1000), round(cell_max * 1000), t_min, t_max,
        )  # fmt: skip
        return FrameRows(
            edition=self.edition,
            command=command,
            vin=self.vin,
            ts_ms=t,
            vehicle=VehicleRow._make(row),
            packs=[pack],
        )


def _drive(v: _Vehicle, t: int, minutes: float, period_ms: int) -> Iterator[FrameRows]:
    rng = v.rng
    speed = 0.0
    for _ in range(int(minutes * 60_000 / period_ms)):
        speed = min(120.0, max(0.0, speed + rng.uniform(-15.0, 15.0)))
        current = max(-60.0, speed * 1.6 + rng.uniform(-40.0, 80.0))  # regen is negative
        v.soc = max(5.0, v.soc - current * period_ms / 3_600_000 / 1.5)
        v.temp += (v.ambient + 12.0 - v.temp) * 0.002 * period_ms / 1000  # slow drift to +12 °C
        v.odo += speed * period_ms / 3_600_000
        yield v.frame(t, state=1, charging=3, current=current, speed=speed)
        t += period_ms


def _charge(v: _Vehicle, t: int, fast: bool, period_ms: int) -> Iterator[FrameRows]:
    current = -150.0 if fast else -18.0
    rise = 0.004 if fast else 0.0008  # °C per second while charging
    target = min(v.soc + (50.0 if fast else 25.0), 95.0)
    while v.soc < target:
        v.soc += -current * period_ms / 3_600_000 / 1.5
        v.temp = min(v.temp + rise * period_ms / 1000, v.ambient + 15.0)
        yield v.frame(t, state=2, charging=1, current=current, speed=0.0)
        t += period_ms


def _vehicle_day(i: int, seed: int, period_ms: int) -> Iterator[FrameRows]:
    rng = random.Random(seed * 1_000_003 + i)
    v = _Vehicle(vin_of(i), rng)
    trips = [
        (7.5 + rng.uniform(-0.5, 1.0), rng.uniform(20, 50)),
        (12.0 + rng.uniform(-0.5, 0.5), rng.uniform(0, 15)),
        (18.0 + rng.uniform(-0.5, 1.0), rng.uniform(20, 60)),
    ]
    for k, (hour, minutes) in enumerate(trips):
        t = DAY_START_MS + int(hour * 3_600_000)
        frames = list(_drive(v, t, minutes, period_ms))
        t += len(frames) * period_ms
        frames += [
            v.frame(t + n * period_ms, state=2, charging=3, current=0.5, speed=0.0)
            for n in range(18)
        ]
        if k == 2:  # evening charge after the last trip
            fast = rng.random() < 0.3
            frames += list(_charge(v, t + 20 * 60_000, fast, period_ms))
        yield from _deliver(frames, rng)


def _deliver(frames: list[FrameRows], rng: random.Random) -> Iterator[FrameRows]:
    """Delivery order: mostly in order; some duplicate reissues; a gap sent late as 0x03."""
    gap = rng.randrange(len(frames)) if frames and rng.random() < 0.2 else -1
    held: list[FrameRows] = []
    for n, fr in enumerate(frames):
        if gap <= n < gap + 12:  # ~2 minutes without coverage: stored, reissued afterwards
            held.append(_as_reissue(fr))
            continue
        yield fr
        if held and n >= gap + 12:
            yield from held
            held = []
        if rng.random() < 0.01:
            yield _as_reissue(fr)
    yield from held


def _as_reissue(fr: FrameRows) -> FrameRows:
    assert fr.vehicle is not None
    return FrameRows(
        edition=fr.edition,
        command=0x03,
        vin=fr.vin,
        ts_ms=fr.ts_ms,
        vehicle=fr.vehicle._replace(command=0x03),
        packs=fr.packs,
    )


def normal_day(
    vehicles: int, *, seed: int = 1, period_s: float = 10.0, first: int = 0
) -> Iterator[FrameRows]:
    """Frames of a normal day for vehicles ``first`` .. ``first + vehicles - 1``, vehicle after
    vehicle (lazily: taking a few frames of each is cheap)."""
    for i in range(first, first + vehicles):
        yield from _vehicle_day(i, seed, int(period_s * 1000))


def thermal_runaway(
    vin: str = "LNEVTR0000000001", *, edition: int = 2025, seed: int = 7, heat_rate: float = 1.5
) -> list[FrameRows]:
    """One vehicle, parked and charging, whose cell goes into thermal runaway.

    10 s frames while normal; the cell heats at ``heat_rate`` °C/s from t0; at 55 °C the BMS
    raises a level-3 high-temperature alarm (bit 1) and the terminal reports at 1 Hz, re-sending
    the previous 30 s as reissue frames; 20 s later the cell's voltage collapses to ~0.5 V over
    4 s and (2025 only) the BMS sets the thermal-event flag (bit 23, level 4).
    """
    rng = random.Random(seed)
    v = _Vehicle(vin, rng)
    v.edition = edition
    v.cell_spread, v.temp, v.soc = 0.02, 32.0, 70.0
    t0 = DAY_START_MS + 14 * 3_600_000
    out: list[FrameRows] = []
    t, heating_from, alarm_at = t0 - 120_000, t0, None
    collapse_at: int | None = None
    while t < t0 + 150_000:
        fr = v.frame(t, state=2, charging=1, current=-18.0, speed=0.0)
        assert fr.vehicle is not None
        if t >= heating_from:
            # 210 °C is the top of the protocol's temperature range (byte 250 - 40)
            v.temp = min(210.0, 32.0 + heat_rate * (t - heating_from) / 1000)
        vehicle = fr.vehicle
        if alarm_at is not None:
            vehicle = vehicle._replace(max_alarm_level=3, general_flags=1 << 1)
        if collapse_at is not None and t >= collapse_at:
            frac = min(1.0, (t - collapse_at) / 4000)
            before = vehicle.min_cell_voltage_v or 3.9
            cmin = round(before * (1 - frac) + 0.5 * frac, 3)
            vehicle = vehicle._replace(
                min_cell_voltage_v=cmin,
                total_voltage_v=round((vehicle.total_voltage_v or 370.0) - (before - cmin), 1),
            )
            if edition == 2025:
                vehicle = vehicle._replace(max_alarm_level=4, general_flags=(1 << 1) | (1 << 23))
        out.append(
            FrameRows(edition=edition, command=2, vin=vin, ts_ms=t, vehicle=vehicle, packs=fr.packs)
        )
        if alarm_at is None and v.temp >= 55.0:
            alarm_at = t
            collapse_at = t + 20_000
            out.extend(_as_reissue(f) for f in out[-4:-1])  # the 30 s before the alarm, again
        t += 1000 if alarm_at is not None else 10_000
    return out
