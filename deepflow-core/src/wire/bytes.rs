//! Checked big-endian field readers shared by the views. None of them can panic: a read past
//! the end of the buffer (or at an offset that would overflow) returns `None`.

use super::DecodeError;

/// The byte at `off`.
#[inline(always)]
pub fn u8_at(buf: &[u8], off: usize) -> Option<u8> {
    buf.get(off).copied()
}

/// `N` bytes starting at `off`.
#[inline(always)]
pub fn array<const N: usize>(buf: &[u8], off: usize) -> Option<[u8; N]> {
    buf.get(off..)?.first_chunk::<N>().copied()
}

/// Big-endian `u16` at `off`.
#[inline(always)]
pub fn be16(buf: &[u8], off: usize) -> Option<u16> {
    array::<2>(buf, off).map(u16::from_be_bytes)
}

/// Big-endian 24-bit value at `off` (e.g. a VXLAN/Geneve VNI).
#[inline(always)]
pub fn be24(buf: &[u8], off: usize) -> Option<u32> {
    array::<3>(buf, off).map(|[a, b, c]| u32::from_be_bytes([0, a, b, c]))
}

/// Big-endian `u32` at `off`.
#[inline(always)]
pub fn be32(buf: &[u8], off: usize) -> Option<u32> {
    array::<4>(buf, off).map(u32::from_be_bytes)
}

/// `buf[from..to]`, clamped to the buffer: never panics, empty when `from` is past the end
/// or after `to`.
#[inline(always)]
pub fn clamp_range(buf: &[u8], from: usize, to: usize) -> &[u8] {
    let to = to.min(buf.len());
    buf.get(from..to).unwrap_or(&[])
}

/// `Err(Truncated)` unless `buf` holds at least `need` bytes.
#[inline(always)]
pub fn need(layer: &'static str, buf: &[u8], need: usize) -> Result<(), DecodeError> {
    if buf.len() < need { Err(DecodeError::Truncated { layer, need, have: buf.len() }) } else { Ok(()) }
}

/// `usize` to `u32`, saturating.
#[inline(always)]
pub(crate) fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers() {
        let b = [1u8, 2, 3, 4, 5];
        assert_eq!(u8_at(&b, 4), Some(5));
        assert_eq!(u8_at(&b, 5), None);
        assert_eq!(be16(&b, 0), Some(0x0102));
        assert_eq!(be16(&b, 4), None);
        assert_eq!(be16(&b, usize::MAX), None);
        assert_eq!(be24(&b, 2), Some(0x030405));
        assert_eq!(be24(&b, 3), None);
        assert_eq!(be32(&b, 1), Some(0x02030405));
        assert_eq!(be32(&b, 2), None);
        assert_eq!(array::<2>(&b, usize::MAX - 1), None);
        assert_eq!(clamp_range(&b, 1, 3), &[2, 3]);
        assert_eq!(clamp_range(&b, 3, 99), &[4, 5]);
        assert_eq!(clamp_range(&b, 4, 2), &[] as &[u8]);
        assert_eq!(clamp_range(&b, 9, 99), &[] as &[u8]);
        assert!(need("x", &b, 5).is_ok());
        assert_eq!(need("x", &b, 6), Err(DecodeError::Truncated { layer: "x", need: 6, have: 5 }));
        assert_eq!(len32(usize::MAX), u32::MAX);
    }
}
