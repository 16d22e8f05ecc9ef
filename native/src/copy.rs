//! PostgreSQL binary COPY tuples ("COPY - Binary Format" in the PostgreSQL docs; arrays as
//! `array_send` writes them). A tuple is a 16-bit field count, then per field a 32-bit length
//! (-1 for NULL) and the value in network byte order. The stream's signature and trailer are
//! added by the writer in Python (`storage.binary.COPY_SIGNATURE` / `COPY_TRAILER`), so the
//! tuples of each frame can be kept, dropped or reordered on their own.

use crate::time::PG_EPOCH_MS;

const INT2_OID: i32 = 21;
const INT8_OID: i32 = 20;

/// Appends fields to a COPY buffer. Every `Option` writes NULL for `None`.
pub struct Tuples<'a> {
    pub out: &'a mut Vec<u8>,
}

impl<'a> Tuples<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out }
    }

    /// Starts a tuple of `fields` columns.
    pub fn row(&mut self, fields: i16) {
        self.out.extend_from_slice(&fields.to_be_bytes());
    }

    pub fn null(&mut self) {
        self.out.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn len(&mut self, n: usize) {
        // Field lengths here are far below 2^31 (a frame is at most 65,556 bytes).
        self.out.extend_from_slice(&(n as i32).to_be_bytes());
    }

    pub fn text(&mut self, v: &str) {
        self.len(v.len());
        self.out.extend_from_slice(v.as_bytes());
    }

    pub fn bytea(&mut self, v: &[u8]) {
        self.len(v.len());
        self.out.extend_from_slice(v);
    }

    pub fn int2(&mut self, v: Option<i16>) {
        match v {
            Some(x) => {
                self.len(2);
                self.out.extend_from_slice(&x.to_be_bytes());
            }
            None => self.null(),
        }
    }

    pub fn int4(&mut self, v: Option<i32>) {
        match v {
            Some(x) => {
                self.len(4);
                self.out.extend_from_slice(&x.to_be_bytes());
            }
            None => self.null(),
        }
    }

    pub fn int8(&mut self, v: Option<i64>) {
        match v {
            Some(x) => {
                self.len(8);
                self.out.extend_from_slice(&x.to_be_bytes());
            }
            None => self.null(),
        }
    }

    pub fn float4(&mut self, v: Option<f32>) {
        match v {
            Some(x) => {
                self.len(4);
                self.out.extend_from_slice(&x.to_be_bytes());
            }
            None => self.null(),
        }
    }

    pub fn float8(&mut self, v: Option<f64>) {
        match v {
            Some(x) => {
                self.len(8);
                self.out.extend_from_slice(&x.to_be_bytes());
            }
            None => self.null(),
        }
    }

    pub fn boolean(&mut self, v: Option<bool>) {
        match v {
            Some(x) => {
                self.len(1);
                self.out.push(u8::from(x));
            }
            None => self.null(),
        }
    }

    /// A `timestamptz` given as epoch milliseconds (UTC).
    pub fn timestamptz_ms(&mut self, epoch_ms: Option<i64>) {
        self.int8(epoch_ms.map(|ms| (ms - PG_EPOCH_MS) * 1000));
    }

    /// A one-dimensional `int2[]` (NULL elements for `None`); an empty iterator is an empty
    /// array (ndim 0, as `array_send` writes it).
    pub fn int2_array(&mut self, values: impl ExactSizeIterator<Item = Option<i16>> + Clone) {
        let n = values.len();
        let nulls = values.clone().filter(Option::is_none).count();
        if self.array_head(INT2_OID, 2, n, nulls) {
            for v in values {
                match v {
                    Some(x) => {
                        self.out.extend_from_slice(&[0, 0, 0, 2]);
                        self.out.extend_from_slice(&x.to_be_bytes());
                    }
                    None => self.null(),
                }
            }
        }
    }

    /// The `int2[]` of cell voltages (big-endian u16 each, as the frame sends them) that
    /// `storage.binary.put_cells` writes: a value above 0x7FFF (the sentinels 0xFFFE/0xFFFF, or
    /// beyond int2) is a NULL element; no cells is a NULL field.
    pub fn cells(&mut self, raw: &[u8]) {
        let pairs = raw.chunks_exact(2);
        if pairs.len() == 0 {
            return self.null();
        }
        // The high byte alone decides: > 0x7FFF is the high byte's top bit.
        self.int2_array(pairs.map(|p| (p[0] < 0x80).then(|| i16::from_be_bytes([p[0], p[1]]))));
    }

    /// The `int2[]` of probe temperatures (u8 each, degC + 40) that `storage.binary.put_probes`
    /// writes: 0xFE/0xFF are NULL elements; no probes is a NULL field.
    pub fn probes(&mut self, raw: &[u8]) {
        if raw.is_empty() {
            return self.null();
        }
        self.int2_array(raw.iter().map(|&b| (b < 0xFE).then(|| i16::from(b) - 40)));
    }

    /// A one-dimensional `int2[]` of bytes (2025 alarm bit levels).
    pub fn int2_array_u8(&mut self, values: &[u8]) {
        self.int2_array(values.iter().map(|&b| Some(i16::from(b))));
    }

    /// A one-dimensional `int8[]` (no NULL elements).
    pub fn int8_array(&mut self, values: &[u32]) {
        if self.array_head(INT8_OID, 8, values.len(), 0) {
            for &x in values {
                self.out.extend_from_slice(&[0, 0, 0, 8]);
                self.out.extend_from_slice(&i64::from(x).to_be_bytes());
            }
        }
    }

    /// The field length and array header of `n` elements of `size` bytes, `nulls` of them
    /// NULL; false for an empty array (written whole: no dimension follows).
    fn array_head(&mut self, oid: i32, size: usize, n: usize, nulls: usize) -> bool {
        if n == 0 {
            self.len(12);
            self.out.extend_from_slice(&0i32.to_be_bytes()); // ndim
            self.out.extend_from_slice(&0i32.to_be_bytes()); // has nulls
            self.out.extend_from_slice(&oid.to_be_bytes());
            return false;
        }
        let body = 20 + (n - nulls) * (4 + size) + nulls * 4;
        self.out.reserve(4 + body);
        self.len(body);
        self.out.extend_from_slice(&1i32.to_be_bytes()); // ndim
        self.out
            .extend_from_slice(&i32::from(nulls > 0).to_be_bytes()); // has nulls
        self.out.extend_from_slice(&oid.to_be_bytes());
        // At most 65,535 elements (a frame is at most 65,556 bytes): fits i32.
        self.out.extend_from_slice(&(n as i32).to_be_bytes()); // dimension
        self.out.extend_from_slice(&1i32.to_be_bytes()); // lower bound
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_in_network_order() {
        let mut out = Vec::new();
        let mut t = Tuples::new(&mut out);
        t.row(3);
        t.int2(Some(-2));
        t.float4(None);
        t.text("ab");
        assert_eq!(
            out,
            [0, 3, 0, 0, 0, 2, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, b'a', b'b']
        );
    }

    #[test]
    fn int2_array_with_a_null() {
        let mut out = Vec::new();
        Tuples::new(&mut out).int2_array([Some(1i16), None].into_iter());
        let mut want = vec![
            0, 0, 0, 30, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 21, 0, 0, 0, 2, 0, 0, 0, 1,
        ];
        want.extend_from_slice(&[0, 0, 0, 2, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(out, want);
    }
}
