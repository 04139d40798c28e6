//! `probe`: the attacker domain.
//!
//! It reads its targets from the device tree's bootargs,
//! `attack=<label>:<address>[,<label>:<address>...]` (addresses in hex with
//! `0x`, or decimal; other space-separated words are ignored), and tries one
//! 8-byte read and then one 8-byte write of [`PATTERN`] at each. Under
//! Bulkhead every access outside the domain must end in an abort, delivered
//! to the domain like a bus error; the domain survives and reports it. Then
//! it prints heartbeats so a test can see it is still alive.
//!
//! Output (each line ends in `\n`; `<name>` as for `hello`):
//!
//! ```text
//! <name>: domain cpus=<n> memory=<base:#x>+<size:#x>[,...]
//! <name>: probe ready: <t> targets
//! <name>: attack read <label> @<addr:#x>: aborted esr=<esr:#x> far=<far:#x>
//! <name>: attack read <label> @<addr:#x>: NOT STOPPED value=<value read:#x>
//! <name>: attack write <label> @<addr:#x>: aborted esr=<esr:#x> far=<far:#x>
//! <name>: attack write <label> @<addr:#x>: NOT STOPPED value=<value written:#x>
//! <name>: attacks done: <n> attempted, <m> aborted
//! <name>: heartbeat <k>
//! ```
//!
//! With the word `cpu-checks` in the bootargs, after the attacks it also
//! reports what it reaches on its own core (see `bulkhead_rt::hardening`):
//!
//! ```text
//! <name>: cpu l2ctlr_el1 -> <value:#x>
//! <name>: cpu cpuectlr_el1 write 0 -> reads <value:#x>
//! <name>: cpu actlr_el1 -> <value:#x>
//! <name>: cpu pmu v<PMUVer> pmcr_el0 -> <value:#x>   (or: cpu pmu none)
//! <name>: cpu dc cisw -> done
//! <name>: cpu sve vl -> <bytes> bytes                (or: cpu sve absent)
//! <name>: cpu pauth pacia/autia -> ok|FAILED         (or: cpu pauth absent)
//! <name>: cpu checks done
//! ```
//!
//! With the word `thumb-el0`, after the attacks (before the cpu checks) it
//! runs a little hand-assembled Thumb program in AArch32 User mode (EL0)
//! that stores the characters of a line, one 16-bit `STR` each, to the
//! console's data register, then returns with `SVC #0` (see
//! `bulkhead_rt::hardening::thumb_el0_line`). On the virtual console each
//! store traps and is emulated, and the partitioner must step over exactly
//! the 2 bytes of the instruction, or every second character is lost:
//!
//! ```text
//! thumb                                              (written from EL0)
//! <name>: thumb el0 -> svc #<imm> at +<offset:#x>    (or: thumb el0 absent)
//! ```
//!
//! `<t>` counts the entries of `attack=` (unparsable ones included).
//! Exactly one `attack` line per access, a read then a write per target, in
//! bootargs order; `<n>` counts accesses (two per target). Extra lines only
//! in unusual cases: `<name>: note: ...` after an `aborted` line whose abort
//! is not a synchronous external abort (FSC 0x10), `<name>: bad attack
//! target "<text>"` for an unparsable entry (skipped), and
//! `<name>: attack write <label> @<addr:#x>: skipped (own image or device
//! tree)` instead of a write that would hit the domain's own memory.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use bulkhead_rt::{delay_ms, println, try_read, try_write, Abort};

bulkhead_rt::entry!(main);

/// Value the write attacks store.
const PATTERN: u64 = 0xbad0_c0de_dead_beef;
/// Time between heartbeats.
const HEARTBEAT_MS: u64 = 50;

/// Tally of the accesses made.
#[derive(Default)]
struct Tally {
    attempted: u64,
    aborted: u64,
}

impl Tally {
    /// Prints the line for one access and counts it.
    fn report(
        &mut self,
        name: &str,
        what: &str,
        label: &str,
        addr: u64,
        result: Result<u64, Abort>,
    ) {
        self.attempted += 1;
        match result {
            Ok(value) => {
                println!("{name}: attack {what} {label} @{addr:#x}: NOT STOPPED value={value:#x}")
            }
            Err(abort) => {
                self.aborted += 1;
                println!(
                    "{name}: attack {what} {label} @{addr:#x}: aborted esr={:#x} far={:#x}",
                    abort.esr, abort.far
                );
                if !abort.is_external() {
                    println!(
                        "{name}: note: that abort is not a synchronous external abort: FSC={:#x} ({})",
                        abort.fsc(),
                        abort.fsc_description()
                    );
                }
            }
        }
    }
}

/// The `label:address` entries of the `attack=` word of `bootargs`.
fn targets(bootargs: &str) -> impl Iterator<Item = &str> {
    bootargs
        .split_ascii_whitespace()
        .filter_map(|word| word.strip_prefix("attack="))
        .flat_map(|list| list.split(','))
        .filter(|entry| !entry.is_empty())
}

/// `label:address`, the address in hex with `0x` or in decimal.
fn parse_target(entry: &str) -> Option<(&str, u64)> {
    let (label, addr) = entry.split_once(':')?;
    let addr = match addr.strip_prefix("0x").or_else(|| addr.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => addr.parse().ok()?,
    };
    (!label.is_empty()).then_some((label, addr))
}

/// The `cpu-checks` word: what the domain reaches on its own core.
fn cpu_checks(name: &str) {
    use bulkhead_rt::hardening as h;
    println!("{name}: cpu l2ctlr_el1 -> {:#x}", h::l2ctlr());
    h::set_cpuectlr(0);
    println!(
        "{name}: cpu cpuectlr_el1 write 0 -> reads {:#x}",
        h::cpuectlr()
    );
    println!("{name}: cpu actlr_el1 -> {:#x}", h::actlr_el1());
    match h::pmu_version() {
        0 => println!("{name}: cpu pmu none"),
        v => println!("{name}: cpu pmu v{v} pmcr_el0 -> {:#x}", h::pmcr()),
    }
    h::dc_cisw();
    println!("{name}: cpu dc cisw -> done");
    match h::sve_vector_bytes() {
        Some(b) => println!("{name}: cpu sve vl -> {b} bytes"),
        None => println!("{name}: cpu sve absent"),
    }
    match h::pointer_auth_round_trip() {
        Some(true) => println!("{name}: cpu pauth pacia/autia -> ok"),
        Some(false) => println!("{name}: cpu pauth pacia/autia -> FAILED"),
        None => println!("{name}: cpu pauth absent"),
    }
    println!("{name}: cpu checks done");
}

fn main(_dtb: usize) -> ! {
    let info = bulkhead_rt::info();
    let name = info.name();
    let bootargs = info.bootargs();

    bulkhead_rt::report_resources();
    println!("{name}: probe ready: {} targets", targets(bootargs).count());
    let mut tally = Tally::default();
    for entry in targets(bootargs) {
        let Some((label, addr)) = parse_target(entry) else {
            println!("{name}: bad attack target \"{entry}\"");
            continue;
        };
        tally.report(name, "read", label, addr, try_read(addr));
        if bulkhead_rt::is_own_memory(addr, 8) {
            println!("{name}: attack write {label} @{addr:#x}: skipped (own image or device tree)");
            continue;
        }
        tally.report(
            name,
            "write",
            label,
            addr,
            try_write(addr, PATTERN).map(|()| PATTERN),
        );
    }
    println!(
        "{name}: attacks done: {} attempted, {} aborted",
        tally.attempted, tally.aborted
    );
    if bootargs.split_ascii_whitespace().any(|w| w == "thumb-el0") {
        match bulkhead_rt::hardening::thumb_el0_line() {
            Some((imm, at)) => println!("{name}: thumb el0 -> svc #{imm} at +{at:#x}"),
            None => println!("{name}: thumb el0 absent"),
        }
    }
    if bootargs.split_ascii_whitespace().any(|w| w == "cpu-checks") {
        cpu_checks(name);
    }

    let mut beat: u64 = 0;
    loop {
        delay_ms(HEARTBEAT_MS);
        beat += 1;
        println!("{name}: heartbeat {beat}");
    }
}
