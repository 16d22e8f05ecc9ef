//! Stream framing: the spans of whole GB/T 32960 frames in a connection's byte buffer, and of
//! the bytes between them with the reason they were skipped.
//!
//! The semantics are exactly those of `ingest/decoders/framer.py` (`StreamFramer`, the readable
//! reference; tests/unit/test_native_framer.py proves they agree): find a start marker (`##` or
//! `$$`), read the 24-byte header, refuse a length over 65531, wait for N + 1 more bytes, check
//! the BCC; on any failure advance ONE byte and search again. An incomplete candidate is dropped
//! as a false start when a complete, checked frame already follows it in the buffer. A trailing
//! `#` / `$` is kept for the next read (it may be half a marker).
//!
//! The gateway calls this once per read with the bytes it holds: the Python framer cost ~9 µs
//! of the gateway's ~24 µs per frame, and this pass costs well under one.

/// Header bytes before the data unit: start (2), command (1), response (1), identity (17),
/// encryption (1), data length (2).
pub const HEADER_SIZE: usize = 24;
/// The largest data length a frame may declare (§6.2: 65531, so a frame fits 65556 bytes).
pub const MAX_DATA_LENGTH: usize = 65_531;

/// What a span is: a good frame, or skipped bytes and why (the reasons of the Python framer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Frame = 0,
    /// No start marker in these bytes.
    NoStart = 1,
    /// A candidate in the run declared a length over 65531 (or was a false start).
    BadLength = 2,
    /// A candidate in the run failed its BCC.
    BadChecksum = 3,
    /// The stream ended inside a candidate.
    Incomplete = 4,
}

impl Kind {
    /// A run that contains a rejected candidate says so even if it began with plain garbage.
    fn priority(self) -> u8 {
        match self {
            Kind::Frame | Kind::NoStart => 0,
            Kind::Incomplete => 1,
            Kind::BadLength => 2,
            Kind::BadChecksum => 3,
        }
    }
}

/// `buf[start..end]` is a frame or a skipped run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

/// The skipped run being built: where it began and its reason so far.
struct Skip<'a> {
    start: Option<usize>,
    kind: Kind,
    out: &'a mut Vec<Span>,
}

impl Skip<'_> {
    fn mark(&mut self, at: usize, kind: Kind) {
        match self.start {
            None => {
                self.start = Some(at);
                self.kind = kind;
            }
            Some(_) if kind.priority() > self.kind.priority() => self.kind = kind,
            Some(_) => {}
        }
    }

    fn flush(&mut self, upto: usize) {
        if let Some(start) = self.start.take() {
            if upto > start {
                self.out.push(Span {
                    start,
                    end: upto,
                    kind: self.kind,
                });
            }
        }
    }
}

/// Appends to `out`, in stream order, the frames and skipped runs that `buf` completes, and
/// returns how many leading bytes of `buf` they cover (the caller drops those and keeps the
/// rest for the next read). With `last` (end of stream) everything is reported.
pub fn frame_spans(buf: &[u8], last: bool, out: &mut Vec<Span>) -> usize {
    let mut skip = Skip {
        start: None,
        kind: Kind::NoStart,
        out,
    };
    let consumed = scan(buf, last, &mut skip);
    skip.flush(if last { buf.len() } else { consumed });
    if last {
        buf.len()
    } else {
        consumed
    }
}

fn scan(buf: &[u8], last: bool, skip: &mut Skip<'_>) -> usize {
    let mut pos = 0;
    let mut xors = Xors::new(buf);
    loop {
        let Some(p) = find_start(buf, pos) else {
            // Keep a trailing '#' or '$' not yet taken (a BCC may be one): it may start a marker.
            let half = !last && buf.len() > pos && matches!(buf[buf.len() - 1], b'#' | b'$');
            let keep = if half { buf.len() - 1 } else { buf.len() };
            if keep > pos {
                skip.mark(pos, Kind::NoStart);
            }
            return keep;
        };
        if p > pos {
            skip.mark(pos, Kind::NoStart);
        }
        match checked(buf, p, |a, b| xors.range(a, b)) {
            Ok(end) => {
                skip.flush(p);
                skip.out.push(Span {
                    start: p,
                    end,
                    kind: Kind::Frame,
                });
                pos = end;
            }
            Err(Kind::Incomplete) if last => {
                skip.mark(p, Kind::Incomplete);
                pos = p + 1;
            }
            Err(Kind::Incomplete) => {
                // A false start with a large length would hold every later frame back until
                // that many bytes arrived; a genuine frame's bytes cannot contain a complete,
                // checked frame, so one behind it proves the candidate false.
                match next_complete(buf, p + 1, &mut xors) {
                    None => return p,
                    Some(q) => {
                        skip.mark(p, Kind::BadLength);
                        pos = q;
                    }
                }
            }
            Err(kind) => {
                if kind == Kind::BadChecksum {
                    xors.build(p); // markers every few bytes must not each cost their length
                }
                skip.mark(p, kind);
                pos = p + 1;
            }
        }
    }
}

/// The XOR of `buf`'s ranges (a candidate's BCC). Byte by byte while every candidate checks
/// out (honest traffic: each byte is XORed once); from the first failure or false start on,
/// from prefix XORs built once for the whole pass, O(1) a candidate. Checked byte by byte, a
/// buffer of markers every few bytes, each declaring a length the buffer holds, cost its
/// length per marker (4 ms a 64 KB read, again on every read while a false start waited).
struct Xors<'a> {
    buf: &'a [u8],
    // empty until built; then prefix[i] = XOR of buf[base..base + i]
    prefix: Vec<u8>,
    base: usize,
}

impl<'a> Xors<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Xors {
            buf,
            prefix: Vec::new(),
            base: 0,
        }
    }

    /// From `base` on: the scan only moves forward, so every later range starts there or
    /// after (an honest read whose last, unfinished frame holds a marker builds only the
    /// prefix of that frame, not of the whole read).
    fn build(&mut self, base: usize) {
        if !self.prefix.is_empty() {
            return;
        }
        self.base = base;
        self.prefix.reserve_exact(self.buf.len() - base + 1);
        let mut acc = 0u8;
        self.prefix.push(acc);
        for &b in &self.buf[base..] {
            acc ^= b;
            self.prefix.push(acc);
        }
    }

    fn range(&self, from: usize, to: usize) -> u8 {
        if self.prefix.is_empty() {
            self.buf[from..to].iter().fold(0u8, |acc, b| acc ^ b)
        } else {
            self.prefix[to - self.base] ^ self.prefix[from - self.base]
        }
    }
}

/// The candidate frame at `p`: its end (exclusive) when whole and checked, else the reason
/// (the scan's check, byte by byte: the tests' plain reference).
#[cfg(test)]
fn candidate(buf: &[u8], p: usize) -> Result<usize, Kind> {
    checked(buf, p, |from, to| {
        buf[from..to].iter().fold(0u8, |acc, b| acc ^ b)
    })
}

/// `candidate`, with `xor(from, to)` the XOR of `buf[from..to]` (the BCC's bytes).
fn checked(buf: &[u8], p: usize, xor: impl Fn(usize, usize) -> u8) -> Result<usize, Kind> {
    if buf.len() - p < HEADER_SIZE {
        return Err(Kind::Incomplete);
    }
    let n = usize::from(buf[p + 22]) << 8 | usize::from(buf[p + 23]);
    if n > MAX_DATA_LENGTH {
        return Err(Kind::BadLength);
    }
    let bcc_at = p + HEADER_SIZE + n;
    if buf.len() <= bcc_at {
        return Err(Kind::Incomplete);
    }
    if xor(p + 2, bcc_at) != buf[bcc_at] {
        return Err(Kind::BadChecksum);
    }
    Ok(bcc_at + 1)
}

fn next_complete(buf: &[u8], from: usize, xors: &mut Xors<'_>) -> Option<usize> {
    let mut q = find_start(buf, from)?;
    xors.build(from);
    loop {
        if checked(buf, q, |a, b| xors.range(a, b)).is_ok() {
            return Some(q);
        }
        q = find_start(buf, q + 1)?;
    }
}

/// The first `##` or `$$` at or after `from` (one pass for both markers).
fn find_start(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    tail.windows(2)
        .position(|w| w[0] == w[1] && (w[0] == b'#' || w[0] == b'$'))
        .map(|i| from + i)
}

#[cfg(feature = "python")]
pub mod py {
    use pyo3::prelude::*;

    /// `frame_spans(buf, last) -> (consumed, [(start, end, kind), ...])`: kind 0 is a frame,
    /// 1-4 a skipped run (no_start, bad_length, bad_checksum, incomplete).
    #[pyfunction]
    pub fn frame_spans(buf: &[u8], last: bool) -> (usize, Vec<(usize, usize, u8)>) {
        let mut out = Vec::new();
        let consumed = super::frame_spans(buf, last, &mut out);
        (
            consumed,
            out.into_iter()
                .map(|s| (s.start, s.end, s.kind as u8))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(marker: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![marker, marker, 0x02, 0xFE];
        f.extend_from_slice(b"LTEST000000000001");
        f.push(0x01);
        f.extend_from_slice(&(data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        let bcc = f[2..].iter().fold(0u8, |a, b| a ^ b);
        f.push(bcc);
        f
    }

    fn spans(buf: &[u8], last: bool) -> (usize, Vec<(usize, usize, Kind)>) {
        let mut out = Vec::new();
        let n = frame_spans(buf, last, &mut out);
        (
            n,
            out.into_iter().map(|s| (s.start, s.end, s.kind)).collect(),
        )
    }

    #[test]
    fn next_complete_with_prefix_xors_finds_what_checking_each_candidate_finds() {
        // False starts every 4 bytes (`##`, a length of 0x7000 the buffer holds for the first
        // ones, all failing their BCC), then a real frame: the first complete one is found.
        let mut buf = frame(b'#', &[0; 3]);
        buf.truncate(24); // a header whose frame never comes
        buf[22..24].copy_from_slice(&0xFFFBu16.to_be_bytes());
        while buf.len() < 40_000 {
            buf.extend_from_slice(b"##\x70\x00");
        }
        let real = buf.len();
        buf.extend_from_slice(&frame(b'$', &[7; 50]));
        let naive = (1..buf.len()).find(|&q| {
            buf[q] == buf[q + 1] && matches!(buf[q], b'#' | b'$') && candidate(&buf, q).is_ok()
        });
        assert_eq!(naive, Some(real));
        assert_eq!(next_complete(&buf, 1, &mut Xors::new(&buf)), naive);
        let (n, s) = spans(&buf, false);
        assert_eq!(n, buf.len());
        assert_eq!(s.last(), Some(&(real, buf.len(), Kind::Frame)));
    }

    #[test]
    fn glued_frames_and_garbage_between() {
        let a = frame(b'#', &[1, 2, 3]);
        let b = frame(b'$', &[]);
        let mut buf = a.clone();
        buf.extend_from_slice(&[0x7E, 0x7E]);
        buf.extend_from_slice(&b);
        let (n, s) = spans(&buf, false);
        assert_eq!(n, buf.len());
        let x = a.len();
        assert_eq!(
            s,
            vec![
                (0, x, Kind::Frame),
                (x, x + 2, Kind::NoStart),
                (x + 2, buf.len(), Kind::Frame)
            ]
        );
    }

    #[test]
    fn an_incomplete_frame_is_kept_and_a_half_marker_too() {
        let a = frame(b'#', &[9; 40]);
        let (n, s) = spans(&a[..30], false);
        assert_eq!((n, s), (0, vec![]));
        let (n, s) = spans(b"xx#", false);
        assert_eq!((n, s), (2, vec![(0, 2, Kind::NoStart)]));
        let (n, s) = spans(&a[..30], true);
        assert_eq!(n, 30);
        assert_eq!(s, vec![(0, 30, Kind::Incomplete)]);
    }

    #[test]
    fn a_bad_checksum_resyncs_by_one_byte() {
        let mut a = frame(b'#', &[5; 10]);
        let last = a.len() - 1;
        a[last] ^= 0xFF;
        let b = frame(b'#', &[6; 10]);
        let mut buf = a.clone();
        buf.extend_from_slice(&b);
        let (_, s) = spans(&buf, false);
        assert_eq!(
            s,
            vec![
                (0, a.len(), Kind::BadChecksum),
                (a.len(), buf.len(), Kind::Frame)
            ]
        );
    }

    #[test]
    fn a_false_start_with_a_large_length_does_not_hold_a_complete_frame_back() {
        let mut buf = b"##".to_vec();
        buf.extend_from_slice(&[0; 20]);
        buf.extend_from_slice(&[0xFF, 0x00]); // 65280 > what is buffered, <= 65531
        let b = frame(b'#', &[1]);
        let skipped = buf.len();
        buf.extend_from_slice(&b);
        let (n, s) = spans(&buf, false);
        assert_eq!(n, buf.len());
        assert_eq!(
            s,
            vec![
                (0, skipped, Kind::BadLength),
                (skipped, buf.len(), Kind::Frame)
            ]
        );
    }

    #[test]
    fn a_length_over_the_cap_is_refused() {
        let mut buf = b"$$".to_vec();
        buf.extend_from_slice(&[0; 20]);
        buf.extend_from_slice(&[0xFF, 0xFC]); // 65532
        let (n, s) = spans(&buf, false);
        assert_eq!((n, s), (buf.len(), vec![(0, buf.len(), Kind::BadLength)]));
    }
}
