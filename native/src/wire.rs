//! Reading the standard's fields: big-endian WORDs and DWORDs, and its sentinels (0xFE
//! "abnormal" / 0xFF "invalid" and their WORD / DWORD forms) as `None`. Shared by the vehicle,
//! charger and pack decoders. The readers index directly: every caller has checked the length
//! against the data unit's end first, because that check decides the reject reason and offset.

/// The big-endian WORD at `at` (the caller has checked `at + 2 <= end`).
#[inline(always)]
pub fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// The big-endian DWORD at `at` (the caller has checked `at + 4 <= end`).
#[inline(always)]
pub fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// `Some(v)` unless `v` is a BYTE sentinel (0xFE, 0xFF).
#[inline(always)]
pub fn byte(v: u8) -> Option<u8> {
    (v < 0xFE).then_some(v)
}

/// `Some(v)` unless `v` is a WORD sentinel (0xFFFE, 0xFFFF).
#[inline(always)]
pub fn word(v: u16) -> Option<u16> {
    (v < 0xFFFE).then_some(v)
}

/// `Some(v)` unless `v` is a DWORD sentinel (0xFFFFFFFE, 0xFFFFFFFF).
#[inline(always)]
pub fn dword(v: u32) -> Option<u32> {
    (v < 0xFFFF_FFFE).then_some(v)
}
