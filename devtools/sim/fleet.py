"""A simulated fleet that speaks GB/T 32960: encoded frames of both editions, in time order.

Each vehicle has a physical state (SOC, pack temperature, odometer, position around Shenzhen)
that evolves between its real-time frames: driving (speed, discharge current, load sag of the
weakest cell), charging (AC or DC, negative current, slow heating) or parked. It logs in first
(0x01, with ICCID and pack codes) and sends real-time data (0x02) every ``interval_s``; now and
then a stretch of frames is held back and sent later as reissue (0x03), as after a network gap.

Bad input, as gateways see it: a flipped byte (bad checksum), a truncated frame, a wrong start
marker, a garbage record. One vehicle (``runaway``) goes into thermal runaway: its hottest cell
heats at 1.5 °C/s, it reports at 1 Hz once its BMS alarms (GB/T 32960.3 Annex B), and a cell's
voltage collapses, which is what the GB 38031 rule must catch.

With chargers and packs in the options (``devtools.sim.world``), some vehicles are coupled to
them by ``devtools.sim.plans``: one parks at a simulated charger and charges there (its SOC
is the plan's, which the charger reports too), another swaps its pack at a swap station
(logout, then a login with the station's pack code). Every vehicle logs in with a valid
GB/T 34014 code of its own pack (``plans.pack_code_of_vin``).

Pure and deterministic for a seed (no clock, no I/O): ``loadgen`` puts the frames on Kafka.
"""

from __future__ import annotations

import heapq
import math
import random
import zlib
from collections.abc import Iterator
from typing import Final, NamedTuple

from devtools.sim import envelope, plans
from devtools.sim.envelope import china_time
from devtools.sim.options import FleetOptions
from ingest.decoders import (
    Alarm,
    CellTemperatures,
    CellVoltages,
    DriveMotors,
    Extremes,
    Frame,
    Login,
    Logout,
    Motor,
    Position,
    TemperaturePack,
    Vehicle,
    VoltagePack,
    encode_frame,
)

__all__ = ["GOOD_KINDS", "FleetOptions", "Message", "corrupt", "fleet_messages", "vin_of"]


SHENZHEN: Final = (114.06, 22.55)  # lon, lat of the city centre
CELLS: Final = 96  # cells in series: a 350 V class pack
PROBES: Final = 32


# Message kinds of good records; every other kind is bad on purpose (a dead letter).
GOOD_KINDS: frozenset[str] = frozenset({"login", "realtime", "reissue", "logout", "tcec"})


class Message(NamedTuple):
    """One Kafka record to produce: key = the device identity, value = the raw frame (or a
    T/CEC push's JSON), to the raw topic of ``topic`` (vehicle | charger | battery | tcec)."""

    t_ms: int  # frame time (simulation clock), for ordering
    key: bytes
    value: bytes
    # login | realtime | reissue | logout | tcec; bad: bad_checksum | truncated | bad_start |
    # garbage | tcec_bad_json | tcec_missing_field | tcec_bad_code
    kind: str
    topic: str = "vehicle"
    headers: tuple[tuple[str, bytes], ...] = ()  # beyond the gateway's (T/CEC: interface ...)


def vin_of(i: int, prefix: str = "LNEVSIM") -> str:
    """A 17-character VIN for simulated vehicle ``i`` (the fleet's prefix by default)."""
    return envelope.vin_of(i, prefix)


class SimVehicle:
    """The physical state of one vehicle, advanced frame by frame."""

    def __init__(self, vin: str, rng: random.Random, edition: int) -> None:
        self.vin = vin
        self.rng = rng
        self.edition = edition
        self.soc = rng.uniform(35.0, 92.0)
        self.ambient = rng.uniform(18.0, 31.0)
        self.temp = self.ambient + rng.uniform(0.0, 3.0)
        self.odo = rng.uniform(500.0, 120_000.0)
        self.lon = SHENZHEN[0] + rng.uniform(-0.25, 0.25)
        self.lat = SHENZHEN[1] + rng.uniform(-0.12, 0.12)
        self.heading = rng.uniform(0.0, 2 * math.pi)
        self.speed = 0.0
        self.mode = rng.choices(("drive", "charge", "park"), (0.6, 0.15, 0.25))[0]
        self.fast_charge = rng.random() < 0.3
        self.cell_spread = rng.uniform(0.006, 0.03)
        self.insulation = rng.choice((3000, 8000, 20000, 50000))
        self.cell_offsets = [rng.uniform(0.0, 1.0) for _ in range(CELLS)]  # x cell_spread
        self.probe_offsets = [rng.randint(0, 3) for _ in range(PROBES)]
        # Thermal runaway: time it starts (ms) and when the failing cell collapses.
        self.heating_from: int | None = None
        self.collapse_at: int | None = None
        self.alarm = 0

    def step(self, dt_s: float) -> None:
        rng = self.rng
        if self.mode == "drive":
            self.speed = min(110.0, max(0.0, self.speed + rng.uniform(-12.0, 12.0)))
            current = max(-50.0, self.speed * 1.5 + rng.uniform(-20.0, 60.0))
            self.odo += self.speed * dt_s / 3600
            km = self.speed * dt_s / 3600
            self.heading += rng.uniform(-0.4, 0.4)
            self.lon += km / 102.0 * math.cos(self.heading)  # ~102 km per degree here
            self.lat += km / 111.0 * math.sin(self.heading)
            if self.soc < 15:
                self.mode = "charge"
        elif self.mode == "charge":
            self.speed = 0.0
            current = -120.0 if self.fast_charge else -16.0
            if self.soc > 95:
                self.mode = "park"
        else:
            self.speed = 0.0
            current = 0.4
        self.current = current
        self.soc = min(100.0, max(3.0, self.soc - current * dt_s / 3600 / 1.5))
        target = self.ambient + (10.0 if self.mode != "park" else 2.0)
        self.temp += (target - self.temp) * min(1.0, 0.002 * dt_s)

    def frame(self, t_ms: int, command: int = 0x02) -> Frame:
        ocv = 3.40 + 0.0075 * self.soc
        base_mv = round((ocv - self.current * 0.0008) * 1000)
        spread_mv = self.cell_spread * 1000
        cells = [(base_mv - int(spread_mv * o)) / 1000 for o in self.cell_offsets]
        temp = self.temp
        level, flags = 0, 0
        if self.heating_from is not None and t_ms >= self.heating_from:
            temp = min(200.0, self.temp + 1.5 * (t_ms - self.heating_from) / 1000)
            if temp >= 55:
                level, flags = 3, 1 << 1  # BMS: battery high-temperature alarm, level 3
            if self.collapse_at is not None and t_ms >= self.collapse_at:
                frac = min(1.0, (t_ms - self.collapse_at) / 4000)
                cells[0] = round(cells[0] * (1 - frac) + 0.5 * frac, 3)  # the failing cell
                if self.edition == 2025:
                    level, flags = 4, (1 << 1) | (1 << 23)  # thermal event (2025 bit 23)
        self.alarm = level
        temps = [min(210, round(temp) - o) for o in self.probe_offsets]
        pack_v = round(sum(cells), 1)
        i_max = max(range(CELLS), key=cells.__getitem__)
        i_min = min(range(CELLS), key=cells.__getitem__)
        p_max = max(range(PROBES), key=temps.__getitem__)
        p_min = min(range(PROBES), key=temps.__getitem__)
        ed2016 = self.edition == 2016
        rpm = int(self.speed * 80)
        blocks: list[object] = [
            Vehicle(
                vehicle_state=1 if self.mode == "drive" else 2,
                charging_state={"drive": 3, "charge": 1, "park": 3}[self.mode],
                run_mode=1,
                speed_kmh=round(self.speed, 1),
                odometer_km=round(self.odo, 1),
                total_voltage_v=pack_v,
                total_current_a=round(self.current, 1),
                soc_pct=int(self.soc),
                dcdc_state=1,
                gear=0x0E if self.speed else 0x0F,
                insulation_kohm=self.insulation,
                accel_pedal_pct=min(100, int(self.speed / 1.5)) if ed2016 else None,
                brake_pedal_pct=0 if ed2016 else None,
            ),
            DriveMotors(
                motors=(
                    Motor(
                        seq=1,
                        state=1 if self.speed else 3,
                        controller_temp_c=int(self.ambient + 8),
                        speed_rpm=rpm,
                        torque_nm=round(self.current * 1.1, 1),
                        temp_c=int(self.ambient + 15),
                        controller_voltage_v=pack_v if ed2016 else None,
                        controller_current_a=round(abs(self.current), 1) if ed2016 else None,
                    ),
                )
            ),
            Position(
                valid=True,
                longitude=round(self.lon, 6),
                latitude=round(self.lat, 6),
                coord_system=None if ed2016 else 1,
            ),
        ]
        if ed2016:
            blocks.append(
                Extremes(
                    max_cell_voltage_pack=1,
                    max_cell_voltage_cell=i_max + 1,
                    max_cell_voltage_v=cells[i_max],
                    min_cell_voltage_pack=1,
                    min_cell_voltage_cell=i_min + 1,
                    min_cell_voltage_v=cells[i_min],
                    max_temp_pack=1,
                    max_temp_probe=p_max + 1,
                    max_temp_c=temps[p_max],
                    min_temp_pack=1,
                    min_temp_probe=p_min + 1,
                    min_temp_c=temps[p_min],
                )
            )
        blocks.append(
            Alarm(max_level=level, general_flags=flags, bit_levels=None if ed2016 else ())
        )
        blocks.append(
            CellVoltages(
                packs=(
                    VoltagePack(
                        pack=1,
                        voltage_v=pack_v,
                        current_a=round(self.current, 1),
                        cell_count=CELLS,
                        first_cell=1,
                        cell_voltages_v=tuple(cells),
                    ),
                )
            )
        )
        blocks.append(
            CellTemperatures(
                packs=(TemperaturePack(pack=1, probe_count=PROBES, temps_c=tuple(temps)),)
            )
        )
        return Frame(
            edition=self.edition,
            command=command,
            vin=self.vin,
            time=china_time(t_ms),
            blocks=tuple(blocks),  # type: ignore[arg-type]
        )

    def login(self, t_ms: int, seq: int, codes: tuple[str, ...] | None = None) -> Frame:
        """A login (0x01) with ``codes`` (default: the vehicle's own pack, by its VIN)."""
        codes = codes or (plans.pack_code_of_vin(self.vin),)
        body = Login(
            login_seq=seq,
            # zlib.crc32, not hash(): str hashes change per process (PYTHONHASHSEED), and the
            # fleet must be the same bytes for the same seed in every run.
            iccid=f"898609{zlib.crc32(self.vin.encode()) % 10**14:014d}",
            pack_codes=codes,
            ress_count=1 if self.edition == 2016 else None,
            code_length=len(codes[0]) if self.edition == 2016 else None,
            bms_pack_counts=None if self.edition == 2016 else (1,),
        )
        return Frame(
            edition=self.edition, command=0x01, vin=self.vin, time=china_time(t_ms), body=body
        )

    def logout(self, t_ms: int, seq: int) -> Frame:
        return Frame(
            edition=self.edition,
            command=0x04,
            vin=self.vin,
            time=china_time(t_ms),
            body=Logout(seq),
        )

    def charge_at(self, plan: plans.ChargePlan, t_ms: int) -> None:
        """Parked at the plan's connector: charging in its window, the SOC the plan's."""
        self.mode = "charge" if plan.start_ms <= t_ms < plan.end_ms else "park"
        self.speed = 0.0
        self.soc = plan.soc_at(t_ms)
        pack_v = 96 * (3.40 + 0.0075 * self.soc)
        self.current = -plan.power_at(t_ms) * 1000 / pack_v if self.mode == "charge" else 0.4


def corrupt(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    """``raw`` damaged as gateways see it, and the kind of damage."""
    kind = rng.choices(("bad_checksum", "truncated", "bad_start", "garbage"), (5, 3, 1, 1))[0]
    if kind == "bad_checksum":
        i = rng.randrange(24, len(raw) - 1)  # a data byte: the BCC no longer matches
        return raw[:i] + bytes((raw[i] ^ 0x5A,)) + raw[i + 1 :], kind
    if kind == "truncated":
        return raw[: rng.randrange(10, len(raw) - 1)], kind
    if kind == "bad_start":
        return b"#$" + raw[2:], kind
    return rng.randbytes(rng.randrange(1, 300)), kind


def _vehicle_stream(i: int, o: FleetOptions, start_ms: int) -> Iterator[Message]:
    rng = random.Random(o.seed * 1_000_003 + i)  # simulated data, not secrets
    edition = 2025 if rng.random() < o.share_2025 else 2016
    v = SimVehicle(vin_of(i, o.vin_prefix), rng, edition)
    key = v.vin.encode()
    period = int(o.interval_s * 1000)
    t = start_ms + rng.randrange(period)  # devices are not synchronised
    runaway = o.runaway and i == 0
    if runaway:
        v.mode, v.soc, v.fast_charge = "charge", 70.0, True
        v.heating_from = o.end_ms - 150_000
        v.collapse_at = v.heating_from + 35_000
    charge = plans.vehicle_charge(o, i)
    swap = plans.swap_of_vehicle(o, i)
    if swap is not None:
        v.mode, v.soc = "park", swap.soc_out  # waiting at the swap station
    seq = 1 + i % 65000
    yield Message(t, key, encode_frame(v.login(t, seq)), "login")
    gap_from = rng.randrange(start_ms, o.end_ms) if rng.random() < o.gap_ratio else None
    held: list[Message] = []
    while t < o.end_ms:
        t += 1000 if v.alarm >= 3 else period  # 1 Hz during a level-3 alarm (Annex B)
        if t >= o.end_ms:
            break
        v.step(1.0 if v.alarm >= 3 else o.interval_s)
        if charge is not None:
            v.charge_at(charge, t)
        elif swap is not None:
            step = _swap_step(v, swap, t, seq)
            if step is not None:
                seq, frame, kind = step
                if frame is not None:
                    yield Message(t, key, encode_frame(frame), kind)
                continue
        if gap_from is not None and gap_from <= t < gap_from + 6 * period:
            held.append(Message(t, key, encode_frame(v.frame(t, 0x03)), "reissue"))
            continue
        for late in held:  # the gap is over: the terminal sends what it stored (reissue)
            yield late._replace(t_ms=t)
        held = []
        raw = encode_frame(v.frame(t))
        if not runaway and rng.random() < o.bad_ratio:
            bad, kind = corrupt(raw, rng)
            yield Message(t, key, bad, kind)
            continue
        yield Message(t, key, raw, "realtime")


def _swap_step(
    v: SimVehicle, swap: plans.SwapPlan, t: int, seq: int
) -> tuple[int, Frame | None, str] | None:
    """What a swapping vehicle sends at ``t`` instead of real-time data: the logout at the
    station, nothing during the swap, the login with the station's pack; ``None``: as usual."""
    if t < swap.out_ms:
        v.mode, v.soc, v.speed = "park", swap.soc_out, 0.0
        return None
    if v.mode == "park" and t < swap.in_ms:  # the first tick at the station
        v.mode = "swapping"
        return seq, v.logout(t, seq), "logout"
    if t < swap.in_ms:
        return seq, None, ""
    if v.mode == "swapping":
        v.mode, v.soc = "drive", swap.soc_in
        seq = seq % 65000 + 1
        return seq, v.login(t, seq, (swap.new_code,)), "login"
    return None


def fleet_messages(o: FleetOptions) -> Iterator[Message]:
    """All frames of the fleet, merged in simulated-time order (as gateways would see them)."""
    start_ms = o.end_ms - int(o.minutes * 60_000)
    streams = [_vehicle_stream(i, o, start_ms) for i in range(o.vehicles)]
    return heapq.merge(*streams, key=lambda m: m.t_ms)
