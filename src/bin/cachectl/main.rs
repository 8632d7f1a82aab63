//! `cachectl`: inspect and operate a larder cache from the shell.
//!
//! Exit codes: 0 success, 1 key not found / condition not met, 2 any error. Every error is
//! one line on stderr that says what to do about it.
//!
//! Modules: `cli` (the clap definitions, also used for completions and the man page),
//! `ops` (stats, info, snapshot, watch), `transfer` (dump, load), `glob` (key patterns),
//! `fmt` (human-readable numbers and JSON byte fields).

mod cli;
mod fmt;
mod listener;
mod ops;
mod transfer;

use std::ffi::OsStr;
use std::io::{BufWriter, IsTerminal, StdoutLock, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{CommandFactory, Parser};
use larder::{Cache, Error, OpenError};
use serde_json::{json, Value};

use cli::{Cli, Cmd, WriteArgs};

/// How a command ended, when it did not fail.
pub enum Status {
    /// Exit 0.
    Done,
    /// Exit 1: the key was not found or the condition not met; the reason goes to stderr
    /// unless --quiet.
    NotMet(String),
}

/// Buffered stdout plus the output flags every command honours.
pub struct Out {
    w: BufWriter<StdoutLock<'static>>,
    pub json: bool,
    pub quiet: bool,
}

impl Out {
    /// Writes one JSON value on its own line.
    pub fn json_line(&mut self, v: &Value) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.w, v)?;
        self.w.write_all(b"\n")
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.w.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.w.write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

fn main() {
    std::process::exit(try_main());
}

fn try_main() -> i32 {
    let cli = Cli::parse();
    let mut out = Out {
        w: BufWriter::new(std::io::stdout().lock()),
        json: cli.json,
        quiet: cli.quiet,
    };
    let result = run(cli, &mut out).and_then(|s| {
        out.flush().context("writing to stdout")?;
        Ok(s)
    });
    match result {
        Ok(Status::Done) => 0,
        Ok(Status::NotMet(why)) => {
            if !out.quiet {
                eprintln!("cachectl: {why}");
            }
            1
        }
        // A closed pipe (`cachectl keys | head`) is how a reader says it has enough.
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            // Whatever was printed before the error still goes out; a failure to write it
            // is moot now.
            let _ = out.flush();
            eprintln!("cachectl: {e:#}");
            2
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli, out: &mut Out) -> anyhow::Result<Status> {
    // Commands that need no arena.
    match &cli.cmd {
        Cmd::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "cachectl", out);
            return Ok(Status::Done);
        }
        Cmd::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(out)
                .context("writing the man page")?;
            return Ok(Status::Done);
        }
        _ => {}
    }

    let path = cli
        .arena
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(larder::default_arena_path);
    // Looking without touching items takes no process slot, so it works even when every
    // slot is taken and never shows up as a client in `stats`.
    let observe = matches!(
        cli.cmd,
        Cmd::Stats { .. } | Cmd::Info | Cmd::Watch { .. } | Cmd::Snapshot { .. }
    );
    let cache = open(&path, observe)?;
    let json = out.json;
    match cli.cmd {
        Cmd::Get { key } => {
            let k = key.as_bytes();
            let v = cache.get(k).map_err(|e| hint(e, k))?;
            if json {
                let mut m = fmt::bytes_obj("key", k);
                m.insert("found".into(), v.is_some().into());
                if let Some(v) = &v {
                    fmt::put_bytes(&mut m, "value", v);
                }
                out.json_line(&Value::Object(m))?;
            } else if let Some(v) = &v {
                out.write_all(v)?;
            }
            if v.is_none() {
                return Ok(not_found(k));
            }
        }
        Cmd::Set(a) => return write(&cache, a, Mode::Set, out),
        Cmd::Add(a) => return write(&cache, a, Mode::Add, out),
        Cmd::Replace(a) => return write(&cache, a, Mode::Replace, out),
        Cmd::Del { tag: Some(tag), .. } => {
            cache.invalidate_tag(tag.as_bytes())?;
            if json {
                out.json_line(
                    &json!({ "invalidated_tag": String::from_utf8_lossy(tag.as_bytes()) }),
                )?;
            }
        }
        Cmd::Del { keys, tag: None } => {
            let mut deleted = 0u64;
            for k in &keys {
                let k = k.as_bytes();
                deleted += u64::from(cache.delete(k).map_err(|e| hint(e, k))?);
            }
            if json {
                out.json_line(&json!({ "deleted": deleted, "requested": keys.len() }))?;
            } else {
                writeln!(out, "{deleted}")?;
            }
            if deleted == 0 {
                return Ok(Status::NotMet(if keys.len() == 1 {
                    format!("key {} not found", fmt::show_key(keys[0].as_bytes()))
                } else {
                    format!("none of the {} keys was found", keys.len())
                }));
            }
        }
        Cmd::Incr { key, n } => return counter(&cache, key.as_bytes(), n, false, out),
        Cmd::Decr { key, n } => return counter(&cache, key.as_bytes(), n, true, out),
        Cmd::Ttl { key } => {
            let k = key.as_bytes();
            let t = cache.ttl(k).map_err(|e| hint(e, k))?;
            let secs = t.map(|t| t.map(fmt::ttl_secs));
            if json {
                let mut m = fmt::bytes_obj("key", k);
                m.insert("found".into(), secs.is_some().into());
                if let Some(s) = secs {
                    m.insert("ttl".into(), s.into());
                }
                out.json_line(&Value::Object(m))?;
            } else {
                match secs {
                    Some(None) => writeln!(out, "-1")?,
                    Some(Some(s)) => writeln!(out, "{s}")?,
                    None => {}
                }
            }
            if secs.is_none() {
                return Ok(not_found(k));
            }
        }
        Cmd::Touch { key, ttl } => {
            let k = key.as_bytes();
            let ok = cache.touch(k, ttl_arg(Some(ttl))).map_err(|e| hint(e, k))?;
            if json {
                let mut m = fmt::bytes_obj("key", k);
                m.insert("found".into(), ok.into());
                out.json_line(&Value::Object(m))?;
            }
            if !ok {
                return Ok(not_found(k));
            }
        }
        Cmd::Keys { pattern, limit } => {
            let g = pattern
                .as_deref()
                .map(|p| larder::Glob::new(p.as_bytes()))
                .transpose()
                .map_err(anyhow::Error::new)?;
            let keys = cache
                .keys()
                .filter(|k| g.as_ref().is_none_or(|g| g.matches(k)))
                .take(limit.unwrap_or(usize::MAX));
            if json {
                out.write_all(b"[")?;
                for (i, k) in keys.enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    serde_json::to_writer(&mut *out, &fmt::bytes_obj("key", &k))?;
                }
                out.write_all(b"]\n")?;
            } else {
                for k in keys {
                    out.write_all(&k)?;
                    out.write_all(b"\n")?;
                }
            }
        }
        Cmd::Flush { yes } => {
            if !yes && std::io::stdin().is_terminal() {
                bail!(
                    "flush removes every item in {} — run `cachectl flush --yes` to confirm",
                    path.display()
                );
            }
            let n = cache.flush()?;
            if json {
                out.json_line(&json!({ "flushed": n }))?;
            } else {
                writeln!(out, "flushed {n} items")?;
            }
        }
        Cmd::Stats {
            format,
            listener: addr,
        } => {
            let l = addr.as_deref().map(listener::query).transpose()?;
            return ops::stats(&cache, format, l.as_ref(), out);
        }
        Cmd::Info => return ops::info(&cache, out),
        Cmd::Snapshot { timeout } => return ops::snapshot(&cache, timeout, out),
        Cmd::Watch { interval, count } => return ops::watch(&cache, interval, count, out),
        Cmd::Dump { file } => return transfer::dump(&cache, &file, out),
        Cmd::Load {
            file,
            skip_bad,
            no_overwrite,
        } => return transfer::load(&cache, &file, skip_bad, no_overwrite, out),
        Cmd::Completions { .. } | Cmd::Man => unreachable!("handled above"),
    }
    Ok(Status::Done)
}

fn not_found(k: &[u8]) -> Status {
    Status::NotMet(format!("key {} not found", fmt::show_key(k)))
}

/// `--ttl 0` means no expiry.
fn ttl_arg(t: Option<Duration>) -> Option<Duration> {
    t.filter(|d| !d.is_zero())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Set,
    Add,
    Replace,
}

fn write(cache: &Cache, a: WriteArgs, mode: Mode, out: &mut Out) -> anyhow::Result<Status> {
    let k = a.key.as_bytes();
    let (max_key, max_value) = cache.limits();
    // Check the key before reading a value from stdin, so a bad key fails fast.
    if k.is_empty() {
        return Err(hint(Error::EmptyKey { max: max_key }, k));
    }
    if k.len() > max_key as usize {
        let e = Error::KeyTooLarge {
            len: k.len(),
            max: max_key,
        };
        return Err(hint(e, k));
    }
    let value = match a.value.as_deref() {
        None => transfer::read_stdin_value(max_value)?,
        Some(v) if v == OsStr::new("-") => transfer::read_stdin_value(max_value)?,
        Some(v) => v.as_bytes().to_vec(),
    };
    let ttl = ttl_arg(a.ttl);
    let stored = match mode {
        Mode::Set => cache.set(k, &value, ttl).map(|()| true),
        Mode::Add => cache.add(k, &value, ttl),
        Mode::Replace => cache.replace(k, &value, ttl),
    }
    .map_err(|e| hint(e, k))?;
    if out.json {
        let mut m = fmt::bytes_obj("key", k);
        m.insert("stored".into(), stored.into());
        out.json_line(&Value::Object(m))?;
    }
    Ok(match (stored, mode) {
        (true, _) => Status::Done,
        (false, Mode::Add) => Status::NotMet(format!(
            "not stored: key {} already exists (use `set` to overwrite it)",
            fmt::show_key(k)
        )),
        (false, _) => Status::NotMet(format!(
            "not stored: key {} does not exist (use `set` to create it)",
            fmt::show_key(k)
        )),
    })
}

fn counter(cache: &Cache, k: &[u8], n: u64, down: bool, out: &mut Out) -> anyhow::Result<Status> {
    let r = if down {
        cache.decr(k, n)
    } else {
        cache.incr(k, n)
    };
    let v = match r {
        Err(Error::NotANumber) => bail!(
            "the value of key {} is not a decimal unsigned 64-bit number, so it cannot be {} — set it to a number first (`cachectl set KEY 0`)",
            fmt::show_key(k),
            if down { "decremented" } else { "incremented" }
        ),
        r => r.map_err(|e| hint(e, k))?,
    };
    if out.json {
        let mut m = fmt::bytes_obj("key", k);
        m.insert("found".into(), v.is_some().into());
        if let Some(v) = v {
            m.insert("value".into(), v.into());
        }
        out.json_line(&Value::Object(m))?;
    } else if let Some(v) = v {
        writeln!(out, "{v}")?;
    }
    Ok(match v {
        Some(_) => Status::Done,
        None => Status::NotMet(format!(
            "key {} not found (create the counter with `cachectl set KEY 0`)",
            fmt::show_key(k)
        )),
    })
}

/// Adds what to do to the library's errors about a request.
fn hint(e: Error, key: &[u8]) -> anyhow::Error {
    match e {
        Error::KeyTooLarge { .. } => anyhow!("{e} — use a shorter key"),
        Error::EmptyKey { .. } => anyhow!("{e} — give a non-empty key"),
        Error::ValueTooLarge { .. } => anyhow!(
            "key {}: {e} — store a smaller value, or recreate the arena with a larger `larderd --max-value`",
            fmt::show_key(key)
        ),
        Error::ArenaFull => anyhow!("{e} — retry, or give larderd a larger --size"),
        e => anyhow::Error::new(e),
    }
}

/// Attaches to the arena, turning the usual failures into one line that says what to do.
fn open(path: &Path, observe: bool) -> anyhow::Result<Cache> {
    let shown = path.display();
    let opened = if observe {
        Cache::open_observer(path)
    } else {
        Cache::open(path)
    };
    opened.map_err(|e| match &e {
        OpenError::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => anyhow!(
                "no arena at {shown} — is larderd running? start it with `larderd` (or see `systemctl status larderd`), or point --arena / LARDER_ARENA at the right file"
            ),
            std::io::ErrorKind::PermissionDenied => {
                let group = group_of(path).unwrap_or_else(|| "larder".into());
                anyhow!(
                    "permission denied on {shown} — add your user to group {group} (`sudo usermod -aG {group} $USER`, then log in again), or run as the arena's owner"
                )
            }
            _ if source.raw_os_error() == Some(libc::EISDIR) => anyhow!(
                "{shown} is a directory — --arena must name the arena file itself (e.g. {})",
                path.join("arena").display()
            ),
            _ => anyhow::Error::new(e),
        },
        OpenError::NotAnArena { .. } => {
            anyhow!("{e} — check --arena / LARDER_ARENA (larderd prints its arena path when it starts)")
        }
        OpenError::BadArena { .. } => {
            anyhow!("{e} — restart larderd: it moves an unusable arena aside and starts an empty one")
        }
        OpenError::TooManyProcesses { .. } => anyhow!(
            "{e} — `cachectl stats` (which needs no slot) lists them; raise the limit by recreating the arena, or stop some clients"
        ),
        _ => anyhow::Error::new(e),
    })
}

/// The name of the group owning `path`, from /etc/group.
fn group_of(path: &Path) -> Option<String> {
    let gid = std::fs::metadata(path).ok()?.gid();
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let g: u32 = f.nth(1)?.parse().ok()?;
        (g == gid && gid != 0).then(|| name.to_owned())
    })
}
