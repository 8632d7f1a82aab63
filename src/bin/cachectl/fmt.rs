//! Human-readable sizes, durations and timestamps, and JSON byte fields.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub use larderd::units::unix_now;

/// `8.0 MiB`, `512 B`.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// `3d 4h`, `2h 5m`, `5m 3s`, `42s`: the two largest units.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// RFC 3339 UTC: `2024-05-01T12:00:00Z`.
pub fn timestamp(unix: u64) -> String {
    let days = (unix / 86400) as i64;
    let rem = unix % 86400;
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `2024-05-01T12:00:00Z (3m 2s ago)`.
pub fn timestamp_ago(unix: u64) -> String {
    let now = unix_now();
    if now >= unix {
        format!("{} ({} ago)", timestamp(unix), duration(now - unix))
    } else {
        timestamp(unix)
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Inserts bytes as `name` (a JSON string) when they are UTF-8, else as `name_b64`.
pub fn put_bytes(obj: &mut Map<String, Value>, name: &str, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(s) => obj.insert(name.to_owned(), Value::String(s.to_owned())),
        Err(_) => obj.insert(format!("{name}_b64"), Value::String(B64.encode(b))),
    };
}

/// A JSON object with one byte field.
pub fn bytes_obj(name: &str, b: &[u8]) -> Map<String, Value> {
    let mut m = Map::new();
    put_bytes(&mut m, name, b);
    m
}

/// Whole seconds of a remaining TTL, rounded up and at least 1 (0 would mean "never").
pub fn ttl_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// A key for a one-line message: as text when printable UTF-8, else escaped.
pub fn show_key(k: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(k)).replace('\u{FFFD}', "\\u{FFFD}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(8 << 20), "8.0 MiB");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(303), "5m 3s");
        assert_eq!(duration(7500), "2h 5m");
        assert_eq!(duration(3 * 86400 + 4 * 3600), "3d 4h");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(timestamp(1_714_564_800), "2024-05-01T12:00:00Z");
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::from_millis(2500)), 3);
        assert_eq!(ttl_secs(Duration::from_secs(30)), 30);
    }
}
