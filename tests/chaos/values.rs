//! Values: key, sequence number and checksum (an FNV-1a independent of the cache's xxh3).

use super::*;

pub(crate) fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

/// `len` bytes (at least the minimum for `key`): key length, key, `seq`, filler derived from
/// `seq`, checksum of all that.
pub(crate) fn make_value(key: &[u8], seq: u64, len: usize) -> Vec<u8> {
    let len = len.max(key.len() + 18);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&(key.len() as u16).to_le_bytes());
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

/// Checks a value made by [`make_value`] for `key`; returns its sequence number.
pub(crate) fn check_value(key: &[u8], v: &[u8]) -> Result<u64, String> {
    if v.len() < key.len() + 18 {
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

pub(crate) fn parse_counter(v: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "counter value {:?} is not a number",
                String::from_utf8_lossy(v)
            )
        })
}

/// Keys the workers and the harness write: `d<NDATA`, `c<NCTR`, `p<NPERSIST`, `f…`.
pub(crate) fn known_key(key: &[u8]) -> bool {
    let k = String::from_utf8_lossy(key);
    let n = k.get(1..).and_then(|s| s.parse::<u64>().ok());
    match (k.get(..1), n) {
        (Some("d"), Some(i)) => i < NDATA && k[1..] == i.to_string(),
        (Some("c"), Some(j)) => j < NCTR && k[1..] == j.to_string(),
        (Some("p"), Some(i)) => i < NPERSIST && k[1..] == i.to_string(),
        (Some("f"), Some(i)) => k[1..] == i.to_string(),
        _ => false,
    }
}

/// Checks any item the workers or the harness can have written; a key of no known kind is
/// a foreign key in the index.
pub(crate) fn check_any(key: &[u8], v: &[u8]) -> Result<(), String> {
    let k = String::from_utf8_lossy(key);
    if !known_key(key) {
        return Err(format!("foreign key {k:?} in the index"));
    }
    match key[0] {
        b'c' => parse_counter(v).map(|_| ()),
        b'p' => match check_value(key, v)? {
            s if s.to_string() == k[1..] => Ok(()),
            s => Err(format!("persistent key has seq {s}")),
        },
        _ => check_value(key, v).map(|_| ()),
    }
    .map_err(|e| format!("{k}: {e}"))
}
