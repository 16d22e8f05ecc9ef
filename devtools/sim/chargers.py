"""Simulated charging piles: the charger profile on ``nev.charger.raw`` and, for the piles
whose operator reports by T/CEC 102, the operator's pushes on ``nev.charger.tcec``.

Each pile has two connectors and reports every ``interval_s`` (one frame for both guns,
key = its 17-character header code). A connector is idle (status 1) unless a vehicle of the
fleet charges there (``plans.charge_plan``): occupied (2) one tick before the session,
charging (3) from its start, occupied again from its end tick (output 0 kW, the order ended)
for two ticks, then idle. While charging, the frame carries the output (voltage, current,
power, the session's energy so far), the vehicle's VIN and SOC and its BMS demand, and the
order (StartChargeSeq, state 1 starting, 2 charging, 4 ended). The energy is the integral of
the power (``ChargePlan.energy_at``) and the SOC the vehicle's own, so the charger and the
vehicle tell the same story. With incidents (``runaway``), pile 0's second connector is stuck
in fault (255, fault codes) and pile 1's first connector (``plans.hot_connector``) charges
through a worn contact whose terminal heats to 98 °C; piles 0 and 1 always report in the
profile (``plans.profile_pile``), whose fault codes and temperatures T/CEC pushes lack.

A T/CEC pile sends no frames; its operator pushes what T/CEC 102 defines: station info first
(key = OperatorID), a ``notification_stationStatus`` on every status change, a
``notification_equip_charge_status`` per tick while charging and a
``notification_charge_order_info`` after the session (key = ``operator:connector``), with
the headers ``tcec_interface``, ``tcec_operator_id``, ``tcec_timestamp`` and ``tcec_seq``
(docs/kafka.md). Seq is what our gateway forwards: the operator's envelope Seq, which T/CEC 102
restarts at 0001 each TimeStamp second and raises by one per push of that operator
(``SeqClock``), so the pushes of one second are stored at TimeStamp + Seq µs in send order,
as from a real operator behind the gateway.

Pure and deterministic for a seed; state is a function of (options, pile, time), so a million
piles need no million objects (the one running state, the Seq counter, is one per operator).
``bad_ratio`` of the frames are corrupted, and of the pushes turned into bad JSON, a missing
field or a code outside the standard (dead letters).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, Final

import orjson

from devtools.sim import plans
from devtools.sim.envelope import china_time
from devtools.sim.fleet import FleetOptions, Message, corrupt
from ingest.decoders.charger import (
    ChargeOrder,
    ChargerFrame,
    ChargerLogin,
    ConnectorEntry,
    ConnectorStatus,
    Faults,
    Output,
    VehicleDemand,
    encode_charger_frame,
)

__all__ = [
    "TCEC_HEADERS",
    "Gun",
    "SeqClock",
    "charger_messages",
    "connector_status",
    "connector_temp",
    "is_tcec_pile",
    "pile_frame",
    "pile_login",
]

# The T/CEC record headers of the design (docs/kafka.md); the pipeline reads them.
TCEC_INTERFACE: Final = "tcec_interface"
TCEC_OPERATOR_ID: Final = "tcec_operator_id"
TCEC_TIMESTAMP: Final = "tcec_timestamp"
TCEC_SEQ: Final = "tcec_seq"
TCEC_HEADERS: Final = (TCEC_INTERFACE, TCEC_OPERATOR_ID, TCEC_TIMESTAMP, TCEC_SEQ)
MAX_SEQ: Final = 9999  # the envelope's Seq has 4 digits
IDLE, OCCUPIED, CHARGING, FAULT = 1, 2, 3, 255
FAULT_CODES: Final = (0x3001, 0x3104)  # operator-defined (T/CEC has no list): e.g. contactor
PRICE_ELEC: Final = 0.85  # yuan per kWh
PRICE_SERVICE: Final = 0.40


def is_tcec_pile(o: FleetOptions, pile: int) -> bool:
    return not plans.profile_pile(pile) and plans.unit(o.seed, 21, pile) < o.tcec_share


HOT_PEAK_C: Final = 98  # the worn contact's terminal, well past GB/T 20234.1's 90 °C


def connector_temp(p: plans.ChargePlan, t: int, power: float, hot: bool) -> int:
    """The terminal temperature: ambient plus a rise with the power; on the hot connector
    the rise grows over the first 60 % of the session to ``HOT_PEAK_C`` and stays there (a
    few °C per period: a worn contact, not a thermal runaway)."""
    normal = 28 + round(power / 8)
    if not hot:
        return normal
    done = (t - p.start_ms) / max(p.end_ms - p.start_ms, 1)
    return normal + round((HOT_PEAK_C - normal) * min(1.0, max(0.0, done) / 0.6))


def connector_status(o: FleetOptions, plan: plans.ChargePlan | None, k: int, t: int) -> int:
    """The T/CEC status of connector ``k`` at a reporting tick ``t``."""
    if plans.fault_connector(o, k):
        return FAULT
    if plan is None:
        return IDLE
    period = plans.period_ms(o)
    if plan.start_ms - period <= t < plan.start_ms:
        return OCCUPIED  # plugged in, not yet charging
    if plan.start_ms <= t < plan.end_ms:
        return CHARGING
    if plan.end_ms <= t <= plan.end_ms + 2 * period:
        return OCCUPIED  # done, the cable still in
    return IDLE


class Gun:
    """What one connector reports at one tick (computed, never kept)."""

    __slots__ = ("cid", "k", "o", "plan", "status")

    def __init__(self, o: FleetOptions, pile: int, gun: int, t: int, tag: str) -> None:
        self.o = o
        self.k = plans.CONNECTORS_PER_PILE * pile + gun
        self.cid = plans.connector_id_of(pile, gun, o.chargers, tag)
        self.plan = plans.charge_plan(o, self.k)
        self.status = connector_status(o, self.plan, self.k, t)

    def sampling(self, t: int) -> bool:
        """A charging sample at ``t``: the session's ticks and its end tick (0 kW)."""
        p = self.plan
        return p is not None and p.start_ms <= t <= p.end_ms

    def values(self, t: int) -> tuple[float, float, float, float, int]:
        """Voltage, current, power, energy so far, connector temperature."""
        p = self.plan
        assert p is not None
        power = round(p.power_at(t), 1)
        volts = p.voltage_at(t)
        amps = round(power * 1000 / volts, 1)
        temp = connector_temp(p, t, power, plans.hot_connector(self.o, self.k))
        return volts, amps, power, round(p.energy_at(t), 3), temp


def pile_login(o: FleetOptions, pile: int, t: int, tag: str, charger_id: str) -> bytes:
    """The pile's login frame (0x01): its station and its connectors' ratings."""
    dc = plans.unit(o.seed, 14, pile) < 0.7
    entries = tuple(
        ConnectorEntry(
            plans.connector_id_of(pile, gun, o.chargers, tag),
            4 if dc else 3,  # DC gun / AC plug
            750 if dc else 250,
            200 if dc else 220,
            250 if dc else 32,
            120.0 if dc else 7.0,
            2,  # GB/T 20234-2015
        )
        for gun in range(plans.CONNECTORS_PER_PILE)
    )
    body = ChargerLogin(1, plans.station_id_of(pile, tag), charger_id, entries)
    return encode_charger_frame(ChargerFrame(0x01, charger_id, time=china_time(t), body=body))


def pile_frame(guns: list[Gun], t: int, charger_id: str) -> bytes:
    """The pile's real-time frame at tick ``t``: each gun's status, and while it samples a
    session its output, the vehicle's demand and the order."""
    blocks: list[Any] = []
    for g in guns:
        charging = g.status == CHARGING
        blocks.append(
            ConnectorStatus(
                g.cid, g.status, 50 if g.status in (2, 3) else 10, 10 if charging else 50
            )
        )
        if g.status == FAULT:
            blocks.append(Faults(g.cid, FAULT_CODES))
        if not g.sampling(t):
            continue
        p = g.plan
        assert p is not None
        volts, amps, power, energy, temp = g.values(t)
        blocks.append(Output(g.cid, volts, amps, power, energy, temp))
        blocks.append(VehicleDemand(g.cid, p.vin, int(p.soc_at(t)), volts + 5.0, amps + 5.0))
        state = 1 if t == p.start_ms else (2 if charging else 4)
        elec, service = round(energy * PRICE_ELEC, 2), round(energy * PRICE_SERVICE, 2)
        blocks.append(
            ChargeOrder(
                g.cid, p.seq, state, china_time(p.start_ms), elec, service, round(elec + service, 2)
            )
        )
    frame = ChargerFrame(0x02, charger_id, time=china_time(t), blocks=tuple(blocks))
    return encode_charger_frame(frame)


def _stamp(t: int) -> str:
    return china_time(t).strftime("%Y-%m-%d %H:%M:%S")


def _push(t: int, op: str, key: str, interface: str, doc: dict[str, Any]) -> Message:
    """A push without its envelope time: ``SeqClock.stamp`` adds TimeStamp and Seq in the
    order the operator sends (the stream's order)."""
    headers = ((TCEC_INTERFACE, interface.encode()), (TCEC_OPERATOR_ID, op.encode()))
    return Message(t, key.encode(), orjson.dumps(doc), "tcec", "tcec", headers)


class SeqClock:
    """Each operator's envelope Seq, as the gateway receives and forwards it (``tcec_seq``;
    it refuses a (TimeStamp, Seq) pair an operator sent before). T/CEC 102: "同一秒内按序列
    自增长，新秒重计": the first push of a TimeStamp second is 0001, each further push of that
    operator in it one more. The pushes must be stamped in send order (time order).

    An operator that has sent 9,999 pushes in one second has no Seq left in it: like a real
    sender it sends the next in the following second (TimeStamp one later, Seq 0001), never
    wrapping to a number of the same second, which would store the push before earlier ones
    or, repeated, as their duplicate (docs/protocols/charger.md, "Seq's rule"). Only some 200k
    pushes a second (over 20 operators) get there. State: one (second, Seq) per operator."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[bytes, tuple[int, int]] = {}

    def next(self, operator: bytes, t_ms: int) -> tuple[int, int]:
        """The (epoch second, Seq) of ``operator``'s push sent at ``t_ms``."""
        second, seq = t_ms // 1000, 1
        last = self._last.get(operator)
        if last is not None and last[0] >= second:  # the same second (or one it spilled to)
            second, seq = last[0], last[1] + 1
            if seq > MAX_SEQ:
                second, seq = second + 1, 1
        self._last[operator] = (second, seq)
        return second, seq

    def stamp(self, msg: Message) -> Message:
        """``msg`` (a push from ``_push``) with its TimeStamp and Seq headers."""
        operator = dict(msg.headers)[TCEC_OPERATOR_ID]
        second, seq = self.next(operator, msg.t_ms)
        stamp = china_time(second * 1000).strftime("%Y%m%d%H%M%S")
        envelope = ((TCEC_TIMESTAMP, stamp.encode()), (TCEC_SEQ, f"{seq:04d}".encode()))
        return msg._replace(headers=msg.headers + envelope)


def _station_info(o: FleetOptions, pile: int, t: int, tag: str, op: str) -> Message:
    dc = plans.unit(o.seed, 14, pile) < 0.7
    connectors = [
        {
            "ConnectorID": plans.connector_id_of(pile, gun, o.chargers, tag),
            "ConnectorType": 4 if dc else 3,
            "VoltageUpperLimits": 750 if dc else 250,
            "VoltageLowerLimits": 200 if dc else 220,
            "Current": 250 if dc else 32,
            "Power": 120.0 if dc else 7.0,
            "NationalStandard": 2,
        }
        for gun in range(plans.CONNECTORS_PER_PILE)
    ]
    doc = {
        "StationInfo": {
            "StationID": plans.station_id_of(pile, tag),
            "OperatorID": op,
            "StationName": f"Simulated station {pile // 10}",
            "EquipmentInfos": [
                {
                    "EquipmentID": plans.charger_id_of(pile, o.chargers, tag),
                    "EquipmentType": 1 if dc else 2,
                    "ConnectorInfos": connectors,
                }
            ],
        }
    }
    return _push(t, op, op, "notification_stationInfo", doc)


def _tcec_gun(o: FleetOptions, g: Gun, t: int, first: bool, op: str) -> Iterator[Message]:
    key = f"{op}:{g.cid}"
    p = g.plan
    if g.sampling(t):
        assert p is not None
        volts, amps, _, energy, _ = g.values(t)
        elec, service = round(energy * PRICE_ELEC, 2), round(energy * PRICE_SERVICE, 2)
        doc = {
            "StartChargeSeq": p.seq,
            "StartChargeSeqStat": 1 if t == p.start_ms else (2 if t < p.end_ms else 4),
            "ConnectorID": g.cid,
            "ConnectorStatus": g.status,
            "CurrentA": amps, "CurrentB": 0.0, "CurrentC": 0.0,
            "VoltageA": volts, "VoltageB": 0.0, "VoltageC": 0.0,
            "Soc": round(p.soc_at(t), 1),
            "StartTime": _stamp(p.start_ms),
            "EndTime": _stamp(t),  # the time of this sample
            "TotalPower": energy,
            "ElecMoney": elec, "SeviceMoney": service, "TotalMoney": round(elec + service, 2),
            "Vin": p.vin,
        }  # fmt: skip
        yield _push(t, op, key, "notification_equip_charge_status", doc)
        return
    before = connector_status(o, p, g.k, t - plans.period_ms(o))
    if first or before != g.status:
        info = {"ConnectorID": g.cid, "Status": g.status, "ParkStatus": 10, "LockStatus": 0}
        yield _push(t, op, key, "notification_stationStatus", {"ConnectorStatusInfo": info})
    if p is not None and p.end_ms < t <= p.end_ms + plans.period_ms(o):
        energy = round(p.energy_at(p.end_ms), 3)
        elec, service = round(energy * PRICE_ELEC, 2), round(energy * PRICE_SERVICE, 2)
        doc = {
            "StartChargeSeq": p.seq,
            "ConnectorID": g.cid,
            "StartTime": _stamp(p.start_ms),
            "EndTime": _stamp(p.end_ms),
            "TotalPower": energy,
            "TotalElecMoney": elec,
            "TotalSeviceMoney": service,
            "TotalMoney": round(elec + service, 2),
            "StopReason": 0,  # stopped as planned (full / the user's target)
            "Vin": p.vin,
        }
        yield _push(t, op, key, "notification_charge_order_info", doc)


def _spoil(msg: Message, rng: random.Random) -> Message:
    """A push the decoder must reject: cut JSON, a required field gone, a code outside the
    standard's set."""
    kind = rng.choice(("tcec_bad_json", "tcec_missing_field", "tcec_bad_code"))
    if kind == "tcec_bad_json":
        return msg._replace(value=msg.value[: len(msg.value) // 2], kind=kind)
    doc = orjson.loads(msg.value)
    if kind == "tcec_missing_field":
        for field in ("StartChargeSeq", "ConnectorStatusInfo", "StationInfo"):
            doc.pop(field, None)
    else:
        for field in ("StartChargeSeqStat", "StopReason"):
            if field in doc:
                doc[field] = 9
        if "ConnectorStatusInfo" in doc:
            doc["ConnectorStatusInfo"]["Status"] = 7
        if "StationInfo" in doc:
            doc["StationInfo"]["EquipmentInfos"][0]["ConnectorInfos"][0]["ConnectorType"] = 9
    return msg._replace(value=orjson.dumps(doc), kind=kind)


def _pile_tick(o: FleetOptions, pile: int, n: int, t: int, tag: str) -> Iterator[Message]:
    guns = [Gun(o, pile, gun, t, tag) for gun in range(plans.CONNECTORS_PER_PILE)]
    spoil = plans.unit(o.seed, 22, pile, n) < o.bad_ratio
    if is_tcec_pile(o, pile):
        op = plans.operator_of(pile, o.chargers, tag)
        msgs = [_station_info(o, pile, t, tag, op)] if n == 0 else []
        for g in guns:
            msgs.extend(_tcec_gun(o, g, t, n == 0, op))
        for i, msg in enumerate(msgs):
            bad = spoil and i == 0
            yield _spoil(msg, random.Random(o.seed * 7919 + pile * 31 + n)) if bad else msg
        return
    charger_id = plans.charger_id_of(pile, o.chargers, tag)
    key = charger_id.encode()
    if n == 0:
        yield Message(t, key, pile_login(o, pile, t, tag, charger_id), "login", "charger")
    raw = pile_frame(guns, t, charger_id)
    if spoil:
        damaged, kind = corrupt(raw, random.Random(o.seed * 7919 + pile * 31 + n))
        yield Message(t, key, damaged, kind, "charger")
    else:
        yield Message(t, key, raw, "realtime", "charger")


def charger_messages(o: FleetOptions) -> Iterator[Message]:
    """Every charger record of the span in time order (piles' phases increase with their
    index, so tick after tick, pile after pile is time order)."""
    tag = plans.tag_of(o.vin_prefix)
    seqs = SeqClock()
    for n in range(plans.ticks(o) + 1):
        for pile in range(o.chargers):
            t = plans.tick_time(o, pile, o.chargers, n)
            if t < o.end_ms:
                for msg in _pile_tick(o, pile, n, t, tag):
                    yield seqs.stamp(msg) if msg.topic == "tcec" else msg
