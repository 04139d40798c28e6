//! Isolation, proven by attack: the probe domain reads and writes another
//! domain's RAM, the partitioner's RAM, the interrupt controller and a UART
//! it does not own. Each access must be stopped and reported exactly once (by
//! the partitioner and by the probe's own abort handler), and the victims must
//! keep running with their memory intact. A misaligned access to a device
//! the partitioner emulates is refused the same way.

use bulkhead_tests::{
    boot, last_heartbeat, lines_with, wait_heartbeat_after, Machine, UART0, UART1, WAIT,
};

const TARGETS: &[(&str, &str)] = &[
    ("victim-ram", "0x48000000"),
    ("partitioner-ram", "0x40200000"),
    ("gic-its", "0x8080000"),
    ("foreign-uart", "0x9040000"),
];

#[test]
fn every_attack_aborts_once_and_the_victims_keep_running() {
    attacks_abort_once(3);
}

#[test]
fn every_attack_aborts_once_and_the_victims_keep_running_gicv2() {
    attacks_abort_once(2);
}

/// The probe's line for a `kind` ("read"/"write") access at `addr` shows
/// the abort a bus error gives: data abort at the current EL (EC 0x25), a
/// synchronous external abort (FSC 0x10), the access's direction, the
/// faulting address.
fn assert_bus_error(line: &str, kind: &str, addr: &str) {
    assert!(
        line.contains(": aborted esr="),
        "the probe saw an abort: {line}"
    );
    let esr = line
        .split("esr=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap();
    let esr = u64::from_str_radix(esr.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(esr >> 26, 0x25, "{line}");
    assert_eq!(esr & 0x3f, 0x10, "{line}");
    assert_eq!((esr >> 6) & 1, (kind == "write") as u64, "WnR {line}");
    assert!(line.ends_with(&format!("far={addr}")), "{line}");
}

fn attacks_abort_once(gic: u32) {
    let m = Machine {
        gic,
        ..Machine::default()
    };
    let mut run = boot("isolation", &format!("isolation-inject-v{gic}"), &m);
    run.wait_line(UART0, "probe: attacks done", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let hello_at_attack_end = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    let log = run.output(UART0);

    for (label, addr) in TARGETS {
        for kind in ["read", "write"] {
            let attempt = format!("probe: attack {kind} {label} @{addr}:");
            let lines = lines_with(&log, &attempt);
            assert_eq!(lines.len(), 1, "one report of {attempt}\n{log}");
            assert_bus_error(lines[0], kind, addr);
            // The partitioner reported it too, once, naming domain, address and access.
            let ipa = format!("IPA {addr} ");
            let reports: Vec<_> = lines_with(
                &log,
                "domain \"probe\" vCPU 0 core 1: access outside the domain",
            )
            .into_iter()
            .filter(|l| l.contains(&ipa) && l.contains(&format!("data abort, {kind}")))
            .collect();
            assert_eq!(
                reports.len(),
                1,
                "one partitioner report of {kind} {addr}\n{log}"
            );
            assert!(
                reports[0].ends_with("-> injected synchronous external abort"),
                "{}",
                reports[0]
            );
        }
    }
    let n = TARGETS.len() * 2;
    assert!(
        log.contains(&format!("probe: attacks done: {n} attempted, {n} aborted")),
        "{log}"
    );
    assert_eq!(
        lines_with(&log, "access outside the domain").len(),
        n,
        "no extra faults\n{log}"
    );
    assert!(lines_with(&log, "NOT STOPPED").is_empty(), "{log}");

    // The attacker survived its own aborts, and the victims never noticed.
    wait_heartbeat_after(&mut run, UART0, "probe", 1);
    wait_heartbeat_after(&mut run, UART1, "hello", hello_at_attack_end + 3);
    wait_heartbeat_after(&mut run, UART0, "ticker", 3);
    let hello = run.output(UART1);
    assert!(
        !hello.contains("CORRUPTED") && !run.output(UART0).contains("CORRUPTED"),
        "victim memory changed"
    );
    assert!(lines_with(&hello, "integrity=ok").len() > 3, "{hello}");
}

#[test]
fn stop_policy_stops_only_the_attacker() {
    let mut run = boot("stop-policy", "isolation-stop", &Machine::default());
    let stopped = run
        .wait_line(UART0, "domain \"probe\" stopped", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stopped.contains("fault policy is \"stop\""), "{stopped}");
    let hello_at_stop = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    let ticker_at_stop = last_heartbeat(&run.output(UART0), "ticker").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART1, "hello", hello_at_stop + 3);
    wait_heartbeat_after(&mut run, UART0, "ticker", ticker_at_stop + 3);
    let log = run.output(UART0);
    // Exactly one fault, reported with the stop, and the probe never ran on.
    let faults = lines_with(&log, "access outside the domain");
    assert_eq!(faults.len(), 1, "{log}");
    assert!(
        faults[0].contains("IPA 0x48000000") && faults[0].ends_with("-> stopping the domain"),
        "{}",
        faults[0]
    );
    assert!(
        lines_with(&log, "probe: attack").is_empty(),
        "the probe ran after its first fault:\n{log}"
    );
    assert!(lines_with(&log, "probe: heartbeat").is_empty(), "{log}");
}

/// Misaligned 4-byte accesses (`misaligned=` of probe, which maps each
/// target as Normal memory at stage 1 for them) to three devices the
/// partitioner emulates: its own PCI function's configuration space in its
/// virtual ECAM window (0x3e of 00:02.0, which the partitioner would
/// otherwise forward, misaligned, to the real ECAM: an alignment fault at
/// EL2 that took every domain down), its virtual GIC distributor and its
/// virtual console. Each is refused like an access outside the domain: a
/// synchronous external abort in the probe, a report of its own from the
/// partitioner; and everyone keeps running.
#[test]
fn misaligned_accesses_to_emulated_devices_abort_and_everyone_keeps_running() {
    const TARGETS: &[(&str, &str)] = &[
        ("vecam-edu", "0x3f01003e"),
        ("gicd", "0x8000102"),
        ("vconsole", "0x9000019"),
    ];
    let m = Machine {
        board: "qemu-virt".into(),
        extra: vec![
            "-device".into(),
            "edu,addr=02.0,dma_mask=0xffffffffff".into(),
        ],
        ..Machine::default()
    };
    let mut run = boot("misaligned", "misaligned", &m);
    run.wait_line(UART0, "probe: misaligned done", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let hello_at_attack_end = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    let log = run.output(UART0);
    for (label, addr) in TARGETS {
        for kind in ["read", "write"] {
            let attempt = format!("probe: misaligned {kind} {label} @{addr}:");
            let lines = lines_with(&log, &attempt);
            assert_eq!(lines.len(), 1, "one report of {attempt}\n{log}");
            // A bus error, not an alignment fault of its own: the access
            // did reach the partitioner.
            assert_bus_error(lines[0], kind, addr);
            let ipa = format!("IPA {addr} ");
            let reports: Vec<_> = lines_with(
                &log,
                "domain \"probe\" vCPU 0 core 1: misaligned 4-byte access to an emulated device #",
            )
            .into_iter()
            .filter(|l| l.contains(&ipa) && l.contains(&format!("data abort, {kind} of 4 bytes")))
            .collect();
            assert_eq!(
                reports.len(),
                1,
                "one partitioner report of {kind} {addr}\n{log}"
            );
            assert!(
                reports[0].ends_with("-> injected synchronous external abort"),
                "{}",
                reports[0]
            );
        }
    }
    let n = TARGETS.len() * 2;
    assert!(
        log.contains(&format!(
            "probe: misaligned done: {n} attempted, {n} aborted"
        )),
        "{log}"
    );
    assert_eq!(
        lines_with(&log, "misaligned 4-byte access").len(),
        n,
        "no extra reports\n{log}"
    );
    assert!(
        lines_with(&log, "access outside the domain").is_empty(),
        "{log}"
    );
    assert!(lines_with(&log, "NOT STOPPED").is_empty(), "{log}");
    // The partitioner, the attacker and the victim all keep running.
    wait_heartbeat_after(&mut run, UART0, "probe", 1);
    wait_heartbeat_after(&mut run, UART1, "hello", hello_at_attack_end + 3);
    let log = run.output(UART0);
    assert!(
        !log.contains("FATAL") && !log.contains("panic"),
        "{}",
        run.transcript()
    );
    assert!(
        !run.output(UART1).contains("CORRUPTED"),
        "victim memory changed"
    );
}
