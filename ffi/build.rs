//! Gives liblarder.so its soname, so programs linked against it ask for the ABI version
//! (`liblarder.so.0`) and a future incompatible one can be installed beside it.

/// The ABI version: bumped when a function's signature or a struct's layout changes.
const ABI: u32 = 0;

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblarder.so.{ABI}");
    println!("cargo:rerun-if-changed=build.rs");
}
