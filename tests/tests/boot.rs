//! The isolation demo configuration boots under QEMU virt and every domain gets
//! exactly the cores and memory its config gives it; broken configurations
//! and damaged images are refused at boot, with the reason on the console.

use bulkhead_tests::{
    boot, last_heartbeat, lines_with, wait_heartbeat_after, Machine, UART0, UART1, WAIT,
};

fn isolation_boot_reports_resources(cpu: &str, gic: u32) {
    let m = Machine {
        cpu: cpu.into(),
        gic,
        ..Machine::default()
    };
    let mut run = boot("isolation", &format!("default-{cpu}-v{gic}"), &m);
    // hello owns the second UART outright; its first line describes what it got.
    let hello = run
        .wait_line(UART1, "hello: domain cpus=", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        hello.trim(),
        "hello: domain cpus=1 memory=0x40000000+0x200000"
    );
    // ticker and probe share the partitioner console through their virtual UARTs.
    let ticker = run
        .wait_line(UART0, "[ticker] ticker: domain cpus=", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ticker.trim(),
        "[ticker] ticker: domain cpus=2 memory=0x40000000+0x400000"
    );
    let probe = run
        .wait_line(UART0, "[probe] probe: domain cpus=", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        probe.trim(),
        "[probe] probe: domain cpus=1 memory=0x40000000+0x200000"
    );
    wait_heartbeat_after(&mut run, UART1, "hello", 2);
    wait_heartbeat_after(&mut run, UART0, "ticker", 2);
    let log = run.output(UART0);
    for d in ["hello", "probe", "ticker"] {
        assert_eq!(
            lines_with(&log, &format!("domain \"{d}\": vCPU 0 starts on core")).len(),
            1,
            "{d} started once\n{log}"
        );
    }
    // Before any domain started, the firmware walked every domain's stage-2
    // tables against its plan: 2 + 2 + 4 MiB of RAM and hello's UART page
    // (and, on GICv2, each domain's two pages of the virtual CPU interface).
    let verified = lines_with(&log, "bulkhead: stage 2 verified: ");
    let expected = if gic == 2 {
        "bulkhead: stage 2 verified: 3 domains, 2055 pages, no page shared but the GICv2 virtual CPU interface ("
    } else {
        "bulkhead: stage 2 verified: 3 domains, 2049 pages, no page shared ("
    };
    assert!(
        verified.len() == 1 && verified[0].starts_with(expected),
        "expected one {expected:?} line:\n{log}"
    );
    let first_start = log.find("vCPU 0 starts on core").unwrap_or(0);
    assert!(
        log.find("stage 2 verified")
            .is_some_and(|at| at < first_start),
        "verified before any domain starts:\n{log}"
    );
    // Core 3 belongs to ticker but stays off until ticker asks for it.
    assert!(lines_with(&log, "vCPU 1 starts").is_empty(), "{log}");
    // GICv2: each started core reports the CPU interface it read from the
    // hardware (GICD_ITARGETSR0..7); QEMU wires core n to interface n.
    let interfaces = lines_with(&log, "GICv2 CPU interface");
    if gic == 2 {
        for c in 0..3 {
            assert_eq!(
                lines_with(
                    &log,
                    &format!("bulkhead: core {c}: GICv2 CPU interface {c}")
                )
                .len(),
                1,
                "core {c}\n{log}"
            );
        }
        assert_eq!(interfaces.len(), 3, "core 3 stays off\n{log}");
    } else {
        assert!(interfaces.is_empty(), "{log}");
    }
    // Nothing the partitioner calls an error, and no domain writes on another's UART.
    assert!(
        lines_with(&log, "error").is_empty() && lines_with(&log, "FATAL").is_empty(),
        "{log}"
    );
    assert!(!run.output(UART1).contains("ticker") && !run.output(UART1).contains("probe"));
}

#[test]
fn isolation_config_boots_on_cortex_a72() {
    isolation_boot_reports_resources("cortex-a72", 3);
}

#[test]
fn isolation_config_boots_on_max() {
    isolation_boot_reports_resources("max", 3);
}

#[test]
fn isolation_config_boots_on_gicv2() {
    isolation_boot_reports_resources("cortex-a72", 2);
}

fn refused(image: &str, expect: &[&str]) {
    refused_on(image, image, &Machine::default(), expect)
}

fn refused_on(image: &str, test: &str, m: &Machine, expect: &[&str]) {
    let mut run = boot(image, test, m);
    run.wait_line(UART0, "refusing to start any domain", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = run.output(UART0);
    for e in expect {
        assert!(log.contains(e), "expected {e:?} on the console:\n{log}");
    }
    // Give a wrongly started domain time to show itself, then prove none did.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let log = run.output(UART0);
    assert!(
        lines_with(&log, "starts on core").is_empty(),
        "a domain started:\n{log}"
    );
    assert!(
        run.output(UART1).is_empty(),
        "a domain printed:\n{}",
        run.output(UART1)
    );
    assert!(!log.contains("FATAL") && !log.contains("panic"), "{log}");
}

/// The board lists four cores; QEMU started with three has no fourth. The
/// isolation config gives core 3 to `ticker`, so the firmware refuses it
/// at boot, naming the domain, the core and why, and starts nothing (a
/// config whose domains fit the smaller machine runs on it: the
/// `own_interrupts_*` tests).
fn missing_core_refused(gic: u32) {
    let m = Machine {
        gic,
        smp: 3,
        ..Machine::default()
    };
    let why = if gic == 2 {
        "the GICv2 distributor has fewer CPU interfaces"
    } else {
        "no GIC redistributor answers for it"
    };
    refused_on(
        "isolation",
        &format!("missing-core-v{gic}"),
        &m,
        &[&format!(
            "domain \"ticker\": core 3 (MPIDR 0x3) is not on this machine: {why} (give the machine at least 4 cores, or the domain another)"
        )],
    );
}

#[test]
fn a_domain_on_a_core_the_machine_lacks_is_refused_at_boot_gicv3() {
    missing_core_refused(3);
}

#[test]
fn a_domain_on_a_core_the_machine_lacks_is_refused_at_boot_gicv2() {
    missing_core_refused(2);
}

/// A config that accepts a DMA risk (`dma = "unprotected"`) boots, and the
/// firmware says at every boot what was accepted.
#[test]
fn accepted_dma_risk_is_reported_at_boot() {
    let mut run = boot("dma-accepted", "dma-accepted", &Machine::default());
    let line = run
        .wait_line(
            UART0,
            "bulkhead: warning: domain \"hello\": device \"blk\"",
            WAIT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        line.contains("masters DMA and no IOMMU covers it; accepted by dma = \"unprotected\"")
            && line.contains("other domains' memory and the partitioner"),
        "{line}"
    );
    wait_heartbeat_after(&mut run, UART1, "hello", 1);
    let log = run.output(UART0);
    assert_eq!(lines_with(&log, "masters DMA").len(), 1, "{log}");
    assert!(lines_with(&log, "error").is_empty(), "{log}");
}

#[test]
fn invalid_config_is_refused_at_boot() {
    // Built with the host check skipped: the firmware's own check must catch
    // the core given to two domains.
    refused(
        "invalid-unchecked",
        &["bulkhead: error: config: domain \"probe\": /domains/probe/cpus: core 0 is already owned by domain \"hello\"", "config: 1 error(s)"],
    );
}

#[test]
fn truncated_config_is_refused_at_boot() {
    refused("truncated-config", &["bulkhead: error: config: "]);
}

#[test]
fn corrupted_package_is_refused_at_boot() {
    refused(
        "corrupt-config",
        &["bulkhead: error: config corrupted: CRC-32"],
    );
}

#[test]
fn a_damaged_image_stops_only_its_own_domain() {
    // The probe's image had a byte flipped after packing: its checksum
    // fails on the core that loads it, which stops that domain alone.
    let mut run = boot("corrupt-image", "corrupt-image", &Machine::default());
    run.wait_line(
        UART0,
        "domain \"probe\" stopped: its image failed its CRC-32 check; the other domains are unaffected",
        WAIT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Its neighbours run: hello on its own UART, ticker on the virtual console.
    let hb = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART1, "hello", hb + 3);
    let hb = last_heartbeat(&run.output(UART0), "ticker").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART0, "ticker", hb + 3);
    let log = run.output(UART0);
    let crc = lines_with(&log, "domain \"probe\": ");
    assert!(
        crc.iter()
            .any(|l| l.contains("CRC-32") && l.contains("probe")),
        "the partitioner names the damaged image:\n{log}"
    );
    assert!(
        lines_with(&log, "domain \"probe\": vCPU 0 starts").is_empty(),
        "the damaged domain never ran:\n{log}"
    );
    assert!(
        lines_with(&log, "domain \"hello\": vCPU 0 starts").len() == 1,
        "{log}"
    );
    assert!(!log.contains("FATAL") && !log.contains("panic"), "{log}");
}

#[test]
fn hand_written_device_tree_is_used() {
    let mut run = boot("supplied-tree", "supplied-tree", &Machine::default());
    // The domain's name and resources come from the tree in its config.
    let l = run
        .wait_line(UART0, "[handmade] handmade: domain cpus=", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        l.trim(),
        "[handmade] handmade: domain cpus=1 memory=0x40000000+0x200000"
    );
    wait_heartbeat_after(&mut run, UART0, "handmade", 2);
}

#[test]
fn hand_written_tree_naming_foreign_hardware_is_refused_at_boot() {
    refused(
        "foreign-tree-unchecked",
        &["bulkhead: error: config: domain \"handmade\": device-tree: device tree /stolen@9040000", "config: 1 error(s)"],
    );
}

/// The firmware relocates itself: put anywhere (here by QEMU's generic
/// loader, 4 MiB above where `-kernel` puts it), it says where it is,
/// keeps that range out of every domain, and runs the demo.
#[test]
fn the_firmware_runs_wherever_the_loader_puts_it() {
    let m = Machine {
        load_at: Some(0x4060_0000),
        ..Machine::default()
    };
    let mut run = boot("isolation", "relocated", &m);
    let at = run
        .wait_line(UART0, "partitioner occupies ", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(at.contains("occupies 0x40600000.."), "{at}");
    run.wait_line(UART0, "probe: attacks done: 8 attempted, 8 aborted", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    wait_heartbeat_after(&mut run, UART1, "hello", 2);
    wait_heartbeat_after(&mut run, UART0, "ticker", 2);
    let log = run.output(UART0);
    assert!(
        lines_with(&log, "error").is_empty() && lines_with(&log, "FATAL").is_empty(),
        "{log}"
    );
}

/// An image that does not start on a page cannot be mapped page by page:
/// the entry code says so on the console before anything else runs.
#[test]
fn a_misaligned_load_address_is_refused_on_the_console() {
    let m = Machine {
        load_at: Some(0x4060_0800),
        ..Machine::default()
    };
    let mut run = boot("isolation", "misaligned", &m);
    run.wait_line(
        UART0,
        "bulkhead: fatal: loaded at an address that is not 4 KiB aligned",
        WAIT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!run.output(UART0).contains("domain \""), "nothing started");
}
