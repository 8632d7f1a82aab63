//! The harness side: starting, killing and waiting for worker processes, and reading
//! what they report.

use super::*;

pub(crate) struct Worker {
    pub(crate) child: Child,
    pub(crate) name: String,
    pub(crate) out: PathBuf,
    pub(crate) err: PathBuf,
    /// We SIGKILLed it (a signal death is then expected).
    pub(crate) killed: bool,
}

impl Worker {
    pub(crate) fn output(&self) -> String {
        let o = std::fs::read_to_string(&self.out).unwrap_or_default();
        let e = std::fs::read_to_string(&self.err).unwrap_or_default();
        format!(
            "--- {} stdout:\n{o}--- {} stderr:\n{e}",
            self.name, self.name
        )
    }

    pub(crate) fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        self.killed = true;
    }
}

/// Every child of a test. Dropping it (also when an assertion fails) kills and reaps them.
pub(crate) struct Workers {
    pub(crate) dir: PathBuf,
    pub(crate) arena: PathBuf,
    pub(crate) list: Vec<Worker>,
    pub(crate) spawned: u32,
}

impl Workers {
    pub(crate) fn new(dir: &TempDir) -> Workers {
        Workers {
            dir: dir.0.clone(),
            arena: dir.arena(),
            list: Vec::new(),
            spawned: 0,
        }
    }

    /// Starts a worker and returns its index in `list`.
    pub(crate) fn spawn(&mut self, role: &str, seed: u64, extra: &[(&str, String)]) -> usize {
        self.spawned += 1;
        let name = format!("{role}#{}", self.spawned);
        let out = self.dir.join(format!("{name}.out"));
        let err = self.dir.join(format!("{name}.err"));
        let mut cmd = larder_testkit::worker_logged("worker_entry", &out, &err);
        cmd.env(ROLE, role)
            .env(ARENA, &self.arena)
            .env(SEED, seed.to_string());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn worker");
        self.list.push(Worker {
            child,
            name,
            out,
            err,
            killed: false,
        });
        self.list.len() - 1
    }

    /// Waits for worker `i` to exit, failing the test if it takes longer than `limit`
    /// (a hang).
    pub(crate) fn wait(&mut self, i: usize, limit: Duration) -> ExitStatus {
        if let Some(st) = larder_testkit::wait_for(&mut self.list[i].child, limit) {
            return st;
        }
        self.list[i].kill();
        let _ = self.list[i].child.wait();
        panic!(
            "worker {} still running after {limit:?} (hang?)\n{}",
            self.list[i].name,
            self.list[i].output()
        );
    }

    /// Waits for every worker and asserts that each exited 0.
    pub(crate) fn wait_all_ok(&mut self, limit: Duration) {
        for i in 0..self.list.len() {
            let st = self.wait(i, limit);
            assert!(
                st.success(),
                "worker {} ended with {st}\n{}",
                self.list[i].name,
                self.list[i].output()
            );
        }
    }

    /// Fails the test if worker `i` has exited by itself (not by our SIGKILL).
    pub(crate) fn assert_running(&mut self, i: usize) {
        if let Some(st) = self.list[i].child.try_wait().expect("try_wait") {
            panic!(
                "worker {} exited by itself with {st} (signal {:?})\n{}",
                self.list[i].name,
                st.signal(),
                self.list[i].output()
            );
        }
    }

    /// SIGKILLs worker `i` and reaps it; fails if it had already exited by itself.
    pub(crate) fn kill_and_reap(&mut self, i: usize) {
        self.assert_running(i);
        self.list[i].kill();
        let st = self.list[i].child.wait().expect("wait");
        // It may have exited 3 between the check and the kill: that is a failure too.
        assert!(
            st.signal() == Some(libc::SIGKILL),
            "worker {} ended with {st}, not by our SIGKILL\n{}",
            self.list[i].name,
            self.list[i].output()
        );
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.list {
            if let Ok(None) = w.child.try_wait() {
                w.kill();
            }
            let _ = w.child.wait();
        }
    }
}

pub(crate) use larder_testkit::result_field as parse_result;

/// Reads every key of the shared key space; returns how many are present. Panics on a value
/// that fails verification.
pub(crate) fn verify_all_keys(c: &Cache) -> u64 {
    let mut present = 0;
    for i in 0..NKEYS {
        let k = key(i);
        if let Some(v) = c.get(&k).unwrap() {
            if let Err(e) = check_value(&k, &v) {
                panic!("key {i}: {e} ({} bytes)", v.len());
            }
            present += 1;
        }
    }
    present
}

pub(crate) fn seed_base() -> u64 {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (s ^ u64::from(std::process::id())) & 0xffff_fff0
}
