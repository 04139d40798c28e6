//! Exit statistics: every domain's exits to EL2 counted per cause, printed
//! when a domain stops and when `Ctrl-a s` is typed on the partitioner
//! console (lines `bulkhead: exits domain "<name>": irq=N ... total=N`).

use bulkhead_core::exits::{Cause, Counts};
use bulkhead_tests::{boot, expect_line, lines_with, wait_heartbeat_after, Machine, UART0, WAIT};

/// The counts in an exits line of domain `name`, if `line` is one.
fn exits_of(line: &str, name: &str) -> Option<Counts> {
    let rest = line
        .split_once(&format!("bulkhead: exits domain \"{name}\": "))?
        .1;
    Counts::parse(rest)
}

/// Every exits line of domain `name` in `text`, parsed (a malformed one fails).
fn all_exits(text: &str, name: &str) -> Vec<Counts> {
    lines_with(text, &format!("bulkhead: exits domain \"{name}\": "))
        .into_iter()
        .map(|l| exits_of(l, name).unwrap_or_else(|| panic!("malformed exits line: {l}")))
        .collect()
}

/// Bytes a domain printed on its virtual console (`[name] text` lines; the
/// newline is a byte it wrote too).
fn console_bytes(text: &str, name: &str) -> u64 {
    let tag = format!("[{name}] ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&tag))
        .map(|l| l.len() as u64 + 1)
        .sum()
}

#[test]
fn exits_of_a_stopped_domain() {
    let mut run = boot("exits", "exits-stopped", &Machine::default());
    let line = expect_line(&mut run, UART0, "bulkhead: exits domain \"offer\": ", WAIT);
    expect_line(
        &mut run,
        UART0,
        "domain \"offer\" stopped: it powered itself off",
        WAIT,
    );
    let out = run.output(UART0);
    let c = exits_of(&line, "offer").unwrap_or_else(|| panic!("malformed: {line}\n{out}"));
    // Its PSCI and SMCCC calls: PSCI_VERSION, SMCCC_VERSION, 11
    // PSCI_FEATURES, 3 SMCCC_ARCH_FEATURES, CPU_SUSPEND, the unknown SMC and
    // HVC, and the SYSTEM_OFF that stopped it.
    assert_eq!(c.get(Cause::Psci), 1 + 1 + 11 + 3 + 1 + 1 + 1 + 1, "{line}");
    // Its 20 measured timer interrupts, and the one that ended CPU_SUSPEND.
    assert!(c.get(Cause::Irq) >= 21, "{line}");
    // Every byte it printed is a write to the virtual console's data
    // register (and every one waited on a read of its flags first).
    let printed = console_bytes(&out, "offer");
    assert!(printed > 500, "offer printed only {printed} bytes:\n{out}");
    assert!(
        c.get(Cause::Vconsole) >= printed,
        "{line}: {printed} bytes printed"
    );
    // Its GIC set-up went through the virtual distributor/redistributor.
    assert!(c.get(Cause::Vgic) > 0, "{line}");
    // It touched nothing outside itself, and nothing else trapped.
    assert_eq!(c.get(Cause::Fault), 0, "{line}");
    assert_eq!(c.get(Cause::Wfx), 0, "{line}");
    assert_eq!(c.get(Cause::Other), 0, "{line}");
    // Printed once, at the stop, before the stop line.
    assert_eq!(all_exits(&out, "offer").len(), 1, "{out}");
    let at = |needle: &str| out.find(needle).unwrap_or(usize::MAX);
    assert!(
        at("bulkhead: exits domain \"offer\"") < at("domain \"offer\" stopped"),
        "{out}"
    );
    // The running domains' counts are not printed unasked.
    assert!(all_exits(&out, "hello").is_empty(), "{out}");
    assert!(all_exits(&out, "pinger").is_empty(), "{out}");
}

/// The exits lines printed after each `Ctrl-a s` header, per request:
/// (domain name, counts) in the order printed.
fn requests(text: &str) -> Vec<Vec<(String, Counts)>> {
    let mut blocks: Vec<Vec<(String, Counts)>> = Vec::new();
    for l in text.lines() {
        if l.contains("bulkhead: exit counts of ") {
            blocks.push(Vec::new());
        } else if let (Some(block), Some(rest)) =
            (blocks.last_mut(), l.split_once("bulkhead: exits domain \""))
        {
            let (name, counts) = rest.1.split_once("\": ").expect("exits line");
            let c = Counts::parse(counts).unwrap_or_else(|| panic!("malformed: {l}"));
            block.push((name.to_string(), c));
        }
    }
    blocks
}

/// Wait until `run`'s console shows `n` complete requests (3 domains each).
fn wait_requests(run: &mut bulkhead_tests::Run, n: usize) -> Vec<Vec<(String, Counts)>> {
    let start = std::time::Instant::now();
    loop {
        let out = run.output(UART0);
        // Whole lines only: the console may be in the middle of one.
        let out = &out[..out.rfind('\n').map_or(0, |i| i + 1)];
        let r = requests(out);
        if r.len() >= n && r[..n].iter().all(|b| b.len() >= 3) {
            return r;
        }
        assert!(
            start.elapsed() < WAIT && !run.finished(),
            "no answer to Ctrl-a s number {n}:\n{}",
            run.transcript()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn exits_on_request_from_the_console() {
    on_request(3);
}

#[test]
fn exits_on_request_from_the_console_gicv2() {
    on_request(2);
}

fn on_request(gic: u32) {
    let m = Machine {
        gic,
        uart0_input: true,
        ..Machine::default()
    };
    let mut run = boot("exits", &format!("exits-request-v{gic}"), &m);
    expect_line(
        &mut run,
        UART0,
        "[pinger] pinger: sgi: 10 round trips",
        WAIT,
    );
    expect_line(&mut run, UART0, "[pinger] pinger: heartbeat 1", WAIT);
    // `offer` powers itself off 200 ms into its run, which prints its own
    // exits line: let that happen first, so that every exits line after a
    // request's header belongs to that request.
    expect_line(&mut run, UART0, "domain \"offer\" stopped", WAIT);
    // Neither a lone `s` nor Ctrl-a followed by another key asks.
    run.send_uart0(b"s\x01xs\x01\x01s")
        .expect("type into uart0");
    run.send_uart0(b"\x01s").expect("type into uart0");
    let first = wait_requests(&mut run, 1);
    let out = run.output(UART0);
    let hb = |out: &str, name: &str| bulkhead_tests::last_heartbeat(out, name).unwrap_or(0);
    // They keep running...
    wait_heartbeat_after(&mut run, UART0, "hello", hb(&out, "hello") + 1);
    wait_heartbeat_after(&mut run, UART0, "pinger", hb(&out, "pinger") + 1);
    run.send_uart0(b"\x01s").expect("type into uart0");
    let r = wait_requests(&mut run, 2);
    let out = run.output(UART0);
    assert_eq!(r.len(), 2, "exactly one answer per Ctrl-a s:\n{out}");
    assert_eq!(first[0], r[0]);
    for block in &r {
        let names: Vec<&str> = block.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["hello", "offer", "pinger"], "{out}");
    }
    // ...and their counts grow: hello's timer and console, pinger's timer
    // and heartbeats on its virtual console.
    for i in [0, 2] {
        let (a, b) = (&r[0][i].1, &r[1][i].1);
        assert!(b.total() > a.total(), "{}: {a} then {b}\n{out}", r[0][i].0);
        assert!(
            b.get(Cause::Vconsole) > a.get(Cause::Vconsole),
            "{a} then {b}"
        );
    }
    // pinger's SGIs between its vCPUs: trapped ICC_SGI1R_EL1 writes
    // (GICv3) or GICD_SGIR writes (GICv2) on one side, counted as `sgi`
    // and nothing else, kicks on the other.
    let p = &r[1][2].1;
    assert!(p.get(Cause::Sgi) >= 20, "{p}");
    assert_eq!(p.get(Cause::Sysreg), 0, "{p}");
    assert!(p.get(Cause::Irq) >= 20 + 20, "{p}");
    // The console's own interrupts are counted for the domain on the core
    // they are taken on (hello, on the boot core), as "other".
    assert!(r[1][0].1.get(Cause::Other) >= 1, "{}", r[1][0].1);
    assert_eq!(p.get(Cause::Other), 0, "{p}");
}

#[test]
fn exits_on_request_after_the_boot_cores_domain_stopped() {
    let m = Machine {
        uart0_input: true,
        ..Machine::default()
    };
    let mut run = boot("exits-boot-core-stops", "exits-boot-core-stops", &m);
    // `offer`, on the boot core where the console's input was taken, stops.
    expect_line(
        &mut run,
        UART0,
        "domain \"offer\" stopped: it powered itself off",
        WAIT,
    );
    run.send_uart0(b"\x01s").expect("type into uart0");
    let r = wait_requests(&mut run, 1);
    let names: Vec<&str> = r[0].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["hello", "offer", "pinger"]);
    // The key was taken on a core of a running domain, as "other".
    let others: u64 = r[0].iter().map(|(_, c)| c.get(Cause::Other)).sum();
    assert!(others >= 1, "{:?}", r[0]);
    assert_eq!(r[0][1].1.get(Cause::Other), 0, "not on offer's core");
}
