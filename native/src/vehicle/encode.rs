//! `FrameRows` -> the binary COPY tuples of the four tables of `contract.rows.COPY_TABLES`
//! (vehicle_telemetry, drive_motor_telemetry, battery_pack_telemetry, alarm_events), column for
//! column as storage/tables.py types them, byte for byte what the Python encoders write from
//! the Python rows (tests/unit/test_native_copy.py proves it).
//!
//! Every value fits its column by construction: the row types are at most as wide as the
//! columns (u8 -> int2, u16 -> int4, u32 -> int8 or a u16 in int4) and the conversions below are
//! lossless `From`s, so no frame can make the writer's COPY fail on a value out of range.
//! Floats: float8 columns take the row's f64 as it is; float4 columns round it to the nearest
//! f32, as Python's `struct.pack(">f")` does.

use super::rows::{Alarm, FrameRows, Motor, Pack};
use crate::copy::Tuples;

const VEHICLE_COLUMNS: i16 = 38;
const MOTOR_COLUMNS: i16 = 10;
const PACK_COLUMNS: i16 = 13;
const ALARM_COLUMNS: i16 = 9;

/// The tables in `COPY_TABLES` order (indices of `encode`'s `out`).
pub const VEHICLES: usize = 0;
pub const MOTORS: usize = 1;
pub const PACKS: usize = 2;
pub const ALARMS: usize = 3;

fn f4(v: Option<f64>) -> Option<f32> {
    // Round to nearest, ties to even: what C's double -> float conversion (struct "f") does.
    v.map(|x| x as f32)
}

fn i2(v: Option<u8>) -> Option<i16> {
    v.map(i16::from)
}

fn i4(v: Option<u16>) -> Option<i32> {
    v.map(i32::from)
}

/// Appends the tuples of `rows` (decoded from `buf`, whose VIN is `vin`) to the four tables'
/// buffers `out` (indices `VEHICLES`, `MOTORS`, `PACKS`, `ALARMS`). `received_ms` is the
/// gateway receive time (epoch ms, UTC) of `received_at`; None writes NULL.
pub fn encode(
    rows: &FrameRows,
    buf: &[u8],
    vin: &str,
    received_ms: Option<i64>,
    out: &mut [Vec<u8>; 4],
) {
    let ts = rows.time.pg_micros();
    vehicle(rows, vin, ts, received_ms, &mut out[VEHICLES]);
    let motors = &mut out[MOTORS];
    motors.reserve(rows.motors.len() * (2 + 4 * 10 + vin.len() + 40));
    for m in &rows.motors {
        motor(m, vin, ts, motors);
    }
    for p in &rows.packs {
        pack(p, buf, vin, ts, &mut out[PACKS]);
    }
    if let Some(a) = rows.alarm.as_ref().filter(|a| a.has_row()) {
        alarm(a, vin, ts, &mut out[ALARMS]);
    }
}

fn head(t: &mut Tuples<'_>, fields: i16, vin: &str, ts: i64) {
    t.row(fields);
    t.text(vin);
    t.int8(Some(ts));
}

fn vehicle(rows: &FrameRows, vin: &str, ts: i64, received_ms: Option<i64>, out: &mut Vec<u8>) {
    out.reserve(2 + 38 * 4 + vin.len() + 8 * 8 + 30 * 4);
    let mut t = Tuples::new(out);
    head(&mut t, VEHICLE_COLUMNS, vin, ts);
    t.timestamptz_ms(received_ms);
    // 2016 or 2025.
    t.int2(Some(rows.edition as i16));
    t.int2(Some(i16::from(rows.command)));
    let v = rows.vehicle.unwrap_or_default();
    t.int2(i2(v.vehicle_state));
    t.int2(i2(v.charging_state));
    t.int2(i2(v.run_mode));
    t.float4(f4(v.speed_kmh));
    t.float8(v.odometer_km);
    t.float4(f4(v.total_voltage_v));
    t.float4(f4(v.total_current_a));
    t.int2(i2(v.soc_pct));
    t.int2(i2(v.dcdc_state));
    t.int2(i2(v.gear));
    // A u16 in both editions' walks: always fits.
    t.int4(v.insulation_kohm.and_then(|x| i32::try_from(x).ok()));
    t.int2(i2(v.accel_pedal_pct));
    t.int2(i2(v.brake_pedal_pct));
    let p = rows.position.unwrap_or_default();
    t.boolean(p.valid);
    t.float8(p.longitude);
    t.float8(p.latitude);
    let e = rows.extremes.unwrap_or_default();
    t.float4(f4(e.max_cell_voltage_v));
    t.int2(i2(e.max_cell_voltage_pack));
    t.int4(i4(e.max_cell_voltage_cell));
    t.float4(f4(e.min_cell_voltage_v));
    t.int2(i2(e.min_cell_voltage_pack));
    t.int4(i4(e.min_cell_voltage_cell));
    t.int2(e.max_temp_c);
    t.int2(i2(e.max_temp_pack));
    t.int4(i4(e.max_temp_probe));
    t.int2(e.min_temp_c);
    t.int2(i2(e.min_temp_pack));
    t.int4(i4(e.min_temp_probe));
    t.boolean(Some(rows.extremes_derived));
    match &rows.alarm {
        Some(a) => {
            t.int2(i2(a.max_level));
            t.int8(Some(i64::from(a.general_flags)));
            t.int4(Some(fault_count(a)));
        }
        None => {
            t.null();
            t.null();
            t.int4(Some(0));
        }
    }
    t.boolean(Some(rows.signature_missing));
}

fn fault_count(a: &Alarm) -> i32 {
    // Four lists of at most 253 codes each (a BYTE count below the sentinels).
    a.fault_count() as i32
}

fn motor(m: &Motor, vin: &str, ts: i64, out: &mut Vec<u8>) {
    let mut t = Tuples::new(out);
    head(&mut t, MOTOR_COLUMNS, vin, ts);
    t.int2(Some(i16::from(m.seq)));
    t.int2(i2(m.state));
    t.int2(m.controller_temp_c);
    t.int4(m.speed_rpm);
    t.float4(f4(m.torque_nm));
    t.int2(m.temp_c);
    t.float4(f4(m.controller_voltage_v));
    t.float4(f4(m.controller_current_a));
}

fn pack(p: &Pack, buf: &[u8], vin: &str, ts: i64, out: &mut Vec<u8>) {
    // The ranges come from the walk over this very frame; an empty slice if not (never here).
    let cells = buf.get(p.cells.clone()).unwrap_or_default();
    let probes = buf.get(p.probes.clone()).unwrap_or_default();
    out.reserve(2 + 13 * 4 + vin.len() + 40 + 2 * 20 + 3 * cells.len() + 6 * probes.len());
    let mut t = Tuples::new(out);
    head(&mut t, PACK_COLUMNS, vin, ts);
    t.int2(Some(i16::from(p.pack)));
    t.float4(f4(p.voltage_v));
    t.float4(f4(p.current_a));
    t.int4(i4(p.cell_count));
    t.int4(Some(i32::from(p.first_cell)));
    t.cells(cells);
    t.probes(probes);
    t.int4(i4(p.cell_min_mv));
    t.int4(i4(p.cell_max_mv));
    t.int2(p.probe_min_c);
    t.int2(p.probe_max_c);
}

fn alarm(a: &Alarm, vin: &str, ts: i64, out: &mut Vec<u8>) {
    let mut t = Tuples::new(out);
    head(&mut t, ALARM_COLUMNS, vin, ts);
    t.int2(i2(a.max_level));
    t.int8(Some(i64::from(a.general_flags)));
    t.int8_array(&a.ress_faults);
    t.int8_array(&a.motor_faults);
    t.int8_array(&a.engine_faults);
    t.int8_array(&a.other_faults);
    match &a.bit_levels {
        Some(levels) => t.int2_array_u8(levels),
        None => t.null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse;
    use crate::vehicle::rows::Vehicle;

    fn rows() -> FrameRows {
        FrameRows {
            edition: 2016,
            command: 2,
            time: parse([24, 2, 29, 8, 0, 0], 24).unwrap(),
            vehicle: Some(Vehicle {
                speed_kmh: Some(60.5),
                insulation_kohm: Some(40_000),
                ..Vehicle::default()
            }),
            packs: vec![Pack {
                pack: 1,
                cells: 0..4,
                probes: 4..6,
                first_cell: 1,
                ..Pack::default()
            }],
            alarm: Some(Alarm {
                max_level: Some(2),
                ress_faults: vec![7],
                ..Alarm::default()
            }),
            ..FrameRows::default()
        }
    }

    fn field(buf: &[u8], at: usize) -> (i32, &[u8]) {
        let n = i32::from_be_bytes(buf[at..at + 4].try_into().unwrap());
        (n, &buf[at + 4..at + 4 + n.max(0) as usize])
    }

    #[test]
    fn one_tuple_per_row_with_the_tables_column_counts() {
        let frame = [0x0f, 0xa0, 0xff, 0xfe, 65, 0xfe];
        let mut out: [Vec<u8>; 4] = Default::default();
        encode(
            &rows(),
            &frame,
            "LSVAU2180N2183294",
            Some(1_709_164_800_123),
            &mut out,
        );
        assert_eq!(&out[VEHICLES][..2], &38i16.to_be_bytes());
        assert!(out[MOTORS].is_empty());
        assert_eq!(&out[PACKS][..2], &13i16.to_be_bytes());
        assert_eq!(&out[ALARMS][..2], &9i16.to_be_bytes());
        let v = &out[VEHICLES];
        assert_eq!(field(v, 2), (17, &b"LSVAU2180N2183294"[..]));
        // ts: 2024-02-29 00:00 UTC; received_at 123 ms later (microseconds since 2000)
        let ts = (1_709_164_800_000i64 - 946_684_800_000) * 1000;
        assert_eq!(field(v, 23).1, ts.to_be_bytes());
        assert_eq!(field(v, 35).1, (ts + 123_000).to_be_bytes());
    }

    #[test]
    fn packs_arrays_null_the_sentinels() {
        let frame = [0x0f, 0xa0, 0xff, 0xfe, 65, 0xfe];
        let mut out: [Vec<u8>; 4] = Default::default();
        encode(&rows(), &frame, "V", None, &mut out);
        let p = &out[PACKS];
        // head 2, vin 4+1, ts 12, pack 6, voltage/current NULL 8, cell_count NULL 4, first 8
        let cells = 2 + 5 + 12 + 6 + 8 + 4 + 8;
        let (n, body) = field(p, cells);
        assert_eq!(n, 20 + 6 + 4);
        assert_eq!(&body[4..8], &1i32.to_be_bytes()); // has nulls
        assert_eq!(
            &body[20..],
            &[0, 0, 0, 2, 0x0f, 0xa0, 0xff, 0xff, 0xff, 0xff]
        );
        let (n, body) = field(p, cells + 4 + 30);
        assert_eq!(n, 30);
        assert_eq!(&body[20..], &[0, 0, 0, 2, 0, 25, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn a_frame_without_alarm_writes_no_alarm_row_and_zero_faults() {
        let mut r = rows();
        r.alarm = Some(Alarm::default());
        let mut out: [Vec<u8>; 4] = Default::default();
        encode(&r, &[0; 6], "V", None, &mut out);
        assert!(out[ALARMS].is_empty());
        r.alarm = None;
        let mut again: [Vec<u8>; 4] = Default::default();
        encode(&r, &[0; 6], "V", None, &mut again);
        // alarm present with level/flags None vs 0: same fault_count 0, NULL vs 0 flags
        assert_ne!(out[VEHICLES], again[VEHICLES]);
    }
}
