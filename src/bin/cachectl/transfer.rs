//! `dump` and `load`: items as JSON lines (the format is documented in `cachectl dump --help`).

use larderd::atomic_file::AtomicFile;
use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use larder::{Cache, Entry};
use serde_json::{Map, Value};

use crate::fmt::{self, B64};
use crate::{Out, Status};

/// Appends one item as a JSON line: "grace" only with a TTL, "flags" only when not 0.
pub fn write_record(out: &mut (impl Write + ?Sized), e: &Entry) -> std::io::Result<()> {
    let mut m = fmt::bytes_obj("key", &e.key);
    fmt::put_bytes(&mut m, "value", &e.value);
    m.insert("ttl".into(), e.ttl.map(fmt::ttl_secs).into());
    if let Some(g) = e.grace.filter(|_| e.ttl.is_some()) {
        m.insert("grace".into(), g.as_secs().into());
    }
    if e.flags != 0 {
        m.insert("flags".into(), e.flags.into());
    }
    serde_json::to_writer(&mut *out, &Value::Object(m))?;
    out.write_all(b"\n")
}

/// Parses and checks one line against the arena's limits. `Ok(None)` for a blank line.
pub fn parse_line(line: &[u8], (max_key, max_value): (u32, u32)) -> Result<Option<Entry>, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(mut m) = v else {
        return Err("expected a JSON object {\"key\":..,\"value\":..,\"ttl\":..}".into());
    };
    let key = take_bytes(&mut m, "key")?;
    let value = take_bytes(&mut m, "value")?;
    let ttl = take_secs(&mut m, "ttl")?;
    let grace = take_secs(&mut m, "grace")?;
    let flags = match m.remove("flags") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|f| u32::try_from(f).ok())
            .ok_or_else(|| format!("\"flags\" must be an integer from 0 to 4294967295, not {n}"))?,
        Some(other) => {
            return Err(format!(
                "\"flags\" must be an integer from 0 to 4294967295, not {other}"
            ))
        }
    };
    if let Some(extra) = m.keys().next() {
        return Err(format!(
            "unknown field {extra:?} (allowed: key, key_b64, value, value_b64, ttl, grace, flags)"
        ));
    }
    if grace.is_some() && ttl.is_none() {
        return Err("\"grace\" needs a \"ttl\": stale grace starts when the TTL ends".into());
    }
    if key.is_empty() {
        return Err("empty key".into());
    }
    if key.len() > max_key as usize {
        return Err(format!(
            "key of {} bytes exceeds this arena's limit of {max_key} bytes",
            key.len()
        ));
    }
    if value.len() > max_value as usize {
        return Err(format!(
            "value of {} bytes exceeds this arena's limit of {max_value} bytes",
            value.len()
        ));
    }
    Ok(Some(Entry {
        key,
        value,
        ttl,
        grace,
        flags,
    }))
}

/// Removes the optional field `name`: whole seconds, where 0 and null mean none.
fn take_secs(
    m: &mut serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<Duration>, String> {
    match m.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => Ok(None),
            Some(s) => Ok(Some(Duration::from_secs(s))),
            None => Err(format!(
                "\"{name}\" must be whole seconds >= 0 or null, not {n}"
            )),
        },
        Some(other) => Err(format!(
            "\"{name}\" must be whole seconds >= 0 or null, not {other}"
        )),
    }
}

/// Removes `name` (a string) or `name_b64` (base64) from `m`; exactly one must be present.
fn take_bytes(m: &mut Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let b64 = format!("{name}_b64");
    match (m.remove(name), m.remove(&b64)) {
        (Some(_), Some(_)) => Err(format!("both {name:?} and {b64:?}; give one")),
        (None, None) => Err(format!("missing {name:?} (or {b64:?})")),
        (Some(Value::String(s)), None) => Ok(s.into_bytes()),
        (Some(other), None) => Err(format!(
            "{name:?} must be a string, not {}",
            type_name(&other)
        )),
        (None, Some(Value::String(s))) => B64
            .decode(s.as_bytes())
            .map_err(|e| format!("{b64:?} is not valid base64: {e}")),
        (None, Some(other)) => Err(format!(
            "{b64:?} must be a base64 string, not {}",
            type_name(&other)
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A progress line on stderr, only when stderr is a terminal, at most 10 times a second.
struct Progress {
    on: bool,
    label: String,
    last: Instant,
    drawn: bool,
}

impl Progress {
    fn new(label: String) -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            label,
            last: Instant::now(),
            drawn: false,
        }
    }

    fn tick(&mut self, done: u64, total: Option<u64>) {
        if !self.on || !done.is_multiple_of(64) || self.last.elapsed() < Duration::from_millis(100)
        {
            return;
        }
        self.last = Instant::now();
        self.drawn = true;
        let line = match total {
            Some(t) if t > 0 => format!(
                "{}: {done}/{t} ({}%)",
                self.label,
                (done * 100 / t).min(100)
            ),
            _ => format!("{}: {done}", self.label),
        };
        let _ = write!(std::io::stderr(), "\r\x1b[K{line}");
    }

    fn finish(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn is_dash(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// `cachectl dump FILE`.
pub fn dump(cache: &Cache, file: &Path, out: &mut Out) -> anyhow::Result<Status> {
    let mut progress = Progress::new(format!("dumping {}", file.display()));
    let total = Some(cache.stats().items);
    let mut n = 0u64;
    let mut write_all = |w: &mut dyn Write| -> anyhow::Result<()> {
        for e in cache.entries() {
            write_record(w, &e)?;
            n += 1;
            progress.tick(n, total);
        }
        Ok(())
    };
    if is_dash(file) {
        write_all(out)?;
        out.flush()?;
        progress.finish();
        return Ok(Status::Done);
    }
    // Mode 0600 (before the umask) for a new file: a dump holds the cache's data, which
    // the arena's own mode may have kept from other users.
    let mut target =
        AtomicFile::create(file, 0o600).with_context(|| format!("creating {}", file.display()))?;
    let tmp = target.tmp().to_owned();
    let mut w = BufWriter::new(target.file());
    write_all(&mut w).with_context(|| format!("writing {}", tmp.display()))?;
    w.flush()
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(w);
    target.commit().with_context(|| {
        format!(
            "writing {} and renaming it over {}",
            tmp.display(),
            file.display()
        )
    })?;
    progress.finish();
    if out.json {
        out.json_line(&serde_json::json!({ "file": file, "entries": n }))?;
    } else {
        writeln!(out, "dumped {n} entries to {}", file.display())?;
    }
    Ok(Status::Done)
}

/// Reads lines (without their `\n` / `\r\n`) and numbers them from 1.
fn for_each_line(
    r: &mut dyn BufRead,
    mut f: impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    let mut lineno = 0;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        lineno += 1;
        let mut line = &buf[..];
        if let Some(l) = line.strip_suffix(b"\n") {
            line = l;
        }
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        f(lineno, line)?;
    }
}

fn open_input(file: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    if is_dash(file) {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    Ok(Box::new(BufReader::new(f)))
}

/// `cachectl load FILE`.
pub fn load(
    cache: &Cache,
    file: &Path,
    skip_bad: bool,
    no_overwrite: bool,
    out: &mut Out,
) -> anyhow::Result<Status> {
    let limits = cache.limits();
    let name = if is_dash(file) {
        "stdin".to_string()
    } else {
        file.display().to_string()
    };
    // Pass 1: check every line. From stdin, which cannot be read twice, keep the records.
    let keep = is_dash(file);
    let mut kept = Vec::new();
    let mut bad: Vec<(u64, String)> = Vec::new();
    let mut good = 0u64;
    let mut input = open_input(file)?;
    for_each_line(&mut *input, |n, line| {
        match parse_line(line, limits) {
            Ok(Some(r)) => {
                good += 1;
                if keep {
                    kept.push((n, r));
                }
            }
            Ok(None) => {}
            Err(e) => bad.push((n, e)),
        }
        Ok(())
    })
    .with_context(|| format!("reading {name}"))?;
    drop(input);

    if !bad.is_empty() {
        if !skip_bad {
            let shown: Vec<String> = bad
                .iter()
                .take(3)
                .map(|(n, e)| format!("line {n}: {e}"))
                .collect();
            let more = if bad.len() > 3 {
                format!("; and {} more", bad.len() - 3)
            } else {
                String::new()
            };
            bail!(
                "{name}: {} malformed line{}, nothing loaded — {}{more} (fix the file, or pass --skip-bad to load only the good lines)",
                bad.len(),
                if bad.len() == 1 { "" } else { "s" },
                shown.join("; ")
            );
        }
        if !out.quiet {
            for (n, e) in &bad {
                eprintln!("cachectl: {name}: skipping line {n}: {e}");
            }
        }
    }

    // Pass 2: store.
    let mut progress = Progress::new(format!("loading {name}"));
    // Cells: the storing closure and the error paths around it both read the count.
    let stored = Cell::new(0u64);
    let (mut kept_existing, mut seen) = (0u64, 0u64);
    let mut store = |n: u64, r: &Entry| -> anyhow::Result<()> {
        let opts = r.options();
        let ok = if no_overwrite {
            cache.add_with(&r.key, &r.value, &opts)
        } else {
            cache.set_with(&r.key, &r.value, &opts).map(|()| true)
        }
        .with_context(|| {
            format!(
                "{name} line {n}: storing {} ({} entries were stored before this one)",
                fmt::show_key(&r.key),
                stored.get()
            )
        })?;
        if ok {
            stored.set(stored.get() + 1);
        } else {
            kept_existing += 1;
        }
        seen += 1;
        progress.tick(seen, Some(good));
        Ok(())
    };
    if keep {
        for (n, r) in &kept {
            store(*n, r)?;
        }
    } else {
        let mut input = open_input(file)?;
        for_each_line(&mut *input, |n, line| match parse_line(line, limits) {
            Ok(Some(r)) => store(n, &r),
            Ok(None) => Ok(()),
            // The file changed since pass 1: a line is bad only now.
            Err(e) if !skip_bad => bail!(
                "{name} line {n}: {e} (the file changed while loading; {} entries were stored)",
                stored.get()
            ),
            Err(_) => Ok(()),
        })
        .with_context(|| format!("reading {name}"))?;
    }
    progress.finish();

    if out.json {
        out.json_line(&serde_json::json!({
            "file": name,
            "loaded": stored.get(),
            "kept_existing": kept_existing,
            "skipped_bad": bad.len(),
        }))?;
    } else {
        let mut msg = format!("loaded {} entries from {name}", stored.get());
        if no_overwrite {
            msg += &format!(", kept {kept_existing} existing");
        }
        if !bad.is_empty() {
            msg += &format!(", skipped {} bad lines", bad.len());
        }
        writeln!(out, "{msg}")?;
    }
    Ok(Status::Done)
}

/// Reads all of stdin, refusing more than `max` bytes.
pub fn read_stdin_value(max: u32) -> anyhow::Result<Vec<u8>> {
    let mut b = Vec::new();
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("cachectl: reading the value from the terminal; end it with Ctrl-D");
    }
    stdin
        .lock()
        .take(u64::from(max) + 1)
        .read_to_end(&mut b)
        .context("reading the value from stdin")?;
    if b.len() > max as usize {
        bail!(
            "the value on stdin is larger than this arena's limit of {max} bytes ({}) — store a smaller value, or recreate the arena with a larger `larderd --max-value`",
            fmt::size(u64::from(max))
        );
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: (u32, u32) = (250, 1024);

    #[test]
    fn round_trip() {
        let s = |n| Some(Duration::from_secs(n));
        for (k, v, t, g, flags) in [
            (&b"plain"[..], &b"text \"quoted\"\n"[..], None, None, 0),
            (b"bin\xff", b"\x00\x01\xfe", s(30), None, 0),
            (b"stale", b"v", s(30), s(600), 0),
            (b"pickled", b"v", None, None, u32::MAX),
        ] {
            let e = Entry {
                key: k.to_vec(),
                value: v.to_vec(),
                ttl: t,
                grace: g,
                flags,
            };
            let mut line = Vec::new();
            write_record(&mut line, &e).unwrap();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(
                String::from_utf8_lossy(&line).contains("flags"),
                flags != 0,
                "flags are written only when set"
            );
            let r = parse_line(&line[..line.len() - 1], LIM).unwrap().unwrap();
            assert_eq!(r, e);
        }
    }

    #[test]
    fn malformed() {
        let bad = |s: &str| parse_line(s.as_bytes(), LIM).unwrap_err();
        assert!(bad("{").contains("not valid JSON"));
        assert!(bad("[1]").contains("expected a JSON object"));
        assert!(bad(r#"{"value":"v"}"#).contains("missing \"key\""));
        assert!(bad(r#"{"key":"k"}"#).contains("missing \"value\""));
        assert!(bad(r#"{"key":"k","key_b64":"aw==","value":""}"#).contains("both"));
        assert!(bad(r#"{"key":1,"value":""}"#).contains("must be a string"));
        assert!(bad(r#"{"key":"k","value_b64":"!!"}"#).contains("base64"));
        assert!(bad(r#"{"key":"k","value":"","ttl":-1}"#).contains("ttl"));
        assert!(bad(r#"{"key":"k","value":"","ttl":"5m"}"#).contains("ttl"));
        assert!(bad(r#"{"key":"k","value":"","tll":5}"#).contains("unknown field"));
        assert!(bad(r#"{"key":"k","value":"","grace":5}"#).contains("needs a \"ttl\""));
        assert!(bad(r#"{"key":"k","value":"","ttl":5,"grace":-1}"#).contains("grace"));
        assert!(bad(r#"{"key":"","value":""}"#).contains("empty key"));
        assert!(bad(r#"{"key":"k","value":"","flags":-1}"#).contains("flags"));
        assert!(bad(r#"{"key":"k","value":"","flags":4294967296}"#).contains("flags"));
        assert!(bad(r#"{"key":"k","value":"","flags":"2"}"#).contains("flags"));
        let big = format!(r#"{{"key":"k","value":"{}"}}"#, "x".repeat(1025));
        assert!(bad(&big).contains("limit of 1024"));
        assert_eq!(parse_line(b"  ", LIM), Ok(None));
        let r = parse_line(br#"{"key":"k","value":"v","ttl":0}"#, LIM)
            .unwrap()
            .unwrap();
        assert_eq!(r.ttl, None);
    }
}
