//! The serving loop: sweeps, reaping, evicting ahead, snapshots on request, interval and
//! signal, status and metrics, until a stop signal.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use larder::Cache;

use super::*;
use crate::metrics::{self, DaemonMetrics};
use crate::notify::Notifier;
use crate::snapshot::{unix_now, Job};

/// How often STATUS= is sent to systemd.
pub(crate) const STATUS_EVERY: Duration = Duration::from_secs(10);
/// How often the snapshot request word in the arena header is polled.
pub(crate) const REQUEST_POLL: Duration = Duration::from_millis(100);
/// Segments visited per sweep step.
pub(crate) const SWEEP_SEGMENTS: u32 = 64;

/// The running daemon's state.
pub(crate) struct Daemon {
    pub(crate) args: Args,
    pub(crate) cache: Cache,
    pub(crate) snapshot: Option<PathBuf>,
    pub(crate) notifier: Notifier,
    pub(crate) signals: Signals,
    pub(crate) metrics: DaemonMetrics,
    /// The memcached-protocol listener, when `--listen-memcached` asked for one.
    pub(crate) listener: Option<crate::listen::Listener>,
    /// The snapshot being written, if any.
    pub(crate) job: Option<Job>,
    /// A snapshot is wanted (for this reason) and starts as soon as none is running.
    pub(crate) want: Option<&'static str>,
    /// Requests up to this one failed; they are not retried (a new request is).
    pub(crate) failed_req: u64,
    /// Requests up to this one were answered with "no snapshot configured" in the log.
    pub(crate) warned_req: u64,
    pub(crate) next_interval: Option<Instant>,
}

impl Daemon {
    /// Runs until a stop signal; returns its number.
    pub(crate) fn serve(&mut self) -> anyhow::Result<i32> {
        let start = Instant::now();
        let watchdog = self.notifier.watchdog_interval();
        let (mut next_sweep, mut next_status, mut next_wd, mut next_poll) =
            (start, start, start, start);
        self.reset_interval(start);
        loop {
            let now = Instant::now();
            if now >= next_sweep {
                self.maintenance()?;
                next_sweep = now + self.args.sweep_interval;
            }
            if let Some(w) = watchdog.filter(|_| now >= next_wd) {
                self.notifier.send("WATCHDOG=1");
                next_wd = now + w;
            }
            if now >= next_status {
                self.send_status();
                next_status = now + STATUS_EVERY;
            }
            self.poll_job();
            if now >= next_poll {
                self.poll_requests();
                next_poll = now + REQUEST_POLL;
            }
            if self.next_interval.is_some_and(|t| now >= t) {
                self.want.get_or_insert("interval");
                self.next_interval = None;
            }
            self.start_wanted();

            let mut deadline = next_sweep.min(next_status).min(next_poll);
            if watchdog.is_some() {
                deadline = deadline.min(next_wd);
            }
            if let Some(t) = self.next_interval {
                deadline = deadline.min(t);
            }
            match self
                .signals
                .wait(deadline.saturating_duration_since(Instant::now()))?
            {
                Some(Sig::Stop(s)) => return Ok(s),
                Some(Sig::Snapshot) => self.snapshot_wanted("SIGUSR1"),
                None => {}
            }
        }
    }

    /// Sweep expired items, reap dead clients, write the metrics file.
    pub(crate) fn maintenance(&mut self) -> anyhow::Result<()> {
        let r = self.cache.sweep_expired(SWEEP_SEGMENTS)?;
        let reaped = self.cache.reclaim_dead_clients()?;
        self.metrics.swept_segments += u64::from(r.segments);
        self.metrics.freed_segments += u64::from(r.freed);
        self.metrics.reaped_processes += u64::from(reaped);
        if r.freed > 0 || reaped > 0 {
            tracing::debug!(
                segments = r.segments,
                freed = r.freed,
                reaped,
                "maintenance"
            );
        }
        if let Some(l) = &self.listener {
            self.metrics.listener = Some(l.metrics());
        }
        if let Some(path) = &self.args.metrics_textfile {
            let text = metrics::render(
                &self.cache.stats(),
                &self.cache.info(),
                &self.metrics,
                unix_now(),
            );
            if let Err(e) = metrics::write_atomic(path, &text) {
                tracing::warn!(error = %e, file = %path.display(), "cannot write the metrics file");
            }
        }
        Ok(())
    }

    pub(crate) fn send_status(&self) {
        let s = self.cache.stats();
        let snap = match self.metrics.snapshot_time {
            0 => String::new(),
            t => format!(
                ", last snapshot {} ago",
                human_age(unix_now().saturating_sub(t))
            ),
        };
        self.notifier.send(&format!(
            "STATUS={} items, hit ratio {:.1}%, {} clients{snap}",
            s.items,
            s.totals.hit_ratio() * 100.0,
            s.processes
                .iter()
                .filter(|p| p.pid != std::process::id())
                .count()
        ));
    }

    pub(crate) fn reset_interval(&mut self, from: Instant) {
        let i = self.args.snapshot_interval;
        self.next_interval = (self.snapshot.is_some() && !i.is_zero()).then(|| from + i);
    }

    pub(crate) fn snapshot_wanted(&mut self, reason: &'static str) {
        if self.snapshot.is_some() {
            self.want.get_or_insert(reason);
        } else {
            tracing::warn!(
                trigger = reason,
                "snapshot requested but none is configured (--snapshot)"
            );
        }
    }

    /// `cachectl snapshot` increments the request word; completed requests are acknowledged.
    pub(crate) fn poll_requests(&mut self) {
        let (req, ack, _, _) = self.cache.snapshot_status();
        if req <= ack {
            return;
        }
        if self.snapshot.is_none() {
            if req > self.warned_req {
                tracing::warn!(
                    request = req,
                    "snapshot requested through the arena but none is configured (--snapshot)"
                );
                self.warned_req = req;
            }
            return;
        }
        if req <= self.failed_req || self.job.as_ref().is_some_and(|j| j.req >= req) {
            return;
        }
        self.want.get_or_insert("request");
    }

    pub(crate) fn start_wanted(&mut self) {
        let (Some(reason), None, Some(path)) = (self.want, &self.job, &self.snapshot) else {
            return;
        };
        self.want = None;
        let req = self.cache.snapshot_status().0;
        match Job::spawn(&self.cache, path, self.args.snapshot_rate, req, reason) {
            Ok(job) => {
                tracing::debug!(trigger = reason, "snapshot started");
                self.job = Some(job);
            }
            Err(e) => {
                self.failed(req, reason, &e);
            }
        }
    }

    pub(crate) fn poll_job(&mut self) {
        if self.job.as_ref().is_some_and(|j| j.is_finished()) {
            let job = self.job.take().expect("checked");
            self.finish(job);
        }
    }

    pub(crate) fn finish(&mut self, job: Job) {
        let (req, reason) = (job.req, job.reason);
        match job.join() {
            Ok(r) => {
                self.cache.ack_snapshot(req, r.created, r.bytes);
                let m = &mut self.metrics;
                m.snapshots += 1;
                m.snapshot_time = r.created;
                m.snapshot_bytes = r.bytes;
                m.snapshot_items = r.items;
                m.snapshot_seconds = r.elapsed.as_secs_f64();
                tracing::info!(
                    trigger = reason,
                    items = r.items,
                    bytes = r.bytes,
                    ms = r.elapsed.as_millis() as u64,
                    "snapshot written"
                );
            }
            Err(e) => self.failed(req, reason, &e),
        }
        self.reset_interval(Instant::now());
    }

    pub(crate) fn failed(&mut self, req: u64, reason: &str, e: &anyhow::Error) {
        self.metrics.snapshot_failures += 1;
        self.failed_req = self.failed_req.max(req);
        tracing::error!(trigger = reason, error = %format!("{e:#}"), "snapshot failed; the previous one (if any) is intact");
    }

    /// Finishes a running snapshot without rate limit, then writes the final one.
    pub(crate) fn stop(&mut self) {
        self.notifier.send("STOPPING=1");
        let Some(path) = self.snapshot.clone() else {
            return;
        };
        if let Some(job) = self.job.take() {
            job.hurry();
            self.wait_for(&job);
            self.finish(job);
        }
        self.notifier.send("STATUS=writing the final snapshot");
        let req = self.cache.snapshot_status().0;
        match Job::spawn(&self.cache, &path, 0, req, "exit") {
            Ok(job) => {
                self.wait_for(&job);
                self.finish(job);
            }
            Err(e) => self.failed(req, "exit", &e),
        }
    }

    /// Waits for a snapshot while keeping the watchdog fed and systemd's stop timeout
    /// extended; a second stop signal abandons it.
    pub(crate) fn wait_for(&self, job: &Job) {
        let mut next_ping = Instant::now();
        let mut aborted = false;
        while !job.is_finished() {
            if Instant::now() >= next_ping {
                self.notifier
                    .send("WATCHDOG=1\nEXTEND_TIMEOUT_USEC=30000000");
                next_ping = Instant::now() + Duration::from_secs(5);
            }
            match self.signals.wait(Duration::from_millis(50)) {
                Ok(Some(Sig::Stop(s))) if !aborted => {
                    tracing::warn!(
                        signal = s,
                        "second stop signal: abandoning the snapshot (the previous one stays)"
                    );
                    job.abort();
                    aborted = true;
                }
                _ => {}
            }
        }
    }
}

pub(crate) fn human_age(s: u64) -> String {
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}
