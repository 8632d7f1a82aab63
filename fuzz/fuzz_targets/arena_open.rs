//! The arena validator: `Cache::open` on arbitrary bytes written to a file, and, whenever
//! it accepts them, every operation on the result. Nothing may panic, hang or crash; errors
//! and misses are the only allowed answers to damage (design.md §7).
//!
//! The input's first byte chooses what the rest is:
//! - `0..=47`: the whole file.
//! - `48..=63`: header fields of the model arena (below), set one by one: each 9-byte chunk
//!   is `(field: u8, value: u64 LE)` (fields in `set_field`), after which the derived offsets
//!   are recomputed from the counts (`Params::with_derived_offsets`) and the checksum from
//!   the result, so the validator meets checksum-valid headers with hostile parameters
//!   (no tag table, a huge epoch, ...), which random patches never produce. A changed
//!   `arena_size` up to 64 MiB also resizes the file.
//! - otherwise: patches to a small valid arena made once per process (the "model"): each
//!   5-byte chunk is `(offset: u32 LE, byte)`; bit 6 of the first byte confines the offsets
//!   to the metadata (header, process slots, segment table, index), bit 7 then recomputes
//!   the header's `params_crc`, so damage to the geometry gets past the checksum. The
//!   second byte, if bit 5 of the first is set, shrinks or grows the file.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use larder::layout::{Params, H_PARAMS_CRC, PARAMS_LEN};
use larder::{Cache, Config};
use libfuzzer_sys::fuzz_target;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("larder-fuzz-arena-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// A small valid arena with a few items, as bytes.
fn model() -> &'static Vec<u8> {
    static MODEL: OnceLock<Vec<u8>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = scratch().join("model");
        let _ = std::fs::remove_file(&path);
        let config = Config::new(1 << 20)
            .segment_size(64 << 10)
            .max_value_len(1024)
            .max_processes(8);
        let c = Cache::create(&path, &config).expect("create the model arena");
        for i in 0..200u32 {
            let k = format!("key{i}");
            let ttl = (i % 3 == 0).then(|| Duration::from_secs(60));
            c.set(k.as_bytes(), &vec![i as u8; (i as usize * 7) % 900], ttl)
                .expect("fill the model arena");
        }
        c.set(b"ctr", b"41", None).expect("counter");
        drop(c);
        let bytes = std::fs::read(&path).expect("read the model arena");
        let _ = std::fs::remove_file(&path);
        bytes
    })
}

fn build(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    if mode < 48 {
        return rest.to_vec();
    }
    if mode < 64 {
        return structured(rest);
    }
    let mut b = model().clone();
    let mut rest = rest;
    if mode & 0x20 != 0 {
        if let Some((&size, r)) = rest.split_first() {
            rest = r;
            match size {
                0..=127 => b.truncate(b.len() * usize::from(size) / 128),
                _ => b.resize(b.len() + usize::from(size - 127) * 4096, 0),
            }
        }
    }
    let metadata_end = if b.len() >= PARAMS_LEN {
        let p = Params::from_bytes(b[..PARAMS_LEN].try_into().expect("PARAMS_LEN bytes"));
        (p.segs_off as usize).clamp(1, b.len())
    } else {
        b.len()
    };
    let span = if mode & 0x40 != 0 {
        metadata_end
    } else {
        b.len()
    };
    if span > 0 {
        for chunk in rest.chunks_exact(5) {
            let off = u32::from_le_bytes(chunk[..4].try_into().expect("4 bytes")) as usize;
            b[off % span] = chunk[4];
        }
    }
    if mode & 0x80 != 0 && b.len() >= H_PARAMS_CRC as usize + 4 {
        let crc = crc32c::crc32c(&b[..PARAMS_LEN.min(H_PARAMS_CRC as usize)]);
        b[H_PARAMS_CRC as usize..H_PARAMS_CRC as usize + 4].copy_from_slice(&crc.to_le_bytes());
    }
    b
}

/// Sets header field number `field` of `p` to `v` (truncated to the field's width).
fn set_field(p: &mut Params, field: u8, v: u64) {
    match field % 14 {
        0 => p.arena_size = v,
        1 => p.hash_seed = v,
        2 => p.seg_shift = v as u32,
        3 => p.nsegs = v as u32,
        4 => p.nprocs = v as u32,
        5 => p.nbuckets = v,
        6 => p.ntags = v as u32,
        7 => p.nleases = v as u32,
        8 => p.max_key = v as u32,
        9 => p.max_value = v as u32,
        10 => p.epoch = v,
        11 => p.layout_version = v as u32,
        12 => p.hash_algo = v as u32,
        _ => p.header_size = v as u32,
    }
}

/// The model arena with its header rebuilt field by field (see the module comment).
fn structured(rest: &[u8]) -> Vec<u8> {
    let mut b = model().clone();
    let mut p = Params::from_bytes(b[..PARAMS_LEN].try_into().expect("PARAMS_LEN bytes"));
    for chunk in rest.chunks_exact(9) {
        let v = u64::from_le_bytes(chunk[1..].try_into().expect("8 bytes"));
        set_field(&mut p, chunk[0], v);
    }
    let p = p.with_derived_offsets();
    if p.arena_size <= 64 << 20 && p.arena_size as usize >= PARAMS_LEN + 4 {
        b.resize(p.arena_size as usize, 0);
    }
    b[..PARAMS_LEN + 4].copy_from_slice(&p.to_bytes_with_crc());
    b
}

fuzz_target!(|data: &[u8]| {
    let bytes = build(data);
    let path = scratch().join("arena");
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, &bytes).expect("write the input");
    if let Ok(c) = Cache::open(&path) {
        let mut buf = Vec::new();
        for i in 0..20u32 {
            let k = format!("key{i}");
            let _ = c.get_into(k.as_bytes(), &mut buf);
            buf.clear();
        }
        let _ = c.gets(b"key1");
        let _ = c.set(b"new", b"value", None);
        let _ = c.add(b"key2", b"v", Some(Duration::from_secs(5)));
        let _ = c.replace(b"key3", b"v", None);
        let _ = c.incr(b"ctr", 1);
        let _ = c.decr(b"ctr", 2);
        let _ = c.touch(b"key4", Some(Duration::from_secs(9)));
        let _ = c.ttl(b"key5");
        let _ = c.delete(b"key6");
        let _ = c.keys().take(10_000).count();
        let _ = c.entries().take(10_000).count();
        let _ = c.stats();
        let _ = c.info();
        let _ = c.sweep_expired(u32::MAX);
        let _ = c.reclaim_dead_clients();
        for i in 0..50u32 {
            let _ = c.set(format!("fill{i}").as_bytes(), &[7u8; 700], None);
        }
        let _ = c.flush();
    }
});
