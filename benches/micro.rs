//! Criterion micro-benchmarks of single operations on a 100 000-key arena with 100-byte
//! values: get hit, get miss, get_into, set (new and overwrite), incr, get_multi(10).
//! `cargo bench --bench micro`. For ratios against a bare table and `RwLock<HashMap>` see
//! `benches/engine.rs`; against memcached and Redis, `larder-bench compare`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use larder::{Cache, Config};

const KEYS: usize = 100_000;

struct Fixture {
    cache: Cache,
    dir: std::path::PathBuf,
    keys: Vec<Vec<u8>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture() -> Fixture {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm".into()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("larder-micro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let cache = Cache::create(dir.join("arena"), &Config::new(64 << 20)).expect("arena");
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("key:{i:08}").into_bytes())
        .collect();
    let value = [7u8; 100];
    for k in &keys {
        cache.set(k, &value, None).expect("fill");
    }
    cache.set(b"counter", b"0", None).expect("counter");
    Fixture { cache, dir, keys }
}

/// A cheap deterministic sequence of key indices.
struct Seq(u64);
impl Seq {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % KEYS as u64) as usize
    }
}

fn ops(c: &mut Criterion) {
    let f = fixture();
    let value = [9u8; 100];
    let mut g = c.benchmark_group("larder");
    let mut s = Seq(0x9e37_79b9);
    g.bench_function("get hit", |b| {
        b.iter(|| black_box(f.cache.get(&f.keys[s.next()]).unwrap()))
    });
    g.bench_function("get miss", |b| {
        b.iter(|| black_box(f.cache.get(b"no-such-key:1").unwrap()))
    });
    let mut buf = Vec::with_capacity(256);
    g.bench_function("get_into hit", |b| {
        b.iter(|| {
            buf.clear();
            black_box(f.cache.get_into(&f.keys[s.next()], &mut buf).unwrap())
        })
    });
    g.bench_function("set overwrite", |b| {
        b.iter(|| f.cache.set(&f.keys[s.next()], &value, None).unwrap())
    });
    let mut n = 0u64;
    g.bench_function("set new key", |b| {
        b.iter_batched(
            || {
                n += 1;
                format!("new:{n:012}").into_bytes()
            },
            |k| f.cache.set(&k, &value, None).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("incr", |b| {
        b.iter(|| black_box(f.cache.incr(b"counter", 1).unwrap()))
    });
    g.bench_function("get_multi(10)", |b| {
        b.iter(|| {
            let ks: Vec<&[u8]> = (0..10).map(|_| f.keys[s.next()].as_slice()).collect();
            black_box(f.cache.get_multi(&ks).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches);
