//! liblarder: the C ABI of the larder shared-memory cache, for every language that can call
//! C (Python, PHP, LuaJIT in nginx, Ruby, Go, C itself). The declarations are in
//! `include/larder.h` (and `include/larder_ffi.h`, the same without preprocessor lines, for
//! LuaJIT's `ffi.cdef` and PHP's `FFI::cdef`), generated from this crate by cbindgen;
//! `tests/header.rs` fails when they are stale.
//!
//! One contract for every function, stated once in the header's preamble: pointers are
//! checked for NULL (an error code, never a crash) and handles for their magic word; what
//! cannot be checked (a dangling pointer, a length longer than its buffer) is undefined
//! behaviour, as in any C API. No panic crosses the boundary: it becomes
//! `LARDER_E_INTERNAL` with a message in `larder_last_error()`.
// Every exported function shares the one `Safety` contract above, written in the header.
#![allow(clippy::missing_safety_doc)]

mod args;
mod handle;
mod items;
mod keys;
mod lease;
mod stats;
mod status;

pub use handle::*;
pub use items::*;
pub use keys::*;
pub use lease::*;
pub use stats::*;
pub use status::*;
