//! What the C ABI costs a GET: the same uniform random GETs of 100 000 keys (12 B keys,
//! 100 B values, one arena in /dev/shm) through
//! - `Cache::get_into` (Rust, the reference),
//! - `larder_get` called from Rust (the exported function: argument checks, the panic
//!   guard, the copy out of the thread's buffer),
//! - `larder_get` called from a C program linked against liblarder.so (a separate process,
//!   the call through the PLT included),
//!
//! in interleaved rounds (the machine is noisy), medians reported with the overhead of
//! each over the reference. `cargo bench -p larder-ffi --bench abi` (LARDER_BENCH_ROUNDS,
//! LARDER_BENCH_OPS to change the defaults of 7 rounds of 2 000 000 GETs).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use larder::{Cache, Config};
use larder_ffi::{larder_cache, larder_close, larder_get, larder_open, larder_status};

const NKEYS: u64 = 100_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn key(i: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k.copy_from_slice(format!("k:{i:010}").as_bytes());
    k
}

/// The key sequence the C side uses too: an LCG's high bits modulo the key count.
fn sequence(ops: u64) -> impl Iterator<Item = u64> {
    let mut x = 42u64;
    (0..ops).map(move |_| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % NKEYS
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` run passes nothing.
    let rounds = env_or("LARDER_BENCH_ROUNDS", 7) as usize;
    let ops = env_or("LARDER_BENCH_OPS", 2_000_000);
    let dir = tempfile::Builder::new()
        .prefix("larder-abi-bench-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let path = dir.path().join("arena");
    let cache = Cache::create(&path, &Config::new(64 << 20)).unwrap();
    let keys: Vec<[u8; 12]> = (0..NKEYS).map(key).collect();
    for k in &keys {
        cache.set(k, &[7u8; 100], None).unwrap();
    }
    let c_exe = support::built().shared.clone();
    let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let mut h: *mut larder_cache = std::ptr::null_mut();
    // SAFETY: a NUL-terminated path and a writable handle place.
    let st = unsafe { larder_open(cpath.as_ptr(), &mut h) };
    assert_eq!(st, larder_status::LARDER_OK);

    let mut buf = Vec::with_capacity(4096);
    let mut out = [0u8; 4096];
    let (mut rust, mut ffi, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=rounds {
        // Rust get_into.
        let t = Instant::now();
        let mut hits = 0u64;
        for i in sequence(ops) {
            hits += u64::from(cache.get_into(&keys[i as usize], &mut buf).unwrap());
        }
        let r = t.elapsed().as_nanos() as f64 / ops as f64;
        assert_eq!(hits, ops);
        // larder_get from Rust.
        let t = Instant::now();
        let mut hits = 0u64;
        for i in sequence(ops) {
            let k = &keys[i as usize];
            let mut len = 0usize;
            // SAFETY: an open handle, a 12-byte key, a buffer of out.len() bytes.
            let st =
                unsafe { larder_get(h, k.as_ptr(), 12, out.as_mut_ptr(), out.len(), &mut len) };
            hits += u64::from(st == larder_status::LARDER_OK);
        }
        let f = t.elapsed().as_nanos() as f64 / ops as f64;
        assert_eq!(hits, ops);
        // larder_get from C.
        let o = support::run(
            std::process::Command::new(&c_exe)
                .arg("bench")
                .arg(&path)
                .arg(NKEYS.to_string())
                .arg(ops.to_string()),
        );
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(larder_testkit::result_field(&text, "hits"), ops);
        let cn = larder_testkit::result_field(&text, "ns_x100") as f64 / 100.0;
        if round == 0 {
            continue; // warm-up
        }
        eprintln!("round {round}: rust get_into {r:.1} ns, larder_get from Rust {f:.1} ns, from C {cn:.1} ns");
        rust.push(r);
        ffi.push(f);
        c.push(cn);
    }
    // SAFETY: the handle opened above, closed once.
    unsafe { larder_close(h) };
    let (r, f, cn) = (median(&mut rust), median(&mut ffi), median(&mut c));
    println!("ABI bench: {NKEYS} keys of 12 B, 100 B values, uniform GETs, {rounds} interleaved rounds x {ops}, medians");
    println!("| path | GET ns | vs get_into |");
    println!("|---|---|---|");
    println!("| Rust `Cache::get_into` | {r:.1} | 1.00× |");
    println!(
        "| `larder_get` called from Rust | {f:.1} | {:.2}× ({:+.1} ns) |",
        f / r,
        f - r
    );
    println!(
        "| `larder_get` from a C process (liblarder.so) | {cn:.1} | {:.2}× ({:+.1} ns) |",
        cn / r,
        cn - r
    );
}
