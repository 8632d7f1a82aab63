//! Shared helpers: keys, key distributions, histograms across processes, machine facts,
//! markdown tables, progress bars.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// Every key is 12 bytes, `key:00000042`, as in `benches/engine.rs`.
pub const KEY_LEN: usize = 12;
pub type Key = [u8; KEY_LEN];

/// `key:` and eight decimal digits (ids up to 99 999 999).
pub fn key(i: u64) -> Key {
    assert!(i < 100_000_000, "key id {i} needs more than 8 digits");
    let mut k = *b"key:00000000";
    let mut n = i;
    for d in k[4..].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

/// A value of `len` bytes derived from `seed` (printable, so it is also a valid text
/// protocol payload for eye inspection; the protocols are length-prefixed anyway).
pub fn value(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|j| b'a' + ((seed.wrapping_mul(31).wrapping_add(j as u64)) % 26) as u8)
        .collect()
}

/// Stores `stamp` into the first bytes of `v` (as decimal-looking bytes), so that every
/// overwrite really writes a different value.
pub fn stamp_value(v: &mut [u8], stamp: u64) {
    let n = v.len().min(8);
    let bytes = stamp.to_le_bytes();
    for (d, s) in v[..n].iter_mut().zip(bytes) {
        *d = b'a' + s % 26;
    }
}

/// Key popularity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dist {
    Uniform,
    /// Zipf with exponent 0.99 over ranks 1..=n; rank r is key r-1.
    Zipf,
}

impl Dist {
    pub fn name(self) -> &'static str {
        match self {
            Dist::Uniform => "uniform",
            Dist::Zipf => "zipf0.99",
        }
    }
    pub fn parse(s: &str) -> Option<Dist> {
        match s {
            "uniform" | "u" => Some(Dist::Uniform),
            "zipf" | "zipf0.99" | "z" => Some(Dist::Zipf),
            _ => None,
        }
    }
}

/// Draws key ids in `0..n`.
pub struct KeyGen {
    rng: StdRng,
    n: u64,
    zipf: Option<Zipf<f64>>,
}

impl KeyGen {
    pub fn new(dist: Dist, n: u64, seed: u64) -> KeyGen {
        assert!(n > 0);
        KeyGen {
            rng: StdRng::seed_from_u64(seed),
            n,
            zipf: match dist {
                Dist::Uniform => None,
                Dist::Zipf => Some(Zipf::new(n, 0.99).expect("zipf parameters")),
            },
        }
    }
    /// Zipf with exponent `theta` over ranks 1..=n (rank r is key r-1).
    pub fn zipf(n: u64, theta: f64, seed: u64) -> KeyGen {
        assert!(n > 0);
        KeyGen {
            rng: StdRng::seed_from_u64(seed),
            n,
            zipf: Some(Zipf::new(n, theta).expect("zipf parameters")),
        }
    }

    #[inline]
    pub fn next_id(&mut self) -> u64 {
        match &self.zipf {
            None => self.rng.gen_range(0..self.n),
            // Ranks are 1..=n as floats; clamp guards the float edge.
            Some(z) => (z.sample(&mut self.rng) as u64).clamp(1, self.n) - 1,
        }
    }
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}

/// A latency histogram in nanoseconds, 1 ns .. 100 s, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("histogram bounds")
}

/// Writes the recorded buckets of `h` as `value count` lines, ended by `end`.
pub fn write_hist(w: &mut impl Write, name: &str, h: &Histogram<u64>) -> io::Result<()> {
    writeln!(w, "hist {name}")?;
    for v in h.iter_recorded() {
        writeln!(w, "{} {}", v.value_iterated_to(), v.count_at_value())?;
    }
    writeln!(w, "end")
}

/// Reads what [`write_hist`] wrote (the `hist NAME` line already consumed).
pub fn read_hist(r: &mut impl BufRead) -> io::Result<Histogram<u64>> {
    let mut h = new_hist();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "histogram cut short",
            ));
        }
        let t = line.trim();
        if t == "end" {
            return Ok(h);
        }
        let mut it = t.split(' ').map(|s| s.parse::<u64>());
        match (it.next(), it.next()) {
            (Some(Ok(v)), Some(Ok(c))) => h
                .record_n(v, c)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad histogram line {t:?}"),
                ))
            }
        }
    }
}

/// Percentile of a histogram in ns, or `None` when it is empty.
pub fn pct(h: &Histogram<u64>, q: f64) -> Option<u64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q))
}

/// `1.23 µs`, `850 ns`, `12.3 ms`.
pub fn fmt_ns(ns: Option<u64>) -> String {
    let Some(ns) = ns else {
        return "–".into();
    };
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.2} µs", f / 1e3)
    } else {
        format!("{:.2} ms", f / 1e6)
    }
}

/// `12.3 M`, `456 k`, `789`.
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

pub fn fmt_ratio(r: f64) -> String {
    if !r.is_finite() {
        "–".into()
    } else if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

/// A markdown table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("| {} |\n", self.header.join(" | ")));
        let seps: Vec<&str> = self
            .header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---" } else { "---:" })
            .collect();
        s.push_str(&format!("|{}|\n", seps.join("|")));
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s
    }
}

/// nproc, CPU model, kernel, memory, and the peers' versions: the machine paragraph.
pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or_else(
            || "?".into(),
            |kb| format!("{:.1} GiB", kb as f64 / 1048576.0),
        );
    let clocksource =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into());
    let ver = |bin: &str, arg: &str| -> String {
        which(bin)
            .and_then(|p| std::process::Command::new(p).arg(arg).output().ok())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "not installed".into())
    };
    format!(
        "{nproc} CPUs ({cpu}), {mem} RAM, Linux {kernel}, clocksource {clocksource}; {}; {}",
        ver("memcached", "-V"),
        ver("redis-server", "--version")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// The first executable called `bin` on `$PATH`.
pub fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta}) {msg}",
        )
        .expect("progress template"),
    );
    pb.set_prefix(what.to_owned());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// The directory for arenas: /dev/shm when present (memory, like the real deployment).
pub fn shm_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Cost of one `Instant::now()` in ns (median of a few batches): the timer overhead
/// included in every per-operation latency.
pub fn timer_overhead_ns() -> f64 {
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let n = 200_000;
            let t = std::time::Instant::now();
            let mut last = t;
            for _ in 0..n {
                last = std::hint::black_box(std::time::Instant::now());
            }
            (last - t).as_nanos() as f64 / n as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width() {
        assert_eq!(&key(0), b"key:00000000");
        assert_eq!(&key(42), b"key:00000042");
        assert_eq!(&key(99_999_999), b"key:99999999");
    }

    #[test]
    fn zipf_ids_stay_in_range_and_are_skewed() {
        let mut g = KeyGen::new(Dist::Zipf, 1000, 1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[g.next_id() as usize] += 1;
        }
        // Rank 1 is the most popular by far.
        assert!(counts[0] > 10 * counts[99]);
        let mut u = KeyGen::new(Dist::Uniform, 10, 1);
        assert!((0..1000).all(|_| u.next_id() < 10));
    }

    #[test]
    fn histograms_round_trip() {
        let mut h = new_hist();
        for v in [1u64, 150, 151, 20_000, 1_000_000_000] {
            h.record(v).unwrap();
        }
        let mut buf = Vec::new();
        write_hist(&mut buf, "get", &h).unwrap();
        let mut r = io::BufReader::new(&buf[..]);
        let mut first = String::new();
        r.read_line(&mut first).unwrap();
        assert_eq!(first, "hist get\n");
        let back = read_hist(&mut r).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
        assert_eq!(back.max(), h.max());
    }
}
