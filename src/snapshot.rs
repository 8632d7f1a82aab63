//! Snapshots: the live items of an arena saved to a file, and loaded into a new arena.
//!
//! # Format (version 2, all integers little-endian)
//!
//! ```text
//! header (40 B)  magic "LRDRSNAP" | version u32 | reserved u32 (0) | created u64 (unix s)
//!                | items u64 | reserved u32 (0) | crc32c u32 of bytes 0..36
//! frames         len u32 | crc32c u32 of the payload | payload (len bytes)
//!   item payload   tag u8 = 1 | key_len u16 | key | value_len u32 | value
//!                  | expires u64 (absolute unix seconds, 0 = never)
//!                  | grace u32 (seconds the value may be served stale after `expires`)
//!   end payload    tag u8 = 2 | items u64
//! ```
//!
//! Version 1 is the same without `grace`; it is still read (items load without grace).
//!
//! The end frame is the last bytes of the file; its count, the header's count and the
//! number of item frames must agree, so a truncated file is always detected, and every
//! frame (and the header) carries a checksum, so is every flipped bit.
//!
//! # Crash safety
//!
//! A snapshot is written to `<dir>/.<name>.tmp`, fsynced, renamed over `<name>`, and the
//! directory is fsynced. A crash at any point leaves the previous snapshot complete under
//! `<name>`; the temporary file is overwritten by the next attempt. Items are streamed from
//! the arena with [`Cache::entries`] while clients keep working: the snapshot holds every
//! item that was live for the whole walk, and items changed during it with either value.

use std::fs::OpenOptions;
use std::io::{BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use larder::{Cache, Entry};

pub const MAGIC: [u8; 8] = *b"LRDRSNAP";
pub const VERSION: u32 = 2;
const HEADER_LEN: usize = 40;
const FRAME_HEAD: usize = 8;
const TAG_ITEM: u8 = 1;
const TAG_END: u8 = 2;
/// Bytes handed to the file at once; the rate limiter sleeps between chunks.
const CHUNK: usize = 256 << 10;
/// Start writeback of what was written every this many bytes, so the final fsync does not
/// flush a whole arena's worth of dirty pages in one burst.
const WRITEBACK_EVERY: u64 = 16 << 20;

pub use crate::units::unix_now;

fn header(created: u64, items: u64) -> [u8; HEADER_LEN] {
    header_of(VERSION, created, items)
}

fn header_of(version: u32, created: u64, items: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[16..24].copy_from_slice(&created.to_le_bytes());
    h[24..32].copy_from_slice(&items.to_le_bytes());
    let crc = crc32c::crc32c(&h[..36]);
    h[36..40].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends one frame whose payload `fill` writes.
fn frame(buf: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEAD]);
    fill(buf);
    let payload = &buf[start + FRAME_HEAD..];
    let len = u32::try_from(payload.len()).expect("a frame holds one item: below 4 GiB");
    let crc = crc32c::crc32c(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes the items into frames, handing `sink` chunks of about [`CHUNK`] bytes; the first
/// chunk starts with a header whose item count is 0 (the caller patches it with the count
/// returned). Items with less than a second to live are left out.
fn encode(
    entries: impl Iterator<Item = Entry>,
    created: u64,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut buf = Vec::with_capacity(CHUNK * 2);
    buf.extend_from_slice(&header(created, 0));
    let mut items = 0u64;
    for e in entries {
        let expires = match e.ttl {
            None => 0,
            Some(t) if t.as_secs() == 0 => continue,
            Some(t) => created + t.as_secs(),
        };
        let (Ok(klen), Ok(vlen)) = (u16::try_from(e.key.len()), u32::try_from(e.value.len()))
        else {
            continue;
        };
        frame(&mut buf, |p| {
            p.push(TAG_ITEM);
            p.extend_from_slice(&klen.to_le_bytes());
            p.extend_from_slice(&e.key);
            p.extend_from_slice(&vlen.to_le_bytes());
            p.extend_from_slice(&e.value);
            p.extend_from_slice(&expires.to_le_bytes());
            let grace = e
                .grace
                .map_or(0, |g| u32::try_from(g.as_secs()).unwrap_or(u32::MAX));
            p.extend_from_slice(&grace.to_le_bytes());
        });
        items += 1;
        if buf.len() >= CHUNK {
            sink(&buf)?;
            buf.clear();
        }
    }
    frame(&mut buf, |p| {
        p.push(TAG_END);
        p.extend_from_slice(&items.to_le_bytes());
    });
    sink(&buf)?;
    Ok(items)
}

/// Called with (key, value, absolute expiry) for each item read.
/// `(key, value, expires, grace)` of one item.
type Visit<'a> = dyn FnMut(&[u8], &[u8], u64, u32) + 'a;

/// Why a snapshot could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be opened or read (it may be fine).
    Io(std::io::Error),
    /// The file is not a complete, undamaged snapshot of a version we read.
    Corrupt(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Corrupt(why) => write!(f, "{why}"),
        }
    }
}

/// Reads and checks a whole snapshot of `len` bytes, calling `visit(key, value, expires,
/// grace)` for each item. Returns (created, items).
fn decode(mut r: impl Read, len: u64, visit: &mut Visit<'_>) -> Result<(u64, u64), ReadError> {
    let corrupt = |why: String| ReadError::Corrupt(why);
    let read = |r: &mut dyn Read, buf: &mut [u8], at: u64| {
        r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ReadError::Corrupt(format!(
                "truncated: the file ends inside the data at byte {at}"
            )),
            _ => ReadError::Io(e),
        })
    };
    if len < HEADER_LEN as u64 {
        return Err(corrupt(format!(
            "truncated: {len} bytes is shorter than a snapshot header"
        )));
    }
    let mut h = [0u8; HEADER_LEN];
    read(&mut r, &mut h, 0)?;
    if h[0..8] != MAGIC {
        return Err(corrupt("not a larder snapshot (wrong magic number)".into()));
    }
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let version = u32_at(&h, 8);
    if !(1..=VERSION).contains(&version) {
        return Err(corrupt(format!(
            "snapshot format version {version}; this build reads versions 1 to {VERSION}"
        )));
    }
    // Bytes after the value: expires, then (from version 2) grace.
    let tail = if version >= 2 { 12 } else { 8 };
    if u32_at(&h, 36) != crc32c::crc32c(&h[..36]) {
        return Err(corrupt("header checksum mismatch".into()));
    }
    let created = u64_at(&h, 16);
    let declared = u64_at(&h, 24);
    let mut at = HEADER_LEN as u64;
    let mut items = 0u64;
    let mut payload = Vec::new();
    loop {
        let mut fh = [0u8; FRAME_HEAD];
        read(&mut r, &mut fh, at)?;
        let flen = u64::from(u32_at(&fh, 0));
        let crc = u32_at(&fh, 4);
        let remaining = len - at - FRAME_HEAD as u64;
        if flen > remaining {
            return Err(corrupt(format!(
                "truncated: the frame at byte {at} claims {flen} bytes but only {remaining} follow"
            )));
        }
        payload.resize(flen as usize, 0);
        read(&mut r, &mut payload, at + FRAME_HEAD as u64)?;
        if crc32c::crc32c(&payload) != crc {
            return Err(corrupt(format!(
                "checksum mismatch in the frame at byte {at}"
            )));
        }
        let bad = |what: &str| corrupt(format!("malformed frame at byte {at}: {what}"));
        match payload.first() {
            Some(&TAG_ITEM) => {
                let p = &payload[1..];
                if p.len() < 2 {
                    return Err(bad("too short"));
                }
                let klen = usize::from(u16::from_le_bytes([p[0], p[1]]));
                let p = &p[2..];
                if p.len() < klen + 4 {
                    return Err(bad("key length"));
                }
                let (key, p) = p.split_at(klen);
                let vlen = u32_at(p, 0) as usize;
                let p = &p[4..];
                if p.len() != vlen + tail {
                    return Err(bad("value length"));
                }
                let (value, p) = p.split_at(vlen);
                let grace = if tail == 12 { u32_at(p, 8) } else { 0 };
                visit(key, value, u64_at(p, 0), grace);
                items += 1;
            }
            Some(&TAG_END) => {
                if payload.len() != 9 {
                    return Err(bad("end frame length"));
                }
                let end = u64_at(&payload, 1);
                at += FRAME_HEAD as u64 + flen;
                if at != len {
                    return Err(corrupt(format!("{} bytes after the end frame", len - at)));
                }
                if end != items || declared != items {
                    return Err(corrupt(format!(
                        "item counts disagree: header {declared}, end frame {end}, frames {items}"
                    )));
                }
                return Ok((created, items));
            }
            _ => return Err(bad("unknown frame type")),
        }
        at += FRAME_HEAD as u64 + flen;
    }
}

fn open_and_decode(path: &Path, visit: &mut Visit<'_>) -> Result<(u64, u64), ReadError> {
    // O_NONBLOCK: a FIFO (or other special file) at the path must not block the open; it
    // is then refused as not a regular file.
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = f.metadata().map_err(ReadError::Io)?;
    if !meta.file_type().is_file() {
        return Err(ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let len = meta.len();
    decode(BufReader::with_capacity(1 << 20, f), len, visit)
}

/// What [`load`] did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Unix seconds the snapshot was taken.
    pub created: u64,
    /// Items in the file.
    pub items: u64,
    pub loaded: u64,
    /// Items whose expiry passed since the snapshot.
    pub expired: u64,
    /// Items the arena refused (too large for its limits, or no space).
    pub rejected: u64,
    pub elapsed: Duration,
}

/// Loads the snapshot at `path` into `cache` (a new arena). The whole file is checked
/// first; nothing is stored unless every frame is intact. `progress(done, total)` is
/// called about once a second while items are stored.
pub fn load(
    cache: &Cache,
    path: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<LoadReport, ReadError> {
    let t0 = Instant::now();
    let (_, total) = open_and_decode(path, &mut |_, _, _, _| {})?;
    let mut rep = LoadReport {
        items: total,
        ..LoadReport::default()
    };
    let mut tick = Instant::now();
    let mut first_refusal = true;
    let (created, _) = open_and_decode(path, &mut |key, value, expires, grace| {
        let now = unix_now();
        let ttl = match expires {
            0 => None,
            e if e <= now => {
                rep.expired += 1;
                return;
            }
            e => Some(Duration::from_secs(e - now)),
        };
        let stored = match ttl {
            Some(t) if grace > 0 => cache.set_with(
                key,
                value,
                &larder::SetOptions::new()
                    .ttl(t)
                    .stale_grace(Duration::from_secs(grace.into())),
            ),
            _ => cache.set(key, value, ttl),
        };
        match stored {
            Ok(()) => rep.loaded += 1,
            Err(e) => {
                if first_refusal {
                    tracing::warn!(error = %e, "the arena refused an item of the snapshot (first of possibly many; counted)");
                    first_refusal = false;
                }
                rep.rejected += 1;
            }
        }
        if tick.elapsed() >= Duration::from_secs(1) {
            tick = Instant::now();
            progress(rep.loaded + rep.expired + rep.rejected, total);
        }
    })?;
    rep.created = created;
    rep.elapsed = t0.elapsed();
    Ok(rep)
}

/// Shared between the daemon's main loop and a snapshot being written.
#[derive(Default)]
pub struct Control {
    /// Stop rate-limiting (the daemon is stopping and wants it finished).
    hurry: AtomicBool,
    /// Give up; the previous snapshot stays.
    abort: AtomicBool,
}

/// What [`write`] did.
#[derive(Debug, Clone, Copy)]
pub struct WriteReport {
    /// Unix seconds the snapshot was taken.
    pub created: u64,
    pub items: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Writes a snapshot of `cache` to `path` atomically (temp file, fsync, rename, fsync of
/// the directory), at most `rate` bytes a second (0: no limit).
pub fn write(
    cache: &Cache,
    path: &Path,
    rate: u64,
    control: &Control,
) -> anyhow::Result<WriteReport> {
    let t0 = Instant::now();
    let tmp = crate::atomic_file::tmp_path(path);
    // write_tmp fsyncs the file it wrote (after its rate-limited writeback).
    let result = write_tmp(cache, &tmp, rate, control).and_then(|rep| {
        crate::atomic_file::rename_durably(&tmp, path)
            .with_context(|| format!("renaming {} over {}", tmp.display(), path.display()))?;
        Ok(rep)
    });
    match result {
        Ok(mut rep) => {
            rep.elapsed = t0.elapsed();
            Ok(rep)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write_tmp(
    cache: &Cache,
    tmp: &Path,
    rate: u64,
    control: &Control,
) -> anyhow::Result<WriteReport> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let created = unix_now();
    let start = Instant::now();
    let mut written = 0u64;
    let mut synced = 0u64;
    let fd = f.as_raw_fd();
    let mut sink = |chunk: &[u8]| -> std::io::Result<()> {
        // Relaxed: a request flag; nothing is published with it.
        if control.abort.load(Ordering::Relaxed) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "snapshot abandoned",
            ));
        }
        f.write_all(chunk)?;
        written += chunk.len() as u64;
        if written - synced >= WRITEBACK_EVERY {
            // Raw libc: nix has no sync_file_range.
            // SAFETY: sync_file_range on a descriptor we own; it only starts writeback.
            unsafe {
                libc::sync_file_range(
                    fd,
                    synced as libc::off64_t,
                    (written - synced) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            synced = written;
        }
        // Relaxed: as above.
        if rate > 0 && !control.hurry.load(Ordering::Relaxed) {
            let due = Duration::from_secs_f64(written as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(())
    };
    let items = encode(cache.entries(), created, &mut sink)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all_at(&header(created, items), 0)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    Ok(WriteReport {
        created,
        items,
        bytes: written,
        elapsed: Duration::ZERO,
    })
}

/// A snapshot being written by a thread of its own, so the daemon's timers (sweeps,
/// watchdog, signals) keep running while it is rate-limited.
pub struct Job {
    /// The request counter when it started: every request up to it is served by it.
    pub req: u64,
    pub reason: &'static str,
    control: Arc<Control>,
    handle: JoinHandle<anyhow::Result<WriteReport>>,
}

impl Job {
    pub fn spawn(
        cache: &Cache,
        path: &Path,
        rate: u64,
        req: u64,
        reason: &'static str,
    ) -> anyhow::Result<Job> {
        let control = Arc::new(Control::default());
        let (cache, path, c) = (cache.clone(), path.to_owned(), control.clone());
        let handle = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || write(&cache, &path, rate, &c))
            .context("starting the snapshot thread")?;
        Ok(Job {
            req,
            reason,
            control,
            handle,
        })
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Lift the rate limit.
    pub fn hurry(&self) {
        // Relaxed: see Control.
        self.control.hurry.store(true, Ordering::Relaxed);
    }

    /// Abandon it at the next chunk.
    pub fn abort(&self) {
        // Relaxed: see Control.
        self.control.abort.store(true, Ordering::Relaxed);
    }

    pub fn join(self) -> anyhow::Result<WriteReport> {
        match self.handle.join() {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("the snapshot thread panicked")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        (0..300u32)
            .map(|i| Entry {
                key: format!("key-{i}").into_bytes(),
                value: vec![i as u8; (i as usize * 37) % 3000],
                ttl: match i % 3 {
                    0 => None,
                    1 => Some(Duration::from_secs(3600)),
                    _ => Some(Duration::from_secs(u64::from(i))),
                },
                grace: (i % 3 == 1).then(|| Duration::from_secs(u64::from(i))),
            })
            .collect()
    }

    fn encoded(entries: Vec<Entry>, created: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let n = encode(entries.into_iter(), created, &mut |c| {
            out.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        out[..HEADER_LEN].copy_from_slice(&header(created, n));
        out
    }

    type Items = Vec<(Vec<u8>, Vec<u8>, u64, u32)>;

    fn decoded(b: &[u8]) -> Result<Items, ReadError> {
        let mut v = Vec::new();
        decode(b, b.len() as u64, &mut |k, val, e, g| {
            v.push((k.to_vec(), val.to_vec(), e, g))
        })?;
        Ok(v)
    }

    #[test]
    fn round_trip_keeps_items_absolute_expiry_and_grace() {
        let b = encoded(sample(), 1_000_000);
        let got = decoded(&b).unwrap();
        assert_eq!(got.len(), 300);
        for (e, (k, v, exp, grace)) in sample().iter().zip(&got) {
            assert_eq!(&e.key, k);
            assert_eq!(&e.value, v);
            assert_eq!(*exp, e.ttl.map_or(0, |t| 1_000_000 + t.as_secs()));
            assert_eq!(u64::from(*grace), e.grace.map_or(0, |g| g.as_secs()));
        }
    }

    #[test]
    fn a_version_1_snapshot_still_reads_without_grace() {
        // Version 1: the same frames without the grace word.
        let mut b = header_of(1, 42, 2).to_vec();
        for (k, v, exp) in [(&b"a"[..], &b"one"[..], 0u64), (b"bb", b"two", 99)] {
            frame(&mut b, |p| {
                p.push(TAG_ITEM);
                p.extend_from_slice(&(k.len() as u16).to_le_bytes());
                p.extend_from_slice(k);
                p.extend_from_slice(&(v.len() as u32).to_le_bytes());
                p.extend_from_slice(v);
                p.extend_from_slice(&exp.to_le_bytes());
            });
        }
        frame(&mut b, |p| {
            p.push(TAG_END);
            p.extend_from_slice(&2u64.to_le_bytes());
        });
        let got = decoded(&b).unwrap();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), b"one".to_vec(), 0, 0),
                (b"bb".to_vec(), b"two".to_vec(), 99, 0)
            ]
        );
        // Version-2 frames are 4 bytes longer: a version-1 header on them is refused, not
        // misread.
        let mut v2 = encoded(sample().into_iter().take(3).collect(), 42);
        v2[..HEADER_LEN].copy_from_slice(&header_of(1, 42, 3));
        assert!(matches!(decoded(&v2), Err(ReadError::Corrupt(_))));
    }

    #[test]
    fn empty_snapshot_is_valid() {
        let b = encoded(Vec::new(), 5);
        assert_eq!(decoded(&b).unwrap().len(), 0);
        assert_eq!(b.len(), HEADER_LEN + FRAME_HEAD + 9);
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_detected() {
        let b = encoded(sample().into_iter().take(20).collect(), 77);
        for i in 0..b.len() {
            for bit in [0x01u8, 0x80] {
                let mut d = b.clone();
                d[i] ^= bit;
                assert!(
                    matches!(decoded(&d), Err(ReadError::Corrupt(_))),
                    "flip of bit {bit:#x} at byte {i} went unnoticed"
                );
            }
        }
        for n in 0..b.len() {
            assert!(
                matches!(decoded(&b[..n]), Err(ReadError::Corrupt(_))),
                "truncation to {n} bytes went unnoticed"
            );
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(decoded(&longer), Err(ReadError::Corrupt(_))));
    }
}
