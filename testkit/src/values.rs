//! Values that carry their key, a sequence number and a checksum, so a reader can tell a
//! torn, foreign or damaged value from the one some writer stored. The checksum is FNV-1a,
//! independent of the cache's own xxh3, so a bug in the cache's hashing cannot hide here.

/// FNV-1a, 64 bits.
pub fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The fewest bytes a value for a key of `key_len` bytes has: key length (2), key,
/// sequence number (8), checksum (8).
pub const fn min_len(key_len: usize) -> usize {
    key_len + 18
}

/// A value of `len` bytes (at least [`min_len`]): key length, key, `seq`, filler derived
/// from `seq`, and the checksum of all that.
pub fn make_value(key: &[u8], seq: u64, len: usize) -> Vec<u8> {
    let klen = u16::try_from(key.len()).expect("keys are at most 255 bytes");
    let len = len.max(min_len(key.len()));
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&klen.to_le_bytes());
    v.extend_from_slice(key);
    v.extend_from_slice(&seq.to_le_bytes());
    let mut x = seq ^ 0x9e37_79b9_7f4a_7c15;
    while v.len() < len - 8 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.push((x >> 56) as u8);
    }
    let sum = fnv(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

/// A length for the `seq`-th value of a key, spread over what fits under `max_len`.
pub fn spread_len(key_len: usize, seq: u64, max_len: usize) -> usize {
    let lo = min_len(key_len);
    lo + (seq as usize).wrapping_mul(7919) % (max_len.saturating_sub(lo).max(1))
}

/// Checks a value made by [`make_value`] for `key`; returns its sequence number.
pub fn check_value(key: &[u8], v: &[u8]) -> Result<u64, String> {
    if v.len() < min_len(key.len()) {
        return Err(format!("value of {} bytes is too short", v.len()));
    }
    let (body, sum) = v.split_at(v.len() - 8);
    if fnv(body) != u64::from_le_bytes(sum.try_into().expect("8 bytes")) {
        return Err(format!(
            "checksum mismatch (torn or foreign value of {} bytes)",
            v.len()
        ));
    }
    let klen = usize::from(u16::from_le_bytes([body[0], body[1]]));
    if klen + 10 > body.len() || &body[2..2 + klen] != key {
        return Err(format!(
            "value belongs to key {:?}, read under {:?}",
            String::from_utf8_lossy(&body[2..(2 + klen).min(body.len())]),
            String::from_utf8_lossy(key)
        ));
    }
    Ok(u64::from_le_bytes(
        body[2 + klen..10 + klen].try_into().expect("8 bytes"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_check_and_damage_is_seen() {
        for (seq, len) in [(0, 0), (7, 100), (u64::MAX, 4096)] {
            let v = make_value(b"key:1", seq, len);
            assert_eq!(v.len(), len.max(min_len(5)));
            assert_eq!(check_value(b"key:1", &v), Ok(seq));
            assert!(check_value(b"key:2", &v).is_err(), "foreign key");
            let mut bad = v.clone();
            bad[3] ^= 1;
            assert!(check_value(b"key:1", &bad).is_err(), "flipped byte");
            assert!(
                check_value(b"key:1", &v[..v.len() - 1]).is_err(),
                "truncated"
            );
        }
        // A checksum-valid value whose key length points past its end is refused, not a panic.
        let mut v = vec![0xff, 0xff];
        v.extend_from_slice(&[0; 20]);
        let sum = fnv(&v);
        v.extend_from_slice(&sum.to_le_bytes());
        assert!(check_value(b"k", &v).is_err());
        assert!((min_len(3)..100).contains(&spread_len(3, 12345, 100)));
    }
}
