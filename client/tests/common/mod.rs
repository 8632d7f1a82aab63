//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("larder-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn arena(&self) -> PathBuf {
        self.0.join("arena")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small arena config for tests: 64 KiB segments, 4 KiB values.
pub fn small(capacity: u64) -> larder::Config {
    larder::Config::new(capacity)
        .max_value_len(4096)
        .segment_size(64 << 10)
        .max_processes(64)
}

/// A value that carries its key, a sequence number and a checksum, of a length derived
/// from the sequence number.
pub fn make_value(key: &[u8], seq: u64, max_len: usize) -> Vec<u8> {
    let len = 24 + key.len() + (seq as usize * 7919) % (max_len - 24 - key.len());
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&(key.len() as u32).to_le_bytes());
    v.extend_from_slice(key);
    v.extend_from_slice(&seq.to_le_bytes());
    let mut x = seq ^ 0x9e37_79b9_7f4a_7c15;
    while v.len() < len - 8 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.push((x >> 56) as u8);
    }
    let sum = xxhash(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

/// Checks a value made by `make_value` for `key`; returns its sequence number.
pub fn check_value(key: &[u8], v: &[u8]) -> Result<u64, String> {
    if v.len() < 20 + key.len() {
        return Err(format!("value of {} bytes too short", v.len()));
    }
    let (body, sum) = v.split_at(v.len() - 8);
    if xxhash(body) != u64::from_le_bytes(sum.try_into().unwrap()) {
        return Err("checksum mismatch (torn or foreign value)".into());
    }
    let klen = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
    if &body[4..4 + klen] != key {
        return Err(format!(
            "value belongs to key {:?}, read under {:?}",
            &body[4..4 + klen],
            key
        ));
    }
    Ok(u64::from_le_bytes(
        body[4 + klen..12 + klen].try_into().unwrap(),
    ))
}

fn xxhash(b: &[u8]) -> u64 {
    // FNV-1a: independent of the cache's own hash, so a bug there cannot hide here.
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}
