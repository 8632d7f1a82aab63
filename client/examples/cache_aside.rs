//! Cache-aside with stampede protection, stale-while-revalidate and early refresh.
//!
//! `cargo run -p larder --example cache_aside`

use std::time::Duration;

use larder::{Cache, Config, LoadOptions, SetOptions};

fn slow_database_lookup(user: u32) -> Result<Vec<u8>, std::io::Error> {
    std::thread::sleep(Duration::from_millis(50));
    Ok(format!("{{\"id\":{user},\"name\":\"user {user}\"}}").into_bytes())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("larder-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cache = Cache::create(
        dir.join("arena"),
        &Config::new(16 << 20).max_value_len(64 << 10),
    )?;

    // Eight threads miss the same key at once: the loader runs once, the others wait for it.
    let opts = LoadOptions::new()
        .store(
            SetOptions::new()
                .ttl(Duration::from_secs(60))
                .stale_grace(Duration::from_secs(600)),
        )
        .lease(Duration::from_secs(5))
        .early_refresh(1.0);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (cache, opts) = (cache.clone(), opts.clone());
            std::thread::spawn(move || {
                cache.get_or_load(b"user:7", &opts, || slow_database_lookup(7))
            })
        })
        .collect();
    for t in threads {
        let v = t.join().expect("thread")?;
        println!("{}", String::from_utf8_lossy(&v));
    }
    // Past its TTL but within the grace period the value is still there for get_stale,
    // and get_or_load serves it to everyone but the one caller that refreshes it.
    if let Some(s) = cache.get_stale(b"user:7")? {
        println!("stale={} {}", s.stale, String::from_utf8_lossy(&s.value));
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
