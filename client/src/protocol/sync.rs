//! Atomics shim: std in production, loom under `cfg(larder_loom)`.

#[cfg(larder_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(not(larder_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64, Ordering};

/// One round of a bounded wait: spin briefly, then give the core away.
#[inline]
pub(crate) fn backoff(round: u32) {
    #[cfg(larder_loom)]
    {
        let _ = round;
        loom::thread::yield_now();
    }
    #[cfg(not(larder_loom))]
    {
        if round < 32 {
            std::hint::spin_loop();
        } else if round < 256 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }
}
