//! Finds a line's end and its first colon in one pass.
//!
//! An AMI line is short (an Asterisk 22 event averages 23 bytes a line), so calling a
//! vector `memchr` twice per line (once for `\n`, once for `:`) spends more on each call's
//! set-up than on the bytes. Here eight bytes are tested at a time for both at once, in plain
//! integer arithmetic, with no `unsafe` and no dependence on the CPU.

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
/// Past this many bytes of a value without a line end, the scan hands over to `memchr`.
const LONG_LINE: usize = 128;

/// The high bit set in exactly the bytes of `word` that equal `byte` (no false positives:
/// the sum below never carries from one byte into the next).
#[inline(always)]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Index of the first set byte of a [`bytes_equal`] mask.
#[inline(always)]
fn first(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// Where the next line of `buf` from `from` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineEnd {
    /// Index of its `\n`.
    pub nl: usize,
    /// Index of its first `:`, when it has one before the `\n`.
    pub colon: Option<usize>,
}

/// The first `\n` at or after `from`, with the first `:` before it; None when `buf` holds no
/// `\n` there.
#[inline]
pub(crate) fn next_line(buf: &[u8], from: usize) -> Option<LineEnd> {
    // The name: both bytes looked for, until the first of either.
    let mut at = from;
    while let Some(word) = word_at(buf, at) {
        let (nl, colon) = (bytes_equal(word, b'\n'), bytes_equal(word, b':'));
        if nl | colon != 0 {
            let i = at + first(nl | colon);
            if buf[i] == b'\n' {
                return Some(LineEnd { nl: i, colon: None });
            }
            return value_end(buf, i + 1).map(|nl| LineEnd { nl, colon: Some(i) });
        }
        at += 8;
    }
    let mut colon = None;
    for (i, &b) in buf.get(at..).unwrap_or_default().iter().enumerate() {
        match b {
            b'\n' => return Some(LineEnd { nl: at + i, colon }),
            b':' if colon.is_none() => colon = Some(at + i),
            _ => {}
        }
    }
    None
}

/// The value, after the colon: only the line end is looked for.
#[inline]
fn value_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(word) = word_at(buf, at) {
        let nl = bytes_equal(word, b'\n');
        if nl != 0 {
            return Some(at + first(nl));
        }
        at += 8;
        if at - from >= LONG_LINE {
            // A long value (a large Variable, command output) goes faster through memchr.
            return memchr::memchr(b'\n', &buf[at..]).map(|i| at + i);
        }
    }
    buf.get(at..)?.iter().position(|&b| b == b'\n').map(|i| at + i)
}

/// The eight bytes at `at`, as a little-endian word (byte `at` the lowest); None past the
/// last whole word.
#[inline(always)]
fn word_at(buf: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious byte loop the fast one must agree with.
    fn slow(buf: &[u8], from: usize) -> Option<LineEnd> {
        let nl = from + buf.get(from..)?.iter().position(|&b| b == b'\n')?;
        let colon = buf[from..nl].iter().position(|&b| b == b':').map(|c| from + c);
        Some(LineEnd { nl, colon })
    }

    #[test]
    fn finds_the_end_and_the_first_colon() {
        let buf = b"Event: Newstate\r\nPrivilege: call,all\r\n\r\n";
        assert_eq!(next_line(buf, 0), Some(LineEnd { nl: 16, colon: Some(5) }));
        assert_eq!(
            next_line(buf, 17),
            Some(LineEnd {
                nl: 37,
                colon: Some(26)
            })
        );
        assert_eq!(next_line(buf, 38), Some(LineEnd { nl: 39, colon: None }));
        assert_eq!(next_line(buf, 40), None);
        // A colon on the next line is not this line's.
        assert_eq!(next_line(b"ab\ncd:e\n", 0), Some(LineEnd { nl: 2, colon: None }));
        assert_eq!(next_line(b"no newline: here", 0), None);
    }

    #[test]
    fn bytes_with_the_high_bit_set_match_nothing() {
        let buf = [0x8a, 0xba, 0xff, 0x80, 0x0a, 0, 0, 0, 0, b':', b'\n'];
        assert_eq!(next_line(&buf, 0), Some(LineEnd { nl: 4, colon: None }));
        assert_eq!(next_line(&buf, 5), Some(LineEnd { nl: 10, colon: Some(9) }));
    }

    proptest! {
        #[test]
        fn agrees_with_a_byte_loop(
            buf in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b':'), Just(b'\r'), any::<u8>()], 0..200),
            from in 0usize..210,
        ) {
            prop_assert_eq!(next_line(&buf, from), slow(&buf, from));
        }
    }
}
