//! Eviction ahead of demand from a thread of its own: what `larderd` runs so that writers
//! find room instead of evicting inline (docs/design.md §4.4).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::Cache;

/// Evictions per call before the thread looks at its stop flag again.
const BATCH: u32 = 16;
/// How long the thread sleeps when there was nothing to do: it starts at the shortest and
/// doubles while idle, so an idle cache costs a survey of the segment table every 20 ms and
/// a busy one is looked at every millisecond.
const IDLE_MIN: Duration = Duration::from_millis(1);
const IDLE_MAX: Duration = Duration::from_millis(20);

/// The running thread; stopping it (or dropping this) joins it, so that nothing it took is
/// left open when the handle goes.
#[doc(hidden)]
pub struct Evictor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Cache {
    /// Starts a thread that keeps `target_bytes` of room writers can take without evicting
    /// (see [`Cache::evict_ahead`]).
    #[doc(hidden)]
    pub fn spawn_evictor(&self, target_bytes: u64) -> std::io::Result<Evictor> {
        let stop = Arc::new(AtomicBool::new(false));
        let (cache, flag) = (self.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("evict-ahead".into())
            .spawn(move || {
                lower_priority();
                let mut idle = IDLE_MIN;
                // Relaxed: a stop request; the join is what synchronizes.
                while !flag.load(Ordering::Relaxed) {
                    match cache.evict_ahead(target_bytes, BATCH) {
                        Ok(0) => {
                            std::thread::sleep(idle);
                            idle = (idle * 2).min(IDLE_MAX);
                        }
                        Ok(_) => idle = IDLE_MIN,
                        // Only a handle that cannot register (observer, every slot taken)
                        // fails; writers then evict inline, as without this thread.
                        Err(_) => return,
                    }
                }
            })?;
        Ok(Evictor {
            stop,
            thread: Some(thread),
        })
    }
}

/// Nice 10 for this thread (Linux: nice values are per thread): when CPUs are short, the
/// writers it works for go first, and they evict inline if it falls behind.
fn lower_priority() {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    // SAFETY: setpriority on our own thread id; failure only leaves the priority as it was.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10) };
}

impl Evictor {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Evictor {
    fn drop(&mut self) {
        self.halt();
    }
}
