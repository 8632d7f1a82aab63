//! The command line: every flag, subcommand and help text, in one place. `completions` and
//! `man` are generated from these same definitions.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};

use larderd::units;

const ABOUT: &str = "Inspect and operate a larder shared-memory cache";

const LONG_ABOUT: &str = "\
Inspect and operate a larder shared-memory cache from the shell.

cachectl attaches to the arena file directly, like any other client, so data commands work \
whether or not larderd is running; `snapshot` needs a running larderd, and `info` shows \
whether one is attached.";

const EXAMPLES: &str = "\
Examples:
  cachectl set greeting hello --ttl 5m     store a value that expires in 5 minutes
  cachectl get greeting                    print it (raw bytes, no newline added)
  cachectl set photo < cat.jpg             store a file's bytes (value from stdin)
  cachectl get photo > copy.jpg            ...and get them back byte for byte
  cachectl incr visits 5                   add 5 to a decimal counter, print the result
  cachectl keys 'user:*' --limit 20        list up to 20 keys matching a glob
  cachectl stats --format prometheus       counters for a node_exporter textfile
  cachectl dump warm.jsonl                 save every item; `load warm.jsonl` restores them

Exit status:
  0  success
  1  key not found or condition not met (get/ttl/touch/incr/decr of a missing key, add of an
     existing key, replace of a missing key, del that removed nothing), like grep
  2  any error (no arena, permission denied, bad argument, value too large, ...)

Environment:
  LARDER_ARENA  the arena file, as --arena (larderd and every client read it too)";

/// Inspect and operate a larder shared-memory cache.
#[derive(Parser, Debug)]
#[command(
    name = "cachectl",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = "Run `cachectl help <command>` or `cachectl <command> --help` for details; \
                  `cachectl --help` for examples and exit codes.",
    after_long_help = EXAMPLES,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Arena file [default: $LARDER_ARENA, else /run/larder/arena if it exists, else
    /// $XDG_RUNTIME_DIR/larder/arena, else /dev/shm/larder-$UID/arena — as larderd]
    #[arg(long, global = true, env = "LARDER_ARENA", value_name = "PATH",
          value_hint = ValueHint::FilePath, hide_env_values = true)]
    pub arena: Option<PathBuf>,

    /// Print machine-readable JSON instead of text (on commands that print data)
    #[arg(long, global = true)]
    pub json: bool,

    /// Do not explain on stderr why the exit status is 1 (the status is unchanged)
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub cmd: Cmd,
}

/// A time to live: `30s`, `5m`, `1h`, `2d`, `250ms` (rounded up to whole seconds), or bare
/// seconds; `0` means never expires.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    units::parse_duration(s)
}

/// A positive duration for intervals and timeouts.
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "{s:?} is zero; give a positive duration such as 1s or 500ms"
        ));
    }
    Ok(d)
}

#[derive(Args, Debug)]
pub struct WriteArgs {
    /// The key (any bytes but empty; prefix with `--` if it starts with `-`)
    pub key: OsString,
    /// The value; omit it or give `-` to read the value from stdin (binary-safe)
    pub value: Option<OsString>,
    /// Time to live: 30s, 5m, 1h, 2d, or seconds; 0 or omitted = never expires
    #[arg(long, value_parser = parse_ttl, value_name = "TTL")]
    pub ttl: Option<Duration>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
    /// Aligned, human-readable text
    Text,
    /// One JSON object (the same as --json)
    Json,
    /// Prometheus text exposition format (e.g. for node_exporter's textfile collector)
    Prometheus,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Print a value to stdout, as raw bytes (no newline is added)
    ///
    /// Exit status 1, with nothing on stdout, if the key is absent or expired. With --json:
    /// {"key":..,"found":true,"value":..}; a value that is not UTF-8 is given as "value_b64"
    /// (standard base64) instead of "value".
    Get {
        /// The key
        key: OsString,
    },

    /// Store a value under a key, replacing any previous value
    ///
    /// The value comes from the argument, or from stdin when the argument is omitted or is
    /// `-` (to store a literal `-`, pipe it in: `printf - | cachectl set KEY`). Stdin is read
    /// byte for byte, so `cachectl set img < cat.jpg` stores the file exactly.
    #[command(after_help = "Example: cachectl set session:42 '{\"user\":7}' --ttl 30m")]
    Set(WriteArgs),

    /// Store a value only if the key has no live value (exit status 1 if it has one)
    Add(WriteArgs),

    /// Store a value only if the key already has a live value (exit status 1 if not)
    Replace(WriteArgs),

    /// Delete keys; prints how many existed (exit status 1 if none did)
    ///
    /// With --tag, invalidates every item stored with that tag instead, in O(1), in every
    /// process (items tagged through the library's `set_with`/`get_or_load`).
    Del {
        /// One or more keys
        #[arg(required_unless_present = "tag", conflicts_with = "tag")]
        keys: Vec<OsString>,
        /// Invalidate every item carrying this tag
        #[arg(long, value_name = "TAG")]
        tag: Option<OsString>,
    },

    /// Add N (default 1) to a decimal value and print the result (wraps at 2^64)
    ///
    /// Exit status 1 if the key is absent; an error if its value is not a decimal u64.
    /// Create the counter first with `cachectl set KEY 0` (or `add` to avoid a race).
    Incr {
        /// The key of a decimal counter
        key: OsString,
        /// Amount to add
        #[arg(default_value_t = 1)]
        n: u64,
    },

    /// Subtract N (default 1) from a decimal value, stopping at 0, and print the result
    ///
    /// Exit status 1 if the key is absent; an error if its value is not a decimal u64.
    Decr {
        /// The key of a decimal counter
        key: OsString,
        /// Amount to subtract
        #[arg(default_value_t = 1)]
        n: u64,
    },

    /// Print a key's remaining time to live in whole seconds; -1 if it never expires
    ///
    /// Exit status 1 if the key is absent. With --json: {"key":..,"found":true,"ttl":SECS}
    /// where "ttl" is null for a key that never expires.
    Ttl {
        /// The key
        key: OsString,
    },

    /// Give a live key a new time to live (exit status 1 if the key is absent)
    Touch {
        /// The key
        key: OsString,
        /// New time to live: 30s, 5m, 1h, 2d, or seconds; 0 = never expires
        #[arg(long, value_parser = parse_ttl, value_name = "TTL", required = true)]
        ttl: Duration,
    },

    /// List keys, one per line, optionally only those matching a glob pattern
    ///
    /// The pattern is matched against the whole key, byte by byte: `*` matches any run of
    /// bytes, `?` exactly one byte, `[abc]`, `[a-z]` one byte of a set, `[!a-z]` or `[^a-z]`
    /// one byte outside it, and `\` makes the next character literal. Quote the pattern so
    /// the shell does not expand it. Keys are streamed from the arena as they are found
    /// (order is arbitrary; keys written during the walk may or may not appear), so this
    /// is safe on a cache of any size. With --json: a JSON array of {"key":..} objects
    /// ("key_b64" for keys that are not UTF-8).
    #[command(
        after_help = "Examples:\n  cachectl keys\n  cachectl keys 'session:*' --limit 10\n  cachectl keys 'user:[0-9]*'"
    )]
    Keys {
        /// Glob pattern; all keys when omitted
        pattern: Option<OsString>,
        /// Stop after printing this many keys
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },

    /// Remove every item from the cache
    ///
    /// When stdin is a terminal, --yes is required, so that a stray command in an
    /// interactive shell cannot empty a production cache; from scripts and pipes (stdin
    /// not a terminal) no confirmation is asked. Prints how many items were removed.
    Flush {
        /// Confirm: really remove every item
        #[arg(short, long)]
        yes: bool,
    },

    /// Show hit/miss counters, occupancy and every attached process's own counters
    ///
    /// Totals are summed over every process that ever attached (dead ones included). The
    /// process list shows the clients attached now (cachectl itself excluded), each with
    /// its counts since it attached. With --listener, also the counters of larderd's
    /// memcached listener at ADDR (connections, commands, protocol errors, bytes).
    Stats {
        /// Output format (--json is the same as --format json)
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<StatsFormat>,
        /// Also ask larderd's memcached listener at ADDR (host:port or a socket path) for
        /// its counters
        #[arg(long, value_name = "ADDR")]
        listener: Option<String>,
    },

    /// Describe the arena: path, size, layout, limits, daemon, last snapshot, clean/dirty
    Info,

    /// Ask larderd to write a snapshot now and wait until it is written
    ///
    /// Fails at once if no daemon is attached to the arena (snapshots are written by
    /// larderd). Prints the time and size of the snapshot written.
    Snapshot {
        /// Give up waiting after this long (the daemon still writes the snapshot)
        #[arg(long, default_value = "60s", value_parser = parse_positive_duration,
              value_name = "DURATION")]
        timeout: Duration,
    },

    /// Live statistics, refreshed like top: hits/s, misses/s, sets/s, evictions/s
    ///
    /// On a terminal the screen is redrawn each refresh; otherwise (or with --json) one line
    /// (one JSON object) is printed per refresh. Stop with Ctrl-C or --count.
    Watch {
        /// Time between refreshes (e.g. 1s, 500ms, 5s)
        #[arg(long, default_value = "1s", value_parser = parse_positive_duration,
              value_name = "DURATION")]
        interval: Duration,
        /// Stop after this many refreshes
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },

    /// Write every live item to FILE as JSON lines (`-` = stdout)
    ///
    /// One object per line: {"key":"k","value":"v","ttl":SECS}. "key" and "value" hold the
    /// bytes as a JSON string when they are valid UTF-8; otherwise the field is named
    /// "key_b64" / "value_b64" and holds standard base64 (with padding). "ttl" is the
    /// remaining time to live in whole seconds (rounded up, at least 1), or null when the
    /// item never expires; "grace", present only for items stored with a stale grace, is
    /// how many seconds after the TTL the value may still be served stale; "flags", present
    /// only for items with client flags other than 0 (memcached clients set them), holds them.
    /// A FILE is written under a temporary name and renamed into place
    /// when complete, so a failed dump never leaves a truncated file; a new file gets mode
    /// 0600, as it holds the cache's data. Reading does not count hits or protect items
    /// from eviction.
    #[command(after_help = "Example: cachectl dump - | gzip > cache.jsonl.gz")]
    Dump {
        /// Output file, or `-` for stdout
        #[arg(value_hint = ValueHint::FilePath)]
        file: PathBuf,
    },

    /// Store every item of a JSON-lines FILE, as written by `dump` (`-` = stdin)
    ///
    /// Each non-blank line must be an object with "key" or "key_b64", "value" or
    /// "value_b64", and optionally "ttl": seconds from now, with 0, null or absent meaning
    /// never expires, "grace" (seconds of stale grace after the TTL; only with a "ttl") and
    /// "flags" (client flags, 0 to 4294967295) (see `cachectl dump --help`). The WHOLE file is checked first,
    /// including the arena's key and value size limits: if any line is malformed, nothing
    /// is stored and the error names the line numbers — unless --skip-bad is given, which
    /// stores the good lines and reports each bad one on stderr.
    Load {
        /// Input file, or `-` for stdin
        #[arg(value_hint = ValueHint::FilePath)]
        file: PathBuf,
        /// Store the valid lines even if some are malformed, reporting the bad ones
        #[arg(long)]
        skip_bad: bool,
        /// Keep the existing value of keys already present (store with `add`, not `set`)
        #[arg(long)]
        no_overwrite: bool,
    },

    /// Print a shell completion script
    ///
    /// bash: `cachectl completions bash > ~/.local/share/bash-completion/completions/cachectl`
    /// zsh:  `cachectl completions zsh > ~/.zfunc/_cachectl` (with ~/.zfunc in $fpath)
    /// fish: `cachectl completions fish > ~/.config/fish/completions/cachectl.fish`
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff); view it with `cachectl man | man -l -`
    Man,
}
