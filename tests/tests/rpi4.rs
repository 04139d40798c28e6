//! The Raspberry Pi 4 under QEMU's `raspi4b`: the same firmware built for
//! the `rpi4` board, loaded at 0x200000 by QEMU's arm64 Image loader, its
//! secondary cores released from the spin table, every domain on the shared
//! virtual console. The bare-metal domains are the very same programs as on
//! `virt`: they find their machine in the device tree Bulkhead gives them.

use bulkhead_tests::{
    boot, last_heartbeat, lines_with, wait_heartbeat_after, Machine, UART0, WAIT,
};

fn pi4() -> Machine {
    Machine {
        board: "rpi4".into(),
        gic: 2,
        ..Machine::default()
    }
}

fn expect_line(run: &mut bulkhead_tests::Run, needle: &str) -> String {
    bulkhead_tests::expect_line(run, UART0, needle, WAIT)
}

/// The partitioner's start-up on the Pi: where it is, which GIC, how the
/// cores start.
fn check_boot_lines(log: &str) {
    assert!(
        lines_with(log, "Bulkhead ")
            .iter()
            .any(|l| l.contains(" on rpi4, at EL2")),
        "{log}"
    );
    assert!(
        lines_with(log, "partitioner occupies 0x200000..").len() == 1,
        "loaded where the Pi's firmware puts it\n{log}"
    );
    assert!(
        lines_with(
            log,
            "interrupt controller: GICv2, 4 list registers; cores started by spin table"
        )
        .len()
            == 1,
        "{log}"
    );
}

const TARGETS: &[(&str, &str)] = &[
    ("victim-ram", "0x10000000"),
    ("partitioner-ram", "0x200000"),
    ("gic-hyp", "0xff844000"),
    ("partitioner-uart", "0xfe201000"),
];

#[test]
fn rpi4_every_attack_aborts_once_and_the_victims_keep_running() {
    let mut run = boot("rpi4-isolation", "rpi4-isolation", &pi4());
    expect_line(&mut run, "probe: attacks done");
    let log = run.output(UART0);
    check_boot_lines(&log);
    bulkhead_tests::check_board_isolation(&mut run, TARGETS);
}

/// Timer, SGIs between vCPUs on two cores (the second one released from
/// the spin table by the domain's CPU_ON), PSCI answered by Bulkhead, and a
/// domain that restarts twice, each time in the state of a cold boot, while
/// the others keep counting.
#[test]
fn rpi4_interrupts_psci_and_restarts_while_the_others_keep_counting() {
    let mut run = boot("rpi4-irq", "rpi4-irq", &pi4());
    let log = bulkhead_tests::check_board_interrupts(&mut run, 2);
    check_boot_lines(&log);
    // The neighbours kept counting through the restarts, and still do.
    let hello = last_heartbeat(&log, "hello").unwrap_or(0);
    let irq = last_heartbeat(&log, "irq").unwrap_or(0);
    assert!(hello >= 1, "hello counted during the restarts\n{log}");
    wait_heartbeat_after(&mut run, UART0, "hello", hello + 2);
    wait_heartbeat_after(&mut run, UART0, "irq", irq + 2);
    let log = run.output(UART0);
    assert!(lines_with(&log, "error").is_empty(), "{log}");
}

/// A vCPU's core goes off and on again: the spin table cannot take a core
/// back, so the partitioner parks it and wakes it on the domain's CPU_ON.
#[test]
fn rpi4_a_core_parked_by_cpu_off_comes_back_on_cpu_on() {
    let mut run = boot("rpi4-lifecycle", "rpi4-lifecycle", &pi4());
    expect_line(
        &mut run,
        "pair: cpu-on-0: vcpu 1: cpu_on vcpu 0 while on -> -4",
    );
    expect_line(&mut run, "domain \"pair\": vCPU on core 1 powered off");
    expect_line(
        &mut run,
        "pair: cpu-on-0: vcpu 1: cpu_on vcpu 0 after its cpu_off -> 0",
    );
    expect_line(
        &mut run,
        "pair: cpu-on-0: vcpu 0 up at the secondary entry, context 0xc0de00000000002a, marker 0x5eed1234",
    );
    let log = run.output(UART0);
    check_boot_lines(&log);
    assert_eq!(lines_with(&log, "pair: boot: start").len(), 1, "{log}");
    assert!(
        lines_with(&log, "pair: cpu-on-0: timeout").is_empty(),
        "{log}"
    );
    let hello = last_heartbeat(&log, "hello").unwrap_or(0);
    let ticker = last_heartbeat(&log, "ticker").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART0, "hello", hello + 2);
    wait_heartbeat_after(&mut run, UART0, "ticker", ticker + 2);
}

/// Which way the cores start depends on what the boot loader's device tree
/// says: the stock armstub's tree has no PSCI (spin table), TF-A's BL31 adds
/// a `psci` node (PSCI over SMC). QEMU passes `-dtb` in x0, as the Pi's
/// firmware does. (QEMU's raspi4b has no EL3 firmware to answer PSCI, so
/// the PSCI case is only followed until the partitioner says it chose it.)
#[test]
fn rpi4_the_loaders_device_tree_decides_spin_table_or_psci() {
    let dir = xtask::target_dir()
        .join("bulkhead")
        .join("test-tmp")
        .join("rpi4-loader-dtb");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for psci in [false, true] {
        let node = if psci {
            "psci { compatible = \"arm,psci-1.0\", \"arm,psci-0.2\"; method = \"smc\"; };"
        } else {
            ""
        };
        let dts = format!(
            "/dts-v1/;\n/ {{ #address-cells = <1>; #size-cells = <1>; compatible = \"raspberrypi,4-model-b\"; \
             memory@0 {{ device_type = \"memory\"; reg = <0x0 0x3b400000>; }}; {node} }};\n"
        );
        let src = dir.join(format!("loader-psci-{psci}.dts"));
        std::fs::write(&src, dts).unwrap();
        let blob = xtask::image::compile_dts(&src).unwrap_or_else(|e| panic!("{e}"));
        let dtb = dir.join(format!("loader-psci-{psci}.dtb"));
        std::fs::write(&dtb, blob).unwrap();
        let m = Machine {
            extra: vec!["-dtb".into(), dtb.display().to_string()],
            ..pi4()
        };
        let mut run = boot("rpi4-lifecycle", &format!("rpi4-loader-dtb-{psci}"), &m);
        let chosen = expect_line(&mut run, "interrupt controller: GICv2");
        let log = run.output(UART0);
        if psci {
            assert!(
                chosen.ends_with("cores started by PSCI over SMC"),
                "{chosen}"
            );
            assert_eq!(
                lines_with(&log, "the boot loader's device tree at 0x8000000 has PSCI").len(),
                1,
                "{log}"
            );
        } else {
            assert!(chosen.ends_with("cores started by spin table"), "{chosen}");
            assert!(lines_with(&log, "has PSCI").is_empty(), "{log}");
            // And the cores do start.
            expect_line(&mut run, "pair: cpu-on-0: vcpu 0 up at the secondary entry");
        }
    }
}
