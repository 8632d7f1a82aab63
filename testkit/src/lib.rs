//! What larder's test suites share (`client/tests`, `tests/`, the bench): self-checking
//! values ([`values`]), worker processes re-executed from the test binary ([`reexec`]),
//! and a real `larderd` to run against ([`daemon`]).

pub mod daemon;
pub mod reexec;
pub mod values;

pub use daemon::Daemon;
pub use reexec::{files_starting, result_field, wait_for, worker, worker_logged};
pub use values::{check_value, fnv, make_value, min_len, spread_len};
