//! Tag invalidation: drop every cached fragment of one user in O(1), in every process.
//!
//! `cargo run -p larder --example tags`

use larder::{Cache, Config, SetOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("larder-example-tags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cache = Cache::create(dir.join("arena"), &Config::new(8 << 20).max_value_len(4096))?;
    cache.set_with(
        b"page:/users/7",
        b"<html>...",
        &SetOptions::new().tag("user:7"),
    )?;
    cache.set_with(
        b"api:/users/7/posts",
        b"[...]",
        &SetOptions::new().tag("user:7").tag("posts"),
    )?;
    cache.set_with(b"api:/users/8", b"{...}", &SetOptions::new().tag("user:8"))?;
    cache.invalidate_tag("user:7")?;
    for key in [
        &b"page:/users/7"[..],
        b"api:/users/7/posts",
        b"api:/users/8",
    ] {
        println!(
            "{:<22} {}",
            String::from_utf8_lossy(key),
            if cache.get(key)?.is_some() {
                "hit"
            } else {
                "miss"
            }
        );
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
    Ok(())
}
