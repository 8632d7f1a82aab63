//! The harness side: the temporary directory, and the pool of worker processes it starts,
//! kills and respawns.

use super::*;

/// The run's scratch directory (`.0` is its path): removed on drop, kept after a failure
/// when `LARDER_CHAOS_KEEP` is set.
pub(crate) struct TempDir(pub(crate) PathBuf, Option<tempfile::TempDir>);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let d = tempfile::Builder::new()
            .prefix(&format!("larder-chaos-{tag}-"))
            .tempdir()
            .expect("create temp dir");
        TempDir(d.path().to_owned(), Some(d))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("LARDER_CHAOS_KEEP").is_some() {
            if let Some(d) = self.1.take() {
                eprintln!("keeping {}", d.keep().display());
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    Writer,
    Reader,
}

pub(crate) struct Worker {
    pub(crate) child: Child,
    pub(crate) role: Role,
    pub(crate) id: u64,
    /// Never killed: sees every other process die around it for the whole run.
    pub(crate) sentinel: bool,
    pub(crate) hb: [u64; 4],
    pub(crate) last_progress: Instant,
}

pub(crate) struct Pool {
    pub(crate) dir: PathBuf,
    pub(crate) arena: PathBuf,
    pub(crate) seed: u64,
    /// The roomy run: workers use counters and persistent keys.
    pub(crate) counters: bool,
    pub(crate) ndata: u64,
    pub(crate) next_id: u64,
    pub(crate) live: Vec<Worker>,
    /// Counter increments of workers already reaped: (attempted, acknowledged) per counter.
    pub(crate) done_att: [u64; NCTR as usize],
    pub(crate) done_ack: [u64; NCTR as usize],
    /// Progress of reaped workers: ops, verified reads, writes, incrs.
    pub(crate) done_hb: [u64; 4],
    pub(crate) spawned: u64,
    /// For the failure messages: the cache's counters when a worker fails.
    pub(crate) diag: Option<Cache>,
}

impl Pool {
    pub(crate) fn path(&self, name: &str, id: u64) -> PathBuf {
        self.dir.join(format!("{name}-{id}"))
    }

    pub(crate) fn spawn(&mut self, role: Role, sentinel: bool) {
        let id = self.next_id;
        self.next_id += 1;
        self.spawned += 1;
        let role_name = match role {
            Role::Writer => "writer",
            Role::Reader => "reader",
        };
        let child = larder_testkit::worker_logged(
            "worker_entry",
            &self.path("out", id),
            &self.path("err", id),
        )
        .env(ROLE, role_name)
        .env(ARENA, &self.arena)
        .env(DIR, &self.dir)
        .env(ID, id.to_string())
        .env(SEED, (self.seed ^ (id << 20)).to_string())
        .env(COUNTERS, if self.counters { "1" } else { "0" })
        .env(KEYS, self.ndata.to_string())
        .spawn()
        .expect("spawn worker");
        self.live.push(Worker {
            child,
            role,
            id,
            sentinel,
            hb: [0; 4],
            last_progress: Instant::now(),
        });
    }

    pub(crate) fn output(&self, id: u64) -> String {
        let o = std::fs::read_to_string(self.path("out", id)).unwrap_or_default();
        let e = std::fs::read_to_string(self.path("err", id)).unwrap_or_default();
        let st = self.diag.as_ref().map(|c| c.stats());
        format!("--- worker {id} stdout:\n{o}--- worker {id} stderr:\n{e}--- cache stats: {st:?}")
    }

    pub(crate) fn read_hb(&self, id: u64) -> [u64; 4] {
        let mut b = [0u8; 32];
        match File::open(self.path("hb", id)) {
            Ok(f) if f.read_exact_at(&mut b, 0).is_ok() => {
                std::array::from_fn(|i| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap()))
            }
            _ => [0; 4],
        }
    }

    /// Per-counter event counts of one worker's append file.
    pub(crate) fn count_events(&self, name: &str, id: u64) -> [u64; NCTR as usize] {
        let mut n = [0u64; NCTR as usize];
        for b in std::fs::read(self.path(name, id)).unwrap_or_default() {
            n[usize::from(b)] += 1;
        }
        n
    }

    /// Fails the test if a worker exited by itself or stalled; records progress.
    pub(crate) fn check(&mut self) {
        let now = Instant::now();
        for i in 0..self.live.len() {
            let id = self.live[i].id;
            if let Some(st) = self.live[i].child.try_wait().expect("try_wait") {
                panic!(
                    "worker {id} ({:?}) exited by itself with {st}\n{}",
                    self.live[i].role,
                    self.output(id)
                );
            }
            let hb = self.read_hb(id);
            let w = &mut self.live[i];
            if hb[0] != w.hb[0] {
                w.hb = hb;
                w.last_progress = now;
            } else if now.duration_since(w.last_progress) > STALL {
                let (role, silent) = (w.role, now.duration_since(w.last_progress));
                panic!(
                    "STALL: worker {id} ({role:?}) made no progress for {silent:?} (ops {})\n{}",
                    hb[0],
                    self.output(id)
                );
            }
        }
    }

    /// Folds a reaped worker's files into the totals and removes them.
    pub(crate) fn retire(&mut self, id: u64) {
        let hb = self.read_hb(id);
        for (t, x) in self.done_hb.iter_mut().zip(hb) {
            *t += x;
        }
        let att = self.count_events("att", id);
        let ack = self.count_events("ack", id);
        for j in 0..NCTR as usize {
            self.done_att[j] += att[j];
            self.done_ack[j] += ack[j];
        }
        for name in ["out", "err", "hb", "att", "ack"] {
            let _ = std::fs::remove_file(self.path(name, id));
        }
    }

    /// SIGKILLs live worker `i` and respawns its role.
    pub(crate) fn kill_and_respawn(&mut self, i: usize) {
        let mut w = self.live.swap_remove(i);
        if let Some(st) = w.child.try_wait().expect("try_wait") {
            panic!(
                "worker {} ({:?}) exited by itself with {st}\n{}",
                w.id,
                w.role,
                self.output(w.id)
            );
        }
        let _ = w.child.kill();
        let st = w.child.wait().expect("wait");
        assert_eq!(
            st.signal(),
            Some(libc::SIGKILL),
            "worker {} ended with {st}, not by our SIGKILL\n{}",
            w.id,
            self.output(w.id)
        );
        self.retire(w.id);
        self.spawn(w.role, false);
    }

    /// Acknowledged (`ack`) or attempted (`att`) increments so far, per counter.
    pub(crate) fn incrs(&self, name: &str) -> [u64; NCTR as usize] {
        let mut n = if name == "ack" {
            self.done_ack
        } else {
            self.done_att
        };
        for w in &self.live {
            let m = self.count_events(name, w.id);
            for j in 0..NCTR as usize {
                n[j] += m[j];
            }
        }
        n
    }

    /// Asks every worker to stop and waits for each to exit 0 (a stuck one fails the test).
    pub(crate) fn stop_all(&mut self) {
        File::create(self.dir.join("stop")).expect("stop file");
        let deadline = Instant::now() + STALL;
        for w in &mut self.live {
            loop {
                if let Some(st) = w.child.try_wait().expect("try_wait") {
                    if !st.success() {
                        let id = w.id;
                        panic!(
                            "worker {id} ended with {st} when asked to stop\n{}",
                            std::fs::read_to_string(self.dir.join(format!("err-{id}")))
                                .unwrap_or_default()
                        );
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = w.child.kill();
                    panic!(
                        "STALL: worker {} did not stop within {STALL:?}\n{}",
                        w.id,
                        std::fs::read_to_string(self.dir.join(format!("err-{}", w.id)))
                            .unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for w in std::mem::take(&mut self.live) {
            self.retire(w.id);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in &mut self.live {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}
