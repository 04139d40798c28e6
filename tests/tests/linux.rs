//! Real, unmodified Debian arm64 Linux in a domain (kernel from
//! linux-image-cloud-arm64, busybox initramfs from domains/linux), beside
//! bare-metal domains: it boots to its init and sees exactly its own
//! resources, a /dev/mem read of another domain's memory is a bus error in
//! the process only, `reboot -f` restarts only Linux and `poweroff -f` stops
//! only it, while the neighbours keep running.

use std::time::Duration;

use bulkhead_tests::{
    boot, last_heartbeat, lines_with, wait_heartbeat_after, Machine, Run, UART0, UART1,
};

/// Linux boots in tens of seconds under TCG on a loaded 2-core machine.
const LINUX: Duration = Duration::from_secs(240);

fn expect(run: &mut Run, uart: &str, needle: &str) -> String {
    bulkhead_tests::expect_line(run, uart, needle, LINUX)
}

/// Heartbeats of `name` in `text`, in order, with no gap.
fn assert_continuous(text: &str, name: &str) {
    let beats = bulkhead_tests::heartbeats(text, name);
    assert!(beats.len() > 3, "{name} barely ran: {beats:?}");
    assert!(
        beats.windows(2).all(|w| w[1] == w[0] + 1),
        "{name} heartbeat gap: {beats:?}"
    );
}

fn linux_boots_and_is_isolated(gic: u32, cpu: &str) {
    let m = Machine {
        gic,
        cpu: cpu.into(),
        timeout: Duration::from_secs(600),
        ..Machine::default()
    };
    let mut run = boot("linux-attack", &format!("linux-attack-v{gic}-{cpu}"), &m);
    expect(&mut run, UART1, "linux-init: start");
    // What Linux sees is exactly its configuration: 2 CPUs, its 256 MiB, and
    // only its own devices in the device tree Bulkhead generated.
    expect(&mut run, UART1, "linux-init: cpus 2");
    let mem = expect(&mut run, UART1, "linux-init: memtotal ");
    let kb: u64 = mem.rsplit(' ').next().unwrap().trim().parse().unwrap();
    assert!(
        kb > 128 * 1024 && kb <= 256 * 1024,
        "MemTotal {kb} kB for a 256 MiB domain"
    );
    let dt = expect(&mut run, UART1, "linux-init: device-tree ");
    assert_eq!(
        dt.trim(),
        "linux-init: device-tree apb-pclk chosen cpus intc@8000000 memory@40000000 psci serial@9040000 timer"
    );
    // Seeded from the rng-seed and kaslr-seed Bulkhead derived for this run.
    let first_text = seeded_kernel_text(&expect(&mut run, UART1, "linux-init: random "));
    // hello's RAM (PA 0x70000000) through /dev/mem: a bus error kills the
    // process (SIGBUS, exit 135), the kernel carries on.
    let devmem = expect(&mut run, UART1, "linux-init: devmem 0x70000000 -> ");
    assert!(devmem.contains("(exit 135)"), "{devmem}");
    expect(&mut run, UART1, "linux-init: still alive after devmem");
    let log = run.output(UART0);
    let faults = lines_with(&log, "domain \"linux\" vCPU");
    assert_eq!(faults.len(), 1, "{log}");
    assert!(
        faults[0].contains("IPA 0x70000000")
            && faults[0].ends_with("-> injected synchronous external abort"),
        "{}",
        faults[0]
    );
    // `reboot -f` restarts only Linux, which boots to its init again.
    expect(&mut run, UART1, "linux-init: reboot -f");
    expect(
        &mut run,
        UART0,
        "domain \"linux\" restarting (1 of at most 8): it asked for SYSTEM_RESET",
    );
    let deadline = std::time::Instant::now() + LINUX;
    while lines_with(&run.output(UART1), "linux-init: random ").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "Linux did not boot again\n{}",
            run.transcript()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The restarted run got seeds of its own: its kernel is elsewhere.
    let out1 = run.output(UART1);
    let randoms = lines_with(&out1, "linux-init: random ");
    assert_eq!(randoms.len(), 2, "{}", run.transcript());
    let second_text = seeded_kernel_text(randoms[1]);
    assert_ne!(
        first_text, second_text,
        "the restart's kernel was placed where the first run's was: the same kaslr-seed"
    );
    // hello never noticed: its heartbeat never stopped, its memory is intact.
    let now = last_heartbeat(&run.output(UART0), "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART0, "hello", now + 2);
    let log = run.output(UART0);
    assert_continuous(&log, "hello");
    assert!(
        !log.contains("CORRUPTED") && lines_with(&log, "FATAL").is_empty(),
        "{log}"
    );
}

/// The kernel's own report of its boot randomness ("linux-init: random
/// crng ready kaslr on text <address>"): the generator credited the
/// rng-seed at boot, the kernel randomized its address; that address.
fn seeded_kernel_text(line: &str) -> String {
    let rest = line
        .trim()
        .strip_prefix("linux-init: random crng ready kaslr on text ")
        .unwrap_or_else(|| panic!("not seeded at boot: {line}"));
    assert!(
        rest.len() == 16 && rest.chars().all(|c| c.is_ascii_hexdigit()) && rest != "0".repeat(16),
        "no kernel address in {line}"
    );
    rest.to_string()
}

#[test]
fn linux_boots_and_is_isolated_gicv3() {
    linux_boots_and_is_isolated(3, "cortex-a72");
}

/// `-cpu max`: pointer authentication, SVE and SME are the domain's own
/// (they used to trap, and Linux stopped at boot with exception class 0x19).
#[test]
fn linux_boots_and_is_isolated_on_cpu_max() {
    linux_boots_and_is_isolated(3, "max");
}

#[test]
fn linux_boots_and_is_isolated_gicv2() {
    linux_boots_and_is_isolated(2, "cortex-a72");
}

#[test]
fn two_linux_domains_side_by_side_and_poweroff_stops_only_one() {
    let m = Machine {
        timeout: Duration::from_secs(600),
        ..Machine::default()
    };
    let mut run = boot("linux-pair", "linux-pair", &m);
    // linux-a: two cores, the second UART, reaches its init.
    expect(&mut run, UART1, "linux-init: cpus 2");
    // linux-b: one core, the virtual console: its kernel runs init, whose
    // `poweroff -f` (after 5 s) is the proof it reached userspace.
    expect(&mut run, UART0, "[linux-b] ");
    expect(&mut run, UART0, "Run /init as init process");
    expect(
        &mut run,
        UART0,
        "domain \"linux-b\" stopped: it powered itself off (SYSTEM_OFF)",
    );
    let log = run.output(UART0);
    assert!(
        log.contains("[linux-b] [") && log.contains("Linux version 6."),
        "{log}"
    );
    // linux-a and hello keep going.
    let a = last_heartbeat(&run.output(UART1), "linux-init").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART1, "linux-init", a + 2);
    let h = last_heartbeat(&run.output(UART0), "hello").unwrap_or(0);
    wait_heartbeat_after(&mut run, UART0, "hello", h + 2);
    assert_continuous(&run.output(UART0), "hello");
    assert_continuous(&run.output(UART1), "linux-init");
}
