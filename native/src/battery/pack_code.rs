//! GB/T 34014-2017 traction-battery codes: the checks of `ingest.decoders.pack_code.
//! decode_pack_code`, as a yes / no. Why a code is bad (reason, position, text) is the Python
//! decoder's to say: the native path hands such a frame to it.

/// Letters of the year and day codes after the digits: I, O and Q are left out.
const LETTERS: &[u8; 22] = b"ABCDEFGHJKLMNPRSTUVWXY";

/// Whether `raw` is a valid 24-character code: digits and upper-case letters, product type
/// P / M / C, battery type A-G / Z, and a production date that exists.
pub fn is_valid(raw: &[u8]) -> bool {
    if raw.len() != 24
        || !raw
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        return false;
    }
    if !b"PMC".contains(&raw[3]) || !b"ABCDEFGZ".contains(&raw[4]) {
        return false;
    }
    match (year(raw[14]), month(raw[15]), day(raw[16])) {
        (Some(y), Some(m), Some(d)) => d <= days_in_month(y, m),
        _ => false,
    }
}

/// `0`-`9` = 2010-2019, then `A`-`Y` without I, O, Q = 2020-2041.
fn year(c: u8) -> Option<u32> {
    digit_or_letter(c).map(|k| 2010 + k)
}

/// `1`-`9`, `A` `B` `C` = 1-12.
fn month(c: u8) -> Option<u32> {
    match c {
        b'1'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'C' => Some(u32::from(c - b'A') + 10),
        _ => None,
    }
}

/// `1`-`9`, then `A`-`Y` without I, O, Q = 10-31.
fn day(c: u8) -> Option<u32> {
    match c {
        b'0' => None,
        _ => digit_or_letter(c),
    }
}

/// `0`-`9` = 0-9, then the letters of `LETTERS` = 10-31.
fn digit_or_letter(c: u8) -> Option<u32> {
    if c.is_ascii_digit() {
        return Some(u32::from(c - b'0'));
    }
    let at = LETTERS.iter().position(|&l| l == c)?;
    u32::try_from(at).ok().map(|k| 10 + k)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_of_gbt_34014() {
        assert!(is_valid(b"03HPE010000000A1B0000042")); // 2020-01-11
        assert!(is_valid(b"03HCZ0100000009C10000042")); // 2019-12-01
        assert!(is_valid(b"03HPE010000000Y1Y0000042")); // 2041-01-31
        assert!(is_valid(b"03HPE010000000E2W0000042")); // 2024-02-29
        assert!(!is_valid(b"03HPE010000000D2W0000042")); // 2023-02-29
        assert!(!is_valid(b"03HPE010000000E2X0000042")); // 2024-02-30
        assert!(is_valid(b"03HPE010000000A4X0000042")); // 2020-04-30
        assert!(!is_valid(b"03HPE010000000A4Y0000042")); // 2020-04-31
        assert!(!is_valid(b"03HXE010000000A1B0000042")); // product type
        assert!(!is_valid(b"03HPH010000000A1B0000042")); // battery type
        assert!(!is_valid(b"03HPE010000000I1B0000042")); // year I
        assert!(!is_valid(b"03HPE010000000A0B0000042")); // month 0
        assert!(is_valid(b"03HPE010000000A1D0000042")); // day 13
        assert!(!is_valid(b"03HPE010000000A100000042")); // day 0
        assert!(!is_valid(b"03hPE010000000A1B0000042")); // lower case
        assert!(!is_valid(b"03HPE010000000A1B000004")); // 23 characters
    }
}
