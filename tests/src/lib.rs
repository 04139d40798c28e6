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

/// The board isolation demo (`configs/<board>/isolation.dts`: `probe` on
/// core 1 attacks `targets`, `hello` and `ticker` are its victims, all on
/// the virtual console): every attack aborted once at the address and was
/// reported once by the partitioner, nothing else faulted, and the
/// attacker and both victims keep running, the victims' memory intact.
pub fn check_board_isolation(run: &mut Run, targets: &[(&str, &str)]) {
    run.wait_line(UART0, "probe: attacks done", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = run.output(UART0);
    for (label, addr) in targets {
        for kind in ["read", "write"] {
            let attempt = format!("probe: attack {kind} {label} @{addr}:");
            let lines = lines_with(&log, &attempt);
            assert_eq!(lines.len(), 1, "one report of {attempt}\n{log}");
            assert!(
                lines[0].contains(": aborted esr=") && lines[0].ends_with(&format!("far={addr}")),
                "the probe saw an abort at the address: {}",
                lines[0]
            );
            let reports: Vec<_> = lines_with(
                &log,
                "domain \"probe\" vCPU 0 core 1: access outside the domain",
            )
            .into_iter()
            .filter(|l| {
                l.contains(&format!("IPA {addr} ")) && l.contains(&format!("data abort, {kind}"))
            })
            .collect();
            assert_eq!(reports.len(), 1, "one report of {kind} {addr}\n{log}");
        }
    }
    let n = targets.len() * 2;
    assert!(
        log.contains(&format!("probe: attacks done: {n} attempted, {n} aborted")),
        "{log}"
    );
    assert_eq!(
        lines_with(&log, "access outside the domain").len(),
        n,
        "no other fault\n{log}"
    );
    // The attacker survived, and the victims never noticed.
    let hello = last_heartbeat(&log, "hello").unwrap_or(0);
    let ticker = last_heartbeat(&log, "ticker").unwrap_or(0);
    wait_heartbeat_after(run, UART0, "probe", 1);
    wait_heartbeat_after(run, UART0, "hello", hello + 3);
    wait_heartbeat_after(run, UART0, "ticker", ticker + 3);
    let log = run.output(UART0);
    assert!(!log.contains("CORRUPTED"), "victim memory changed\n{log}");
    let beats = lines_with(&log, "hello: heartbeat");
    assert!(
        !beats.is_empty() && beats.iter().all(|l| l.contains("integrity=ok")),
        "{log}"
    );
}

/// A board's interrupt test domain (`tests/configs/<board>-irq.dts`: `irq`
/// on two cores with `psci smp sgi=10 sgi-burst timer=20`, `fresh`
/// restarting twice with `reset-state`): every result line arrives on the
/// partitioner console, on GIC version `gic`, and each of fresh's three
/// boots finds the state of a cold boot. Returns the console so far.
pub fn check_board_interrupts(run: &mut Run, gic: u32) -> String {
    for needle in [
        &format!("irq: gic: v{gic} ")[..],
        "irq: psci: version 0x10001",
        "irq: psci: cpu_suspend standby -> 0",
        "irq: smp: 2 vcpus up",
        "irq: sgi: 10 round trips",
        "irq: sgi-burst: 12 of 12 received, 12 deliveries",
        "irq: sgi-burst: vcpu 1: 12 of 12 received, 12 deliveries",
        "irq: timer: 20 interrupts, latency ticks",
        "domain \"fresh\" stopped: restart limit reached",
    ] {
        expect_line(run, UART0, needle, WAIT);
    }
    let log = run.output(UART0);
    assert_eq!(lines_with(&log, "fresh: boot: start").len(), 3, "{log}");
    assert_eq!(
        lines_with(&log, "fresh: reset-state: clean").len(),
        3,
        "{log}"
    );
    assert!(lines_with(&log, "reset-state: dirty ").is_empty(), "{log}");
    assert!(lines_with(&log, "UNEXPECTED").is_empty(), "{log}");
    assert!(lines_with(&log, "irq: sgi: timeout").is_empty(), "{log}");
    log
}
