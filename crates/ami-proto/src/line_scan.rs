//! Finds a line's end and its first colon in one pass.
//!
//! An AMI line is short (an Asterisk 22 event averages 23 bytes a line), so calling a
//! vector `memchr` twice per line (once for `\n`, once for `:`) spends more on each call's
//! set-up than on the bytes. Here a block of bytes is tested for both at once: sixteen at a
//! time with SSE2 on x86-64 (through `safe_arch`'s safe wrappers: this crate has no
//! `unsafe`), eight at a time in plain integer arithmetic elsewhere. The name is searched for
//! both bytes, the value after the colon for the line end alone.

/// Past this many bytes of a value without a line end, the scan hands over to `memchr`.
const LONG_LINE: usize = 128;

/// Where the next line of `buf` from `from` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineEnd {
    /// Index of its `\n`.
    pub nl: usize,
    /// Index of its first `:`, when it has one before the `\n`.
    pub colon: Option<usize>,
}

/// A way to test a block of bytes for `\n` and `:`. A mask has a bit set for each byte that
/// matched; [`Block::first`] turns the lowest into the byte's offset in the block.
trait Block {
    const WIDTH: usize;
    /// (newlines, colons) in `bytes`, which is `WIDTH` long.
    fn masks(bytes: &[u8]) -> (u64, u64);
    fn newlines(bytes: &[u8]) -> u64;
    fn first(mask: u64) -> usize;
}

/// Sixteen bytes at a time: SSE2 is part of every x86-64 CPU.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
struct Sse2;

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
impl Sse2 {
    fn equal(bytes: &[u8], byte: u8) -> u64 {
        use safe_arch::{cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i};
        let Ok(block) = <&[u8; 16]>::try_from(bytes) else {
            return 0;
        };
        let eq = cmp_eq_mask_i8_m128i(load_unaligned_m128i(block), set_splat_i8_m128i(byte as i8));
        u64::from(move_mask_i8_m128i(eq) as u16)
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
impl Block for Sse2 {
    const WIDTH: usize = 16;
    #[inline(always)]
    fn masks(bytes: &[u8]) -> (u64, u64) {
        (Self::equal(bytes, b'\n'), Self::equal(bytes, b':'))
    }
    #[inline(always)]
    fn newlines(bytes: &[u8]) -> u64 {
        Self::equal(bytes, b'\n')
    }
    #[inline(always)]
    fn first(mask: u64) -> usize {
        mask.trailing_zeros() as usize
    }
}

/// Eight bytes at a time in a `u64`, on any CPU (on x86-64, only the tests use it).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
struct Swar;

#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
impl Swar {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

    /// The high bit set in exactly the bytes of `word` that equal `byte` (no false
    /// positives: the sum below never carries from one byte into the next).
    #[inline(always)]
    fn equal(word: u64, byte: u8) -> u64 {
        let x = word ^ (Self::ONES * u64::from(byte));
        !(((x & Self::LOW7) + Self::LOW7) | x | Self::LOW7)
    }

    #[inline(always)]
    fn word(bytes: &[u8]) -> u64 {
        <[u8; 8]>::try_from(bytes).map_or(0, u64::from_le_bytes)
    }
}

impl Block for Swar {
    const WIDTH: usize = 8;
    #[inline(always)]
    fn masks(bytes: &[u8]) -> (u64, u64) {
        let w = Self::word(bytes);
        (Self::equal(w, b'\n'), Self::equal(w, b':'))
    }
    #[inline(always)]
    fn newlines(bytes: &[u8]) -> u64 {
        Self::equal(Self::word(bytes), b'\n')
    }
    #[inline(always)]
    fn first(mask: u64) -> usize {
        (mask.trailing_zeros() / 8) as usize
    }
}

/// The block the scan uses on this CPU.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
type Native = Sse2;
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
type Native = Swar;

/// The first `\n` at or after `from`, with the first `:` before it; None when `buf` holds no
/// `\n` there.
#[inline]
pub(crate) fn next_line(buf: &[u8], from: usize) -> Option<LineEnd> {
    scan::<Native>(buf, from)
}

#[inline(always)]
fn block<B: Block>(buf: &[u8], at: usize) -> Option<&[u8]> {
    buf.get(at..at.checked_add(B::WIDTH)?)
}

#[inline(always)]
fn scan<B: Block>(buf: &[u8], from: usize) -> Option<LineEnd> {
    // The name: both bytes looked for, until the first of either.
    let mut at = from;
    while let Some(bytes) = block::<B>(buf, at) {
        let (nl, colon) = B::masks(bytes);
        if nl | colon != 0 {
            let i = at + B::first(nl | colon);
            if buf[i] == b'\n' {
                return Some(LineEnd { nl: i, colon: None });
            }
            return value_end::<B>(buf, i + 1).map(|nl| LineEnd { nl, colon: Some(i) });
        }
        at += B::WIDTH;
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
#[inline(always)]
fn value_end<B: Block>(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(bytes) = block::<B>(buf, at) {
        let nl = B::newlines(bytes);
        if nl != 0 {
            return Some(at + B::first(nl));
        }
        at += B::WIDTH;
        if at - from >= LONG_LINE {
            // A long value (a large Variable, command output) goes faster through memchr.
            return memchr::memchr(b'\n', &buf[at..]).map(|i| at + i);
        }
    }
    buf.get(at..)?.iter().position(|&b| b == b'\n').map(|i| at + i)
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
            // The portable block too, wherever the native one is another.
            prop_assert_eq!(scan::<Swar>(&buf, from), slow(&buf, from));
        }
    }
}
