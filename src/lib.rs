//! The larder daemon's library: the daemon itself (`daemon`, run by the `larderd` binary),
//! and what `larderd`, `cachectl` and the fuzz targets share — snapshots, metrics, the
//! systemd notifier, and size and duration units.

pub mod atomic_file;
pub mod daemon;
pub mod listen;
pub mod metrics;
pub mod notify;
pub mod snapshot;
pub mod units;
