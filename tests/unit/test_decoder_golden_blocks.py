"""Golden cases: one hand-built block per information type and edition, with the expected
engineering values worked out by hand from the spec tables (GBT32960.md §3.6-§3.7)."""

from __future__ import annotations

import pytest

from devtools.sim.framebuilder import TIME_HEX, block, build, decode_json

pytestmark = pytest.mark.unit


# --- 2016 ----------------------------------------------------------------------------------


def test_2016_vehicle() -> None:
    b = block(
        2016,
        "01",  # type: whole vehicle
        "01 03 01",  # started, not charging, electric
        "0177",  # speed 375 -> 37.5 km/h
        "0001E23A",  # odometer 123450 -> 12345.0 km
        "1A2C",  # voltage 6700 -> 670.0 V
        "2707",  # current 9991 -> -0.9 A (offset 1000 A)
        "4B 01 2E",  # SOC 75 %, DC-DC working, gear 0x2E = D with drive force
        "1964",  # insulation 6500 kΩ
        "32 65",  # accelerator 50 %, brake 101 = braking without travel value
    )
    assert (b["type"], b["name"]) == (1, "vehicle")
    assert (b["vehicle_state"], b["charging_state"], b["run_mode"]) == (1, 3, 1)
    assert (b["speed_kmh"], b["odometer_km"]) == (37.5, 12345.0)
    assert (b["total_voltage_v"], b["total_current_a"]) == (670.0, -0.9)
    assert (b["soc_pct"], b["dcdc_state"], b["insulation_kohm"]) == (75, 1, 6500)
    assert (b["gear"], b["gear_position"], b["gear_drive_force"]) == (0x2E, "D", True)
    assert (b["accel_pedal_pct"], b["brake_pedal_pct"]) == (50, 101)
    assert b["quality"] == {}


def test_2016_vehicle_sentinels_and_out_of_range() -> None:
    b = block(2016, "01", "FE FF 01", "FFFE FFFFFFFF FFFF FFFE", "FF FE 0F", "FFFF", "FF 66")
    assert b["vehicle_state"] is None and b["charging_state"] is None
    assert b["speed_kmh"] is None and b["odometer_km"] is None and b["total_current_a"] is None
    # 2016 insulation has no sentinels: 0xFFFF is a number, out of the 0..60000 range
    assert b["insulation_kohm"] == 65535
    assert b["brake_pedal_pct"] == 102
    assert b["quality"] == {
        "vehicle_state": "abnormal",
        "speed_kmh": "abnormal",
        "total_current_a": "abnormal",
        "dcdc_state": "abnormal",
        "insulation_kohm": "out_of_range",
        "brake_pedal_pct": "out_of_range",
    }


def test_2016_drive_motors() -> None:
    b = block(
        2016,
        "02 01",  # type, one motor
        "01 01 4B",  # seq 1, consuming, controller 75-40 = 35 °C
        "5DC0",  # speed 24000-20000 = 4000 r/min
        "4E84",  # torque 20100*0.1-2000 = 10.0 N·m
        "50",  # motor 80-40 = 40 °C
        "1A2C 2774",  # controller 670.0 V, 10100*0.1-1000 = 10.0 A
    )
    (m,) = b["motors"]
    assert (m["seq"], m["state"], m["controller_temp_c"], m["temp_c"]) == (1, 1, 35, 40)
    assert (m["speed_rpm"], m["torque_nm"]) == (4000, 10.0)
    assert (m["controller_voltage_v"], m["controller_current_a"]) == (670.0, 10.0)


def test_2016_drive_motors_sentinel_count_has_no_list() -> None:
    d = decode_json(build(2016, 0x02, TIME_HEX, "02 FF", "04 01 0BB8 01F4"))
    assert d["blocks"][0]["motors"] is None
    assert d["blocks"][1]["name"] == "engine"  # the next block starts right after the count


def test_2016_fuel_cell() -> None:
    b = block(
        2016,
        "03",
        "0FA0 01F4 0064",  # 400.0 V, 50.0 A, 1.00 kg/100 km
        "0002 41 42",  # two probes: 25 °C, 26 °C
        "0258 01",  # H2 max temperature 600*0.1-40 = 20.0 °C at probe 1
        "03E8 02",  # H2 max concentration 1000 mg/kg at sensor 2
        "0064 03",  # H2 max pressure 10.0 MPa at sensor 3
        "01",  # high-voltage DC/DC working
    )
    assert (b["voltage_v"], b["current_a"], b["fuel_rate_kg_per_100km"]) == (400.0, 50.0, 1.0)
    assert b["probe_temps_c"] == [25, 26]
    assert (b["h2_max_temp_c"], b["h2_max_temp_probe"]) == (20.0, 1)
    assert (b["h2_max_concentration_mg_per_kg"], b["h2_concentration_sensor"]) == (1000, 2)
    assert (b["h2_max_pressure_mpa"], b["h2_pressure_sensor"], b["dcdc_state"]) == (10.0, 3, 1)
    assert b["h2_max_concentration_pct"] is None  # a 2025 field


def test_2016_engine() -> None:
    b = block(2016, "04", "01 0BB8 01F4")  # running, 3000 r/min, 5.00 L/100 km
    assert (b["state"], b["crankshaft_speed_rpm"], b["fuel_rate_l_per_100km"]) == (1, 3000, 5.0)


@pytest.mark.parametrize(
    ("status", "valid", "lon", "lat"),
    [("00", True, 121.427974, 31.152738), ("07", False, -121.427974, -31.152738)],
)
def test_2016_position(status: str, valid: bool, lon: float, lat: float) -> None:
    b = block(2016, "05", status, "073CD806", "01DB5A62")
    assert (b["valid"], b["longitude"], b["latitude"]) == (valid, lon, lat)
    assert b["coord_system"] is None


def test_2016_extremes() -> None:
    b = block(2016, "06", "01 12 0CE4", "01 65 0CA8", "01 33 49", "01 14 42")
    assert (b["max_cell_voltage_pack"], b["max_cell_voltage_cell"]) == (1, 18)
    assert (b["max_cell_voltage_v"], b["min_cell_voltage_v"]) == (3.3, 3.24)
    assert (b["min_cell_voltage_pack"], b["min_cell_voltage_cell"]) == (1, 101)
    assert (b["max_temp_pack"], b["max_temp_probe"], b["max_temp_c"]) == (1, 51, 33)
    assert (b["min_temp_pack"], b["min_temp_probe"], b["min_temp_c"]) == (1, 20, 26)


def test_2016_alarm() -> None:
    b = block(
        2016,
        "07 02",  # alarm, max level 2
        "00002010",  # flags: bit 4 SOC low, bit 13 brake system
        "01 00000001",  # one RESS fault
        "00",  # no motor faults
        "FF",  # engine fault count invalid: no list follows
        "FE",  # other fault count abnormal
    )
    assert (b["type"], b["max_level"], b["general_flags"]) == (7, 2, 0x2010)
    assert b["general_alarms"] == ["soc_low", "brake_system"]
    assert (b["ress_faults"], b["motor_faults"]) == ([1], [])
    assert (b["engine_faults"], b["other_faults"], b["bit_levels"]) == (None, None, None)
    assert b["quality"] == {"other_faults": "abnormal"}


def test_2016_cell_voltages_second_page() -> None:
    b = block(
        2016,
        "08 01",  # one subsystem
        "01 18B0 2285",  # subsystem 1, 632.0 V, 8837*0.1-1000 = -116.3 A
        "0180 00C9",  # 384 cells in the pack; this page starts at cell 201
        "03 0CE4 FFFE 0CA8",  # 3 cells here: 3.300 V, abnormal, 3.240 V
    )
    (p,) = b["packs"]
    assert (p["pack"], p["voltage_v"], p["current_a"]) == (1, 632.0, -116.3)
    assert (p["cell_count"], p["first_cell"]) == (384, 201)
    assert p["cell_voltages_v"] == [3.3, None, 3.24]


def test_2016_cell_temperatures() -> None:
    b = block(2016, "09 01", "01 0003 41 FE 42")
    (p,) = b["packs"]
    assert (p["pack"], p["probe_count"], p["temps_c"]) == (1, 3, [25, None, 26])


def test_2016_custom_block_is_opaque() -> None:
    b = block(2016, "80 0002 ABCD")
    assert b == {"type": 0x80, "name": "custom", "data_hex": "abcd"}


# --- 2025 ----------------------------------------------------------------------------------


def test_2025_vehicle() -> None:
    b = block(
        2025,
        "01",
        "01 03 01",
        "1388",  # 500.0 km/h (2025 range 0..5000)
        "0001E23A",
        "EA60",  # 6000.0 V (2025 range 0..60000)
        "7546",  # 30022*0.1-3000 = 2.2 A (offset 3000 A)
        "4B 01",
        "8F",  # gear P, bit 7: gear invalid
        "FFFE",  # insulation abnormal (2025 has sentinels)
    )
    assert (b["speed_kmh"], b["total_voltage_v"], b["total_current_a"]) == (500.0, 6000.0, 2.2)
    assert (b["gear_position"], b["gear_valid"]) == ("P", False)
    assert b["insulation_kohm"] is None and b["quality"] == {"insulation_kohm": "abnormal"}
    assert b["accel_pedal_pct"] is None and b["brake_pedal_pct"] is None


def test_2025_drive_motors() -> None:
    b = block(2025, "02 01", "01 03 4B", "7D00", "00030D3B", "50")
    (m,) = b["motors"]
    assert (m["speed_rpm"], m["torque_nm"], m["temp_c"]) == (0, -0.5, 40)  # -32000, -20000
    assert m["controller_voltage_v"] is None and m["controller_current_a"] is None


def test_2025_fuel_cell() -> None:
    b = block(2025, "03", "0041 01", "2710 02", "0190 03", "01 50 5A")
    assert (b["h2_max_temp_c"], b["h2_max_temp_probe"]) == (25, 1)  # 1 °C resolution
    assert b["h2_max_concentration_pct"] == 1.0  # 10000 * 0.0001 % vol
    assert (b["h2_max_pressure_mpa"], b["dcdc_state"]) == (40.0, 1)
    assert (b["h2_remaining_pct"], b["dcdc_temp_c"]) == (80, 50)
    assert b["voltage_v"] is None  # moved to 0x30 in 2025


def test_2025_engine() -> None:
    b = block(2025, "04 0BB8")
    assert (b["crankshaft_speed_rpm"], b["state"], b["fuel_rate_l_per_100km"]) == (3000, None, None)


def test_2025_position() -> None:
    b = block(2025, "05", "04 02", "073CD806 01DB5A62")  # west, GCJ-02
    assert (b["valid"], b["coord_system"]) == (True, 2)
    assert (b["longitude"], b["latitude"]) == (-121.427974, 31.152738)


def test_2025_alarm_with_bit_levels() -> None:
    b = block(
        2025,
        "06 04",  # alarm (2025 type 0x06), level 4 = thermal event
        "00800000",  # bit 23: RESS thermal event
        "00 00 00 00",
        "01 17 04",  # one per-bit level: bit 23 at level 4
    )
    assert (b["type"], b["max_level"], b["general_alarms"]) == (6, 4, ["thermal_event"])
    assert b["bit_levels"] == [{"bit": 23, "level": 4, "alarm": "thermal_event"}]


def test_2025_cell_voltages_without_paging() -> None:
    b = block(2025, "07 01", "01 1BE2 7546", "0002 0F75 0F78")
    (p,) = b["packs"]
    assert (p["pack"], p["voltage_v"], p["current_a"]) == (1, 713.8, 2.2)
    assert (p["cell_count"], p["first_cell"], p["cell_voltages_v"]) == (2, 1, [3.957, 3.96])


def test_2025_cell_temperatures() -> None:
    b = block(2025, "08 01", "01 0002 46 45")
    assert b["type"] == 8 and b["packs"][0]["temps_c"] == [30, 29]


def test_2025_fuel_cell_stacks() -> None:
    b = block(2025, "30 01", "01 0FA0 01F4", "04B0 03E8", "41", "0002 41 42")
    (s,) = b["stacks"]
    assert (s["seq"], s["voltage_v"], s["current_a"]) == (1, 400.0, 50.0)
    assert (s["h2_inlet_pressure_kpa"], s["air_inlet_pressure_kpa"]) == (20.0, 0.0)  # -100 kPa
    assert (s["air_inlet_temp_c"], s["coolant_temps_c"]) == (25, [25, 26])


def test_2025_super_capacitor() -> None:
    b = block(2025, "31", "01 0FA0 7530", "0002 0CE4 0CE5", "0001 41")
    assert (b["system"], b["voltage_v"], b["current_a"]) == (1, 400.0, 0.0)
    assert (b["cell_voltages_v"], b["temps_c"]) == ([3.3, 3.301], [25])


def test_2025_super_capacitor_extremes() -> None:
    b = block(2025, "32", "01 0001 0CE4", "01 0002 0CA8", "01 0003 41", "01 0004 40")
    assert (b["max_cell_voltage_system"], b["max_cell_voltage_cell"]) == (1, 1)
    assert (b["max_cell_voltage_v"], b["min_cell_voltage_v"]) == (3.3, 3.24)
    assert (b["max_temp_probe"], b["max_temp_c"], b["min_temp_c"]) == (3, 25, 24)


def test_2025_signature_and_signed_range() -> None:
    frame = build(2025, 0x02, TIME_HEX, "04 0BB8", "FF 02 0002 AABB 0000")
    d = decode_json(frame)
    sig = d["signature"]
    assert (sig["algorithm"], sig["algorithm_name"], sig["r_hex"], sig["s_hex"]) == (
        2,
        "RSA",
        "aabb",
        "",
    )
    # The signed bytes are time .. last block, the 0xFF marker excluded.
    assert frame[sig["signed_start"] : sig["signed_end"]] == bytes.fromhex("190A1B140202040BB8")
