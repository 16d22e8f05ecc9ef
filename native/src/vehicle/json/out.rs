//! A minimal JSON writer that produces what orjson produces for the same values: no spaces,
//! `true`/`false`/`null`, integers in decimal and floats in orjson's notation. Strings here
//! are ASCII that needs no escaping (contract names, checked VINs, hex).

use std::fmt::Write as _;

const HEX: &[u8; 16] = b"0123456789abcdef";

pub struct Out(Vec<u8>);

impl Out {
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Drop what was written after `len` (a block whose decoding stopped the walk).
    pub fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// A comma unless this is the first member of the enclosing object or array.
    fn sep(&mut self) {
        if !matches!(self.0.last(), Some(b'{' | b'[' | b':') | None) {
            self.0.push(b',');
        }
    }

    /// `"name":` of the next member.
    pub fn key(&mut self, name: &str) {
        self.sep();
        self.0.push(b'"');
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    /// Before an array item that is a value (a comma unless it is the first).
    pub fn item(&mut self) {
        self.sep();
    }

    /// An object as an array item: `,{` or `{`.
    pub fn item_start(&mut self) {
        self.sep();
        self.0.push(b'{');
    }

    pub fn end(&mut self, close: u8) {
        self.0.push(close);
    }

    pub fn null(&mut self) {
        self.raw(b"null");
    }

    pub fn bool(&mut self, v: bool) {
        self.raw(if v { b"true" } else { b"false" });
    }

    pub fn str(&mut self, s: &str) {
        self.0.push(b'"');
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(b'"');
    }

    pub fn hex(&mut self, bytes: &[u8]) {
        self.0.push(b'"');
        for &b in bytes {
            self.0.push(HEX[usize::from(b >> 4)]);
            self.0.push(HEX[usize::from(b & 15)]);
        }
        self.0.push(b'"');
    }

    pub fn int(&mut self, v: i64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = v.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if v < 0 {
            self.0.push(b'-');
        }
        self.0.extend_from_slice(&digits[i..]);
    }

    /// `v / div` (a power of ten) as orjson writes the float Python computes for it. The
    /// shortest digits that read back as that float are the exact decimal `v / div` itself:
    /// it has at most 10 significant digits, and any other decimal of as few digits lies more
    /// than a float's rounding step away. So no float formatting is needed, only digits;
    /// below 1e-5 orjson switches to exponent notation, left to `float`.
    pub fn decimal(&mut self, v: i64, div: u32) {
        let places = match div {
            10 => 1,
            100 => 2,
            1000 => 3,
            10_000 => 4,
            1_000_000 => 6,
            _ => 0,
        };
        let (a, d) = (v.unsigned_abs(), u64::from(div));
        if places == 0 || (a != 0 && a * 100_000 < d) {
            self.float(v as f64 / f64::from(div));
            return;
        }
        if v < 0 {
            self.0.push(b'-');
        }
        self.int((a / d) as i64);
        self.0.push(b'.');
        let mut frac = [b'0'; 6];
        let mut rest = a % d;
        for i in (0..places).rev() {
            frac[i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let mut keep = places;
        while keep > 1 && frac[keep - 1] == b'0' {
            keep -= 1;
        }
        self.0.extend_from_slice(&frac[..keep]);
    }

    /// A finite float as orjson writes it: the shortest digits that read back as `v` (what
    /// Rust's `{:e}` gives), in positional notation for 1e-5 <= |v| < 1e16 (with at least one
    /// decimal, "3.0"), else as `1.5e16` / `5e-6`.
    pub fn float(&mut self, v: f64) {
        if v == 0.0 {
            self.raw(if v.is_sign_negative() {
                b"-0.0"
            } else {
                b"0.0"
            });
            return;
        }
        let mut sci = String::with_capacity(24);
        let _ = write!(sci, "{v:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        if !(-5..16).contains(&exp) {
            self.raw(sci.as_bytes());
            return;
        }
        let (neg, mantissa) = match mantissa.strip_prefix('-') {
            Some(m) => (true, m),
            None => (false, mantissa),
        };
        if neg {
            self.0.push(b'-');
        }
        let digits: Vec<u8> = mantissa.bytes().filter(|b| *b != b'.').collect();
        if exp < 0 {
            self.raw(b"0.");
            for _ in 0..(-exp - 1) {
                self.0.push(b'0');
            }
            self.raw(&digits);
            return;
        }
        let whole = exp as usize + 1;
        if digits.len() <= whole {
            self.raw(&digits);
            for _ in digits.len()..whole {
                self.0.push(b'0');
            }
            self.raw(b".0");
        } else {
            self.raw(&digits[..whole]);
            self.0.push(b'.');
            self.raw(&digits[whole..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut o = Out::with_capacity(32);
        o.float(v);
        String::from_utf8(o.into_bytes()).unwrap()
    }

    #[test]
    fn floats_are_written_as_orjson_writes_them() {
        // The expected strings are orjson 3's output for the same floats.
        let cases = [
            (1e-6, "1e-6"),
            (5e-6, "5e-6"),
            (1e-5, "0.00001"),
            (4.2e-5, "0.000042"),
            (0.001, "0.001"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (429_496_729.5, "429496729.5"),
            (3.0, "3.0"),
            (-1000.0, "-1000.0"),
            (65.535, "65.535"),
            (1e15, "1000000000000000.0"),
            (1.5e16, "1.5e16"),
            (-3.7, "-3.7"),
        ];
        for (v, want) in cases {
            assert_eq!(f(v), want, "{v:e}");
        }
    }

    #[test]
    fn decimals_are_the_floats_python_divides() {
        let mut cases: Vec<(i64, u32)> = vec![(0, 10), (-10_000, 10), (65_535, 1000), (1, 1000)];
        cases.extend([
            (7, 1_000_000),
            (10, 1_000_000),
            (-123, 100),
            (4_294_967_295, 10),
        ]);
        cases.extend((0..70_000).step_by(7).map(|n| (n, 1000)));
        cases.extend((-20_000..45_536).step_by(13).map(|n| (n, 10)));
        for (v, div) in cases {
            let mut o = Out::with_capacity(32);
            o.decimal(v, div);
            assert_eq!(
                String::from_utf8(o.into_bytes()).unwrap(),
                f(v as f64 / f64::from(div))
            );
        }
    }

    #[test]
    fn ints_and_separators() {
        let mut o = Out::with_capacity(32);
        o.raw(b"{");
        o.key("a");
        o.int(-20_000);
        o.key("b");
        o.raw(b"[");
        o.item();
        o.int(0);
        o.item();
        o.int(i64::MAX);
        o.end(b']');
        o.end(b'}');
        assert_eq!(
            o.into_bytes(),
            b"{\"a\":-20000,\"b\":[0,9223372036854775807]}"
        );
    }
}
