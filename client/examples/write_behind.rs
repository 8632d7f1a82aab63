//! Write-through and write-behind against a backing store, and bulk warm-up.
//!
//! `cargo run -p larder --example write_behind`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use larder::{Cache, Config, Store, WriteBehind, WriteThrough};

/// Stands in for a database.
#[derive(Default)]
struct Db(Mutex<HashMap<Vec<u8>, Vec<u8>>>);

impl Store for Db {
    type Error = String;
    fn write(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        if value.is_empty() {
            return Err("empty values are rejected by this store".into());
        }
        self.0.lock().unwrap().insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn remove(&self, key: &[u8]) -> Result<(), String> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("larder-example-wb-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cache = Cache::create(dir.join("arena"), &Config::new(8 << 20).max_value_len(4096))?;
    let db = Arc::new(Db::default());

    // Preload the cache from the store.
    db.write(b"config", b"v1")?;
    let n = cache.warm(
        db.0.lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), None)),
    )?;
    println!("warmed {n} keys");

    // Write-through: store first, then invalidate the cached copy.
    let wt = WriteThrough::new(cache.clone(), db.clone());
    wt.write(b"config", b"v2").map_err(|e| format!("{e:?}"))?;
    println!("after write-through, cached: {:?}", cache.get(b"config")?);

    // Write-behind: the cache now, the store from a background thread.
    let wb = WriteBehind::new(cache.clone(), db.clone(), 1024);
    wb.write(b"counter", b"1", None)?;
    wb.write(b"broken", b"", None)?;
    match wb.flush() {
        Ok(()) => println!("all writes stored"),
        Err(failed) => {
            for (key, e) in failed {
                println!("store refused {}: {e}", String::from_utf8_lossy(&key));
            }
        }
    }
    drop(wb);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
