//! The snapshot reader: larderd's `snapshot::load` (src/snapshot.rs, from the larderd
//! library) on arbitrary bytes written to a file, into a small arena. It must return an
//! error for anything that is not a complete, undamaged snapshot — never panic, hang or
//! allocate without bound — and store nothing from a file it refuses.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use larder::{Cache, Config};
use libfuzzer_sys::fuzz_target;

use larderd::snapshot;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("larder-fuzz-snap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let path = scratch().join("arena");
        let _ = std::fs::remove_file(&path);
        let config = Config::new(4 << 20)
            .segment_size(64 << 10)
            .max_value_len(4096)
            .max_processes(8);
        Cache::create(&path, &config).expect("create the arena")
    })
}

fuzz_target!(|data: &[u8]| {
    let c = cache();
    let path = scratch().join("snapshot");
    std::fs::write(&path, data).expect("write the input");
    match snapshot::load(c, &path, &mut |_, _| {}) {
        Ok(_) => {}
        Err(_) => {
            // The whole file is checked before anything is stored.
            assert_eq!(c.keys().count(), 0, "a refused snapshot stored items");
        }
    }
    c.flush().expect("flush");
});
