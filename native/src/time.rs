//! The 6-byte frame time (YY MM DD hh mm ss, binary, China Standard Time UTC+8, §1.3).
//! The same checks and messages as the structured decoder's frame time.

use crate::error::{FrameError, Result, BAD_FIELD};

/// Milliseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's timestamp epoch), UTC.
pub const PG_EPOCH_MS: i64 = 946_684_800_000;
const CST_OFFSET_MS: i64 = 8 * 3_600_000;

/// A checked frame time: its six bytes (the cache key of the Python datetime) and the instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FrameTime {
    pub raw: [u8; 6],
    /// Epoch milliseconds (UTC) of the instant.
    pub epoch_ms: i64,
}

impl FrameTime {
    pub fn year(&self) -> i32 {
        2000 + i32::from(self.raw[0])
    }

    /// Microseconds since 2000-01-01 UTC: a `timestamptz` in binary COPY.
    pub fn pg_micros(&self) -> i64 {
        (self.epoch_ms - PG_EPOCH_MS) * 1000
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(if month <= 2 { year - 1 } else { year });
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The frame time at frame `offset`, or `bad_field` when the bytes are no date.
pub fn parse(raw: [u8; 6], offset: usize) -> Result<FrameTime> {
    let [yy, mo, dd, hh, mi, ss] = raw;
    if yy > 99 {
        return Err(FrameError::new(
            BAD_FIELD,
            offset,
            format!("frame time: year byte {yy} > 99"),
        ));
    }
    let year = 2000 + i32::from(yy);
    let valid = (1..=12).contains(&mo)
        && dd >= 1
        && dd <= days_in_month(year, mo)
        && hh < 24
        && mi < 60
        && ss < 60;
    if !valid {
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        return Err(FrameError::new(
            BAD_FIELD,
            offset,
            format!("frame time {hex} is not a date"),
        ));
    }
    let secs = days_from_civil(year, mo, dd) * 86_400
        + i64::from(hh) * 3600
        + i64::from(mi) * 60
        + i64::from(ss);
    Ok(FrameTime {
        raw,
        epoch_ms: secs * 1000 - CST_OFFSET_MS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_time_to_epoch() {
        // 2024-02-29 08:00:00 +08:00 = 2024-02-29T00:00:00Z = 1709164800 s
        let t = parse([24, 2, 29, 8, 0, 0], 24).unwrap();
        assert_eq!(t.epoch_ms, 1_709_164_800_000);
        assert_eq!(parse([0, 1, 1, 8, 0, 0], 24).unwrap().pg_micros(), 0);
    }

    #[test]
    fn no_date_is_bad_field() {
        let e = parse([23, 2, 29, 0, 0, 0], 24).unwrap_err();
        assert_eq!((e.reason, e.offset), (BAD_FIELD, 24));
        assert_eq!(e.detail, "frame time 17021d000000 is not a date");
        assert_eq!(
            parse([100, 1, 1, 0, 0, 0], 24).unwrap_err().detail,
            "frame time: year byte 100 > 99"
        );
        assert!(parse([24, 13, 1, 0, 0, 0], 24).is_err());
        assert!(parse([24, 1, 1, 24, 0, 0], 24).is_err());
        assert!(parse([24, 1, 1, 0, 0, 60], 24).is_err());
    }
}
