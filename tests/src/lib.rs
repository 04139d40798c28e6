//! Shared helpers of the QEMU integration tests. The images are built once by
//! `cargo xtask test` (see `TEST_IMAGES` in xtask) and found through
//! `BULKHEAD_TEST_IMAGES`; every boot has a hard timeout.

use std::path::PathBuf;
use std::time::Duration;

pub use xtask::qemu::{Machine, Run, UART0, UART1};

/// How long any single wait may take. Generous: CI machines have 2 cores and
/// QEMU emulates 4.
pub const WAIT: Duration = Duration::from_secs(60);

/// The prebuilt image `name`.
pub fn image(name: &str) -> PathBuf {
    let dir = std::env::var_os("BULKHEAD_TEST_IMAGES")
        .expect("BULKHEAD_TEST_IMAGES is not set: run these tests with `cargo xtask test`, which builds the images first");
    let p = PathBuf::from(dir).join(format!("{name}.img"));
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask test`",
        p.display()
    );
    p
}

/// Boot image `name` on `machine`, capturing its UARTs under a per-test directory.
pub fn boot(name: &str, test: &str, machine: &Machine) -> Run {
    let dir = xtask::target_dir()
        .join("bulkhead")
        .join("test-runs")
        .join(test);
    Run::start(machine, &image(name), &dir).expect("QEMU starts")
}

/// Lines of `text` that contain `needle`.
pub fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// Every heartbeat number a domain printed in `text`, in order (lines like
/// `<name>: heartbeat <n> ...`, possibly behind a `[<name>] ` tag).
pub fn heartbeats(text: &str, name: &str) -> Vec<u64> {
    let marker = format!("{name}: heartbeat ");
    text.lines()
        .filter_map(|l| {
            l.split_once(&marker)?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The highest heartbeat number a domain printed in `text`.
pub fn last_heartbeat(text: &str, name: &str) -> Option<u64> {
    heartbeats(text, name).into_iter().max()
}

/// Wait at most `timeout` for a line containing `needle`, failing the test
/// with both consoles otherwise.
pub fn expect_line(run: &mut Run, uart: &str, needle: &str, timeout: Duration) -> String {
    run.wait_line(uart, needle, timeout)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Wait until domain `name` prints a heartbeat above `n` on `uart`.
pub fn wait_heartbeat_after(run: &mut Run, uart: &str, name: &str, n: u64) -> u64 {
    let marker = format!("{name}: heartbeat ");
    let line = run
        .wait_for(uart, &format!("{name} heartbeat > {n}"), WAIT, |l| {
            l.split_once(&marker)
                .and_then(|(_, r)| r.split_whitespace().next()?.parse::<u64>().ok())
                .is_some_and(|h| h > n)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    line.split_once(&marker)
        .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
