//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A fresh directory under the system temp dir (`.0` is its path), removed on drop.
pub struct TempDir(pub PathBuf, tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = tempfile::Builder::new()
            .prefix(&format!("larder-test-{tag}-"))
            .tempdir()
            .expect("create temp dir");
        TempDir(d.path().to_owned(), d)
    }
    pub fn arena(&self) -> PathBuf {
        self.0.join("arena")
    }
}

/// A small arena config for tests: 64 KiB segments, 4 KiB values.
pub fn small(capacity: u64) -> larder::Config {
    larder::Config::new(capacity)
        .max_value_len(4096)
        .segment_size(64 << 10)
        .max_processes(64)
}

/// A value that carries its key, a sequence number and a checksum (larder-testkit), of a
/// length derived from the sequence number, at most `max_len`.
pub fn make_value(key: &[u8], seq: u64, max_len: usize) -> Vec<u8> {
    larder_testkit::make_value(
        key,
        seq,
        larder_testkit::spread_len(key.len(), seq, max_len),
    )
}

// Not every test file checks values.
#[allow(unused_imports)]
pub use larder_testkit::check_value;
