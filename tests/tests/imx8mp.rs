//! The NXP i.MX 8M Plus EVK under QEMU's `imx8mp-evk -smp 4`: the firmware
//! built for the `imx8mp-evk` board, loaded at 0x40200000 by QEMU's arm64
//! Image loader, its console the i.MX UART2 (`-serial 1`), its secondary
//! cores started by QEMU's PSCI, every bare-metal domain on the shared
//! virtual console. QEMU's model never raises the GIC's virtual IRQ, so
//! every interrupt a domain takes here came through the HCR_EL2.VI quirk
//! (`VirtualIrq::ViaHcrVi`).

use std::time::Duration;

use bulkhead_tests::{
    boot, last_heartbeat, lines_with, wait_heartbeat_after, Machine, Run, UART0, WAIT,
};

fn evk() -> Machine {
    Machine {
        board: "imx8mp-evk".into(),
        gic: 3,
        ..Machine::default()
    }
}

fn expect_line(run: &mut Run, needle: &str) -> String {
    bulkhead_tests::expect_line(run, UART0, needle, WAIT)
}

/// Linux boots in tens of seconds under TCG on a loaded 2-core machine.
const LINUX: Duration = Duration::from_secs(300);

/// The partitioner's start-up on the EVK: where it is, which GIC, how the
/// cores start, all printed through the i.MX UART driver.
fn check_boot_lines(log: &str) {
    assert!(
        lines_with(log, "Bulkhead ")
            .iter()
            .any(|l| l.contains(" on imx8mp-evk, at EL2")),
        "{log}"
    );
    assert_eq!(
        lines_with(log, "partitioner occupies 0x40200000..").len(),
        1,
        "loaded where booti and QEMU put it\n{log}"
    );
    assert_eq!(
        lines_with(
            log,
            "interrupt controller: GICv3, 4 list registers; cores started by PSCI over SMC"
        )
        .len(),
        1,
        "{log}"
    );
}

const TARGETS: &[(&str, &str)] = &[
    ("victim-ram", "0x50000000"),
    ("partitioner-ram", "0x40200000"),
    ("gic-redist", "0x388c0000"),
    ("partitioner-uart", "0x30890000"),
];

#[test]
fn imx8mp_every_attack_aborts_once_and_the_victims_keep_running() {
    let mut run = boot("imx8mp-isolation", "imx8mp-isolation", &evk());
    expect_line(&mut run, "probe: attacks done");
    let log = run.output(UART0);
    check_boot_lines(&log);
    bulkhead_tests::check_board_isolation(&mut run, TARGETS);
}

/// Timer, SGIs between vCPUs on two cores (the second one started by the
/// domain's CPU_ON, through QEMU's PSCI), PSCI answered by Bulkhead, and a
/// domain that restarts twice, each time in the state of a cold boot, while
/// the others keep counting. Every virtual interrupt here reached its vCPU
/// through HCR_EL2.VI.
#[test]
fn imx8mp_interrupts_psci_and_restarts_while_the_others_keep_counting() {
    let mut run = boot("imx8mp-irq", "imx8mp-irq", &evk());
    let log = bulkhead_tests::check_board_interrupts(&mut run, 3);
    check_boot_lines(&log);
    // The timer counts at the EVK's 8 MHz, which the domain read.
    assert_eq!(
        lines_with(&log, "irq: timer: period ")
            .iter()
            .filter(|l| l.ends_with(", counter 8000000 Hz"))
            .count(),
        1,
        "{log}"
    );
    let hello = last_heartbeat(&log, "hello").unwrap_or(0);
    let irq = last_heartbeat(&log, "irq").unwrap_or(0);
    assert!(hello >= 1, "hello counted during the restarts\n{log}");
    wait_heartbeat_after(&mut run, UART0, "hello", hello + 2);
    wait_heartbeat_after(&mut run, UART0, "irq", irq + 2);
    let log = run.output(UART0);
    assert!(lines_with(&log, "error").is_empty(), "{log}");
}

/// The partitioner reads its console through the i.MX UART's receive
/// interrupt (UCR1.RRDYEN, SPI 27 taken at EL2): `Ctrl-a s` typed on UART2
/// is answered with the exit counts, and `Ctrl-a` three times moves the
/// input focus.
#[test]
fn imx8mp_console_input_reaches_the_partitioner() {
    let m = Machine {
        uart0_input: true,
        ..evk()
    };
    let mut run = boot("imx8mp-isolation", "imx8mp-console-input", &m);
    expect_line(
        &mut run,
        "bulkhead: console input goes to domain \"hello\" (Ctrl-a three times to switch)",
    );
    expect_line(&mut run, "probe: attacks done");
    assert!(lines_with(&run.output(UART0), "exit counts of").is_empty());
    run.send_uart0(b"\x01s").expect("type into uart0");
    expect_line(&mut run, "bulkhead: exit counts of 3 domain(s)");
    run.send_uart0(b"\x01\x01\x01").expect("type into uart0");
    expect_line(
        &mut run,
        "bulkhead: console input now goes to domain \"probe\" (Ctrl-a three times to switch)",
    );
}

/// A Debian Linux domain (cloud kernel: no i.MX UART driver, so its console
/// is the virtual console's PL011) boots to its init beside two bare-metal
/// domains, sees exactly its own resources, and a /dev/mem read of hello's
/// RAM is a bus error in that process only. Linux takes every one of its
/// interrupts (timer, IPIs, its console) through HCR_EL2.VI.
#[test]
fn imx8mp_linux_boots_to_init_beside_bare_metal_domains() {
    let m = Machine {
        timeout: Duration::from_secs(600),
        ..evk()
    };
    let mut run = boot("imx8mp-linux", "imx8mp-linux", &m);
    let linux = |run: &mut Run, needle: &str| {
        bulkhead_tests::expect_line(run, UART0, &format!("[linux] linux-init: {needle}"), LINUX)
    };
    linux(&mut run, "start");
    linux(&mut run, "cpus 2");
    let mem = linux(&mut run, "memtotal ");
    let kb: u64 = mem.rsplit(' ').next().unwrap().trim().parse().unwrap();
    assert!(
        kb > 128 * 1024 && kb <= 256 * 1024,
        "MemTotal {kb} kB for a 256 MiB domain"
    );
    // Its own devices only (uart3, gpio5), beside the virtual console. The
    // virtual console breaks the long line: "uart@" ends it, "9000000"
    // follows on the next.
    let dt = linux(&mut run, "device-tree ");
    assert!(
        dt.ends_with(
            "linux-init: device-tree apb-pclk chosen cpus gpio@30240000 intc@8000000 memory@40000000 psci serial@30880000 timer uart@"
        ),
        "{dt}"
    );
    bulkhead_tests::expect_line(&mut run, UART0, "[linux] 9000000", LINUX);
    let devmem = linux(&mut run, "devmem 0x50000000 -> ");
    assert!(devmem.contains("(exit 135)"), "{devmem}");
    linux(&mut run, "still alive after devmem");
    let log = run.output(UART0);
    check_boot_lines(&log);
    let faults = lines_with(&log, "domain \"linux\" vCPU");
    assert_eq!(faults.len(), 1, "{log}");
    assert!(faults[0].contains("IPA 0x50000000"), "{}", faults[0]);
    assert!(
        log.contains("probe: attacks done: 8 attempted, 8 aborted"),
        "{log}"
    );
    let hello = last_heartbeat(&log, "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART0, "hello", hello + 2);
}

/// Linux with an interactive shell on the shared virtual console, input
/// switched to it with Ctrl-a three times: the i.MX UART's receive
/// interrupt at EL2 feeds the virtual PL011's, which Linux takes through
/// HCR_EL2.VI.
#[test]
fn imx8mp_linux_shell_on_the_virtual_console() {
    let m = Machine {
        uart0_input: true,
        timeout: Duration::from_secs(600),
        ..evk()
    };
    let mut run = boot("imx8mp-linux-shell", "imx8mp-linux-shell", &m);
    expect_line(
        &mut run,
        "bulkhead: console input goes to domain \"echo\" (Ctrl-a three times to switch)",
    );
    bulkhead_tests::expect_line(&mut run, UART0, "[linux] linux-init: shell", LINUX);
    run.send_uart0(b"\x01\x01\x01").unwrap();
    expect_line(
        &mut run,
        "bulkhead: console input now goes to domain \"linux\" (Ctrl-a three times to switch)",
    );
    run.send_uart0(b"echo hi-$((6*7))\r").unwrap();
    bulkhead_tests::expect_line(&mut run, UART0, "[linux] hi-42", LINUX);
    let log = run.output(UART0);
    assert!(
        !log.contains("[echo] echo: uart: rx"),
        "echo received input typed for linux\n{}",
        run.transcript()
    );
    assert!(
        lines_with(&log, "domain \"linux\" vCPU").is_empty(),
        "{}",
        run.transcript()
    );
}
