//! Chaos: the real `larderd` and many client processes sharing one arena, SIGKILLed at
//! random moments, while every value read is verified (README: Reliability).
//!
//! `run_chaos` starts larderd, three writer processes (set/add/replace/delete/gets+cas on a
//! shared key space, incr on counters) and two readers (verifying every value, counter and
//! key they see), one of each never killed, and kills and respawns random workers until its
//! share of `LARDER_CHAOS_KILLS` (default 300, split between the two runs) is done; every
//! `DAEMON_EVERY` kills it SIGKILLs the daemon itself (after a snapshot, during one, or in
//! between) and restarts it. Continuously: no worker ever reads a corrupt or foreign value (it
//! exits 3), no worker and no daemon is silent for 10 s (heartbeat files; the daemon's is its
//! metrics file), counters stay between their acknowledged and attempted increments, every
//! restart re-attaches to the same file with the data, and every snapshot file left by a
//! killed daemon loads into a fresh one. At the end: no segment is left to a dead process,
//! the space in use is accounted for by the live items, and the arena refills completely.
//! Two settings: `chaos_roomy_…` (64 MiB, nothing may be evicted: exact counters) and
//! `chaos_pressure_…` (8 MiB, evicting all the time).
//!
//! By hand, at a large size (release build recommended):
//!
//! ```sh
//! LARDER_CHAOS_KILLS=10000 cargo test --release --test chaos -- --nocapture
//! ```
//!
//! `hostile_arena_files_never_crash_the_daemon_or_a_client` runs larderd and a client, each
//! in a process of its own, on files that are not arenas (short, grown, wrong magic, wrong
//! layout version, a directory, a FIFO, /dev/zero) and larderd on bad snapshot files: each
//! must end by itself or serve, never die of a signal, and never destroy the file it refused.
//!
//! Workers are this test binary re-executed (`--exact worker_entry`) with
//! `LARDER_CHAOS_ROLE` naming what to do; the harness itself never forks.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use larder::layout::{ctl_owner, ctl_state, item_size, Params, SegState, PARAMS_LEN, PS_REG};
use larder::{Cache, CasOutcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use larder_testkit::{files_starting, Daemon};

mod checks;
mod hostile;
mod pool;
mod run;
mod values;
mod worker;

use checks::*;
use pool::*;
use run::*;
use values::*;
use worker::*;

const ROLE: &str = "LARDER_CHAOS_ROLE";
const ARENA: &str = "LARDER_CHAOS_ARENA";
const DIR: &str = "LARDER_CHAOS_DIR";
const ID: &str = "LARDER_CHAOS_ID";
const SEED: &str = "LARDER_CHAOS_WORKER_SEED";
/// "1": counters and persistent keys exist (the roomy run); "0": they do not (pressure).
const COUNTERS: &str = "LARDER_CHAOS_COUNTERS";
/// How many data keys the run uses.
const KEYS: &str = "LARDER_CHAOS_WORKER_KEYS";

/// Data keys `d0..`: written, deleted and read by everyone; may be evicted. A run uses the
/// first `Run::ndata` of them.
const NDATA: u64 = 8000;
/// Counter keys `c0..`: only ever incremented, never expire.
const NCTR: u64 = 16;
/// Keys `p0..` written once by the harness before the chaos starts; read, never written.
const NPERSIST: u64 = 200;
/// The daemon's limit (LARDER_MAX_VALUE) and the longest value the workers write.
const MAX_VALUE: usize = 4096;
const LONGEST: usize = 3000;
/// A live worker silent this long is stuck.
const STALL: Duration = Duration::from_secs(10);
/// Worker kills between two daemon kills.
const DAEMON_EVERY: u64 = 15;

fn data_key(i: u64) -> Vec<u8> {
    format!("d{i}").into_bytes()
}
fn ctr_key(j: u64) -> Vec<u8> {
    format!("c{j}").into_bytes()
}
fn persist_key(i: u64) -> Vec<u8> {
    format!("p{i}").into_bytes()
}
fn fill_key(i: u64) -> Vec<u8> {
    format!("f{i}").into_bytes()
}

/// The entry point of every worker process. Without `LARDER_CHAOS_ROLE` (the normal test
/// run) it does nothing.
#[test]
fn worker_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let code = match run_worker(&role) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("WORKER {role} pid {} FAILED: {e}", std::process::id());
            3
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}
