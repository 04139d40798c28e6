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
//! With the word `set-way-flood`, after everything else it loops for
//! ever: a `DC CISW` (trapped, carried out by the partitioner as a clean of
//! the domain's whole memory) then a PSCI call (another exit, so the next
//! `DC CISW` is carried out in full again), with a line every 64 rounds:
//!
//! ```text
//! <name>: set-way-flood started
//! <name>: set-way-flood <n> rounds
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
//! With the word `thumb-el0-coproc`, next, a Thumb program at AArch32 EL0
//! reads the debug ROM address registers through coprocessor 14 (`MRC
//! p14`, which Bulkhead traps and reads as zero), the second read inside
//! an `ITE NE` block, followed by a third whose condition (EQ) fails (see
//! `bulkhead_rt::hardening::thumb_el0_coproc`; `r0..r2` start as
//! 0x5a5a5a5a):
//!
//! ```text
//! <name>: thumb el0 coproc -> r0 <v:#x> r1 <v:#x> r2 <v:#x>, svc at +<offset:#x>
//! ```
//! (or: `thumb el0 coproc absent`)
//!
//! With the word `thumb-el0-sgir`, next, on a GICv2 only, a Thumb program
//! at AArch32 EL0 stores 0 (no target) to the virtual distributor's
//! `GICD_SGIR` inside an `ITE NE` block whose else (`ADDEQ r2, #1`) must
//! not run (see `bulkhead_rt::hardening::thumb_el0_sgir`; `r2` starts as
//! 0x5a5a5a5a):
//!
//! ```text
//! <name>: thumb el0 sgir -> r2 <v:#x>, svc at +<offset:#x>
//! ```
//! (or: `thumb el0 sgir absent`, or `thumb el0 sgir skipped: <why>` without
//! a GICv2 distributor)
//!
//! `<t>` counts the entries of `attack=` (unparsable ones included).
//! Exactly one `attack` line per access, a read then a write per target, in
//! bootargs order; `<n>` counts accesses (two per target). Extra lines only
//! in unusual cases: `<name>: note: ...` after an `aborted` line whose abort
//! is not a synchronous external abort (FSC 0x10), `<name>: bad attack
//! target "<text>"` for an unparsable entry (skipped), and
//! `<name>: attack write <label> @<addr:#x>: skipped (own image or device
//! tree)` instead of a write that would hit the domain's own memory.
//!
//! Two more bootargs words turn it into a console flooder or a steady
//! printer (the console fairness test):
//!
//! - `flood=<n>:<address>`: after the attacks, `n` rounds as fast as it can,
//!   each an 8-byte read of `<address>` (which must abort), a PSCI CPU_ON of
//!   a vCPU it does not have (which must be refused) and a line
//!   `<name>: flood <i>`. Then `<name>: flood done: <n> faults, <n> cpu_on
//!   refused, <a> aborted, <r> refused`, a pause of [`SETTLE_MS`] (long enough
//!   for the partitioner's rate limit to allow lines again) and one more
//!   round, `<name>: flood settled: <n + 1> faults, <n + 1> cpu_on refused,
//!   <a> aborted, <r> refused, uptime <ms> ms` (the counter's milliseconds
//!   since reset, which the partitioner's rate limit counts too).
//! - `power-flood=<n>`: after that, `n` times, start vCPU 1 with PSCI
//!   CPU_ON, let it power itself off with CPU_OFF and wait until
//!   AFFINITY_INFO says it is off; then `<name>: power-flood done: <s>
//!   started, <r> refused`, the same pause and one more round,
//!   `<name>: power-flood settled: <s> started, <r> refused, uptime <ms> ms`
//!   (running totals of CPU_ONs that succeeded and that did not, `s + r` =
//!   rounds). Needs two vCPUs.
//! - `system-off`: after that, `<name>: system-off` and PSCI `SYSTEM_OFF`
//!   (the partitioner stops the domain, quiescing and resetting its PCI
//!   functions).
//! - `vcpu0-off`: after that, start vCPU 1, print `<name>: vcpu0-off: vcpu
//!   1 started (<ret>), vcpu 0 powers off` and power vCPU 0 off with PSCI
//!   CPU_OFF; vCPU 1 prints the heartbeats. (The partitioner's own
//!   interrupts, taken on the boot core, must not go off with it.)
//! - `count`: instead of heartbeats, numbered lines as fast as it can,
//!   `<name>: count <k>` from 1, for ever.
//! - `dma-attack=<label>:<address>[,...]`: with the DMA engine of a QEMU
//!   `edu` PCI function the domain owns (found in its device tree by its
//!   compatible, `pci1234,11e8`), after the CPU attacks. First a control:
//!   a pattern copied from its own RAM into the device's buffer and back to
//!   another place of its own RAM must arrive (first `<name>: dma: edu
//!   registers at <addr>`, where its device tree says the BAR is, then
//!   `<name>: dma: command <value:#x> at start`, the function's command
//!   register as the domain finds it in its configuration window, after
//!   which it turns memory decoding and bus mastering on there, as a
//!   driver does) (`<name>: dma control: ok`, or
//!   `FAILED`). Then, at each target, a DMA write of the device's buffer
//!   (`<name>: dma write <label> @<addr>: sent`: the target's owner checks
//!   its memory, the partitioner reports the fault) and a DMA read into the
//!   buffer, copied back to its own RAM:
//!   `<name>: dma read <label> @<addr>: blocked (<word>)` if the buffer
//!   still holds its marker or got zeros (what a faulted DMA read gives a
//!   device under QEMU), `LEAKED <first word>` otherwise (the targets are
//!   chosen where the victim's memory is not zero: its image). Then `<name>: dma attacks
//!   done: <n> attempted`. Without an edu function: `<name>: dma: no edu
//!   device`.
//!
//! - `misaligned=<label>:<address>[,...]`: right after the CPU attacks (before
//!   `thumb-el0`), at each target one 4-byte read and then one 4-byte write
//!   of the low half of [`PATTERN`], the address meant to be misaligned (a
//!   register of an emulated device, off its natural alignment). With the
//!   MMU off every access is to Device memory, where a misaligned one
//!   faults at EL1 before the partitioner sees it; so for the two accesses
//!   the domain turns on a minimal stage-1 identity map that makes the 2
//!   MiB around the target Normal memory (`bulkhead_rt::stage1`), and off
//!   again before it prints. One line per access, as for `attack=`:
//!   `<name>: misaligned read <label> @<addr:#x>: aborted esr=<esr:#x>
//!   far=<far:#x>` (or `NOT STOPPED value=<value:#x>`), the same for
//!   `write`, then `<name>: misaligned done: <n> attempted, <m> aborted`.
//!   A target the map cannot cover: `<name>: misaligned <label>
//!   @<addr:#x>: skipped (cannot map it)`.
//!
//! With the word `audit`, it is the attacker of `cargo xtask audit
//! --attack` instead, with its own compact target words: see `audit.rs`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use bulkhead_rt::{delay_ms, println, try_read, try_read32, try_write, try_write32, Abort};
use core::sync::atomic::{AtomicU64, Ordering};

mod audit;

bulkhead_rt::entry!(main);

/// Value the write attacks store.
const PATTERN: u64 = 0xbad0_c0de_dead_beef;
/// Time between heartbeats.
const HEARTBEAT_MS: u64 = 50;
/// Pause after a flood before its last round: the partitioner allows
/// several lines a second again after that long.
const SETTLE_MS: u64 = 1000;
/// Virtual MPIDR of a vCPU no domain of this size has.
const FOREIGN_VCPU: u64 = 0xff;

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
                println!("{name}: {what} {label} @{addr:#x}: NOT STOPPED value={value:#x}")
            }
            Err(abort) => {
                self.aborted += 1;
                println!(
                    "{name}: {what} {label} @{addr:#x}: aborted esr={:#x} far={:#x}",
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

/// The value of the bootargs word starting with `key`.
fn word<'a>(bootargs: &'a str, key: &str) -> Option<&'a str> {
    bootargs
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key))
}

/// `<n>:<address>` of `flood=`.
fn parse_flood(value: &str) -> Option<(u64, u64)> {
    let (n, addr) = value.split_once(':')?;
    Some((n.parse().ok()?, parse_addr(addr)?))
}

/// One flood round: a fault, a refused CPU_ON, a line. Returns whether the
/// access aborted and whether the CPU_ON was refused.
fn flood_round(name: &str, i: u64, addr: u64) -> (bool, bool) {
    let aborted = try_read(addr).is_err();
    let refused = bulkhead_rt::psci::cpu_on(FOREIGN_VCPU, 0x4000_0000, 0)
        == bulkhead_rt::psci::INVALID_PARAMETERS;
    println!("{name}: flood {i}");
    (aborted, refused)
}

/// Flood the partitioner console: see the module documentation.
fn flood(name: &str, n: u64, addr: u64) {
    let (mut aborted, mut refused) = (0u64, 0u64);
    for i in 1..=n {
        let (a, r) = flood_round(name, i, addr);
        aborted += a as u64;
        refused += r as u64;
    }
    println!(
        "{name}: flood done: {n} faults, {n} cpu_on refused, {aborted} aborted, {refused} refused"
    );
    delay_ms(SETTLE_MS);
    let (a, r) = flood_round(name, n + 1, addr);
    println!(
        "{name}: flood settled: {} faults, {} cpu_on refused, {} aborted, {} refused, uptime {} ms",
        n + 1,
        n + 1,
        aborted + a as u64,
        refused + r as u64,
        bulkhead_rt::time::uptime_ms()
    );
}

/// What vCPU 1 runs in a power flood: it powers itself off at once.
fn power_off(_vcpu: usize) -> ! {
    bulkhead_rt::psci::cpu_off();
    bulkhead_rt::halt()
}

/// What vCPU 1 runs after `vcpu0-off`: the heartbeats, for ever.
fn heartbeats_on_vcpu1(_vcpu: usize) -> ! {
    let name = bulkhead_rt::info().name();
    let mut beat: u64 = 0;
    loop {
        delay_ms(HEARTBEAT_MS);
        beat += 1;
        println!("{name}: heartbeat {beat}");
    }
}

/// One power-flood round: start vCPU 1 and wait until it is off again.
/// Returns whether CPU_ON succeeded.
fn power_round() -> bool {
    use bulkhead_rt::psci::{affinity_info, AFFINITY_OFF, SUCCESS};
    if bulkhead_rt::smp::start(1, power_off) != SUCCESS {
        return false;
    }
    while affinity_info(1) != AFFINITY_OFF {
        core::hint::spin_loop();
    }
    true
}

/// Flood the partitioner console with vCPU power changes: see the module
/// documentation.
fn power_flood(name: &str, n: u64) {
    let mut started = 0;
    for _ in 0..n {
        started += power_round() as u64;
    }
    println!(
        "{name}: power-flood done: {started} started, {} refused",
        n - started
    );
    delay_ms(SETTLE_MS);
    started += power_round() as u64;
    println!(
        "{name}: power-flood settled: {started} started, {} refused, uptime {} ms",
        n + 1 - started,
        bulkhead_rt::time::uptime_ms()
    );
}

/// `set-way-flood`: set/way cache maintenance as often as it costs the
/// partitioner the most, for ever: a `DC CISW`, then another exit (a PSCI
/// call), so that every `DC CISW` is the first of a "loop" and has the
/// domain's whole memory cleaned. Every 64 rounds a line says it is alive.
fn set_way_flood(name: &str) -> ! {
    println!("{name}: set-way-flood started");
    let mut round: u64 = 0;
    loop {
        for _ in 0..64 {
            bulkhead_rt::hardening::dc_cisw();
            bulkhead_rt::psci::version();
        }
        round += 64;
        println!("{name}: set-way-flood {round} rounds");
    }
}

/// QEMU's `edu` PCI device: its DMA engine's registers in BAR0 and its
/// buffer's address in the device's own address space.
mod edu {
    pub const COMPATIBLE: &str = "pci1234,11e8";
    /// Vendor and device ID, as the configuration space's first word.
    pub const ID: u32 = 0x11e8_1234;
    /// Command register bits: memory decoding, bus mastering.
    pub const CMD_MEMORY: u16 = 1 << 1;
    pub const CMD_BUS_MASTER: u16 = 1 << 2;
    pub const DMA_SRC: u64 = 0x80;
    pub const DMA_DST: u64 = 0x88;
    pub const DMA_COUNT: u64 = 0x90;
    pub const DMA_CMD: u64 = 0x98;
    pub const CMD_START: u64 = 1;
    pub const CMD_TO_RAM: u64 = 2;
    pub const BUFFER: u64 = 0x4_0000;
}

/// Bytes each DMA moves.
const DMA_LEN: usize = 64;
/// Scratch memory of the domain's own: what it sends and what comes back
/// (atomics: plain loads and stores the compiler cannot drop, as the
/// device reads and writes them behind its back).
static DMA_OUT: [AtomicU64; DMA_LEN / 8] = [const { AtomicU64::new(0) }; DMA_LEN / 8];
static DMA_IN: [AtomicU64; DMA_LEN / 8] = [const { AtomicU64::new(0) }; DMA_LEN / 8];

fn dma_buf(which: &str) -> u64 {
    if which == "out" {
        DMA_OUT.as_ptr() as u64
    } else {
        DMA_IN.as_ptr() as u64
    }
}

/// One transfer of the edu engine (guest-physical addresses: the MMU is
/// off); `false` if it never finished.
fn edu_dma(bar: u64, src: u64, dst: u64, to_ram: bool) -> bool {
    let ok = try_write(bar + edu::DMA_SRC, src).is_ok()
        && try_write(bar + edu::DMA_DST, dst).is_ok()
        && try_write(bar + edu::DMA_COUNT, DMA_LEN as u64).is_ok()
        && try_write(
            bar + edu::DMA_CMD,
            edu::CMD_START | if to_ram { edu::CMD_TO_RAM } else { 0 },
        )
        .is_ok();
    if !ok {
        return false;
    }
    // QEMU's edu finishes a transfer 100 ms (of its clock) after the start.
    for _ in 0..300 {
        if try_read(bar + edu::DMA_CMD).is_ok_and(|c| c & edu::CMD_START == 0) {
            return true;
        }
        delay_ms(10);
    }
    false
}

/// Fill the scratch `out` buffer with `word`; read or clear `in` (the MMU
/// is off: nothing is cached, the device sees what was stored).
fn fill_out(word: u64) {
    for w in DMA_OUT.iter() {
        w.store(word, Ordering::SeqCst);
    }
}
fn first_in() -> u64 {
    DMA_IN[0].load(Ordering::SeqCst)
}
fn clear_in(word: u64) {
    for w in DMA_IN.iter() {
        w.store(word, Ordering::SeqCst);
    }
}

/// The edu's command register in the domain's configuration window (the
/// root bus of the partitioner's generic ECAM host, at guest 0x3f000000):
/// its address and value.
fn edu_command() -> Option<(u64, u16)> {
    const ECAM: u64 = 0x3f00_0000;
    (0..32u64).find_map(|dev| {
        let f = ECAM + (dev << 15);
        let id = try_read32(f).ok()?;
        (id == edu::ID).then(|| {
            let at = f + 4;
            (at, try_read32(at).map_or(0, |v| v as u16))
        })
    })
}

/// The `dma-attack=` word: see the module documentation.
fn dma_attacks(name: &str, list: &str) {
    let Some((bar, _)) = bulkhead_rt::device_reg(edu::COMPATIBLE) else {
        println!("{name}: dma: no edu device");
        return;
    };
    println!("{name}: dma: edu registers at {bar:#x}");
    // A function comes with its memory decoding on and bus mastering off:
    // mastering is the driver's to turn on, through the configuration
    // space (the partitioner's virtual ECAM), as on a machine of its own.
    match edu_command() {
        Some((at, command)) => {
            println!("{name}: dma: command {command:#x} at start");
            let on = command | edu::CMD_MEMORY | edu::CMD_BUS_MASTER;
            let _ = try_write32(at, u32::from(on));
        }
        None => println!("{name}: dma: edu not in the virtual ECAM"),
    }
    const SENT: u64 = 0xd3a_5e17_c0de_0001;
    const MARKER: u64 = 0x5afe_5afe_5afe_5afe;
    // Control: own RAM -> device -> own RAM.
    fill_out(SENT);
    clear_in(0);
    let control = edu_dma(bar, dma_buf("out"), edu::BUFFER, false)
        && edu_dma(bar, edu::BUFFER, dma_buf("in"), true)
        && first_in() == SENT;
    println!(
        "{name}: dma control: {}",
        if control { "ok" } else { "FAILED" }
    );
    let mut n = 0;
    for entry in list.split(',').filter(|e| !e.is_empty()) {
        let Some((label, addr)) = parse_target(entry) else {
            println!("{name}: bad dma target \"{entry}\"");
            continue;
        };
        // Write: the device's buffer (holding the pattern) to the target.
        fill_out(PATTERN);
        let _ = edu_dma(bar, dma_buf("out"), edu::BUFFER, false);
        let _ = edu_dma(bar, edu::BUFFER, addr, true);
        println!("{name}: dma write {label} @{addr:#x}: sent (its owner checks its memory)");
        // Read: the target into the buffer (which holds the marker first),
        // then the buffer back to own RAM.
        fill_out(MARKER);
        let _ = edu_dma(bar, dma_buf("out"), edu::BUFFER, false);
        let _ = edu_dma(bar, addr, edu::BUFFER, false);
        clear_in(0);
        let _ = edu_dma(bar, edu::BUFFER, dma_buf("in"), true);
        // A faulted DMA read gives the device zeros (QEMU) or nothing.
        match first_in() {
            w @ (MARKER | 0) => println!("{name}: dma read {label} @{addr:#x}: blocked ({w:#x})"),
            w => println!("{name}: dma read {label} @{addr:#x}: LEAKED {w:#x}"),
        }
        n += 2;
    }
    println!("{name}: dma attacks done: {n} attempted");
}

/// The `misaligned=` word: see the module documentation.
fn misaligned(name: &str, list: &str) {
    let mut tally = Tally::default();
    for entry in list.split(',').filter(|e| !e.is_empty()) {
        let Some((label, addr)) = parse_target(entry) else {
            println!("{name}: bad misaligned target \"{entry}\"");
            continue;
        };
        // Both accesses with the map on; the lines once it is off again.
        let value = PATTERN as u32;
        let accesses = bulkhead_rt::stage1::with_normal_window(addr, || {
            (try_read32(addr), try_write32(addr, value).map(|()| value))
        });
        let Some((read, write)) = accesses else {
            println!("{name}: misaligned {label} @{addr:#x}: skipped (cannot map it)");
            continue;
        };
        tally.report(name, "misaligned read", label, addr, read.map(u64::from));
        tally.report(name, "misaligned write", label, addr, write.map(u64::from));
    }
    println!(
        "{name}: misaligned done: {} attempted, {} aborted",
        tally.attempted, tally.aborted
    );
}

/// `label:address`, the address in hex with `0x` or in decimal.
fn parse_target(entry: &str) -> Option<(&str, u64)> {
    let (label, addr) = entry.split_once(':')?;
    let addr = parse_addr(addr)?;
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

/// An address in hex with `0x` or in decimal.
fn parse_addr(addr: &str) -> Option<u64> {
    match addr.strip_prefix("0x").or_else(|| addr.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => addr.parse().ok(),
    }
}

/// `thumb-el0-sgir`: a GICD_SGIR store from Thumb EL0 in an IT block.
fn thumb_el0_sgir(name: &str) {
    use bulkhead_rt::gic::{discover, Version};
    let Some(info) = discover() else {
        println!("{name}: thumb el0 sgir skipped: no GIC");
        return;
    };
    let sgir = info.dist + bulkhead_rt::gic::regs::GICD_SGIR;
    match (info.version, u32::try_from(sgir)) {
        (Version::V2, Ok(sgir)) => match bulkhead_rt::hardening::thumb_el0_sgir(sgir) {
            Some((r2, at)) => println!("{name}: thumb el0 sgir -> r2 {r2:#x}, svc at +{at:#x}"),
            None => println!("{name}: thumb el0 sgir absent"),
        },
        (Version::V2, Err(_)) => println!("{name}: thumb el0 sgir skipped: GICD above 4 GiB"),
        (Version::V3, _) => println!("{name}: thumb el0 sgir skipped: GICv3"),
    }
}

fn main(_dtb: usize) -> ! {
    let info = bulkhead_rt::info();
    let name = info.name();
    let bootargs = info.bootargs();

    bulkhead_rt::report_resources();
    if bootargs.split_ascii_whitespace().any(|w| w == "audit") {
        audit::run(name, bootargs);
        let mut beat: u64 = 0;
        loop {
            delay_ms(HEARTBEAT_MS);
            beat += 1;
            println!("{name}: heartbeat {beat}");
        }
    }
    println!("{name}: probe ready: {} targets", targets(bootargs).count());
    let mut tally = Tally::default();
    for entry in targets(bootargs) {
        let Some((label, addr)) = parse_target(entry) else {
            println!("{name}: bad attack target \"{entry}\"");
            continue;
        };
        tally.report(name, "attack read", label, addr, try_read(addr));
        if bulkhead_rt::is_own_memory(addr, 8) {
            println!("{name}: attack write {label} @{addr:#x}: skipped (own image or device tree)");
            continue;
        }
        tally.report(
            name,
            "attack write",
            label,
            addr,
            try_write(addr, PATTERN).map(|()| PATTERN),
        );
    }
    println!(
        "{name}: attacks done: {} attempted, {} aborted",
        tally.attempted, tally.aborted
    );
    if let Some(list) = word(bootargs, "misaligned=") {
        misaligned(name, list);
    }
    if bootargs.split_ascii_whitespace().any(|w| w == "thumb-el0") {
        match bulkhead_rt::hardening::thumb_el0_line() {
            Some((imm, at)) => println!("{name}: thumb el0 -> svc #{imm} at +{at:#x}"),
            None => println!("{name}: thumb el0 absent"),
        }
    }
    if bootargs
        .split_ascii_whitespace()
        .any(|w| w == "thumb-el0-coproc")
    {
        match bulkhead_rt::hardening::thumb_el0_coproc() {
            Some(([r0, r1, r2], at)) => println!(
                "{name}: thumb el0 coproc -> r0 {r0:#x} r1 {r1:#x} r2 {r2:#x}, svc at +{at:#x}"
            ),
            None => println!("{name}: thumb el0 coproc absent"),
        }
    }
    if bootargs
        .split_ascii_whitespace()
        .any(|w| w == "thumb-el0-sgir")
    {
        thumb_el0_sgir(name);
    }
    if bootargs.split_ascii_whitespace().any(|w| w == "cpu-checks") {
        cpu_checks(name);
    }

    if let Some(list) = word(bootargs, "dma-attack=") {
        dma_attacks(name, list);
    }
    if let Some((n, addr)) = word(bootargs, "flood=").and_then(parse_flood) {
        flood(name, n, addr);
    }
    if let Some(n) = word(bootargs, "power-flood=").and_then(|v| v.parse().ok()) {
        power_flood(name, n);
    }
    if bootargs
        .split_ascii_whitespace()
        .any(|w| w == "set-way-flood")
    {
        set_way_flood(name);
    }
    if bootargs.split_ascii_whitespace().any(|w| w == "system-off") {
        println!("{name}: system-off");
        bulkhead_rt::psci::system_off();
    }
    if bootargs.split_ascii_whitespace().any(|w| w == "vcpu0-off") {
        let ret = bulkhead_rt::smp::start(1, heartbeats_on_vcpu1);
        println!("{name}: vcpu0-off: vcpu 1 started ({ret}), vcpu 0 powers off");
        bulkhead_rt::psci::cpu_off();
        bulkhead_rt::halt()
    }
    if bootargs.split_ascii_whitespace().any(|w| w == "count") {
        let mut k: u64 = 0;
        loop {
            k += 1;
            println!("{name}: count {k}");
        }
    }

    let mut beat: u64 = 0;
    loop {
        delay_ms(HEARTBEAT_MS);
        beat += 1;
        println!("{name}: heartbeat {beat}");
    }
}
