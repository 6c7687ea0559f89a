//! The one stable hash of the project: 64-bit FNV-1a. Its values are stored (content hashes,
//! schema hashes, fingerprints), so they must not change between builds or Rust versions.

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a over the concatenation of `parts`.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h = FNV_OFFSET_BASIS;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    h
}

/// 64-bit FNV-1a over `parts` joined by the unit separator U+001F, so that `["ab", "c"]` and
/// `["a", "bc"]` differ.
pub fn fnv1a_joined(parts: &[&str]) -> u64 {
    let mut bytes: Vec<&[u8]> = Vec::with_capacity(parts.len() * 2);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            bytes.push(b"\x1f");
        }
        bytes.push(part.as_bytes());
    }
    fnv1a64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"foo", b"bar"]), fnv1a64(&[b"foobar"]));
        assert_eq!(fnv1a_joined(&["foo", "bar"]), fnv1a64(&[b"foo\x1fbar"]));
        assert_ne!(fnv1a_joined(&["ab", "c"]), fnv1a_joined(&["a", "bc"]));
    }
}
