//! Tests of the 2025 walk on hand-built data units (the blocks after the frame time). The
//! expected values are what the Python fast path's `walk_2025` returned (checked before it was retired) for the same bytes.

use super::*;

const VEHICLE: [u8; 19] = [
    0x01, // type
    0x01, 0x03, 0x01, // vehicle state, charging state, run mode
    0x03, 0x20, // speed 80.0 km/h
    0x00, 0x01, 0xE2, 0x40, // odometer 12345.6 km
    0x0F, 0xA0, // 400.0 V
    0x74, 0x5E, // 29790 -> -21.0 A
    0x50, 0x01, 0x0E, // soc 80, dcdc 1, gear 0x0E
    0x27, 0x10, // 10000 kOhm
];
const ALARM_NONE: [u8; 11] = [0x06, 0x01, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0];

fn motor(seq: u8) -> [u8; 10] {
    // state 1, controller 60 degC, 3000 rpm (35000), 12.5 Nm (200125), motor 70 degC
    [seq, 0x01, 100, 0x88, 0xB8, 0x00, 0x03, 0x0D, 0xBD, 110]
}

fn motors_block(n: u8, motors: &[[u8; 10]]) -> Vec<u8> {
    let mut out = vec![0x02, n];
    motors.iter().for_each(|m| out.extend_from_slice(m));
    out
}

fn volts_block(packs: &[(u8, &[u16])]) -> Vec<u8> {
    let mut out = vec![0x07, packs.len() as u8];
    for &(pack, cells) in packs {
        out.push(pack);
        out.extend([0x0F, 0xA0, 0x75, 0x30]); // 400.0 V, 0.0 A
        out.extend((cells.len() as u16).to_be_bytes());
        cells.iter().for_each(|c| out.extend(c.to_be_bytes()));
    }
    out
}

fn temps_block(packs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = vec![0x08, packs.len() as u8];
    for &(pack, probes) in packs {
        out.push(pack);
        out.extend((probes.len() as u16).to_be_bytes());
        out.extend_from_slice(probes);
    }
    out
}

fn signature_block(r: usize, s: usize) -> Vec<u8> {
    let mut out = vec![0xFF, 0x02];
    out.extend((r as u16).to_be_bytes());
    out.extend(std::iter::repeat_n(0x5A, r));
    out.extend((s as u16).to_be_bytes());
    out.extend(std::iter::repeat_n(0xA5, s));
    out
}

fn unit(blocks: &[&[u8]]) -> Vec<u8> {
    blocks.concat()
}

fn walk(buf: &[u8]) -> Walk {
    walk_2025(buf, 0, buf.len()).expect("the 2025 walk fails only over blocks_per_frame")
}

#[test]
fn a_typical_signed_unit() {
    let m = motors_block(2, &[motor(1), motor(2)]);
    let pos = [
        0x05, 0x06, 0x01, 0x06, 0xE8, 0x8A, 0x4C, 0x01, 0xE1, 0x33, 0x80,
    ];
    let v = volts_block(&[(1, &[3300, 3301, 3299])]);
    let t = temps_block(&[(1, &[65, 66])]);
    let sig = signature_block(256, 0);
    let buf = unit(&[&VEHICLE, &m, &pos, &ALARM_NONE, &v, &t, &sig]);
    let w = walk(&buf);
    assert!(w.signed);
    assert_eq!(w.tail, None);
    assert_eq!((w.extremes, w.hints), (None, None));
    let veh = w.vehicle.expect("vehicle");
    assert_eq!(veh.vehicle_state, Some(1));
    assert_eq!(veh.speed_kmh, Some(80.0));
    assert_eq!(veh.odometer_km, Some(12345.6));
    assert_eq!(veh.total_voltage_v, Some(400.0));
    assert_eq!(veh.total_current_a, Some(-21.0));
    assert_eq!(
        (veh.soc_pct, veh.dcdc_state, veh.gear),
        (Some(80), Some(1), Some(0x0E))
    );
    assert_eq!(veh.insulation_kohm, Some(10000));
    assert_eq!((veh.accel_pedal_pct, veh.brake_pedal_pct), (None, None));
    assert_eq!(w.motors.len(), 2);
    let m1 = w.motors[1];
    assert_eq!(
        (m1.seq, m1.state, m1.controller_temp_c),
        (2, Some(1), Some(60))
    );
    assert_eq!(
        (m1.speed_rpm, m1.torque_nm, m1.temp_c),
        (Some(3000), Some(12.5), Some(70))
    );
    assert_eq!(
        (m1.controller_voltage_v, m1.controller_current_a),
        (None, None)
    );
    let p = w.position.expect("position");
    // status 0x06: valid, west (0x04) and south (0x02)
    assert_eq!(p.valid, Some(true));
    assert_eq!(p.longitude, Some(-115.903_052));
    assert_eq!(p.latitude, Some(-31.536));
    let a = w.alarm.expect("alarm");
    assert_eq!(
        (a.max_level, a.general_flags, a.fault_count()),
        (Some(1), 0, 0)
    );
    assert_eq!(a.bit_levels, Some(vec![]));
    let v0 = buf.len() - sig.len() - t.len() - v.len();
    assert_eq!(
        w.volts,
        vec![VoltEntry {
            pack: 1,
            voltage_v: Some(400.0),
            current_a: Some(0.0),
            cell_count: Some(3),
            first_cell: 1,
            cells: v0 + 9..v0 + 15,
        }]
    );
    assert_eq!(
        w.temps,
        vec![TempEntry {
            pack: 1,
            probes: v0 + v.len() + 5..v0 + v.len() + 7
        }]
    );
    assert_eq!(w.counted, vec![19, v0, v0 + v.len()]);
}

#[test]
fn sentinels_are_none() {
    let mut veh = [0xFF; 19];
    veh[0] = 0x01;
    veh[16] = 0x80; // gear: kept raw
    let m = motors_block(
        1,
        &[[3, 0xFE, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFE, 0xFE]],
    );
    let pos = [
        0x05, 0x01, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
    ];
    let mut v = vec![0x07, 1, 4, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF];
    v.extend([0x08, 1, 4, 0xFF, 0xFE]);
    let buf = unit(&[&veh, &m, &pos, &v]);
    let w = walk(&buf);
    let veh = w.vehicle.expect("vehicle");
    assert_eq!(veh.vehicle_state, None);
    assert_eq!(
        (veh.speed_kmh, veh.odometer_km, veh.total_current_a),
        (None, None, None)
    );
    assert_eq!(
        (veh.soc_pct, veh.insulation_kohm, veh.gear),
        (None, None, Some(0x80))
    );
    let m = w.motors[0];
    assert_eq!(
        (m.seq, m.state, m.controller_temp_c, m.speed_rpm),
        (3, None, None, None)
    );
    assert_eq!((m.torque_nm, m.temp_c), (None, None));
    let p = w.position.expect("position");
    assert_eq!(
        (p.valid, p.longitude, p.latitude),
        (Some(false), None, None)
    );
    assert_eq!(w.volts[0].cell_count, None);
    assert_eq!((w.volts[0].voltage_v, w.volts[0].current_a), (None, None));
    assert!(w.volts[0].cells.is_empty());
    assert!(w.temps[0].probes.is_empty());
    assert_eq!((w.tail, w.signed), (None, false)); // no signature: not signed, not partial
}

#[test]
fn a_zero_west_longitude_is_positive_zero() {
    let pos = [0x05, 0x04, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
    let p = walk(&pos).position.expect("position");
    assert!(p.longitude.expect("lon").is_sign_positive());
}

#[test]
fn sentinel_counts_have_no_entries_but_are_counted() {
    let buf = [0x02, 0xFE, 0x07, 0xFF, 0x08, 0xFE, 0x30, 0xFF];
    let w = walk(&buf);
    assert!(w.motors.is_empty() && w.volts.is_empty() && w.temps.is_empty());
    assert_eq!(w.counted, vec![0, 2, 4]);
    assert_eq!(w.tail, None);
}

#[test]
fn blocks_no_row_keeps_are_skipped_by_their_size() {
    let mut buf = vec![0x03];
    buf.extend([0; 12]);
    buf.extend([0x04, 0, 0]);
    buf.extend([0x30, 2]); // two stacks: 3 probes, then the probe count sentinel
    buf.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]);
    buf.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]);
    buf.extend([
        0x31, 1, 0, 0, 0, 0, 0, 2, 0xAA, 0xAA, 0xBB, 0xBB, 0, 1, 0x77,
    ]);
    buf.extend([0x31, 1, 0, 0, 0, 0, 0xFF, 0xFE, 0xFF, 0xFF]); // both counts sentinels
    buf.push(0x32);
    buf.extend([0; 18]);
    buf.extend([0x80, 0, 3, 9, 9, 9]); // custom
    buf.extend(&VEHICLE);
    let w = walk(&buf);
    assert_eq!(w.tail, None);
    assert_eq!(w.vehicle.map(|v| v.soc_pct), Some(Some(80)));
    // Custom blocks are walked past, not kept.
    assert!(w.motors.is_empty() && w.alarm.is_none());
}

#[test]
fn a_type_without_length_makes_the_rest_a_tail() {
    for t in [0x00, 0x09, 0x2F, 0x33, 0x7F] {
        let buf = unit(&[&VEHICLE, &[t, 1, 2, 3], &ALARM_NONE]);
        let w = walk(&buf);
        assert_eq!(w.tail, Some(19), "type {t:#04x}");
        assert!(w.vehicle.is_some() && w.alarm.is_none());
        assert!(!w.signed);
    }
}

#[test]
fn an_overrunning_custom_length_is_a_tail() {
    let w = walk(&unit(&[&VEHICLE, &[0xFE, 0x00, 0x05, 1, 2, 3, 4]]));
    assert_eq!(w.tail, Some(19));
    let w = walk(&unit(&[&VEHICLE, &[0x80, 0x00]]));
    assert_eq!(w.tail, Some(19));
}

#[test]
fn a_signature_that_does_not_end_the_unit_is_a_tail() {
    let sig = signature_block(4, 4);
    let w = walk(&unit(&[&VEHICLE, &sig, &[0x00]]));
    assert_eq!((w.tail, w.signed), (Some(19), false));
    let w = walk(&unit(&[&VEHICLE, &sig[..sig.len() - 1]]));
    assert_eq!((w.tail, w.signed), (Some(19), false));
    let w = walk(&unit(&[&VEHICLE, &[0xFF, 0x02]]));
    assert_eq!((w.tail, w.signed), (Some(19), false));
    // The forward check reads no algorithm byte (find_signature does).
    let mut odd = signature_block(2, 2);
    odd[1] = 0x09;
    let w = walk(&unit(&[&VEHICLE, &odd]));
    assert_eq!((w.tail, w.signed), (None, true));
    // Blocks after the end of the walk's range are not read.
    let buf = unit(&[&VEHICLE, &signature_block(0, 0), &ALARM_NONE]);
    let w = walk_2025(&buf, 0, buf.len() - ALARM_NONE.len()).expect("walk");
    assert_eq!((w.tail, w.signed, w.alarm), (None, true, None));
}

/// Every block that does not fit: the tail is its type byte, earlier blocks stay, none of its
/// entries are kept, and a counted block stays in `counted`.
#[test]
fn each_block_that_does_not_fit_stops_the_walk_at_its_type_byte() {
    let v_ok = volts_block(&[(1, &[3300])]);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("vehicle", VEHICLE[..18].to_vec(), false),
        ("position", vec![0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0], false),
        ("fuel cell", vec![0x03, 0, 0], false),
        ("engine", vec![0x04, 0], false),
        ("super-capacitor extremes", vec![0x32, 0, 0], false),
        ("motor count", vec![0x02], true),
        ("motors overrun", unit(&[&[0x02, 2], &motor(1)]), true),
        ("volt count", vec![0x07], true),
        (
            "volt packs overrun",
            vec![0x07, 2, 1, 0, 0, 0, 0, 0, 0],
            true,
        ),
        (
            "volt header of the 2nd pack",
            unit(&[&volts_block(&[(1, &[3300, 3301, 3302, 3303]), (2, &[])])[..19]]),
            true,
        ),
        (
            "cells overrun",
            vec![0x07, 1, 1, 0, 0, 0, 0, 0, 2, 0x0C, 0xE4],
            true,
        ),
        ("temp count", vec![0x08], true),
        ("probe lists overrun", vec![0x08, 2, 1, 0, 0], true),
        (
            "temp header of the 2nd pack",
            vec![0x08, 2, 1, 0, 3, 60, 61, 62, 2, 0],
            true,
        ),
        ("probes overrun", vec![0x08, 1, 1, 0, 3, 60, 61], true),
        ("alarm", ALARM_NONE[..10].to_vec(), false),
        (
            "fault codes overrun",
            vec![0x06, 1, 0, 0, 0, 0, 1, 0, 0],
            false,
        ),
        ("stack count", vec![0x30], false),
        (
            "stacks overrun",
            vec![0x30, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            false,
        ),
        (
            "stack header of the 2nd stack",
            unit(&[&[0x30, 2], &[0; 10], &[0, 1, 7], &[0; 11]]),
            false,
        ),
        (
            "stack probes overrun",
            unit(&[&[0x30, 1], &[0; 10], &[0, 5], &[1, 2]]),
            false,
        ),
        ("capacitor header", vec![0x31, 0, 0, 0, 0, 0, 0], false),
        (
            "capacitor cells",
            vec![0x31, 0, 0, 0, 0, 0, 0, 2, 1, 1, 1, 1, 0],
            false,
        ),
        (
            "capacitor probes",
            vec![0x31, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1],
            false,
        ),
    ];
    for (name, bad, counted) in cases {
        let mut buf = unit(&[&VEHICLE, &v_ok]);
        let at = buf.len();
        buf.extend(&bad);
        let w = walk(&buf);
        assert_eq!(w.tail, Some(at), "{name}");
        assert!(!w.signed, "{name}");
        assert_eq!(w.vehicle.map(|v| v.soc_pct), Some(Some(80)), "{name}");
        assert_eq!(w.volts.len(), 1, "{name}: the earlier pack only");
        assert!(
            w.temps.is_empty() && w.motors.is_empty() && w.alarm.is_none(),
            "{name}"
        );
        let want = if counted { vec![19, at] } else { vec![19] };
        assert_eq!(w.counted, want, "{name}");
    }
}

/// The reject each block names (reason, offset, detail) is Python's, though the walk turns it
/// into a tail: `block` is checked directly.
#[test]
fn each_block_names_the_python_reject() {
    let cases: Vec<(Vec<u8>, &str, usize, &str)> = vec![
        (
            VEHICLE[..18].to_vec(),
            TRUNCATED,
            1,
            "vehicle block needs 18 bytes",
        ),
        (vec![0x05, 0], TRUNCATED, 1, "position block needs 10 bytes"),
        (vec![0x03], TRUNCATED, 1, "fuel cell block needs 12 bytes"),
        (vec![0x04], TRUNCATED, 1, "engine block needs 2 bytes"),
        (
            vec![0x32],
            TRUNCATED,
            1,
            "super-capacitor extremes block needs 18 bytes",
        ),
        (vec![0x02], TRUNCATED, 1, "drive motor block needs 1 bytes"),
        (
            vec![0x02, 3, 0],
            BAD_FIELD,
            2,
            "3 drive motors overrun the data unit",
        ),
        (vec![0x07], TRUNCATED, 1, "cell voltage block needs 1 bytes"),
        (
            vec![0x07, 1, 0],
            BAD_FIELD,
            2,
            "1 cell voltage packs overrun the data unit",
        ),
        (
            volts_block(&[(1, &[1, 2, 3, 4]), (2, &[])])[..17].to_vec(),
            TRUNCATED,
            17,
            "cell voltage pack header needs 7 bytes",
        ),
        (
            vec![0x07, 1, 1, 0, 0, 0, 0, 0, 9],
            BAD_FIELD,
            9,
            "9 cells overrun the data unit",
        ),
        (vec![0x08], TRUNCATED, 1, "temperature block needs 1 bytes"),
        (
            vec![0x08, 1, 0],
            BAD_FIELD,
            2,
            "1 probe lists overrun the data unit",
        ),
        (
            vec![0x08, 2, 1, 0, 3, 60, 61, 62, 2],
            TRUNCATED,
            8,
            "temperature pack header needs 3 bytes",
        ),
        (
            vec![0x08, 1, 1, 0, 7],
            BAD_FIELD,
            5,
            "7 probes overrun the data unit",
        ),
        (
            vec![0x06, 0],
            TRUNCATED,
            1,
            "alarm block needs 5 bytes for level and flags",
        ),
        (
            vec![0x30],
            TRUNCATED,
            1,
            "fuel-cell stack block needs 1 bytes",
        ),
        (
            vec![0x30, 1, 0],
            BAD_FIELD,
            2,
            "1 fuel-cell stacks overrun the data unit",
        ),
        (
            unit(&[&[0x30, 2], &[0; 10], &[0, 1, 7], &[0; 11]]),
            TRUNCATED,
            15,
            "fuel-cell stack needs 12 bytes",
        ),
        (
            unit(&[&[0x30, 1], &[0; 10], &[0, 5]]),
            BAD_FIELD,
            14,
            "5 probes overrun the data unit",
        ),
        (
            vec![0x31, 0, 0, 0, 0, 0, 0],
            TRUNCATED,
            1,
            "super-capacitor block needs 9 bytes",
        ),
        (
            vec![0x31, 0, 0, 0, 0, 0, 0, 2, 1],
            BAD_FIELD,
            8,
            "2 capacitor cells overrun the data unit",
        ),
        (
            vec![0x31, 0, 0, 0, 0, 0, 0, 0, 0, 3],
            BAD_FIELD,
            10,
            "3 capacitor probes overrun the data unit",
        ),
    ];
    for (buf, reason, offset, detail) in cases {
        let mut w = Walk::default();
        match block(&buf, 0, buf.len(), &mut w) {
            Err(e) => assert_eq!(e, FrameError::new(reason, offset, detail)),
            Ok(_) => panic!("{detail}: accepted"),
        }
    }
}

#[test]
fn a_later_block_of_the_same_type_wins_and_entries_accumulate() {
    let mut veh2 = VEHICLE;
    veh2[14] = 55;
    let alarm2 = [
        0x06, 0x02, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, 1, 0x05, 0x02,
    ];
    let buf = unit(&[
        &VEHICLE,
        &alarm2,
        &veh2,
        &ALARM_NONE,
        &motors_block(1, &[motor(1)]),
        &motors_block(1, &[motor(2)]),
        &volts_block(&[(1, &[1])]),
        &volts_block(&[(2, &[2])]),
    ]);
    let w = walk(&buf);
    assert_eq!(w.vehicle.map(|v| v.soc_pct), Some(Some(55)));
    let a = w.alarm.expect("alarm");
    assert_eq!((a.max_level, a.general_flags), (Some(1), 0));
    assert_eq!(
        w.motors.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(
        w.volts.iter().map(|v| v.pack).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(w.counted.len(), 4);
}

#[test]
fn the_walk_starts_and_ends_where_it_is_told() {
    let buf = unit(&[&VEHICLE, &ALARM_NONE]);
    let w = walk_2025(&buf, 19, buf.len()).expect("walk");
    assert!(w.vehicle.is_none() && w.alarm.is_some());
    let w = walk_2025(&buf, buf.len() + 5, buf.len()).expect("walk");
    assert_eq!(w, Walk::default());
    // An end past the buffer (no caller does this) reads only the buffer.
    let w = walk_2025(&buf, 0, buf.len() + 100).expect("walk");
    assert!(w.vehicle.is_some() && w.alarm.is_some() && w.tail.is_none());
}

#[test]
fn every_prefix_and_byte_flip_of_a_unit_walks_without_panic() {
    let buf = unit(&[
        &VEHICLE,
        &motors_block(2, &[motor(1), motor(2)]),
        &volts_block(&[(1, &[3300, 3301])]),
        &temps_block(&[(1, &[65])]),
        &[0x30, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9],
        &[0x31, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1],
        &ALARM_NONE,
        &signature_block(3, 3),
    ]);
    for end in 0..=buf.len() {
        let w = walk_2025(&buf, 0, end).expect("walk");
        assert!(w.tail.is_none_or(|t| t < end));
    }
    let mut flipped = buf.clone();
    for i in 0..buf.len() {
        for v in [0x00, 0x01, 0x7F, 0xFE, 0xFF] {
            flipped[i] = v;
            let w = walk_2025(&flipped, 0, flipped.len()).expect("walk");
            assert!(w.volts.iter().all(|e| e.cells.end <= flipped.len()));
            assert!(w.temps.iter().all(|e| e.probes.end <= flipped.len()));
        }
        flipped[i] = buf[i];
    }
}

#[test]
fn the_usual_alarm_block_is_what_parse_alarm_gives() {
    for level in [0x00, 0x02, 0xFE, 0xFF] {
        let block = [level, 0x80, 0x00, 0x01, 0x04, 0, 0, 0, 0, 0];
        let w = walk(&unit(&[&[0x06], &block]));
        let (next, alarm) = parse_alarm(&block, 0, block.len(), true).expect("alarm");
        assert_eq!(next, block.len());
        assert_eq!(w.alarm, Some(alarm));
        assert_eq!(w.alarm.and_then(|a| a.bit_levels), Some(vec![]));
    }
}

#[test]
fn blocks_per_frame_is_the_most_blocks_a_unit_holds() {
    use crate::error::{BLOCKS_PER_FRAME, OVER_LIMIT};
    let custom: &[u8] = &[0x80, 0, 0]; // an empty custom block: 3 bytes
    let sig = signature_block(32, 32);
    let mut at = vec![custom; BLOCKS_PER_FRAME];
    at.push(&sig); // the signature is not a block
    let w = walk(&unit(&at));
    assert!(w.signed && w.tail.is_none());
    let mut over = vec![custom; BLOCKS_PER_FRAME + 1];
    over.push(&sig);
    let buf = unit(&over);
    let e = walk_2025(&buf, 0, buf.len()).unwrap_err();
    assert_eq!((e.reason, e.offset), (OVER_LIMIT, 3 * BLOCKS_PER_FRAME));
}
