//! A loop of GET hits, for instruction counts under callgrind (docs/performance.md, "Where a
//! GET's time goes"): 100 000 keys of 12 B with 100 B values, then `LARDER_GETS` (default
//! 1 000 000) `get_into` calls on keys from a fixed sequence.
//!
//! ```text
//! cargo build --release --example get_loop -p larder
//! valgrind --tool=callgrind --callgrind-out-file=target/get.cg target/release/examples/get_loop
//! callgrind_annotate --inclusive=yes target/get.cg | head -40
//! ```

use std::hint::black_box;

fn main() {
    let dir = std::env::temp_dir().join(format!("larder-get-loop-{}", std::process::id()));
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.join(format!("larder-get-loop-{}", std::process::id()))
    } else {
        dir
    };
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("arena");
    let cache = larder::Cache::create(&path, &larder::Config::new(64 << 20)).unwrap();
    let keys: Vec<Vec<u8>> = (0..100_000)
        .map(|i| format!("key:{i:08}").into_bytes())
        .collect();
    for k in &keys {
        cache.set(k, &[7u8; 100], None).unwrap();
    }
    let gets: usize = std::env::var("LARDER_GETS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut out = Vec::with_capacity(128);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut hits = 0u64;
    for _ in 0..gets {
        // xorshift: a fixed, cheap sequence of keys
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = &keys[(x % keys.len() as u64) as usize];
        hits += u64::from(cache.get_into(black_box(k), &mut out).unwrap());
    }
    println!("{hits} hits of {gets}");
    drop(cache);
    let _ = std::fs::remove_dir_all(&dir);
}
