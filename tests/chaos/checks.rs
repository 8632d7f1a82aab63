//! The harness side's checks: orphaned segments, counters, persistent keys, snapshots, the
//! daemon's liveness.

use super::*;

/// Reads `len` little-endian u64 words of the arena file at `off`.
pub(crate) fn file_u64(f: &File, off: u64) -> u64 {
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, off).expect("read the arena file");
    u64::from_le_bytes(b)
}

/// Segments left OPEN or EVICTING by a registration that is no longer in any process slot
/// (a leak: nobody would ever seal, park or free them), and segments in no valid state.
pub(crate) fn orphaned_segments(arena: &Path) -> Vec<String> {
    let f = File::open(arena).expect("open the arena file");
    let mut head = [0u8; PARAMS_LEN];
    f.read_exact_at(&mut head, 0).expect("read the header");
    let g = Params::from_bytes(&head)
        .geometry()
        .expect("a valid arena's geometry");
    let regs: HashSet<u32> = (0..g.nprocs)
        .map(|s| file_u64(&f, g.proc_off(s) + PS_REG) as u32)
        .filter(|&r| r != 0)
        .collect();
    let mut bad = Vec::new();
    for seg in 0..g.nsegs {
        let c = file_u64(&f, g.seg_ctl_off(seg));
        match ctl_state(c) {
            Some(s @ (SegState::Open | SegState::Evicting)) if !regs.contains(&ctl_owner(c)) => bad
                .push(format!(
                    "segment {seg} {s:?} owned by dead registration {}",
                    ctl_owner(c)
                )),
            None => bad.push(format!("segment {seg} has an invalid control word {c:#x}")),
            _ => {}
        }
    }
    bad
}

/// Checks every counter: acknowledged ≤ value ≤ attempted. Reads the acknowledgements
/// first and the attempts last, so increments racing with the check cannot fail it.
pub(crate) fn check_counters(c: &Cache, pool: &Pool, when: &str) -> (u64, u64) {
    let acked = pool.incrs("ack");
    let values: Vec<u64> = (0..NCTR)
        .map(|j| {
            let v = c
                .get(&ctr_key(j))
                .unwrap()
                .unwrap_or_else(|| panic!("LOST COUNTER {when}: c{j} is gone"));
            parse_counter(&v).unwrap()
        })
        .collect();
    let attempted = pool.incrs("att");
    for j in 0..NCTR as usize {
        assert!(
            values[j] >= acked[j],
            "LOST INCREMENTS {when}: c{j} = {}, but {} increments were acknowledged",
            values[j],
            acked[j]
        );
        assert!(
            values[j] <= attempted[j],
            "PHANTOM INCREMENTS {when}: c{j} = {}, but only {} were attempted",
            values[j],
            attempted[j]
        );
    }
    (acked.iter().sum(), values.iter().sum())
}

pub(crate) fn check_persistent(c: &Cache, when: &str) {
    for i in 0..NPERSIST {
        let k = persist_key(i);
        let v = c
            .get(&k)
            .unwrap()
            .unwrap_or_else(|| panic!("{when}: persistent key p{i} is gone"));
        check_any(&k, &v).unwrap_or_else(|e| panic!("{when}: {e}"));
    }
}

/// Loads a copy of a snapshot file into a fresh arena by a second larderd and checks what
/// it loaded: every item verifies, counters are at most what was attempted, and every
/// persistent key is there. Returns the number of items loaded.
pub(crate) fn check_snapshot(
    dir: &Path,
    snap: &Path,
    n: u64,
    attempted: &[u64],
    roomy: bool,
) -> u64 {
    let sub = dir.join(format!("load-{n}"));
    std::fs::create_dir_all(&sub).unwrap();
    let copy = sub.join("snapshot");
    std::fs::copy(snap, &copy).unwrap();
    let arena = sub.join("arena");
    let copy_s = copy.to_str().unwrap().to_owned();
    let mut d = Daemon::spawn(
        env!("CARGO_BIN_EXE_larderd"),
        &sub,
        &arena,
        "load",
        &[
            ("LARDER_SNAPSHOT", copy_s.as_str()),
            ("LARDER_SNAPSHOT_INTERVAL", "0"),
        ],
    );
    if let Err(st) = d.ready() {
        panic!("the snapshot loader exited with {st}; log:\n{}", d.log());
    }
    let log = d.log();
    assert!(
        log.contains("snapshot loaded") && !log.contains("damaged"),
        "SNAPSHOT left by a killed daemon does not load (copy kept in {}):\n{log}",
        sub.display()
    );
    let c = Cache::open(&arena).unwrap();
    let mut items = 0;
    let mut persist = 0;
    for e in c.entries() {
        check_any(&e.key, &e.value).unwrap_or_else(|err| panic!("in a snapshot: {err}"));
        if let Some(j) = e.key.strip_prefix(b"c") {
            let j: usize = String::from_utf8_lossy(j).parse().unwrap();
            let v = parse_counter(&e.value).unwrap();
            assert!(
                v <= attempted[j],
                "PHANTOM INCREMENTS in a snapshot: c{j} = {v} > {} attempted",
                attempted[j]
            );
        }
        if e.key.starts_with(b"p") {
            persist += 1;
        }
        items += 1;
    }
    if roomy {
        assert_eq!(persist, NPERSIST, "persistent keys missing from a snapshot");
    }
    drop(c);
    d.kill();
    drop(d);
    let _ = std::fs::remove_dir_all(&sub);
    items
}

/// The daemon's heartbeat: its metrics file, rewritten every sweep (100 ms).
pub(crate) struct DaemonWatch {
    pub(crate) path: PathBuf,
    pub(crate) seen: Option<SystemTime>,
    pub(crate) since: Instant,
}

impl DaemonWatch {
    pub(crate) fn new(path: &Path) -> DaemonWatch {
        DaemonWatch {
            path: path.to_owned(),
            seen: None,
            since: Instant::now(),
        }
    }

    /// Fails the test if the daemon has not completed a sweep for [`STALL`].
    pub(crate) fn check(&mut self, c: &Cache, arena: &Path) {
        let m = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if m != self.seen {
            self.seen = m;
            self.since = Instant::now();
        } else if self.since.elapsed() > STALL {
            panic!(
                "STALL: larderd has not swept (nor written its metrics file) for {:?}\n{}\n{}",
                self.since.elapsed(),
                daemon_stacks(c),
                segment_table(arena)
            );
        }
    }
}

pub(crate) fn seed_base() -> u64 {
    if let Ok(s) = std::env::var("LARDER_CHAOS_SEED") {
        return s.parse().expect("LARDER_CHAOS_SEED is a number");
    }
    let s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    s ^ u64::from(std::process::id())
}
