//! Values: the self-checking values of larder-testkit, and what the chaos workers accept
//! for each kind of key.

use super::*;

pub(crate) use larder_testkit::{check_value, make_value};

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
