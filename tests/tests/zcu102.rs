//! The Xilinx ZCU102 under QEMU's `xlnx-zcu102,virtualization=on`: the
//! firmware built for the `zcu102` board, loaded at 0x200000 by QEMU's
//! arm64 Image loader, its console the Cadence UART0, its secondary cores
//! started by PSCI CPU_ON over SMC, the GIC-400 used through its 8 KiB
//! GICC/GICV windows. The bare-metal domains are the very same programs as
//! on `virt` (on the virtual console); Linux owns the Cadence UART1.

use std::time::Duration;

use bulkhead_tests::{
    boot, expect_line, last_heartbeat, lines_with, wait_heartbeat_after, Machine, Run, UART0,
    UART1, WAIT,
};

fn zcu102() -> Machine {
    Machine {
        board: "zcu102".into(),
        gic: 2,
        ..Machine::default()
    }
}

fn expect(run: &mut Run, needle: &str) -> String {
    expect_line(run, UART0, needle, WAIT)
}

/// The partitioner's start-up on the ZCU102: where it is, which GIC, how
/// the cores start, and that QEMU said nothing on stderr (no audio or
/// device errors).
fn check_boot_lines(run: &Run) {
    let log = run.output(UART0);
    assert!(
        lines_with(&log, "Bulkhead ")
            .iter()
            .any(|l| l.contains(" on zcu102, at EL2")),
        "{log}"
    );
    assert_eq!(
        lines_with(&log, "partitioner occupies 0x200000..").len(),
        1,
        "loaded at the board's image base\n{log}"
    );
    assert_eq!(
        lines_with(
            &log,
            "interrupt controller: GICv2, 4 list registers; cores started by PSCI over SMC"
        )
        .len(),
        1,
        "{log}"
    );
    let stderr = std::fs::read_to_string(run.dir.join("qemu.stderr")).unwrap_or_default();
    assert!(
        !stderr.to_lowercase().contains("audio") && !stderr.contains("error"),
        "QEMU complained:\n{stderr}"
    );
}

/// (label, address) the probe attacks, from configs/zcu102/isolation.dts.
const TARGETS: &[(&str, &str)] = &[
    ("victim-ram", "0x10000000"),
    ("partitioner-ram", "0x200000"),
    ("gic-hyp", "0xf9040000"),
    ("partitioner-uart", "0xff000000"),
    ("foreign-uart", "0xff010000"),
];

/// Every attack of the probe (another domain's RAM, the partitioner's RAM,
/// the GIC's list registers, the partitioner's UART0, the unassigned
/// UART1) aborts at stage 2 once and is reported once, although QEMU's
/// ZynqMP would read each of those addresses happily; the victims keep
/// running with their memory intact.
#[test]
fn zcu102_every_attack_aborts_once_and_the_victims_keep_running() {
    let mut run = boot("zcu102-isolation", "zcu102-isolation", &zcu102());
    expect(&mut run, "probe: attacks done");
    check_boot_lines(&run);
    bulkhead_tests::check_board_isolation(&mut run, TARGETS);
}

/// Timer, SGIs between vCPUs on two cores (the second one started by the
/// domain's CPU_ON, which the partitioner carries out with the platform's
/// PSCI over SMC), PSCI answered by Bulkhead, and a domain that restarts
/// twice, each time in the state of a cold boot, while the others keep
/// counting.
#[test]
fn zcu102_interrupts_psci_and_restarts_while_the_others_keep_counting() {
    let mut run = boot("zcu102-irq", "zcu102-irq", &zcu102());
    let log = bulkhead_tests::check_board_interrupts(&mut run, 2);
    check_boot_lines(&run);
    // The neighbours kept counting through the restarts, and still do.
    let hello = last_heartbeat(&log, "hello").unwrap_or(0);
    let irq = last_heartbeat(&log, "irq").unwrap_or(0);
    assert!(hello >= 1, "hello counted during the restarts\n{log}");
    wait_heartbeat_after(&mut run, UART0, "hello", hello + 2);
    wait_heartbeat_after(&mut run, UART0, "irq", irq + 2);
    let log = run.output(UART0);
    assert!(lines_with(&log, "error").is_empty(), "{log}");
}

/// Linux boots in tens of seconds under TCG on a loaded 2-core machine.
const LINUX: Duration = Duration::from_secs(300);

/// Debian's cloud kernel, unmodified, in a domain that owns the Cadence
/// UART1: Linux's xuartps driver probes the node Bulkhead generated
/// (compatibles and clocks), its console and init run on UART1 (ttyPS0),
/// it sees exactly its 2 CPUs and 256 MiB, a /dev/mem read of hello's
/// RAM is a bus error in that process only, and the bare-metal domains
/// keep counting beside it.
#[test]
fn zcu102_linux_on_its_own_cadence_uart_beside_bare_metal_domains() {
    let m = Machine {
        timeout: Duration::from_secs(600),
        ..zcu102()
    };
    let mut run = boot("zcu102-linux", "zcu102-linux", &m);
    expect_line(&mut run, UART1, "linux-init: start", LINUX);
    expect_line(&mut run, UART1, "linux-init: cpus 2", LINUX);
    let mem = expect_line(&mut run, UART1, "linux-init: memtotal ", LINUX);
    let kb: u64 = mem.rsplit(' ').next().unwrap().trim().parse().unwrap();
    assert!(
        kb > 128 * 1024 && kb <= 256 * 1024,
        "MemTotal {kb} kB for a 256 MiB domain"
    );
    let dt = expect_line(&mut run, UART1, "linux-init: device-tree ", LINUX);
    assert_eq!(
        dt.trim(),
        "linux-init: device-tree apb-pclk chosen cpus intc@8000000 memory@40000000 psci serial@ff010000 timer uart-ref-clk"
    );
    let devmem = expect_line(&mut run, UART1, "linux-init: devmem 0x10000000 -> ", LINUX);
    assert!(devmem.contains("(exit 135)"), "{devmem}");
    expect_line(
        &mut run,
        UART1,
        "linux-init: still alive after devmem",
        LINUX,
    );
    // The kernel's own console was the Cadence UART (xuartps).
    let console = run.output(UART1);
    assert!(
        console.contains("ttyPS0") && console.contains("xuartps"),
        "{console}"
    );
    check_boot_lines(&run);
    let log = run.output(UART0);
    let faults = lines_with(&log, "domain \"linux\" vCPU");
    assert_eq!(faults.len(), 1, "{log}");
    assert!(faults[0].contains("IPA 0x10000000"), "{}", faults[0]);
    // Nothing of Linux on the partitioner's console but its fault report.
    assert!(!log.contains("linux-init:"), "{log}");
    let hello = last_heartbeat(&log, "hello").unwrap_or(0);
    let ticker = last_heartbeat(&log, "ticker").unwrap_or(0);
    assert!(
        hello >= 3 && ticker >= 3,
        "they ran while Linux booted\n{log}"
    );
    wait_heartbeat_after(&mut run, UART0, "hello", hello + 2);
    wait_heartbeat_after(&mut run, UART0, "ticker", ticker + 2);
    let log = run.output(UART0);
    assert!(!log.contains("CORRUPTED"), "{log}");
}

/// Bytes domain `name` (the irq program in `uart-echo` mode) reported
/// receiving: its `[name] name: uart: rx 0x<hh>` lines, in order.
fn received(log: &str, name: &str) -> Vec<u8> {
    let marker = format!("[{name}] {name}: uart: rx 0x");
    log.lines()
        .filter_map(|l| l.split_once(&marker))
        .filter_map(|(_, hex)| u8::from_str_radix(hex.trim(), 16).ok())
        .collect()
}

fn expect_received(run: &mut Run, name: &str, want: &[u8]) {
    let deadline = std::time::Instant::now() + WAIT;
    while received(&run.output(UART0), name).len() < want.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} received {:?}, expected {:?}\n{}",
            String::from_utf8_lossy(&received(&run.output(UART0), name)),
            String::from_utf8_lossy(want),
            run.transcript()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        String::from_utf8_lossy(&received(&run.output(UART0), name)),
        String::from_utf8_lossy(want),
        "what {name} received\n{}",
        run.transcript()
    );
}

/// Console input on the ZCU102: every byte typed into the Cadence UART0
/// reaches the partitioner through the UART's receive interrupt (SPI 21)
/// and goes to the domain with the focus; Ctrl-a three times moves the
/// focus, Ctrl-a s is answered with the exit counts.
#[test]
fn zcu102_console_input_through_the_cadence_uart() {
    let m = Machine {
        uart0_input: true,
        ..zcu102()
    };
    let mut run = boot("zcu102-console", "zcu102-console", &m);
    expect(
        &mut run,
        "bulkhead: console input goes to domain \"echo-a\" (Ctrl-a three times to switch)",
    );
    expect(&mut run, "[echo-a] echo-a: uart: ready");
    expect(&mut run, "[echo-b] echo-b: uart: ready");
    let send = |run: &mut Run, b: &[u8]| run.send_uart0(b).expect("type into uart0");
    // One byte at a time: each needs its own receive interrupt.
    for (i, b) in b"Zq".iter().enumerate() {
        send(&mut run, &[*b]);
        expect_received(&mut run, "echo-a", &b"Zq"[..=i]);
    }
    // A burst: the interrupt stays up while bytes wait, none is lost.
    send(&mut run, b"burst");
    expect_received(&mut run, "echo-a", b"Zqburst");
    send(&mut run, b"\x01\x01\x01");
    expect(
        &mut run,
        "bulkhead: console input now goes to domain \"echo-b\" (Ctrl-a three times to switch)",
    );
    send(&mut run, b"yo");
    expect_received(&mut run, "echo-b", b"yo");
    send(&mut run, b"\x01s");
    expect(&mut run, "bulkhead: exit counts of 2 domain(s)");
    check_boot_lines(&run);
    expect_received(&mut run, "echo-a", b"Zqburst");
    expect_received(&mut run, "echo-b", b"yo");
}

/// A minimal ELF with one loadable segment of 64 zero bytes at `addr`:
/// 64-bit AArch64 (the FSBL's and BL31's kind) or 32-bit MicroBlaze (the
/// PMU firmware's), stand-ins for the vendor's files.
fn stand_in_elf(aarch64: bool, addr: u32) -> Vec<u8> {
    let mut e = b"\x7fELF".to_vec();
    let (class, ehsize, phsize): (u8, u16, u16) = if aarch64 { (2, 64, 56) } else { (1, 52, 32) };
    e.extend([class, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let machine: u16 = if aarch64 { 183 } else { 189 };
    let off = u64::from(ehsize + phsize);
    e.extend(2u16.to_le_bytes()); // ET_EXEC
    e.extend(machine.to_le_bytes());
    e.extend(1u32.to_le_bytes());
    let word = |e: &mut Vec<u8>, v: u64| {
        if aarch64 {
            e.extend(v.to_le_bytes())
        } else {
            e.extend((v as u32).to_le_bytes())
        }
    };
    word(&mut e, addr.into()); // entry
    word(&mut e, ehsize.into()); // phoff
    word(&mut e, 0); // shoff
    e.extend(0u32.to_le_bytes()); // flags
    for h in [ehsize, phsize, 1, if aarch64 { 64 } else { 40 }, 0, 0] {
        e.extend(h.to_le_bytes());
    }
    e.extend(1u32.to_le_bytes()); // PT_LOAD
    if aarch64 {
        e.extend(5u32.to_le_bytes()); // R+X
        for v in [off, addr.into(), addr.into(), 64, 64, 16] {
            e.extend(v.to_le_bytes());
        }
    } else {
        for v in [off as u32, addr, addr, 64, 64, 5, 4] {
            e.extend(v.to_le_bytes());
        }
    }
    e.extend([0u8; 64]);
    e
}

/// `cargo xtask image --bif`'s BIF, packed by AMD's bootgen with stand-ins
/// for the vendor's FSBL, PMU firmware and BL31: bootgen accepts it, and
/// the BOOT.BIN it makes loads Bulkhead (the image the QEMU tests boot) at
/// 0x200000 and starts it there, non-secure, at EL2, in AArch64. (Only the
/// packing is checked: QEMU cannot boot a BOOT.BIN.)
#[test]
fn zcu102_bif_packs_a_boot_bin_that_starts_bulkhead_at_el2_at_0x200000() {
    let [bootgen] = &xtask::tools::ensure_packaged(&[xtask::tools::BOOTGEN])
        .unwrap_or_else(|e| panic!("{e}"))[..]
    else {
        unreachable!()
    };
    let dir = xtask::target_dir()
        .join("bulkhead")
        .join("test-media")
        .join("zcu102-bif");
    let _ = std::fs::remove_dir_all(&dir);
    let fw = dir.join("firmware");
    std::fs::create_dir_all(&fw).unwrap();
    std::fs::write(fw.join("fsbl.elf"), stand_in_elf(true, 0xfffc_0000)).unwrap();
    std::fs::write(fw.join("pmufw.elf"), stand_in_elf(false, 0xffdc_0000)).unwrap();
    std::fs::write(fw.join("bl31.elf"), stand_in_elf(true, 0xfffe_a000)).unwrap();
    let board = board_support::by_name("zcu102").unwrap();
    let img = bulkhead_tests::image("zcu102-isolation");
    let out = dir.join("out");
    let files = xtask::flash::write_bif(
        xtask::flash::boot_bin_for("zcu102").unwrap(),
        board,
        &img,
        &out,
        Some(&fw),
    )
    .unwrap();
    assert!(files.missing.is_empty(), "{:?}", files.missing);
    assert_eq!(
        std::fs::read(&files.image).unwrap(),
        std::fs::read(&img).unwrap()
    );
    let boot_bin = out.join("BOOT.BIN");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bootgen)
            .current_dir(&out)
            .args(args)
            .output()
            .unwrap();
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && !text.contains("[ERROR]"), "{text}");
        text
    };
    let made = run(&[
        "-arch", "zynqmp", "-image", "boot.bif", "-o", "BOOT.BIN", "-w", "on",
    ]);
    assert!(made.contains("Bootimage generated successfully"), "{made}");
    assert!(boot_bin.is_file());
    let read = run(&["-arch", "zynqmp", "-read", "BOOT.BIN"]);
    // The partitions, in order: the FSBL, BL31's segments, then Bulkhead,
    // in one piece.
    let tables: Vec<&str> = read.split("PARTITION HEADER TABLE (").skip(1).collect();
    let names: Vec<&str> = tables
        .iter()
        .map(|t| t.split(')').next().unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"fsbl.elf.0"), "{read}");
    assert_eq!(names.last(), Some(&"bulkhead.img.0"), "{read}");
    assert!(names[1..names.len() - 1]
        .iter()
        .all(|n| n.starts_with("bl31.elf.")));
    let bulkhead = tables.last().unwrap();
    for want in [
        "exec_addr_lo (0x10) : 0x00200000",
        "load_addr_lo (0x18) : 0x00200000",
        "trustzone [non-secure]",
        "el [el-2]",
        "exec_state [aarch-64]",
    ] {
        assert!(bulkhead.contains(want), "{want} in\n{bulkhead}\n{read}");
    }
    // BL31 runs at EL3 in the secure world.
    let bl31 = tables[1];
    assert!(
        bl31.contains("trustzone [secure]") && bl31.contains("el [el-3]"),
        "{bl31}"
    );
    assert!(read.contains("bulkhead.img"), "{read}");
}
