//! Worker processes made by re-executing the test binary itself: the harness runs
//! `current_exe --exact <entry>`, where `<entry>` is a `#[test]` at the root of the test
//! crate that does nothing unless the harness's environment names a role for it. A real,
//! separate process (its own address space, its own registration) that a test can SIGKILL
//! at any instant, with no second binary to build.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The command that runs the test `entry` of this test binary alone, output not captured,
/// stdin closed. The caller adds the role's environment and where its output goes.
pub fn worker(entry: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", entry, "--nocapture", "--test-threads=1"])
        .stdin(Stdio::null());
    cmd
}

/// [`worker`] with stdout and stderr written to `out` and `err`.
pub fn worker_logged(entry: &str, out: &Path, err: &Path) -> Command {
    let mut cmd = worker(entry);
    cmd.stdout(std::fs::File::create(out).expect("worker stdout file"))
        .stderr(std::fs::File::create(err).expect("worker stderr file"));
    cmd
}

/// Waits up to `limit` for `child` to exit; `None` if it is still running.
pub fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The value of `field` in the `RESULT name=value …` line a worker printed; panics (failing
/// the test) when there is no such line or field.
pub fn result_field(stdout: &str, field: &str) -> u64 {
    // libtest prints "test <entry> ... " without a newline before the worker's output.
    let line = stdout
        .lines()
        .find_map(|l| l.find("RESULT ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no RESULT line in worker output:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == field)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field}= in {line:?}"))
}

/// The entries of `dir` whose name starts with `prefix`, sorted.
pub fn files_starting(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::result_field;

    #[test]
    fn result_field_reads_the_line_after_libtest_s_prefix() {
        let out = "running 1 test\ntest worker_entry ... RESULT ops=12 hits=3\nok\n";
        assert_eq!(result_field(out, "ops"), 12);
        assert_eq!(result_field(out, "hits"), 3);
    }

    #[test]
    #[should_panic(expected = "no misses=")]
    fn result_field_fails_on_a_missing_field() {
        result_field("RESULT ops=1", "misses");
    }
}
