//! A snapshot written by a thread of its own.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use larder::Cache;

use super::write::{write, Control, WriteReport};

/// A snapshot being written by a thread of its own, so the daemon's timers (sweeps,
/// watchdog, signals) keep running while it is rate-limited.
pub struct Job {
    /// The request counter when it started: every request up to it is served by it.
    pub req: u64,
    pub reason: &'static str,
    control: Arc<Control>,
    handle: JoinHandle<anyhow::Result<WriteReport>>,
}

impl Job {
    pub fn spawn(
        cache: &Cache,
        path: &Path,
        rate: u64,
        req: u64,
        reason: &'static str,
    ) -> anyhow::Result<Job> {
        let control = Arc::new(Control::default());
        let (cache, path, c) = (cache.clone(), path.to_owned(), control.clone());
        let handle = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || write(&cache, &path, rate, &c))
            .context("starting the snapshot thread")?;
        Ok(Job {
            req,
            reason,
            control,
            handle,
        })
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Lift the rate limit.
    pub fn hurry(&self) {
        // Relaxed: see Control.
        self.control.hurry.store(true, Ordering::Relaxed);
    }

    /// Abandon it at the next chunk.
    pub fn abort(&self) {
        // Relaxed: see Control.
        self.control.abort.store(true, Ordering::Relaxed);
    }

    pub fn join(self) -> anyhow::Result<WriteReport> {
        match self.handle.join() {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("the snapshot thread panicked")),
        }
    }
}
