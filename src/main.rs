//! `larderd`: see the `larderd::daemon` module.

fn main() -> std::process::ExitCode {
    larderd::daemon::main()
}
