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
        self.int8_raw(epoch_ms.map(|ms| (ms - PG_EPOCH_MS) * 1000));
    }

    fn int8_raw(&mut self, v: Option<i64>) {
        self.int8(v)
    }

    /// A one-dimensional `int2[]` (NULL elements for `None`); an empty slice is an empty array.
    pub fn int2_array(&mut self, values: impl ExactSizeIterator<Item = Option<i16>> + Clone) {
        self.array(
            INT2_OID,
            2,
            values.map(|v| v.map(|x| x.to_be_bytes().to_vec())),
        );
    }

    /// A one-dimensional `int8[]`.
    pub fn int8_array(&mut self, values: &[i64]) {
        self.array(
            INT8_OID,
            8,
            values.iter().map(|x| Some(x.to_be_bytes().to_vec())),
        );
    }

    fn array(
        &mut self,
        oid: i32,
        size: usize,
        values: impl ExactSizeIterator<Item = Option<Vec<u8>>> + Clone,
    ) {
        let n = values.len();
        if n == 0 {
            // array_send of an empty array: ndim 0, no dimensions.
            self.len(12);
            self.out.extend_from_slice(&0i32.to_be_bytes());
            self.out.extend_from_slice(&0i32.to_be_bytes());
            self.out.extend_from_slice(&oid.to_be_bytes());
            return;
        }
        let nulls = values.clone().filter(Option::is_none).count();
        let body = 20 + (n - nulls) * (4 + size) + nulls * 4;
        self.len(body);
        self.out.extend_from_slice(&1i32.to_be_bytes()); // ndim
        self.out
            .extend_from_slice(&i32::from(nulls > 0).to_be_bytes()); // has nulls
        self.out.extend_from_slice(&oid.to_be_bytes());
        self.out.extend_from_slice(&(n as i32).to_be_bytes()); // dimension
        self.out.extend_from_slice(&1i32.to_be_bytes()); // lower bound
        for v in values {
            match v {
                Some(bytes) => {
                    self.len(size);
                    self.out.extend_from_slice(&bytes);
                }
                None => self.null(),
            }
        }
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
