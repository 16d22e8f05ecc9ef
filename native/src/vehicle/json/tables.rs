//! The field tables of ingest/decoders/blocks/*.py (the layouts, in the order of the
//! standard's tables) and the dataclass field names of each record (the JSON key order).

use super::fields::{f, F};
use crate::envelope::EDITION_2025;

/// The contract `name` of a block type, or `None` for a type the edition does not define.
pub fn block_name(t: u8, ed: u16) -> Option<&'static str> {
    let name = match (ed == EDITION_2025, t) {
        (_, 0x01) => "vehicle",
        (_, 0x02) => "drive_motors",
        (_, 0x03) => "fuel_cell",
        (_, 0x04) => "engine",
        (_, 0x05) => "position",
        (false, 0x06) => "extremes",
        (false, 0x07) | (true, 0x06) => "alarm",
        (false, 0x08) | (true, 0x07) => "cell_voltages",
        (false, 0x09) | (true, 0x08) => "cell_temperatures",
        (true, 0x30) => "fuel_cell_stacks",
        (true, 0x31) => "super_capacitor",
        (true, 0x32) => "super_capacitor_extremes",
        _ => return None,
    };
    Some(name)
}

pub const VEHICLE_NAMES: [&str; 13] = [
    "vehicle_state",
    "charging_state",
    "run_mode",
    "speed_kmh",
    "odometer_km",
    "total_voltage_v",
    "total_current_a",
    "soc_pct",
    "dcdc_state",
    "gear",
    "insulation_kohm",
    "accel_pedal_pct",
    "brake_pedal_pct",
];
pub const VEHICLE_2016: [F; 13] = [
    f("vehicle_state", 1).lo(1).hi(3),
    f("charging_state", 1).lo(1).hi(4),
    f("run_mode", 1).lo(1).hi(3),
    f("speed_kmh", 2).div(10).hi(2200),
    f("odometer_km", 4).div(10).hi(9_999_999),
    f("total_voltage_v", 2).div(10).hi(10_000),
    f("total_current_a", 2).div(10).sub(10_000).hi(20_000),
    f("soc_pct", 1).hi(100),
    f("dcdc_state", 1).lo(1).hi(2),
    f("gear", 1).raw(),
    f("insulation_kohm", 2).hi(60_000).raw(),
    f("accel_pedal_pct", 1).hi(100),
    f("brake_pedal_pct", 1).hi(101),
];
pub const VEHICLE_2025: [F; 11] = [
    f("vehicle_state", 1).lo(1).hi(3),
    f("charging_state", 1).lo(1).hi(4),
    f("run_mode", 1).lo(1).hi(3),
    f("speed_kmh", 2).div(10).hi(5000),
    f("odometer_km", 4).div(10).hi(9_999_999),
    f("total_voltage_v", 2).div(10).hi(60_000),
    f("total_current_a", 2).div(10).sub(30_000).hi(60_000),
    f("soc_pct", 1).hi(100),
    f("dcdc_state", 1).lo(1).hi(2),
    f("gear", 1).raw(),
    f("insulation_kohm", 2).hi(60_000),
];

pub const MOTOR_NAMES: [&str; 8] = [
    "seq",
    "state",
    "controller_temp_c",
    "speed_rpm",
    "torque_nm",
    "temp_c",
    "controller_voltage_v",
    "controller_current_a",
];
pub const MOTOR_2016: [F; 8] = [
    f("seq", 1).lo(1).hi(253),
    f("state", 1).lo(1).hi(4),
    f("controller_temp_c", 1).sub(40).hi(250),
    f("speed_rpm", 2).sub(20_000).hi(65_531),
    f("torque_nm", 2).div(10).sub(20_000).hi(65_531),
    f("temp_c", 1).sub(40).hi(250),
    f("controller_voltage_v", 2).div(10).hi(60_000),
    f("controller_current_a", 2).div(10).sub(10_000).hi(20_000),
];
pub const MOTOR_2025: [F; 6] = [
    f("seq", 1).lo(1).hi(253),
    f("state", 1).lo(1).hi(4),
    f("controller_temp_c", 1).sub(40).hi(250),
    f("speed_rpm", 2).sub(32_000).hi(65_531),
    f("torque_nm", 4).div(10).sub(200_000).hi(400_000),
    f("temp_c", 1).sub(40).hi(250),
];

pub const FUEL_CELL_NAMES: [&str; 14] = [
    "voltage_v",
    "current_a",
    "fuel_rate_kg_per_100km",
    "probe_temps_c",
    "h2_max_temp_c",
    "h2_max_temp_probe",
    "h2_max_concentration_mg_per_kg",
    "h2_max_concentration_pct",
    "h2_concentration_sensor",
    "h2_max_pressure_mpa",
    "h2_pressure_sensor",
    "dcdc_state",
    "h2_remaining_pct",
    "dcdc_temp_c",
];
pub const FUEL_CELL_HEAD_2016: [F; 3] = [
    f("voltage_v", 2).div(10).hi(20_000),
    f("current_a", 2).div(10).hi(20_000),
    f("fuel_rate_kg_per_100km", 2).div(100).hi(60_000),
];
pub const FUEL_CELL_TAIL_2016: [F; 7] = [
    f("h2_max_temp_c", 2).div(10).sub(400).hi(2400),
    f("h2_max_temp_probe", 1).lo(1).hi(252),
    f("h2_max_concentration_mg_per_kg", 2).hi(60_000),
    f("h2_concentration_sensor", 1).lo(1).hi(252),
    f("h2_max_pressure_mpa", 2).div(10).hi(1000).raw(),
    f("h2_pressure_sensor", 1).lo(1).hi(252),
    f("dcdc_state", 1).lo(1).hi(2),
];
pub const FUEL_CELL_2025: [F; 9] = [
    f("h2_max_temp_c", 2).sub(40).hi(250),
    f("h2_max_temp_probe", 1).lo(1).hi(253),
    f("h2_max_concentration_pct", 2).div(10_000).hi(60_000),
    f("h2_concentration_sensor", 1).lo(1).hi(253),
    f("h2_max_pressure_mpa", 2).div(10).hi(1000),
    f("h2_pressure_sensor", 1).lo(1).hi(253),
    f("dcdc_state", 1).lo(1).hi(2),
    f("h2_remaining_pct", 1).hi(100),
    f("dcdc_temp_c", 1).sub(40).hi(250),
];

pub const ENGINE_NAMES: [&str; 3] = ["state", "crankshaft_speed_rpm", "fuel_rate_l_per_100km"];
pub const ENGINE_2016: [F; 3] = [
    f("state", 1).lo(1).hi(2),
    f("crankshaft_speed_rpm", 2).hi(60_000),
    f("fuel_rate_l_per_100km", 2).div(100).hi(60_000),
];
pub const ENGINE_2025: [F; 1] = [f("crankshaft_speed_rpm", 2).hi(60_000)];

pub const EXTREMES_NAMES: [&str; 12] = [
    "max_cell_voltage_pack",
    "max_cell_voltage_cell",
    "max_cell_voltage_v",
    "min_cell_voltage_pack",
    "min_cell_voltage_cell",
    "min_cell_voltage_v",
    "max_temp_pack",
    "max_temp_probe",
    "max_temp_c",
    "min_temp_pack",
    "min_temp_probe",
    "min_temp_c",
];
pub const EXTREMES_2016: [F; 12] = [
    f("max_cell_voltage_pack", 1).lo(1).hi(250),
    f("max_cell_voltage_cell", 1).lo(1).hi(250),
    f("max_cell_voltage_v", 2).div(1000).hi(15_000),
    f("min_cell_voltage_pack", 1).lo(1).hi(250),
    f("min_cell_voltage_cell", 1).lo(1).hi(250),
    f("min_cell_voltage_v", 2).div(1000).hi(15_000),
    f("max_temp_pack", 1).lo(1).hi(250),
    f("max_temp_probe", 1).lo(1).hi(250),
    f("max_temp_c", 1).sub(40).hi(250),
    f("min_temp_pack", 1).lo(1).hi(250),
    f("min_temp_probe", 1).lo(1).hi(250),
    f("min_temp_c", 1).sub(40).hi(250),
];

pub const SUPERCAP_EXTREMES_NAMES: [&str; 12] = [
    "max_cell_voltage_system",
    "max_cell_voltage_cell",
    "max_cell_voltage_v",
    "min_cell_voltage_system",
    "min_cell_voltage_cell",
    "min_cell_voltage_v",
    "max_temp_system",
    "max_temp_probe",
    "max_temp_c",
    "min_temp_system",
    "min_temp_probe",
    "min_temp_c",
];
pub const SUPERCAP_EXTREMES: [F; 12] = [
    f("max_cell_voltage_system", 1).lo(1).hi(253),
    f("max_cell_voltage_cell", 2).lo(1).hi(65_531).raw(),
    f("max_cell_voltage_v", 2).div(1000).hi(60_000),
    f("min_cell_voltage_system", 1).lo(1).hi(253),
    f("min_cell_voltage_cell", 2).lo(1).hi(65_531).raw(),
    f("min_cell_voltage_v", 2).div(1000).hi(60_000),
    f("max_temp_system", 1).lo(1).hi(253),
    f("max_temp_probe", 2).lo(1).hi(65_531).raw(),
    f("max_temp_c", 1).sub(40).hi(250),
    f("min_temp_system", 1).lo(1).hi(253),
    f("min_temp_probe", 2).lo(1).hi(65_531).raw(),
    f("min_temp_c", 1).sub(40).hi(250),
];

pub const ALARM_HEAD_2016: [F; 2] = [
    f("max_level", 1).hi(3),
    f("general_flags", 4).raw(), // all 32 bits are flags
];
pub const ALARM_HEAD_2025: [F; 2] = [
    f("max_level", 1).hi(4), // 4 = thermal event
    f("general_flags", 4).raw(),
];
pub const FAULT_LISTS: [&str; 4] = [
    "ress_faults",
    "motor_faults",
    "engine_faults",
    "other_faults",
];
/// Table 18 (2016) / Table 24 (2025) general alarm bits; 19..27 exist only in 2025.
pub const ALARM_BITS: [&str; 28] = [
    "temperature_difference",
    "battery_high_temperature",
    "ess_over_voltage",
    "ess_under_voltage",
    "soc_low",
    "cell_over_voltage",
    "cell_under_voltage",
    "soc_high",
    "soc_jump",
    "ress_mismatch",
    "cell_consistency_poor",
    "insulation",
    "dcdc_temperature",
    "brake_system",
    "dcdc_state",
    "motor_controller_temperature",
    "high_voltage_interlock",
    "motor_temperature",
    "ess_overcharge",
    "motor_over_speed",
    "motor_over_current",
    "supercap_over_temperature",
    "supercap_over_voltage",
    "thermal_event",
    "hydrogen_leak",
    "h2_system_pressure_abnormal",
    "h2_system_temperature_abnormal",
    "fuel_cell_stack_over_temperature",
];

pub const VOLT_NAMES: [&str; 6] = [
    "pack",
    "voltage_v",
    "current_a",
    "cell_count",
    "first_cell",
    "cell_voltages_v",
];
pub const VOLT_HEAD_2016: [F; 5] = [
    // Table B.6 gives the subsystem number no sentinels: 0xFE/0xFF stay numbers.
    f("pack", 1).lo(1).hi(250).raw(),
    f("voltage_v", 2).div(10).hi(10_000),
    f("current_a", 2).div(10).sub(10_000).hi(20_000),
    f("cell_count", 2).lo(1).hi(65_531),
    f("first_cell", 2).lo(1).hi(65_531),
];
pub const VOLT_HEAD_2025: [F; 3] = [
    f("pack", 1).lo(1).hi(50),
    f("voltage_v", 2).div(10).hi(60_000),
    f("current_a", 2).div(10).sub(30_000).hi(60_000),
];

pub const TEMP_NAMES: [&str; 3] = ["pack", "probe_count", "temps_c"];
pub const TEMP_HEAD_2016: [F; 1] = [f("pack", 1).lo(1).hi(250).raw()];
pub const TEMP_HEAD_2025: [F; 1] = [f("pack", 1).lo(1).hi(50)];

pub const STACK_NAMES: [&str; 7] = [
    "seq",
    "voltage_v",
    "current_a",
    "h2_inlet_pressure_kpa",
    "air_inlet_pressure_kpa",
    "air_inlet_temp_c",
    "coolant_temps_c",
];
pub const STACK_HEAD: [F; 6] = [
    f("seq", 1).lo(1).hi(253),
    f("voltage_v", 2).div(10).hi(20_000),
    f("current_a", 2).div(10).hi(20_000),
    f("h2_inlet_pressure_kpa", 2).div(10).sub(1000).hi(5000),
    f("air_inlet_pressure_kpa", 2).div(10).sub(1000).hi(5000),
    f("air_inlet_temp_c", 1).sub(40).hi(250),
];

pub const SUPERCAP_NAMES: [&str; 5] = [
    "system",
    "voltage_v",
    "current_a",
    "cell_voltages_v",
    "temps_c",
];
pub const SUPERCAP_HEAD: [F; 3] = [
    f("system", 1).lo(1).hi(253),
    f("voltage_v", 2).div(10).hi(10_000),
    f("current_a", 2).div(10).sub(30_000).hi(60_000),
];
