//! `decode` on hand-built 2016 frames: every field of a typical frame, each reject reason the
//! native path produces, partial frames and the frames it leaves to the structured decoder.
//! (tests/unit/test_native_agreement.py checks the same against the Python reference.)

use super::*;
use crate::envelope::{bcc, COMMAND_PACKET, ENCRYPTION_NONE, REALTIME};
use crate::error::{BAD_FIELD, BAD_IDENTITY, BLOCKS_PER_FRAME, COUNT_MISMATCH, OVER_LIMIT};

const VIN: &[u8; 17] = b"LSVAU2180N2183294";
/// 2024-03-05 12:34:56 China time.
const TIME: [u8; 6] = [24, 3, 5, 12, 34, 56];

fn frame_with(marker: u8, command: u8, vin: &[u8], unit: &[u8]) -> Vec<u8> {
    let mut f = vec![marker, marker, command, COMMAND_PACKET];
    f.extend_from_slice(vin);
    f.push(ENCRYPTION_NONE);
    f.extend_from_slice(&(unit.len() as u16).to_be_bytes());
    f.extend_from_slice(unit);
    let check = bcc(&f, 2, f.len());
    f.push(check);
    f
}

/// A 2016 real-time frame of `blocks` (after the time).
fn frame(blocks: &[&[u8]]) -> Vec<u8> {
    let mut unit = TIME.to_vec();
    for b in blocks {
        unit.extend_from_slice(b);
    }
    frame_with(b'#', REALTIME, VIN, &unit)
}

fn rows(f: &[u8]) -> FrameRows {
    match decode(f) {
        Outcome::Rows(r) => *r,
        other => panic!("expected rows, got {other:?}"),
    }
}

fn error(f: &[u8]) -> FrameError {
    match decode(f) {
        Outcome::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

// Whole vehicle: state 1, charging 3, mode 1, 12.2 km/h, 12345.6 km, 380.5 V, -12.3 A,
// SOC 80, DC-DC 1, gear 0x0E, insulation 5000 kOhm, pedals 20 / sentinel.
const VEHICLE: [u8; 21] = [
    0x01, 1, 3, 1, 0x00, 0x7A, 0x00, 0x01, 0xE2, 0x40, 0x0E, 0xDD, 0x26, 0x95, 80, 1, 0x0E, 0x13,
    0x88, 20, 0xFF,
];
// One motor: seq 1, state 1, controller 65 degC raw -> 25, 4000 rpm, -10.5 Nm, motor 70 -> 30,
// 350.0 V, 0xFFFF current.
const MOTOR: [u8; 14] = [
    0x02, 1, 1, 1, 65, 0x5D, 0xC0, 0x4D, 0xB7, 70, 0x0D, 0xAC, 0xFF, 0xFF,
];
// Position: valid, east, south (bit 1): 116.397128, -39.916527.
const POSITION: [u8; 10] = [0x05, 0x02, 0x06, 0xF0, 0x14, 0x48, 0x02, 0x61, 0x13, 0xEF];
// Extremes: max 3.310 V pack 1 cell 2, min 3.300 V pack 1 cell 1, max 26 degC pack 1 probe 2,
// min 25 degC pack 1 probe 1.
const EXTREMES: [u8; 15] = [0x06, 1, 2, 0x0C, 0xEE, 1, 1, 0x0C, 0xE4, 1, 2, 66, 1, 1, 65];
const ALARM: [u8; 10] = [0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0];
// One voltage page: pack 1, 380.0 V, 0.0 A, 3 cells of 3 total from cell 1.
const VOLTS: [u8; 18] = [
    0x08, 1, 1, 0x0E, 0xD8, 0x27, 0x10, 0, 3, 0, 1, 3, 0x0C, 0xE4, 0x0C, 0xEE, 0x0C, 0xE9,
];
const TEMPS: [u8; 7] = [0x09, 1, 1, 0, 2, 65, 66];

#[test]
fn a_typical_frame_gives_every_field() {
    let f = frame(&[
        &VEHICLE, &MOTOR, &POSITION, &EXTREMES, &ALARM, &VOLTS, &TEMPS,
    ]);
    let r = rows(&f);
    assert_eq!((r.edition, r.command), (2016, REALTIME));
    assert_eq!(r.time.raw, TIME);
    let v = r.vehicle.unwrap();
    assert_eq!(
        (v.vehicle_state, v.charging_state, v.run_mode),
        (Some(1), Some(3), Some(1))
    );
    assert_eq!(v.speed_kmh, Some(12.2));
    assert_eq!(v.odometer_km, Some(12345.6));
    assert_eq!(v.total_voltage_v, Some(380.5));
    assert_eq!(v.total_current_a, Some(-12.3));
    assert_eq!(
        (v.soc_pct, v.dcdc_state, v.gear),
        (Some(80), Some(1), Some(0x0E))
    );
    assert_eq!(v.insulation_kohm, Some(5000));
    assert_eq!((v.accel_pedal_pct, v.brake_pedal_pct), (Some(20), None));
    let m = r.motors[0];
    assert_eq!(
        (m.seq, m.state, m.controller_temp_c),
        (1, Some(1), Some(25))
    );
    assert_eq!(
        (m.speed_rpm, m.torque_nm, m.temp_c),
        (Some(4000), Some(-10.5), Some(30))
    );
    assert_eq!(
        (m.controller_voltage_v, m.controller_current_a),
        (Some(350.0), None)
    );
    let p = r.position.unwrap();
    assert_eq!(p.valid, Some(true));
    assert_eq!(p.longitude, Some(116.397128));
    assert_eq!(p.latitude, Some(-39.916527));
    let x = r.extremes.unwrap();
    assert_eq!(
        (x.max_cell_voltage_v, x.max_cell_voltage_pack),
        (Some(3.31), Some(1))
    );
    assert_eq!(
        (x.min_cell_voltage_v, x.min_cell_voltage_cell),
        (Some(3.3), Some(1))
    );
    assert_eq!(
        (x.max_temp_c, x.max_temp_probe, x.min_temp_c),
        (Some(26), Some(2), Some(25))
    );
    assert!(!r.extremes_derived);
    let a = r.alarm.as_ref().unwrap();
    assert_eq!(
        (a.max_level, a.general_flags, a.fault_count()),
        (Some(0), 0, 0)
    );
    assert!(!a.has_row());
    assert_eq!(r.packs.len(), 1);
    let k = &r.packs[0];
    assert_eq!(
        (k.pack, k.voltage_v, k.current_a),
        (1, Some(380.0), Some(0.0))
    );
    assert_eq!((k.cell_count, k.first_cell), (Some(3), 1));
    assert_eq!(&f[k.cells.clone()], &VOLTS[12..]);
    assert_eq!(&f[k.probes.clone()], &[65, 66]);
    assert_eq!((k.cell_min_mv, k.cell_max_mv), (Some(3300), Some(3310)));
    assert_eq!((k.probe_min_c, k.probe_max_c), (Some(25), Some(26)));
    assert!(!r.partial() && !r.signature_missing);
}

#[test]
fn the_blocks_may_come_in_any_order_and_temperatures_first() {
    let f = frame(&[&TEMPS, &VOLTS, &VEHICLE]);
    let r = rows(&f);
    assert_eq!(r.packs.len(), 1);
    assert_eq!(&f[r.packs[0].probes.clone()], &[65, 66]);
    assert!(r.vehicle.is_some() && r.extremes.is_none() && !r.extremes_derived);
}

#[test]
fn frames_the_native_path_does_not_take_go_to_the_structured_decoder() {
    let login = frame_with(b'#', 0x01, VIN, &TIME);
    assert_eq!(decode(&login), Outcome::Structured);
    let mut f = frame(&[&VEHICLE]);
    let last = f.len() - 1;
    f[last] ^= 0x55; // bad BCC: the structured decoder names it
    assert_eq!(decode(&f), Outcome::Structured);
    assert_eq!(decode(&f[..f.len() - 3]), Outcome::Structured);
    assert_eq!(decode(b"##"), Outcome::Structured);
}

#[test]
fn a_unique_id_that_is_no_vin_is_bad_identity() {
    let f = frame_with(b'#', REALTIME, b"LSVAU2180N218329 ", &TIME);
    let e = error(&f);
    assert_eq!((e.reason, e.offset), (BAD_IDENTITY, 20));
}

#[test]
fn real_time_data_without_a_whole_time_is_truncated() {
    let e = error(&frame_with(b'#', REALTIME, VIN, &TIME[..5]));
    assert_eq!((e.reason, e.offset), (TRUNCATED, 24));
    assert_eq!(e.detail, "real-time data needs a 6-byte time");
}

#[test]
fn a_time_that_is_no_date_is_bad_field() {
    let e = error(&frame_with(b'#', REALTIME, VIN, &[24, 2, 30, 0, 0, 0]));
    assert_eq!((e.reason, e.offset), (BAD_FIELD, 24));
    assert_eq!(e.detail, "frame time 18021e000000 is not a date");
}

#[test]
fn a_motor_count_that_the_rest_of_the_unit_contradicts_is_count_mismatch() {
    // Count 2 over one motor: the walk reads the position block as the second motor, stops
    // inside the engine block (body byte 0x00 read as a type); from one motor on, the
    // position and engine blocks line up to the end.
    let mut motors = MOTOR;
    motors[1] = 2;
    let f = frame(&[&motors, &POSITION, &[0x04, 0, 0, 0, 0, 0]]);
    let e = error(&f);
    assert_eq!((e.reason, e.offset), (COUNT_MISMATCH, 31));
    assert_eq!(
        e.detail,
        "drive motors (type 0x02): count 2, but the blocks after it line up after 1 entries"
    );
}

#[test]
fn a_block_that_cannot_be_sized_makes_a_partial_frame_with_what_came_before() {
    // A type of no defined length (0x30) after the vehicle block.
    let f = frame(&[&VEHICLE, &[0x30, 1, 2, 3]]);
    let r = rows(&f);
    assert!(r.vehicle.is_some());
    assert_eq!(r.tail_offset, Some(30 + VEHICLE.len()));
    // A user-defined block whose length overruns the unit (Shanghai buses: no length).
    let f = frame(&[&VEHICLE, &[0x81, 0x00, 0x09, 1]]);
    assert_eq!(rows(&f).tail_offset, Some(51));
    // One that fits is skipped.
    let f = frame(&[&[0x80, 0x00, 0x02, 7, 7], &VEHICLE]);
    let r = rows(&f);
    assert!(r.vehicle.is_some() && !r.partial());
    // A cut vehicle block stops the walk at its type byte, and keeps nothing of it.
    let f = frame(&[&POSITION, &VEHICLE[..15]]);
    let r = rows(&f);
    assert_eq!((r.vehicle, r.tail_offset), (None, Some(40)));
    assert!(r.position.is_some());
}

#[test]
fn an_overrunning_pack_block_keeps_none_of_its_entries() {
    // Two voltage pages, the second's cells cut: the first page is not kept either.
    let mut volts = VOLTS.to_vec();
    volts[1] = 2;
    volts.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 1, 4, 0x0C, 0xE4]);
    let f = frame(&[&TEMPS, &volts]);
    let r = rows(&f);
    assert_eq!(r.tail_offset, Some(30 + TEMPS.len()));
    // Only the temperature-only pack remains, no voltage fields.
    assert_eq!(r.packs.len(), 1);
    assert_eq!((r.packs[0].voltage_v, r.packs[0].first_cell), (None, 1));
}

#[test]
fn sentinels_become_none_and_a_zero_west_longitude_stays_positive() {
    let position = [0x05, 0x05, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
    let motors = [0x02, 0xFF];
    let volts = [0x08, 0xFE];
    let temps = [0x09, 1, 3, 0xFF, 0xFF];
    let f = frame(&[&position, &motors, &volts, &temps]);
    let r = rows(&f);
    let p = r.position.unwrap();
    assert_eq!(p.valid, Some(false));
    assert_eq!(p.longitude.map(f64::to_bits), Some(0.0f64.to_bits()));
    assert_eq!(p.latitude, None);
    assert!(r.motors.is_empty() && !r.partial());
    assert_eq!(r.packs.len(), 1);
    let k = &r.packs[0];
    assert_eq!((k.pack, k.probes.len(), k.probe_min_c), (3, 0, None));
}

#[test]
fn a_fuel_cell_block_is_sized_by_its_probe_count() {
    let mut fuel = vec![0x03, 0, 0, 0, 0, 0, 0, 0x00, 0x02];
    fuel.extend_from_slice(&[0; 12]); // 18 + 2 bytes of body
    let r = rows(&frame(&[&fuel, &VEHICLE]));
    assert!(r.vehicle.is_some() && !r.partial());
    fuel[8] = 0x40; // 64 probes: overruns the unit
    let r = rows(&frame(&[&VEHICLE, &fuel]));
    assert_eq!(r.tail_offset, Some(51));
}

#[test]
fn blocks_per_frame_is_the_most_blocks_a_unit_holds() {
    // 5-byte engine blocks, the cheapest 2016 block with a known length.
    let engine: &[u8] = &[0x04, 0, 0, 0, 0, 0];
    let at = vec![engine; BLOCKS_PER_FRAME];
    assert_eq!(rows(&frame(&at)).tail_offset, None);
    let over = vec![engine; BLOCKS_PER_FRAME + 1];
    let e = error(&frame(&over));
    // The type byte of the block over the limit: header, time, then the blocks before it.
    let at_block = HEADER_SIZE + 6 + 6 * BLOCKS_PER_FRAME;
    assert_eq!((e.reason, e.offset), (OVER_LIMIT, at_block));
    assert!(
        e.detail.contains("limit blocks_per_frame (64)"),
        "{}",
        e.detail
    );
    // A block that cannot be walked is a tail, not one more block.
    let mut tail = at.clone();
    tail.push(&[0x0A, 1, 2]);
    assert_eq!(rows(&frame(&tail)).tail_offset, Some(at_block));
}
