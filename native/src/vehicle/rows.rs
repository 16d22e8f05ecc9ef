//! The rows of one real-time / reissue frame, as `contract.rows` defines them (field for field,
//! same order, same units; sentinels are `None`). `encode` turns them into COPY tuples, the
//! Python bindings into `VehicleRow` / `MotorRow` / `PackRow` / `AlarmRow` objects.

use std::ops::Range;

use crate::time::FrameTime;

/// The whole-vehicle block (0x01) fields of `VehicleRow`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Vehicle {
    pub vehicle_state: Option<u8>,
    pub charging_state: Option<u8>,
    pub run_mode: Option<u8>,
    pub speed_kmh: Option<f64>,
    pub odometer_km: Option<f64>,
    pub total_voltage_v: Option<f64>,
    pub total_current_a: Option<f64>,
    pub soc_pct: Option<u8>,
    pub dcdc_state: Option<u8>,
    pub gear: Option<u8>,
    pub insulation_kohm: Option<u32>,
    pub accel_pedal_pct: Option<u8>,
    pub brake_pedal_pct: Option<u8>,
}

/// The position block (0x05) fields of `VehicleRow`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Position {
    pub valid: Option<bool>,
    pub longitude: Option<f64>,
    pub latitude: Option<f64>,
}

/// The extremes fields of `VehicleRow` (2016 block 0x06, or derived from the packs in 2025).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Extremes {
    pub max_cell_voltage_v: Option<f64>,
    pub max_cell_voltage_pack: Option<u8>,
    pub max_cell_voltage_cell: Option<u16>,
    pub min_cell_voltage_v: Option<f64>,
    pub min_cell_voltage_pack: Option<u8>,
    pub min_cell_voltage_cell: Option<u16>,
    pub max_temp_c: Option<i16>,
    pub max_temp_pack: Option<u8>,
    pub max_temp_probe: Option<u16>,
    pub min_temp_c: Option<i16>,
    pub min_temp_pack: Option<u8>,
    pub min_temp_probe: Option<u16>,
}

/// One `MotorRow` (without vin and ts, which are the frame's).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Motor {
    pub seq: u8,
    pub state: Option<u8>,
    pub controller_temp_c: Option<i16>,
    pub speed_rpm: Option<i32>,
    pub torque_nm: Option<f64>,
    pub temp_c: Option<i16>,
    pub controller_voltage_v: Option<f64>,
    pub controller_current_a: Option<f64>,
}

/// One `PackRow` (without vin and ts). The cell voltages and probe temperatures stay the
/// frame's own bytes: `cells` and `probes` are ranges of the frame buffer (empty when the
/// pack sent none), exactly what `cell_voltages_raw` / `probe_temps_raw` hold in Python.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pack {
    pub pack: u8,
    pub voltage_v: Option<f64>,
    pub current_a: Option<f64>,
    pub cell_count: Option<u16>,
    pub first_cell: u16,
    pub cells: Range<usize>,
    pub probes: Range<usize>,
    pub cell_min_mv: Option<u16>,
    pub cell_max_mv: Option<u16>,
    pub probe_min_c: Option<i16>,
    pub probe_max_c: Option<i16>,
}

/// The alarm block (2016 0x07 / 2025 0x06): the `VehicleRow` summary and the `AlarmRow` lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alarm {
    pub max_level: Option<u8>,
    pub general_flags: u32,
    pub ress_faults: Vec<u32>,
    pub motor_faults: Vec<u32>,
    pub engine_faults: Vec<u32>,
    pub other_faults: Vec<u32>,
    /// 2025: flat [bit, level, bit, level, ...]; 2016: None.
    pub bit_levels: Option<Vec<u8>>,
}

impl Alarm {
    /// N1+N2+N3+N4 (sentinel counts contribute 0): `VehicleRow.fault_count`.
    pub fn fault_count(&self) -> usize {
        self.ress_faults.len()
            + self.motor_faults.len()
            + self.engine_faults.len()
            + self.other_faults.len()
    }

    /// Whether the frame gets an `alarm_events` row (level or flags non-zero).
    pub fn has_row(&self) -> bool {
        self.max_level.is_some_and(|l| l != 0) || self.general_flags != 0
    }
}

/// Everything the native path extracts from one real-time / reissue frame: `FrameRows` with
/// `vehicle` set. The VIN is `buf[4..21]` (checked); `received_at` is the caller's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameRows {
    pub edition: u16,
    pub command: u8,
    pub time: FrameTime,
    pub vehicle: Option<Vehicle>,
    pub position: Option<Position>,
    pub extremes: Option<Extremes>,
    pub extremes_derived: bool,
    pub alarm: Option<Alarm>,
    pub motors: Vec<Motor>,
    pub packs: Vec<Pack>,
    /// Frame offset of the first block the walk could not size (a partial frame), else None.
    pub tail_offset: Option<usize>,
    /// A 2025 data unit without the signature Table 7 ends it with.
    pub signature_missing: bool,
}

impl FrameRows {
    pub fn partial(&self) -> bool {
        self.tail_offset.is_some()
    }
}
