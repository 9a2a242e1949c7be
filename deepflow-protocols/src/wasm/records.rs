//! The record encoding shared with guests: `[u32 LE key len][key][u32 LE value len][value]`
//! repeated, keys UTF-8, values bytes (numbers as decimal text).

/// Iterator over records; stops at the first truncated one.
pub(crate) struct Records<'a> {
    rest: &'a [u8],
    /// Set when the input ended inside a record.
    pub(crate) truncated: bool,
}

impl<'a> Records<'a> {
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Records { rest: raw, truncated: false }
    }

    fn take(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let Some(v) = rest.get(..len) else {
            self.truncated = true;
            self.rest = &[];
            return None;
        };
        self.rest = rest.get(len..).unwrap_or_default();
        Some(v)
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let k = self.take();
        let v = self.take();
        match (k, v) {
            (Some(k), Some(v)) => Some((k, v)),
            _ => {
                self.truncated = true;
                None
            }
        }
    }
}

/// Appends one record to `out`.
pub(crate) fn put(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// Appends a record with a string value when present.
pub(crate) fn put_opt(out: &mut Vec<u8>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        put(out, key.as_bytes(), v.as_bytes());
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_truncation() {
        let mut b = Vec::new();
        put(&mut b, b"a", b"1");
        put(&mut b, b"key", b"");
        let all: Vec<_> = Records::new(&b).collect();
        assert_eq!(all, vec![(&b"a"[..], &b"1"[..]), (&b"key"[..], &b""[..])]);
        for cut in 0..b.len() {
            let mut r = Records::new(&b[..cut]);
            let n = r.by_ref().count();
            assert!(n <= 1);
            assert_eq!(r.truncated, cut != 0 && cut != 10, "cut {cut}");
        }
    }
}
