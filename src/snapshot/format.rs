//! The file format (see the module's documentation): header, frames, and a streaming
//! encoder and checking decoder.

use std::fs::OpenOptions;
use std::io::{BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use larder::Entry;

pub const MAGIC: [u8; 8] = *b"LRDRSNAP";
pub const VERSION: u32 = 3;
pub(super) const HEADER_LEN: usize = 40;
pub(super) const FRAME_HEAD: usize = 8;
pub(super) const TAG_ITEM: u8 = 1;
pub(super) const TAG_END: u8 = 2;
/// Bytes handed to the file at once; the rate limiter sleeps between chunks.
pub(super) const CHUNK: usize = 256 << 10;
/// Start writeback of what was written every this many bytes, so the final fsync does not
/// flush a whole arena's worth of dirty pages in one burst.
pub(super) const WRITEBACK_EVERY: u64 = 16 << 20;

pub(super) fn header(created: u64, items: u64) -> [u8; HEADER_LEN] {
    header_of(VERSION, created, items)
}

pub(super) fn header_of(version: u32, created: u64, items: u64) -> [u8; HEADER_LEN] {
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
pub(super) fn frame(buf: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
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
pub(super) fn encode(
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
            p.extend_from_slice(&e.flags.to_le_bytes());
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

/// One item as read from a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Item<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// Absolute unix seconds; 0 never expires.
    pub expires: u64,
    /// Seconds of stale grace after `expires` (0 before version 2).
    pub grace: u32,
    /// Client flags (0 before version 3).
    pub flags: u32,
}

/// Called for each item read.
pub(super) type Visit<'a> = dyn FnMut(Item<'_>) + 'a;

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

/// Reads and checks a whole snapshot of `len` bytes, calling `visit` for each item. Returns
/// (created, items).
pub(super) fn decode(
    mut r: impl Read,
    len: u64,
    visit: &mut Visit<'_>,
) -> Result<(u64, u64), ReadError> {
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
    // Bytes after the value: expires, then (from version 2) grace, then (from 3) flags.
    let tail = match version {
        1 => 8,
        2 => 12,
        _ => 16,
    };
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
                visit(Item {
                    key,
                    value,
                    expires: u64_at(p, 0),
                    grace: if tail >= 12 { u32_at(p, 8) } else { 0 },
                    flags: if tail >= 16 { u32_at(p, 12) } else { 0 },
                });
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

pub(super) fn open_and_decode(path: &Path, visit: &mut Visit<'_>) -> Result<(u64, u64), ReadError> {
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
