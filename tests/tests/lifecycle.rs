//! A domain's lifecycle, on GICv3 and GICv2: every restart gives it the
//! state of a cold boot, CPU_ON of its vCPU 0 follows PSCI, and a storm of
//! racing SYSTEM_RESETs is carried out to the restart limit, every one of
//! them, while a neighbour keeps running.

use std::time::Duration;

use bulkhead_tests::{
    boot, last_heartbeat, lines_with, wait_heartbeat_after, Machine, UART0, UART1,
};

fn wait_line(run: &mut bulkhead_tests::Run, uart: &str, needle: &str, secs: u64) -> String {
    bulkhead_tests::expect_line(run, uart, needle, Duration::from_secs(secs))
}

/// `fresh` (restart limit 2) boots three times: each boot must find every
/// register in its reset state and its SGI at default priority delivered,
/// although the run before left all of it dirty and an SGI active.
fn restart_gives_a_cold_state(gic: u32, cpu: &str) {
    let m = Machine {
        gic,
        cpu: cpu.into(),
        ..Machine::default()
    };
    let mut run = boot("lifecycle", &format!("reset-state-v{gic}-{cpu}"), &m);
    wait_line(
        &mut run,
        UART0,
        "domain \"fresh\" stopped: restart limit reached",
        90,
    );
    let log = run.output(UART0);
    let fresh: Vec<&str> = lines_with(&log, "fresh: reset-state: ");
    assert_eq!(
        lines_with(&log, "fresh: boot: start").len(),
        3,
        "first boot and 2 restarts\n{log}"
    );
    let dirty: Vec<&&str> = fresh
        .iter()
        .filter(|l| l.contains("reset-state: dirty ") || l.contains("dirty register(s)"))
        .collect();
    assert!(dirty.is_empty(), "state survived a restart: {dirty:#?}");
    assert_eq!(
        lines_with(&log, "fresh: reset-state: clean").len(),
        3,
        "{fresh:#?}"
    );
    // The memory the last run filled reads zero again (the partitioner
    // skips writing pages that already read zero, so this is its check).
    assert_eq!(
        lines_with(&log, "fresh: reset-state: ram clean").len(),
        3,
        "{fresh:#?}"
    );
    assert_eq!(
        lines_with(&log, "fresh: reset-state: ram filled").len(),
        3,
        "{fresh:#?}"
    );
    assert_eq!(
        lines_with(&log, "fresh: reset-state: sgi at default priority arrived").len(),
        3,
        "{fresh:#?}"
    );
    assert_eq!(
        lines_with(&log, "fresh: reset-state: dirtying every register").len(),
        3,
        "{fresh:#?}"
    );
    assert!(
        lines_with(&log, "could not leave").is_empty(),
        "the test must leave an SGI active: {fresh:#?}"
    );
    assert!(lines_with(&log, "UNEXPECTED").is_empty(), "{log}");
    let hb = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART1, "hello", hb + 1);
}

#[test]
fn restart_gives_the_state_of_a_cold_boot_gicv3() {
    restart_gives_a_cold_state(3, "cortex-a72");
}

#[test]
fn restart_gives_the_state_of_a_cold_boot_gicv2() {
    restart_gives_a_cold_state(2, "cortex-a72");
}

/// `-cpu max`: pointer authentication, more debug registers, newer EL1
/// features; the same registers must come back clean.
#[test]
fn restart_gives_the_state_of_a_cold_boot_gicv3_cpu_max() {
    restart_gives_a_cold_state(3, "max");
}

/// `pair`: CPU_ON of a running vCPU 0 is ALREADY_ON; after its CPU_OFF,
/// CPU_ON starts it at the caller's entry with the caller's context, over
/// live memory (a variable it set before is still there).
fn cpu_on_of_vcpu0_follows_psci(gic: u32) {
    let m = Machine {
        gic,
        ..Machine::default()
    };
    let mut run = boot("lifecycle", &format!("cpu-on-vcpu0-v{gic}"), &m);
    wait_line(
        &mut run,
        UART0,
        "pair: cpu-on-0: vcpu 1: cpu_on vcpu 0 while on -> -4",
        60,
    );
    wait_line(
        &mut run,
        UART0,
        "pair: cpu-on-0: vcpu 1: cpu_on vcpu 0 after its cpu_off -> 0",
        60,
    );
    wait_line(
        &mut run,
        UART0,
        "pair: cpu-on-0: vcpu 0 up at the secondary entry, context 0xc0de00000000002a, marker 0x5eed1234",
        60,
    );
    let hb = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART1, "hello", hb + 1);
    let log = run.output(UART0);
    // Its memory was not reloaded, nor its image entered again.
    assert_eq!(lines_with(&log, "pair: boot: start").len(), 1, "{log}");
    assert!(
        lines_with(&log, "domain \"pair\" restarting").is_empty(),
        "{log}"
    );
    assert!(
        lines_with(&log, "pair: cpu-on-0: timeout").is_empty(),
        "{log}"
    );
    assert!(lines_with(&log, "UNEXPECTED").is_empty(), "{log}");
    assert!(lines_with(&log, "error").is_empty(), "{log}");
}

#[test]
fn cpu_on_of_vcpu0_follows_psci_gicv3() {
    cpu_on_of_vcpu0_follows_psci(3);
}

#[test]
fn cpu_on_of_vcpu0_follows_psci_gicv2() {
    cpu_on_of_vcpu0_follows_psci(2);
}

/// Restarts in `storm`, from the partitioner's log.
const STORM_LIMIT: usize = 100;

/// `storm` resets itself from vCPU 1 while vCPU 0 resets it too or does
/// CPU_OFF, racing, at every boot: all 100 restarts must happen, each once
/// and in order, then the limit stops it. A restart must never wedge it
/// (neither running nor reported stopped), as it did when the power-on of a
/// first core still finishing its CPU_OFF met ALREADY_ON and was dropped.
fn restart_storm(gic: u32) {
    let m = Machine {
        gic,
        timeout: Duration::from_secs(300),
        ..Machine::default()
    };
    let mut run = boot("restart-storm", &format!("restart-storm-v{gic}"), &m);
    let hello_before = {
        wait_heartbeat_after(&mut run, UART1, "hello", 0);
        last_heartbeat(&run.output(UART1), "hello").unwrap_or(0)
    };
    let stopped = run.wait_line(UART0, "domain \"storm\" stopped:", Duration::from_secs(240));
    let log = run.output(UART0);
    let restarts: Vec<&str> = lines_with(&log, "domain \"storm\" restarting (");
    let stopped = stopped.unwrap_or_else(|e| {
        panic!(
            "storm wedged after {} restart(s): neither running nor stopped\n{}\n{e}",
            restarts.len(),
            log.lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert!(
        stopped.contains("stopped: restart limit reached"),
        "{stopped}"
    );
    // Every restart, once and in order.
    let numbers: Vec<usize> = restarts
        .iter()
        .filter_map(|l| {
            l.split_once("restarting (")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(
        numbers,
        (1..=STORM_LIMIT).collect::<Vec<_>>(),
        "every restart accounted for"
    );
    // Each boot (the first and one per restart) started its first vCPU.
    assert_eq!(
        lines_with(&log, "domain \"storm\": vCPU 0 starts on core").len(),
        STORM_LIMIT + 1,
        "{log}"
    );
    assert!(lines_with(&log, "failed").is_empty(), "{log}");
    assert!(lines_with(&log, "UNEXPECTED").is_empty(), "{log}");
    // The neighbour never stopped.
    let now = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    let after = wait_heartbeat_after(&mut run, UART1, "hello", now + 1);
    assert!(after > hello_before, "hello {hello_before} -> {after}");
    let beats = bulkhead_tests::heartbeats(&run.output(UART1), "hello");
    assert!(
        beats.windows(2).all(|w| w[1] == w[0] + 1),
        "hello heartbeat gap: {beats:?}"
    );
}

#[test]
fn restart_storm_reaches_its_limit_gicv3() {
    restart_storm(3);
}

#[test]
fn restart_storm_reaches_its_limit_gicv2() {
    restart_storm(2);
}
