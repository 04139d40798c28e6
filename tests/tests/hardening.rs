//! What a domain can reach on its own core, beyond its own state. QEMU has
//! no caches, no cluster controls behind CPUECTLR/L2CTLR and no
//! speculation, so these tests prove what can be proven here: the trap is
//! taken (the partitioner reports it, the domain reads the safe value) and
//! each EL2 control register holds the value docs/security.md gives, read
//! back from the hardware. The victim keeps running throughout.

use bulkhead_tests::{
    boot, last_heartbeat, lines_with, wait_heartbeat_after, Machine, UART0, UART1, WAIT,
};

/// The register values the partitioner read back and printed for `core`.
fn el2_controls(log: &str, core: usize) -> Vec<(String, u64)> {
    let line = lines_with(log, &format!("core {core}: EL2 controls "))
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no EL2 controls line for core {core}\n{log}"))
        .to_string();
    line.split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once("=0x")?;
            Some((k.to_string(), u64::from_str_radix(v, 16).ok()?))
        })
        .collect()
}

fn reg(regs: &[(String, u64)], name: &str) -> u64 {
    regs.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("{name} missing from {regs:?}"))
}

fn run_checks(cpu: &str) -> (String, String) {
    let m = Machine {
        cpu: cpu.into(),
        ..Machine::default()
    };
    let mut run = boot("hardening", &format!("hardening-{cpu}"), &m);
    run.wait_line(UART0, "probe: cpu checks done", WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", run.output(UART0)));
    let hb = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART1, "hello", hb + 2);
    (run.output(UART0), run.output(UART1))
}

#[test]
fn cluster_controls_pmu_and_set_way_maintenance_trap_on_cortex_a72() {
    let (log, hello) = run_checks("cortex-a72");
    // Implementation defined registers (L2CTLR, CPUECTLR: cluster-wide on
    // Cortex-A53/A72) trap and read as zero; the write of CPUECTLR (SMPEN
    // off) is dropped.
    for needle in [
        "probe: cpu l2ctlr_el1 -> 0x0",
        "probe: cpu cpuectlr_el1 write 0 -> reads 0x0",
        "probe: cpu actlr_el1 -> 0x0",
        // PMUv3 cannot keep EL2 out of its counters: denied, reads as zero.
        "probe: cpu pmu v1 pmcr_el0 -> 0x0",
        "probe: cpu dc cisw -> done",
        "probe: cpu sve absent",
        "probe: cpu pauth absent",
    ] {
        assert_eq!(lines_with(&log, needle).len(), 1, "{needle}\n{log}");
    }
    // The partitioner saw the traps: the first ignored register access,
    // and the set/way operation carried out on the domain's memory only.
    assert_eq!(
        lines_with(
            &log,
            "domain \"probe\" core 1: trapped MRS S3_1_C11_C0_2 into x"
        )
        .len(),
        1,
        "{log}"
    );
    assert_eq!(
        lines_with(
            &log,
            "domain \"probe\" core 1: set/way cache maintenance (DC CISW, x"
        )
        .len(),
        1,
        "{log}"
    );
    // The EL2 controls, as read back from the hardware.
    let r = el2_controls(&log, 1);
    let hcr = reg(&r, "HCR_EL2");
    for (bit, name) in [(22, "TSW"), (21, "TACR"), (20, "TIDCP"), (19, "TSC")] {
        assert_ne!(hcr & (1 << bit), 0, "HCR_EL2.{name}: {hcr:#x}");
    }
    let mdcr = reg(&r, "MDCR_EL2");
    for (bit, name) in [(5, "TPMCR"), (6, "TPM"), (10, "TDOSA"), (11, "TDRA")] {
        assert_ne!(mdcr & (1 << bit), 0, "MDCR_EL2.{name}: {mdcr:#x}");
    }
    assert_eq!(mdcr & (0b111 << 7), 0, "HPME, TDE, TDA clear: {mdcr:#x}");
    let cptr = reg(&r, "CPTR_EL2");
    assert_eq!(cptr & (1 << 10), 0, "TFP clear: {cptr:#x}");
    assert_ne!(cptr & (1 << 20), 0, "TTA: {cptr:#x}");
    assert_eq!(reg(&r, "ACTLR_EL2"), 0);
    assert_eq!(reg(&r, "HSTR_EL2"), 0);
    // Secret-free partitioner: while domains run, no core's EL2 tables map
    // any domain's RAM (each core maps its own domain's RAM, in its own
    // tables, only while loading or cleaning it; a walk proves it).
    for core in [0, 1] {
        assert_eq!(
            lines_with(
                &log,
                &format!("core {core}: EL2 maps no domain's RAM while domains run (checked)")
            )
            .len(),
            1,
            "{log}"
        );
    }
    // Cortex-A72 is exposed to Spectre-BHB: every entry from a domain runs
    // the clearing loop first (the hardened vectors are installed).
    assert_eq!(
        lines_with(
            &log,
            "core 1: speculation: Spectre-BHB cleared by a 8-branch loop on every entry from a domain; \
             Spectre v2 exposed (needs platform firmware); speculative store bypass exposed \
             (needs platform firmware); EL2 vectors hardened (VBAR_EL2 read back)"
        )
        .len(),
        1,
        "{log}"
    );
    assert!(
        lines_with(&log, "domain \"probe\" stopped").is_empty(),
        "{log}"
    );
    assert!(lines_with(&hello, "UNEXPECTED").is_empty(), "{hello}");
}

#[test]
fn cpu_max_gives_the_domain_sve_pointer_auth_and_a_pmu_that_cannot_see_el2() {
    let (log, _) = run_checks("max");
    // SVE and pointer authentication are the domain's own (they used to trap
    // and stop it, exception classes 0x19 and 0x09).
    let sve = lines_with(&log, "probe: cpu sve vl -> ");
    assert_eq!(sve.len(), 1, "{log}");
    let bytes: u64 = sve[0]
        .rsplit("-> ")
        .next()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(bytes >= 16 && bytes.is_power_of_two(), "{}", sve[0]);
    assert_eq!(
        lines_with(&log, "probe: cpu pauth pacia/autia -> ok").len(),
        1,
        "{log}"
    );
    // FEAT_PMUv3p5: the PMU is the domain's, and EL2 is never counted.
    let pmu = lines_with(&log, "probe: cpu pmu v");
    assert_eq!(pmu.len(), 1, "{log}");
    assert!(!pmu[0].ends_with("pmcr_el0 -> 0x0"), "{}", pmu[0]);
    let r = el2_controls(&log, 1);
    let mdcr = reg(&r, "MDCR_EL2");
    assert_ne!(mdcr & (1 << 17), 0, "HPMD: {mdcr:#x}");
    assert_ne!(mdcr & (1 << 23), 0, "HCCD: {mdcr:#x}");
    assert_eq!(mdcr & (0b11 << 5), 0, "PMU not trapped: {mdcr:#x}");
    let hcr = reg(&r, "HCR_EL2");
    assert_eq!(hcr & (0b11 << 40), 0b11 << 40, "API, APK: {hcr:#x}");
    let cptr = reg(&r, "CPTR_EL2");
    assert_eq!(cptr & ((1 << 8) | (1 << 12)), 0, "TZ, TSM clear: {cptr:#x}");
    assert!(
        lines_with(&log, "domain \"probe\" stopped").is_empty(),
        "{log}"
    );
    // QEMU's `max` core reports itself unaffected (CSV2_3, ECBHB, SSBS).
    assert_eq!(
        lines_with(
            &log,
            "core 1: speculation: Spectre-BHB not affected; Spectre v2 not affected; \
             speculative store bypass not affected; EL2 vectors plain"
        )
        .len(),
        1,
        "{log}"
    );
    assert!(lines_with(&log, "UNEXPECTED").is_empty(), "{log}");
    // AArch32 at EL0 too: probe's Thumb line comes through whole.
    assert_eq!(
        log.lines().filter(|l| *l == "[probe] thumb").count(),
        1,
        "{log}"
    );
}

/// The lines the virtual console printed for domain `name`, untagged.
fn domain_lines<'a>(log: &'a str, name: &str) -> Vec<&'a str> {
    let tag = format!("[{name}] ");
    log.lines().filter_map(|l| l.strip_prefix(&tag)).collect()
}

#[test]
fn thumb_el0_stores_to_the_virtual_console_are_stepped_by_their_two_bytes() {
    // probe's `thumb-el0`: a Thumb program at AArch32 EL0 writes "thumb\n"
    // to the virtual console with six 16-bit `str rN, [r0]`, each trapped
    // and emulated by the partitioner, then `svc #0` back to EL1. Stepping
    // over each store by 4 bytes instead of 2 (ESR_EL2.IL ignored) would
    // skip every second one: "tub", no newline.
    let mut run = boot("hardening", "hardening-thumb", &Machine::default());
    run.wait_line(UART0, "probe: cpu checks done", WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", run.output(UART0)));
    let beat = wait_heartbeat_after(&mut run, UART0, "probe", 0);
    let hb = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART1, "hello", hb + 2);
    let log = run.output(UART0);
    let probe = domain_lines(&log, "probe");
    assert!(
        !probe.contains(&"probe: thumb el0 absent"),
        "cortex-a72 has AArch32 at EL0 (ID_AA64PFR0_EL1.EL0 = 2)\n{log}"
    );
    // Exactly the line written from EL0, then the domain's report that the
    // program came back through its SVC at +0xc.
    let thumb: Vec<usize> = (0..probe.len()).filter(|&i| probe[i] == "thumb").collect();
    assert_eq!(thumb.len(), 1, "exactly one line \"[probe] thumb\"\n{log}");
    let at = thumb[0] + 1;
    assert_eq!(
        probe.get(at).copied(),
        Some("probe: thumb el0 -> svc #0 at +0xc"),
        "{log}"
    );
    // The probe lives on: its cpu checks, then its heartbeat.
    assert_eq!(probe[at + 1], "probe: cpu l2ctlr_el1 -> 0x0", "{log}");
    assert!(beat >= 1);
    assert!(lines_with(&log, "UNEXPECTED").is_empty(), "{log}");
    assert!(
        lines_with(&log, "domain \"probe\" stopped").is_empty(),
        "{log}"
    );
    assert!(lines_with(&run.output(UART1), "UNEXPECTED").is_empty());
}

#[test]
fn thumb_el0_coprocessor_reads_are_read_as_zero_not_fatal() {
    thumb_el0_aarch32(3);
}

#[test]
fn thumb_el0_coprocessor_reads_and_sgir_store_in_an_it_block_on_gicv2() {
    thumb_el0_aarch32(2);
}

fn thumb_el0_aarch32(gic: u32) {
    // probe's `thumb-el0-coproc`: a Thumb program at AArch32 EL0 (as a
    // 32-bit process under a 64-bit kernel) reads DBGDRAR and DBGDSAR with
    // `MRC p14`, trapped by MDCR_EL2.TDRA (EC 0x05). They read as zero and
    // are reported once, like an AArch64 register; the domain lives on.
    // The second read sits in an `ITE NE` block whose else (EQ) is a third
    // read that must not happen: stepping over the second must advance
    // the block's state. Each `MRC` is 4 bytes: the SVC is at +0xe.
    //
    // Then, on GICv2 only, `thumb-el0-sgir`: a 16-bit store of 0 (no target)
    // to the virtual GICD_SGIR inside an `ITE NE` block, whose else
    // (`ADDEQ r2, #1`) must not run. The store is the assembly SGI fast
    // path's kind; stepping over it without advancing the IT block would
    // run the ADD as NE (r2 0x5a5a5a5b) and skip the SVC as the else.
    let m = Machine {
        gic,
        ..Machine::default()
    };
    let mut run = boot(
        "hardening-aarch32",
        &format!("hardening-aarch32-v{gic}"),
        &m,
    );
    let beat = wait_heartbeat_after(&mut run, UART0, "probe", 0);
    let hb = last_heartbeat(&run.output(UART1), "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART1, "hello", hb + 2);
    let log = run.output(UART0);
    let probe = domain_lines(&log, "probe");
    assert!(
        probe.contains(&"probe: thumb el0 coproc -> r0 0x0 r1 0x0 r2 0x5a5a5a5a, svc at +0xe"),
        "{log}"
    );
    let sgir = if gic == 2 {
        "probe: thumb el0 sgir -> r2 0x5a5a5a5a, svc at +0x6"
    } else {
        "probe: thumb el0 sgir skipped: GICv3"
    };
    assert!(probe.contains(&sgir), "{sgir}\n{log}");
    // The partitioner's one report: the first read, from AArch32.
    let report = lines_with(&log, "domain \"probe\" core 1: trapped ");
    assert_eq!(report.len(), 1, "{log}");
    assert!(
        report[0].contains("trapped MRC p14, 0, r0, c1, c0, 0 (AArch32) at PC 0x")
            && report[0].ends_with(": ignored, reads as zero (reported once)"),
        "{}",
        report[0]
    );
    assert!(beat >= 1);
    for gone in [
        "UNEXPECTED",
        "unexpected exception",
        "domain \"probe\" stopped",
        "restart",
    ] {
        assert!(lines_with(&log, gone).is_empty(), "{gone}\n{log}");
    }
    assert!(lines_with(&run.output(UART1), "UNEXPECTED").is_empty());
}
