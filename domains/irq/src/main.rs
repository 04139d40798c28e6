//! `irq`: the interrupt, multi-core and PSCI test domain.
//!
//! What it does is chosen by the words of `/chosen/bootargs` (without a
//! device tree, a native run under QEMU, [`NATIVE_BOOTARGS`]). The parts
//! run in this order, each only if its word is given:
//!
//! | word | what |
//! |---|---|
//! | `psci` | PSCI/SMCCC versions, PSCI_FEATURES of every function, CPU_SUSPEND standby, an unknown SMC and HVC |
//! | `smp` | start every other vCPU (count: the device tree's `/cpus`; natively, the MPIDRs AFFINITY_INFO knows) with PSCI CPU_ON |
//! | `sgi=N` | N SGI ping-pongs: vCPU 0 sends SGI 1 to vCPU 1, which answers with SGI 2 (needs `smp`) |
//! | `sgi-burst` | with IRQs masked, send itself 12 distinct SGIs (4..15), more than a vCPU has list registers, then take them: each must arrive exactly once; then (with `smp`) send the same 12 to vCPU 1 back to back, while it takes them: each must arrive exactly once |
//! | `trigger-flip=<ms>` | for that long, flip the trigger mode (`GICD_ICFGR`) of the domain's first SPI, edge and level in turn, reading the word back after every write: what reads back must be what was written (two domains doing this at once, with SPIs in the same `ICFGR` word, must not lose each other's writes); leaves it level |
//! | `sgi-regs` | GICv3: SGI 0 through `ICC_ASGI1R_EL1` and `ICC_SGI0R_EL1` to itself, to vCPU 1 (with `smp`), to vCPUs 2-15 (beyond its 2) and to cluster Aff1 = 1: its own vCPUs receive each once, the others nobody |
//! | `suspend-pending` | with IRQs masked, let its virtual timer fire, then PSCI CPU_SUSPEND (standby): it must return, and the interrupt be taken once IRQs are unmasked; then the same with SGI 0 sent to itself; then with an SGI that waits in the partitioner's queue (SGIs 4.. of rising priority sent to itself and acknowledged until every list register holds an active one) |
//! | `timer=N` | N virtual-timer interrupts at a fixed period, latency = counter at IRQ entry - CNTV_CVAL |
//! | `timer-period-us=P` | the timer period, in microseconds (default 2000) |
//! | `timer-late=K` | every K-th timer interrupt leaves its deadline in the past, as if the next one were missed: the timer's level stays asserted through the EOI, and the next interrupt must follow at once (a GIC that loses a level still high at the end of an interrupt hangs here) |
//! | `attack-gic` | enable, prioritise, route and pend a foreign SPI (`foreign-spi=<n>`, an SPI number: INTID n + 32), then the domain's own first SPI, reading each back |
//! | `attack-sgi` | SGIs to all but self and to target lists beyond the domain |
//! | `attack-cpu-on=<mpidr>` | PSCI CPU_ON of a core the domain does not have |
//! | `relist=<n>` | with IRQs masked, hold its console UART's (a passthrough PL011's) transmit interrupt high until the partitioner has put the SPI in a list register, then clear the SPI's active state through `GICD_ICACTIVER` `n` times (each time it is taken again at EL2), drop the line, unmask IRQs: the SPI must be delivered once (the same interrupt in several list registers would be delivered once per register); then the same with its virtual timer, fired at once and its active state cleared through `GICR_ICACTIVER0` / `GICD_ICACTIVER0` |
//! | `hog-irq` | last, for ever: hold its console UART's (a passthrough PL011's) transmit interrupt high, at priority 0, and with IRQs masked clear the SPI's active state through `GICD_ICACTIVER` over and over, so that it is pending and inactive at every return to the domain: the partitioner's own interrupts taken on its core (its console's input) must still be taken |
//! | `uart-echo` | receive interrupts of the console UART: print every byte received |
//! | `no-heartbeat` | no heartbeat lines (heartbeats are on by default; `heartbeat` is accepted) |
//! | `reset-after=<ms>` / `off-after=<ms>` | that long after the heartbeat phase starts, PSCI SYSTEM_RESET / SYSTEM_OFF |
//! | `reset-state` | at boot, before the GIC is set up, check that every EL1/EL0 register the vCPU was entered with (system registers, virtual timer, V0-V31, FPCR, FPSR) and its GIC CPU interface (priority mask, binary points, group enables, EOImode, active and running priority) are in their cold reset state, and that 64 KiB of its RAM above its image read zero; then fill that RAM; then send itself an SGI at default priority, which must arrive; then dirty all of that state (an SGI left active without EOI, a restrictive priority mask, the largest binary points, Group 1 off) and call SYSTEM_RESET at once. With a `restart-limit`, every restart must be clean |
//! | `cpu-on-0` | (2 vCPUs) vCPU 0 starts vCPU 1, which tries CPU_ON of vCPU 0 (must be ALREADY_ON), then, once vCPU 0 has done CPU_OFF, CPU_ON of vCPU 0 at the runtime's secondary entry with its own context id: vCPU 0 must come up there, with that context, over live memory |
//! | `reset-race` | (2 vCPUs) vCPU 0 starts vCPU 1; once it is up, vCPU 1 calls SYSTEM_RESET and vCPU 0 SYSTEM_RESET or CPU_OFF (a random bit), each after a random delay of up to 1023 counter ticks, racing: with a `restart-limit`, a storm of restarts that must each be carried out |
//!
//! Numbers are decimal or `0x` hex. Unknown words are reported and ignored.
//!
//! Output: one fact per line, each `<name>: ` (the domain's name,
//! `/chosen/bulkhead,domain-name`, or `native`) then one of:
//!
//! ```text
//! boot: start
//! domain cpus=<n> memory=<base:#x>+<size:#x>[,...]          (as hello)
//! boot: bootargs "<bootargs>"
//! boot: unknown word "<word>"
//! gic: v3 dist=<#x> redist=<#x> (<device tree|probed>)
//! gic: v2 dist=<#x> cpu=<#x> (<device tree|probed>)
//! gic: none (<reason>)
//! psci: conduit <hvc|smc>
//! psci: version <#x>                        (a negative error in decimal)
//! psci: smccc <#x>                          (a negative error in decimal)
//! psci: features <function>=<ret>          one line per function, in this order:
//!       psci_version cpu_suspend cpu_off cpu_on affinity_info system_off
//!       system_reset psci_features smccc_version migrate system_suspend
//! psci: arch-features workaround_1=<ret> workaround_2=<ret> workaround_3=<ret>
//! psci: cpu_suspend standby -> <ret>
//! psci: vendor-smc -> <ret|undefined>       SMC 0xc2000000, expected -1
//! psci: unknown-hvc -> <ret|undefined>      HVC 0x86000000, expected -1
//! smp: cpu_on vcpu <i> -> <ret>             one per vCPU 1..n
//! smp: vcpu <i> up                          printed by vCPU i itself (may come
//!                                           before its cpu_on line)
//! smp: <k> vcpus up                         k counts vCPU 0
//! smp: timeout, <k> of <n> vcpus up         (instead, after 1 s)
//! smp: affinity_info vcpu <i> -> <ret>      one per vCPU 0..n (0 = on)
//! sgi: <N> round trips, ticks median=<t> max=<t>
//! sgi: latencies <t>,<t>,...                round trips in order, at most 8 per line
//! sgi: timeout after <k> round trips        (if a pong does not come within 100 ms)
//! sgi: skipped (<reason>)
//! trigger-flip: spi <n> <w> writes, <k> lost        <k>: read back differently
//! trigger-flip: spi <n> aborted esr=<#x> far=<#x>
//! trigger-flip: no spi
//! sgi-regs: <reg> <target>: received <a>,<b>,...   SGI 0 deliveries per vCPU
//!       (0, 1, ...) within 10 ms; <reg> asgi1r, sgi0r; <target> self,
//!       vcpu 1, list 2-15, aff1=1 list 0-15
//! sgi-regs: skipped (<reason>)
//! suspend: <timer|sgi> pending -> <ret>, taken <k> while masked, <m> after unmasking
//! suspend: queued pending -> <ret>, taken <k> while masked, <m> after unmasking (<n> list registers active)
//! suspend: queued skipped (more than <n> list registers)
//! timer: period <ticks> ticks, counter <hz> Hz
//! timer: <N> interrupts, latency ticks min=<t> median=<t> p99=<t> max=<t>
//! timer: latencies <t>,<t>,...              samples in order, at most 8 per line
//! timer: note: clamped to 4096 samples      (N larger than that)
//! attack: gic <reg> <foreign|own> spi <n>: before <v> wrote <v> reads <v>
//! attack: gic <reg> <foreign|own> spi <n>: aborted esr=<#x> far=<#x>
//!       <reg> is enable, priority, route, pending, in that order, foreign
//!       first; all values in hex: enable/pending 0 or 1, priority a byte
//!       (writes 0x80), route GICD_IROUTER (GICv3; writes the domain's last
//!       vCPU, Aff0 = n-1) or the GICD_ITARGETSR byte (GICv2; writes that
//!       vCPU's CPU interface mask)
//! attack: gic deliveries <foreign|own> spi <n>: <k>
//!       how often that SPI was then delivered to the domain (10 ms later;
//!       a foreign one never may be, the own one may)
//! attack: gic foreign: no foreign-spi= given
//! attack: gic own: no spi
//! attack: sgi <target>: own vcpus received <k>
//!       GICv3 <target>: self, irm=1 (all but self), aff0 list 0-15,
//!       aff1=1 list 0-15, aff2=1 list 0-15, aff3=1 list 0-15;
//!       GICv2: sgir self, sgir all-but-self, sgir list=0xff
//! attack: cpu_on mpidr <#x> -> <ret>        expected -2 (INVALID_PARAMETERS)
//! attack: cpu_on own vcpu 0 at 0x0 -> <ret>  expected -9 (INVALID_ADDRESS:
//!       an entry point outside the domain's RAM)
//! relist: spi <n> held high, its active state cleared <k> times
//! relist: spi <n> delivered <d> time(s)
//! relist: timer delivered <d> time(s)      (then the same with its virtual timer)
//! relist: no spi (<reason>)
//! hog: spi <n> priority <#x>              (hog-irq: the priority reads back)
//! hog: pending <0|1>, clearing its active state    (then nothing more)
//! hog: no spi (<reason>)
//! uart: ready
//! uart: rx 0x<hh>                           one per byte received
//! uart: no receive interrupt (<reason>)
//! lifecycle: SYSTEM_RESET in <ms> ms        (or SYSTEM_OFF) when the heartbeat phase starts
//! lifecycle: calling SYSTEM_RESET           (or SYSTEM_OFF)
//! lifecycle: SYSTEM_RESET returned <ret>    (only if it did)
//! reset-state: ram clean (<a>..<b> reads zero)  the 64 KiB above the image
//! reset-state: ram dirty: <n> word(s) ...    (instead: what a restart left)
//! reset-state: ram filled (<a>..<b>)         before the reset
//! reset-state: clean                        every register at its reset value
//! reset-state: dirty <register>=<#x>        one per register that is not
//! reset-state: <k> dirty register(s)        (instead of clean)
//! reset-state: sgi at default priority <arrived|did not arrive>
//!                                           (an SGI to itself, within 1 s)
//! reset-state: could not leave sgi 0 active (if its acknowledge failed)
//! reset-state: dirtying every register, then SYSTEM_RESET
//! reset-state: the call returned <ret>      (only if SYSTEM_RESET did)
//! cpu-on-0: cpu_on vcpu 1 -> <ret>
//! cpu-on-0: vcpu 1: cpu_on vcpu 0 while on -> <ret>           expected -4
//! cpu-on-0: vcpu 0 powers off
//! cpu-on-0: vcpu 1: cpu_on vcpu 0 after its cpu_off -> <ret>   expected 0
//! cpu-on-0: vcpu 0 up at the secondary entry, context <#x>, marker <#x>
//!       the context must be the one vCPU 1 gave (0xc0de00000000002a), the
//!       marker the one vCPU 0 set before its CPU_OFF (0x5eed1234): the
//!       domain's memory was not reloaded
//! cpu-on-0: timeout (<what>)                (if a step does not come within 5 s)
//! reset-race: cpu_on vcpu 1 -> <ret>        (only if it is not 0)
//! reset-race: cpu_off returned <ret>        (only if CPU_OFF did)
//! heartbeat <k>                             every 50 ms, from 1
//! irq: unexpected intid <i> on vcpu <v>
//! <mode>: skipped (no interrupt controller)
//! ```
//!
//! Ticks are counts of the virtual counter (`CNTVCT_EL0`, at `counter` Hz).
//! Timer latencies are taken with vCPU 0 idle in `wfi` (the other vCPUs
//! idle too); SGI round trips run from just before vCPU 0's ping to the
//! entry of its pong's IRQ exception.
//! Statistics use the nearest-rank method: the median is the
//! `ceil(n/2)`-th smallest sample, p99 the `ceil(0.99 n)`-th.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use bulkhead_rt::gic::{self, SgiTarget, Version};
use bulkhead_rt::psci::{self, fid, Conduit};
use bulkhead_rt::{cpu, irq, smp, time, timer, try_read, try_read32, try_write, try_write32};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

bulkhead_rt::entry!(main);

/// What a native run (no device tree) does.
pub const NATIVE_BOOTARGS: &str = "psci smp sgi=10 timer=50 uart-echo";

/// Prints `<name>: <text>` as one line.
macro_rules! say {
    ($($arg:tt)*) => {
        bulkhead_rt::println!("{}: {}", bulkhead_rt::name(), format_args!($($arg)*))
    };
}

mod lifecycle;

const HEARTBEAT_MS: u64 = 50;
const DEFAULT_TIMER_PERIOD_US: u64 = 2000;
const MAX_TIMER_SAMPLES: usize = 4096;
const MAX_SGI_SAMPLES: usize = 1024;
/// SGIs: ping (to vCPU 1), pong (back to vCPU 0), attack probes.
const SGI_PING: u32 = 1;
const SGI_PONG: u32 = 2;
const SGI_ATTACK: u32 = 3;
/// SGI 0: the `sgi-regs` and `suspend-pending` probes.
const SGI_PROBE: u32 = lifecycle::SGI_SELF;
/// The `sgi-burst` SGIs.
const BURST_SGIS: core::ops::Range<u32> = 4..16;
/// Values printed per `latencies` line: short enough for the virtual
/// console's 120-character lines.
const VALUES_PER_LINE: usize = 8;
/// Priority written by the GIC attack.
const ATTACK_PRIORITY: u8 = 0x80;

/// The parsed bootargs.
#[derive(Default)]
struct Config {
    psci: bool,
    smp: bool,
    sgi: Option<usize>,
    timer: Option<usize>,
    timer_period_us: Option<u64>,
    timer_late: Option<u64>,
    sgi_burst: bool,
    trigger_flip: Option<u64>,
    sgi_regs: bool,
    suspend_pending: bool,
    attack_gic: bool,
    foreign_spi: Option<u32>,
    attack_sgi: bool,
    attack_cpu_on: Option<u64>,
    hog_irq: bool,
    relist: Option<u64>,
    uart_echo: bool,
    no_heartbeat: bool,
    reset_after: Option<u64>,
    off_after: Option<u64>,
    reset_state: bool,
    cpu_on_0: bool,
    reset_race: bool,
}

fn number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn parse(bootargs: &str) -> Config {
    let mut c = Config::default();
    for word in bootargs.split_ascii_whitespace() {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, number(v)),
            None => (word, None),
        };
        let known = match (key, value) {
            ("psci", None) => {
                c.psci = true;
                true
            }
            ("smp", None) => {
                c.smp = true;
                true
            }
            ("attack-gic", None) => {
                c.attack_gic = true;
                true
            }
            ("sgi-burst", None) => {
                c.sgi_burst = true;
                true
            }
            ("sgi-regs", None) => {
                c.sgi_regs = true;
                true
            }
            ("suspend-pending", None) => {
                c.suspend_pending = true;
                true
            }
            ("trigger-flip", Some(n)) => {
                c.trigger_flip = Some(n);
                true
            }
            ("attack-sgi", None) => {
                c.attack_sgi = true;
                true
            }
            ("uart-echo", None) => {
                c.uart_echo = true;
                true
            }
            ("hog-irq", None) => {
                c.hog_irq = true;
                true
            }
            ("relist", Some(n)) => {
                c.relist = Some(n);
                true
            }
            ("no-heartbeat", None) => {
                c.no_heartbeat = true;
                true
            }
            ("heartbeat", None) => true,
            ("reset-state", None) => {
                c.reset_state = true;
                true
            }
            ("cpu-on-0", None) => {
                c.cpu_on_0 = true;
                true
            }
            ("reset-race", None) => {
                c.reset_race = true;
                true
            }
            ("sgi", Some(n)) => {
                c.sgi = Some(n as usize);
                true
            }
            ("timer", Some(n)) => {
                c.timer = Some(n as usize);
                true
            }
            ("timer-period-us", Some(n)) if n > 0 => {
                c.timer_period_us = Some(n);
                true
            }
            ("timer-late", Some(n)) if n > 0 => {
                c.timer_late = Some(n);
                true
            }
            ("foreign-spi", Some(n)) if n < 988 => {
                c.foreign_spi = Some(n as u32);
                true
            }
            ("attack-cpu-on", Some(n)) => {
                c.attack_cpu_on = Some(n);
                true
            }
            ("reset-after", Some(n)) => {
                c.reset_after = Some(n);
                true
            }
            ("off-after", Some(n)) => {
                c.off_after = Some(n);
                true
            }
            _ => false,
        };
        if !known {
            say!("boot: unknown word \"{word}\"");
        }
    }
    c
}

// ---- State shared with the interrupt handler and the other vCPUs ----

/// The virtual timer's INTID and the console UART's (0 = none).
static VTIMER_INTID: AtomicU32 = AtomicU32::new(timer::DEFAULT_INTID);
static UART_INTID: AtomicU32 = AtomicU32::new(0);
/// Timer measurement: on, samples wanted, taken, period.
static MEASURING: AtomicBool = AtomicBool::new(false);
static TIMER_WANTED: AtomicUsize = AtomicUsize::new(0);
static TIMER_TAKEN: AtomicUsize = AtomicUsize::new(0);
static TIMER_PERIOD: AtomicU64 = AtomicU64::new(0);
/// `sgi-burst`: which burst SGIs arrived, and how many deliveries in all.
static BURST_SEEN: AtomicU32 = AtomicU32::new(0);
static BURST_TAKEN: AtomicU32 = AtomicU32::new(0);
/// `timer-late=K` (0 = off).
static TIMER_LATE: AtomicU64 = AtomicU64::new(0);
static TIMER_SAMPLES: [AtomicU32; MAX_TIMER_SAMPLES] =
    [const { AtomicU32::new(0) }; MAX_TIMER_SAMPLES];
/// Secondary vCPUs that reported in.
static UP: AtomicUsize = AtomicUsize::new(0);
/// SGI ping-pong: when the ping left, pongs received, round trips.
static SENT_AT: AtomicU64 = AtomicU64::new(0);
static PONGS: AtomicUsize = AtomicUsize::new(0);
static SGI_SAMPLES: [AtomicU32; MAX_SGI_SAMPLES] = [const { AtomicU32::new(0) }; MAX_SGI_SAMPLES];
/// The SPIs the GIC attack pends (foreign, own; 0 = none) and how often
/// each was then delivered to the domain.
static ATTACK_SPIS: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];
static ATTACK_SPI_DELIVERED: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];
/// Attack SGIs each vCPU received.
static ATTACK_SEEN: [AtomicU32; cpu::MAX_VCPUS] = [const { AtomicU32::new(0) }; cpu::MAX_VCPUS];
/// `SGI_PROBE`s each vCPU received.
static PROBE_SEEN: [AtomicU32; cpu::MAX_VCPUS] = [const { AtomicU32::new(0) }; cpu::MAX_VCPUS];
/// Virtual timer interrupts taken (any purpose).
static TIMER_IRQS: AtomicU32 = AtomicU32::new(0);

fn ticks_u32(t: u64) -> u32 {
    u32::try_from(t).unwrap_or(u32::MAX)
}

/// Every interrupt of every vCPU.
fn on_irq(intid: u32) {
    match intid {
        SGI_PING => gic::send_sgi(SGI_PONG, SgiTarget::Vcpu(0)),
        SGI_PONG => {
            let rt = irq::entry_ticks().wrapping_sub(SENT_AT.load(Ordering::Acquire));
            let i = PONGS.load(Ordering::Relaxed);
            if let Some(slot) = SGI_SAMPLES.get(i) {
                slot.store(ticks_u32(rt), Ordering::Relaxed);
            }
            PONGS.store(i + 1, Ordering::Release);
        }
        SGI_ATTACK => {
            ATTACK_SEEN[cpu::index() % cpu::MAX_VCPUS].fetch_add(1, Ordering::AcqRel);
        }
        // SGI 0: the `sgi-regs` probe and the lifecycle modes' own SGI
        // (never used by the same run); both count it.
        SGI_PROBE => {
            PROBE_SEEN[cpu::index() % cpu::MAX_VCPUS].fetch_add(1, Ordering::AcqRel);
            lifecycle::on_sgi_self();
        }
        i if BURST_SGIS.contains(&i) => {
            BURST_SEEN.fetch_or(1 << i, Ordering::AcqRel);
            BURST_TAKEN.fetch_add(1, Ordering::AcqRel);
        }
        i if i == VTIMER_INTID.load(Ordering::Relaxed) => on_timer(),
        i if i == UART_INTID.load(Ordering::Relaxed) && i != 0 => on_uart(),
        i if let Some(k) = ATTACK_SPIS
            .iter()
            .position(|s| s.load(Ordering::Relaxed) == i) =>
        {
            ATTACK_SPI_DELIVERED[k].fetch_add(1, Ordering::AcqRel);
        }
        other => say!("irq: unexpected intid {other} on vcpu {}", cpu::index()),
    }
}

fn on_timer() {
    TIMER_IRQS.fetch_add(1, Ordering::AcqRel);
    let now = time::ticks();
    let cval = timer::compare();
    if !MEASURING.load(Ordering::Acquire) {
        // A wake-up (see `wait_for`): its job is done once the deadline
        // passed; an early or stale one leaves the timer armed.
        if now >= cval {
            timer::stop();
        }
        return;
    }
    // The counter at exception entry, unless this interrupt was acknowledged
    // in an exception taken for another, before the timer fired.
    let entry = irq::entry_ticks();
    let at = if entry >= cval { entry } else { now };
    let taken = TIMER_TAKEN.load(Ordering::Relaxed);
    if let Some(slot) = TIMER_SAMPLES.get(taken) {
        slot.store(ticks_u32(at - cval), Ordering::Relaxed);
    }
    let taken = taken + 1;
    let late = TIMER_LATE.load(Ordering::Relaxed);
    if taken >= TIMER_WANTED.load(Ordering::Relaxed) {
        timer::stop();
        MEASURING.store(false, Ordering::Release);
    } else if late != 0 && (taken as u64).is_multiple_of(late) {
        // Leave the deadline where it is, in the past: the interrupt stays
        // asserted through our EOI and must be taken again right away.
    } else {
        // Fixed period from the last deadline; re-anchored on a miss, so a
        // late interrupt does not make the next ones late too.
        let period = TIMER_PERIOD.load(Ordering::Relaxed);
        let mut next = cval + period;
        if next <= now {
            next = now + period;
        }
        timer::set_compare(next);
    }
    TIMER_TAKEN.store(taken, Ordering::Release);
}

fn on_uart() {
    // Clear first, then drain: a byte that arrives after the last read
    // raises the interrupt again instead of waiting unseen in the FIFO.
    bulkhead_rt::console::clear_rx_interrupt();
    while let Some(byte) = bulkhead_rt::console::read_byte() {
        say!("uart: rx 0x{byte:02x}");
    }
}

// ---- Waiting (vCPU 0) ----

fn ms_to_ticks(ms: u64) -> u64 {
    (u128::from(time::frequency()) * u128::from(ms) / 1000) as u64
}

/// Waits (vCPU 0) until `done()` or `timeout_ms` passed; returns `done()`.
/// With a GIC the vCPU sleeps in `wfi`, woken by interrupts and by the
/// virtual timer armed at the deadline; without one it spins.
fn wait_for(have_gic: bool, done: impl Fn() -> bool, timeout_ms: u64) -> bool {
    let deadline = time::ticks() + ms_to_ticks(timeout_ms);
    wait_until_tick(have_gic, &done, deadline);
    done()
}

fn wait_until_tick(have_gic: bool, done: &dyn Fn() -> bool, deadline: u64) {
    if !have_gic {
        while !done() && time::ticks() < deadline {
            core::hint::spin_loop();
        }
        return;
    }
    timer::arm_at(deadline);
    irq::wait_until(|| done() || time::ticks() >= deadline, None);
    timer::stop();
}

fn sleep_ms(have_gic: bool, ms: u64) {
    wait_until_tick(have_gic, &|| false, time::ticks() + ms_to_ticks(ms));
}

// ---- Statistics ----

/// Sorted copy of `samples` in `buf`; returns it.
fn sorted<'a>(samples: &[AtomicU32], n: usize, buf: &'a mut [u32]) -> &'a [u32] {
    let n = n.min(samples.len()).min(buf.len());
    for (b, s) in buf.iter_mut().zip(samples).take(n) {
        *b = s.load(Ordering::Relaxed);
    }
    let out = &mut buf[..n];
    out.sort_unstable();
    out
}

/// Nearest-rank percentile `p` (1..=100) of sorted, non-empty `v`.
fn percentile(v: &[u32], p: usize) -> u32 {
    let rank = (v.len() * p).div_ceil(100).max(1);
    v[rank - 1]
}

/// Prints `<prefix> v,v,...` lines, [`VALUES_PER_LINE`] values each.
fn print_values(prefix: &str, samples: &[AtomicU32], n: usize) {
    let n = n.min(samples.len());
    for chunk in samples[..n].chunks(VALUES_PER_LINE) {
        say!("{prefix} {}", Values(chunk));
    }
}

/// Comma-separated values, for [`print_values`].
struct Values<'a>(&'a [AtomicU32]);

impl core::fmt::Display for Values<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{}", v.load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}

// ---- The parts ----

fn run_psci(have_gic: bool) {
    say!("psci: conduit {}", psci::conduit().name());
    say!("psci: version {}", Version32(psci::version()));
    say!("psci: smccc {}", Version32(psci::smccc_version()));
    let functions = [
        ("psci_version", fid::PSCI_VERSION),
        ("cpu_suspend", fid::CPU_SUSPEND_64),
        ("cpu_off", fid::CPU_OFF),
        ("cpu_on", fid::CPU_ON_64),
        ("affinity_info", fid::AFFINITY_INFO_64),
        ("system_off", fid::SYSTEM_OFF),
        ("system_reset", fid::SYSTEM_RESET),
        ("psci_features", fid::PSCI_FEATURES),
        ("smccc_version", fid::SMCCC_VERSION),
        ("migrate", fid::MIGRATE_64),
        ("system_suspend", fid::SYSTEM_SUSPEND_64),
    ];
    for (name, f) in functions {
        say!("psci: features {name}={}", psci::features(f));
    }
    say!(
        "psci: arch-features workaround_1={} workaround_2={} workaround_3={}",
        psci::smccc_arch_features(fid::SMCCC_ARCH_WORKAROUND_1),
        psci::smccc_arch_features(fid::SMCCC_ARCH_WORKAROUND_2),
        psci::smccc_arch_features(fid::SMCCC_ARCH_WORKAROUND_3)
    );
    if have_gic {
        // Standby returns at the next interrupt: the timer, 1 ms on.
        irq::disable();
        timer::arm_in(ms_to_ticks(1));
        let ret = psci::cpu_suspend(0);
        irq::enable();
        wait_until_tick(true, &|| false, timer::compare());
        say!("psci: cpu_suspend standby -> {ret}");
    } else {
        say!("psci: cpu_suspend skipped (no interrupt controller)");
    }
    let show = |r: Result<i64, psci::Undefined>| match r {
        Ok(v) => Num::Value(v),
        Err(psci::Undefined) => Num::Undefined,
    };
    say!(
        "psci: vendor-smc -> {}",
        show(psci::try_call(Conduit::Smc, 0xc200_0000, [0; 3]))
    );
    say!(
        "psci: unknown-hvc -> {}",
        show(psci::try_call(Conduit::Hvc, 0x8600_0000, [0; 3]))
    );
}

/// A version number for printing: hex, or the (negative) error in decimal.
struct Version32(i64);

impl core::fmt::Display for Version32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 < 0 {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

/// A call result for printing: a number or `undefined`.
enum Num {
    Value(i64),
    Undefined,
}

impl core::fmt::Display for Num {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Num::Value(v) => write!(f, "{v}"),
            Num::Undefined => f.write_str("undefined"),
        }
    }
}

/// vCPUs the domain has: the device tree's, or natively those AFFINITY_INFO
/// knows (QEMU answers INVALID_PARAMETERS for a core it does not have).
fn vcpu_count(info: &bulkhead_rt::DomainInfo) -> usize {
    if info.dtb().is_some() {
        return info.cpus().min(cpu::MAX_VCPUS);
    }
    1 + (1..cpu::MAX_VCPUS)
        .take_while(|&i| psci::affinity_info(i as u64) >= 0)
        .count()
}

fn secondary_main(vcpu: usize) -> ! {
    if gic::present() {
        for sgi in [SGI_PING, SGI_PONG, SGI_ATTACK, SGI_PROBE] {
            gic::configure(sgi, gic::DEFAULT_PRIORITY);
        }
        for sgi in BURST_SGIS {
            gic::configure(sgi, gic::DEFAULT_PRIORITY);
        }
    }
    say!("smp: vcpu {vcpu} up");
    UP.fetch_add(1, Ordering::AcqRel);
    irq::enable();
    loop {
        irq::wait_for_interrupt();
    }
}

/// Starts vCPUs 1..n; returns how many are up, counting vCPU 0.
fn run_smp(have_gic: bool, n: usize) -> usize {
    let mut started = 0;
    for v in 1..n {
        let ret = smp::start(v, secondary_main);
        say!("smp: cpu_on vcpu {v} -> {ret}");
        if ret == psci::SUCCESS {
            started += 1;
        }
    }
    let all = wait_for(have_gic, || UP.load(Ordering::Acquire) >= started, 1000);
    let up = 1 + UP.load(Ordering::Acquire);
    if all && up == n {
        say!("smp: {up} vcpus up");
    } else {
        say!("smp: timeout, {up} of {n} vcpus up");
    }
    for v in 0..n {
        say!(
            "smp: affinity_info vcpu {v} -> {}",
            psci::affinity_info(v as u64)
        );
    }
    up
}

fn run_sgi(have_gic: bool, rounds: usize) {
    let rounds = rounds.min(MAX_SGI_SAMPLES);
    let mut done = 0;
    for _ in 0..rounds {
        let before = PONGS.load(Ordering::Acquire);
        SENT_AT.store(time::ticks(), Ordering::Release);
        gic::send_sgi(SGI_PING, SgiTarget::Vcpu(1));
        if !wait_for(have_gic, || PONGS.load(Ordering::Acquire) > before, 100) {
            say!("sgi: timeout after {done} round trips");
            return;
        }
        done += 1;
    }
    let mut buf = [0u32; MAX_SGI_SAMPLES];
    let v = sorted(&SGI_SAMPLES, done, &mut buf);
    if let Some(&max) = v.last() {
        say!(
            "sgi: {done} round trips, ticks median={} max={max}",
            percentile(v, 50)
        );
    } else {
        say!("sgi: 0 round trips");
    }
    print_values("sgi: latencies", &SGI_SAMPLES, done);
}

/// More SGIs pending at once than the vCPU has list registers: the rest
/// wait in the partitioner's queue and must follow, each exactly once.
fn run_sgi_burst(have_gic: bool, remote: bool) {
    let all = BURST_SGIS.fold(0u32, |m, i| m | 1 << i);
    for sgi in BURST_SGIS {
        gic::configure(sgi, gic::DEFAULT_PRIORITY);
    }
    let me = cpu::index();
    irq::masked(|| {
        for sgi in BURST_SGIS {
            gic::send_sgi(sgi, SgiTarget::Vcpu(me));
        }
    });
    wait_for(have_gic, || BURST_SEEN.load(Ordering::Acquire) == all, 100);
    // Give a duplicate time to show up.
    sleep_ms(have_gic, 5);
    say!(
        "sgi-burst: {} of {} received, {} deliveries",
        BURST_SEEN.load(Ordering::Acquire).count_ones(),
        BURST_SGIS.len(),
        BURST_TAKEN.load(Ordering::Acquire)
    );
    if !remote {
        return;
    }
    // The same to vCPU 1, each in its own write while it takes them: the
    // SGIs meet in the partitioner's pending bitmap for its core, in its
    // list registers and in its queue.
    BURST_SEEN.store(0, Ordering::Release);
    BURST_TAKEN.store(0, Ordering::Release);
    for sgi in BURST_SGIS {
        gic::send_sgi(sgi, SgiTarget::Vcpu(1));
    }
    wait_for(have_gic, || BURST_SEEN.load(Ordering::Acquire) == all, 100);
    sleep_ms(have_gic, 5);
    say!(
        "sgi-burst: vcpu 1: {} of {} received, {} deliveries",
        BURST_SEEN.load(Ordering::Acquire).count_ones(),
        BURST_SGIS.len(),
        BURST_TAKEN.load(Ordering::Acquire)
    );
}

/// Flips the trigger mode of the domain's first SPI for `ms` milliseconds,
/// writing its `GICD_ICFGR` word and reading it back, again and again.
/// The word holds 16 interrupts, possibly other domains' too (they read as
/// zero here and writing zero to them is ignored): a partitioner that
/// read-modify-writes the shared physical word without excluding the
/// others loses writes, which shows as a read-back that differs from what
/// was just written.
fn run_trigger_flip(info: &gic::GicInfo, ms: u64) {
    let mut own = [0u32; 1];
    if bulkhead_rt::device_spis(&mut own) == 0 || own[0] < 32 {
        say!("trigger-flip: no spi");
        return;
    }
    let intid = own[0];
    let word = (info.dist + gic::regs::GICD_ICFGR + 4 * (intid as usize / 16)) as u64;
    let bit = 2u32 << (2 * (intid % 16));
    let end = time::ticks() + ms_to_ticks(ms);
    let (mut writes, mut lost) = (0u64, 0u64);
    let mut edge = false;
    let result = (|| -> Access<()> {
        while time::ticks() < end {
            edge = !edge;
            // The domain sees only its own interrupts' fields in the word
            // (the rest read as zero): writing just its own bit is the
            // read-modify-write of its view, one access fewer.
            try_write32(word, if edge { bit } else { 0 })?;
            writes += 1;
            if (try_read32(word)? & bit != 0) != edge {
                lost += 1;
            }
        }
        try_write32(word, 0)
    })();
    match result {
        Ok(()) => say!(
            "trigger-flip: spi {} {writes} writes, {lost} lost",
            intid - 32
        ),
        Err(a) => say!(
            "trigger-flip: spi {} aborted esr={:#x} far={:#x}",
            intid - 32,
            a.esr,
            a.far
        ),
    }
}

fn probes_seen(vcpus: usize) -> [u32; cpu::MAX_VCPUS] {
    let mut seen = [0; cpu::MAX_VCPUS];
    for (s, p) in seen.iter_mut().zip(&PROBE_SEEN).take(vcpus) {
        *s = p.load(Ordering::Acquire);
    }
    seen
}

/// SGI 0 through `ICC_ASGI1R_EL1` and `ICC_SGI0R_EL1` (GICv3), to its own
/// vCPUs (each must receive it once) and to vCPUs it does not have
/// (nobody may). `vcpus`: how many are up.
fn run_sgi_regs(have_gic: bool, vcpus: usize) {
    let sgi = u64::from(SGI_PROBE) << 24;
    let me = cpu::index() as u64;
    let mut targets: [(&str, u64, bool); 4] = [
        ("self", (1 << (me % 16)) | ((me / 16) << 16), true),
        ("vcpu 1", 1 << 1, true),
        ("list 2-15", 0xfffc, false),
        ("aff1=1 list 0-15", (1 << 16) | 0xffff, false),
    ];
    if vcpus < 2 {
        say!("sgi-regs: note: one vcpu up, vcpu 1 skipped");
        targets[1].2 = false;
        targets[1].0 = "";
    }
    for (reg, send) in [
        ("asgi1r", gic::send_asgi1r as fn(u64)),
        ("sgi0r", gic::send_sgi0r as fn(u64)),
    ] {
        for &(what, value, own) in targets.iter().filter(|t| !t.0.is_empty()) {
            let before = probes_seen(vcpus);
            let total = |s: &[u32]| s.iter().map(|&v| u64::from(v)).sum::<u64>();
            send(value | sgi);
            if own {
                wait_for(
                    have_gic,
                    || total(&probes_seen(vcpus)) > total(&before),
                    1000,
                );
            }
            // Time for a duplicate, or a foreign delivery, to show up.
            sleep_ms(have_gic, 10);
            let after = probes_seen(vcpus);
            let mut got = [0u32; cpu::MAX_VCPUS];
            for (g, (a, b)) in got.iter_mut().zip(after.iter().zip(&before)) {
                *g = a - b;
            }
            say!(
                "sgi-regs: {reg} {what}: received {}",
                Counts(&got[..vcpus.max(1)])
            );
        }
    }
}

/// Comma-separated counts.
struct Counts<'a>(&'a [u32]);

impl core::fmt::Display for Counts<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{v}")?;
        }
        Ok(())
    }
}

/// CPU_SUSPEND (standby) with an interrupt already pending for this vCPU,
/// IRQs masked: first its own virtual timer, then SGI 0 to itself. The
/// call must return at once (a pending interrupt is a wake-up event), and
/// the interrupt be taken when IRQs are unmasked.
fn run_suspend_pending() {
    let me = cpu::index() % cpu::MAX_VCPUS;
    for what in ["timer", "sgi"] {
        let count = || match what {
            "timer" => TIMER_IRQS.load(Ordering::Acquire),
            _ => PROBE_SEEN[me].load(Ordering::Acquire),
        };
        let before = count();
        irq::disable();
        if what == "timer" {
            // Fires at once; once its condition shows, the interrupt has
            // reached the GIC (and, a few instructions on, the vCPU).
            timer::arm_in(0);
            while timer::control() & timer::CTL_ISTATUS == 0 {
                core::hint::spin_loop();
            }
            let settle = time::ticks() + ms_to_ticks(1);
            while time::ticks() < settle {
                core::hint::spin_loop();
            }
        } else {
            gic::send_sgi(SGI_PROBE, SgiTarget::Vcpu(me));
        }
        let ret = psci::cpu_suspend(0);
        let masked = count() - before;
        irq::enable();
        // Spin rather than sleep: a sleep would re-arm the timer, and its
        // interrupt would then come for the wrong reason.
        let deadline = time::ticks() + ms_to_ticks(1000);
        while count() == before && time::ticks() < deadline {
            core::hint::spin_loop();
        }
        timer::stop();
        say!(
            "suspend: {what} pending -> {ret}, taken {masked} while masked, {} after unmasking",
            count() - before - masked
        );
    }
    suspend_queued();
}

/// CPU_SUSPEND with an SGI pending for this vCPU that waits in the
/// partitioner's queue, not in a list register: every list register holds
/// an interrupt this vCPU acknowledged (IRQs masked, each new SGI of a
/// higher priority than the last, so it can be acknowledged over the
/// others) until one more finds none free. Nothing in a list register is
/// pending then, so no virtual interrupt is signalled at all: only the
/// partitioner knows one is waiting.
fn suspend_queued() {
    // Distinct group priorities (steps of 0x20 hold for every binary point
    // a GIC may impose), lowest first.
    const LEVELS: usize = 8;
    let sgis = BURST_SGIS.start..BURST_SGIS.start + LEVELS as u32;
    let me = cpu::index();
    let before = BURST_TAKEN.load(Ordering::Acquire);
    let mut acked: [Option<gic::Ack>; LEVELS] = [None; LEVELS];
    let mut queued = None;
    irq::disable();
    for (k, sgi) in sgis.clone().enumerate() {
        gic::configure(sgi, 0xe0 - 0x20 * k as u8);
        gic::send_sgi(sgi, SgiTarget::Vcpu(me));
        match gic::ack() {
            Some(a) if a.intid() == sgi => acked[k] = Some(a),
            Some(a) => {
                say!(
                    "suspend: queued: acknowledged {} instead of {sgi}",
                    a.intid()
                );
                acked[k] = Some(a);
                break;
            }
            None => {
                queued = Some(k);
                break;
            }
        }
    }
    let ret = queued.map(|_| psci::cpu_suspend(0));
    let masked = BURST_TAKEN.load(Ordering::Acquire) - before;
    for a in acked.iter().rev().flatten() {
        gic::eoi(*a);
    }
    irq::enable();
    let deadline = time::ticks() + ms_to_ticks(1000);
    while queued.is_some()
        && BURST_TAKEN.load(Ordering::Acquire) == before
        && time::ticks() < deadline
    {
        core::hint::spin_loop();
    }
    for sgi in sgis {
        gic::set_priority(sgi, gic::DEFAULT_PRIORITY);
    }
    match (queued, ret) {
        (Some(k), Some(ret)) => say!(
            "suspend: queued pending -> {ret}, taken {masked} while masked, {} after unmasking ({k} list registers active)",
            BURST_TAKEN.load(Ordering::Acquire) - before - masked
        ),
        _ => say!("suspend: queued skipped (more than {LEVELS} list registers)"),
    }
}

fn run_timer(wanted: usize, period_us: u64, late: u64) {
    let wanted = if wanted > MAX_TIMER_SAMPLES {
        say!("timer: note: clamped to {MAX_TIMER_SAMPLES} samples");
        MAX_TIMER_SAMPLES
    } else {
        wanted
    };
    let hz = time::frequency();
    let period = (u128::from(hz) * u128::from(period_us) / 1_000_000).max(1) as u64;
    say!("timer: period {period} ticks, counter {hz} Hz");
    if wanted == 0 {
        say!("timer: 0 interrupts");
        return;
    }
    TIMER_PERIOD.store(period, Ordering::Relaxed);
    TIMER_LATE.store(late, Ordering::Relaxed);
    TIMER_WANTED.store(wanted, Ordering::Relaxed);
    TIMER_TAKEN.store(0, Ordering::Relaxed);
    MEASURING.store(true, Ordering::Release);
    timer::arm_in(period);
    // Idle in `wfi` between interrupts: the latency is that of an idle vCPU.
    // (Only the timer wakes this vCPU here: if its interrupts never came,
    // this would wait for ever, and the summary line would be missing.)
    irq::wait_until(|| !MEASURING.load(Ordering::Acquire), None);
    let taken = TIMER_TAKEN.load(Ordering::Acquire);
    let mut buf = [0u32; MAX_TIMER_SAMPLES];
    let v = sorted(&TIMER_SAMPLES, taken, &mut buf);
    if let (Some(&min), Some(&max)) = (v.first(), v.last()) {
        say!(
            "timer: {taken} interrupts, latency ticks min={min} median={} p99={} max={max}",
            percentile(v, 50),
            percentile(v, 99)
        );
    }
    print_values("timer: latencies", &TIMER_SAMPLES, taken);
}

/// One attack access's outcome.
type Access<T> = Result<T, bulkhead_rt::Abort>;

fn report_gic(reg: &str, whose: &str, spi: u32, result: Access<(u64, u64, u64)>) {
    match result {
        Ok((before, wrote, reads)) => say!(
            "attack: gic {reg} {whose} spi {spi}: before {before:#x} wrote {wrote:#x} reads {reads:#x}"
        ),
        Err(a) => say!(
            "attack: gic {reg} {whose} spi {spi}: aborted esr={:#x} far={:#x}",
            a.esr,
            a.far
        ),
    }
}

/// Sets `intid`'s bit in the bit-per-interrupt array at `dist + reg`
/// through `set_reg` (a set-enable or set-pending register) and reads
/// `dist + read_reg` before and after.
fn attack_bit(dist: usize, set_reg: usize, intid: u32) -> Access<(u64, u64, u64)> {
    let word = (dist + set_reg + 4 * (intid as usize / 32)) as u64;
    let bit = 1u32 << (intid % 32);
    let before = try_read32(word)? & bit != 0;
    try_write32(word, bit)?;
    let after = try_read32(word)? & bit != 0;
    Ok((u64::from(before), 1, u64::from(after)))
}

/// Read-modify-writes `intid`'s byte in the byte-per-interrupt array at
/// `dist + reg` to `value`.
fn attack_byte(dist: usize, reg: usize, intid: u32, value: u8) -> Access<(u64, u64, u64)> {
    let word = (dist + reg + (intid as usize & !3)) as u64;
    let shift = (intid % 4) * 8;
    let old = try_read32(word)?;
    let new = (old & !(0xff << shift)) | (u32::from(value) << shift);
    try_write32(word, new)?;
    let after = try_read32(word)?;
    Ok((
        u64::from((old >> shift) & 0xff),
        u64::from(value),
        u64::from((after >> shift) & 0xff),
    ))
}

/// Tries to take SPI `spi`: enable it, set its priority, route it to vCPU
/// `target` (the domain's last) and make it pending, reading each back.
fn attack_spi(info: &gic::GicInfo, whose: &str, spi: u32, target: usize) {
    use gic::regs::*;
    let intid = spi + 32;
    let dist = info.dist;
    report_gic(
        "enable",
        whose,
        spi,
        attack_bit(dist, GICD_ISENABLER, intid),
    );
    report_gic(
        "priority",
        whose,
        spi,
        attack_byte(dist, GICD_IPRIORITYR, intid, ATTACK_PRIORITY),
    );
    let route = match info.version {
        Version::V3 => {
            let reg = (dist + GICD_IROUTER + 8 * intid as usize) as u64;
            // Affinity of vCPU `target`: Aff0 = its index.
            let route = target as u64;
            (|| -> Access<(u64, u64, u64)> {
                let before = try_read(reg)?;
                try_write(reg, route)?;
                Ok((before, route, try_read(reg)?))
            })()
        }
        Version::V2 => attack_byte(dist, GICD_ITARGETSR, intid, gic::cpu_mask(target)),
    };
    report_gic("route", whose, spi, route);
    // Pending last: a GICv2 SPI with no target CPU does not read as pending.
    report_gic("pending", whose, spi, attack_bit(dist, GICD_ISPENDR, intid));
    // Leave nothing pending or enabled behind (the writes are ignored for
    // an interrupt the domain does not own).
    let word = 4 * (intid as usize / 32);
    let bit = 1u32 << (intid % 32);
    let _ = try_write32((dist + GICD_ICPENDR + word) as u64, bit);
    let _ = try_write32((dist + GICD_ICENABLER + word) as u64, bit);
}

fn run_attack_gic(have_gic: bool, info: &gic::GicInfo, foreign: Option<u32>, vcpus: usize) {
    let target = vcpus.max(1) - 1;
    let mut own = [0u32; 1];
    let own = (bulkhead_rt::device_spis(&mut own) > 0).then_some(own[0] - 32);
    let spis = [("foreign", foreign), ("own", own)];
    for (slot, (_, spi)) in ATTACK_SPIS.iter().zip(spis) {
        slot.store(spi.map_or(0, |s| s + 32), Ordering::Release);
    }
    irq::masked(|| {
        for (whose, spi) in spis {
            match spi {
                Some(spi) => attack_spi(info, whose, spi, target),
                None if whose == "foreign" => say!("attack: gic foreign: no foreign-spi= given"),
                None => say!("attack: gic own: no spi"),
            }
        }
    });
    // A pended SPI the domain could enable and route is delivered (to vCPU
    // `target`, or to this one once it unmasks); a foreign one never may be.
    sleep_ms(have_gic, 10);
    for ((whose, spi), delivered) in spis.iter().zip(&ATTACK_SPI_DELIVERED) {
        if let Some(spi) = spi {
            say!(
                "attack: gic deliveries {whose} spi {spi}: {}",
                delivered.load(Ordering::Acquire)
            );
        }
    }
}

fn attack_sgis_seen() -> u32 {
    ATTACK_SEEN.iter().map(|s| s.load(Ordering::Acquire)).sum()
}

fn run_attack_sgi(have_gic: bool, info: &gic::GicInfo) {
    let sgi = u64::from(SGI_ATTACK) << 24;
    let me = cpu::index() as u64;
    let attempts: &[(&str, u64)] = match info.version {
        Version::V3 => &[
            ("self", (1 << (me % 16)) | ((me / 16) << 16)),
            ("irm=1 (all but self)", 1 << 40),
            ("aff0 list 0-15", 0xffff),
            ("aff1=1 list 0-15", (1 << 16) | 0xffff),
            ("aff2=1 list 0-15", (1 << 32) | 0xffff),
            ("aff3=1 list 0-15", (1 << 48) | 0xffff),
        ],
        Version::V2 => &[
            ("sgir self", 0b10 << 24),
            ("sgir all-but-self", 0b01 << 24),
            ("sgir list=0xff", 0xff << 16),
        ],
    };
    for &(what, value) in attempts {
        let before = attack_sgis_seen();
        match info.version {
            Version::V3 => gic::send_sgi1r(value | sgi),
            Version::V2 => gic::send_sgir((value | u64::from(SGI_ATTACK)) as u32),
        }
        sleep_ms(have_gic, 10);
        let got = attack_sgis_seen() - before;
        say!("attack: sgi {what}: own vcpus received {got}");
    }
}

/// PL011 registers the `relist` and `hog-irq` modes use: interrupt mask,
/// interrupt clear, and their transmit interrupt bit.
const UARTIMSC: u64 = 0x038;
const UARTICR: u64 = 0x044;
const UART_INT_TX: u32 = 1 << 5;

/// Busy-waits `ms` milliseconds (IRQs as they are).
fn spin_ms(ms: u64) {
    let until = time::ticks() + ms_to_ticks(ms);
    while time::ticks() < until {}
}

/// `relist=<n>`: see the module documentation.
fn run_relist(info: &gic::GicInfo, rounds: u64) {
    let Some(intid) = bulkhead_rt::console_intid().filter(|&i| i >= 32) else {
        say!("relist: no spi (the console has no interrupts)");
        return;
    };
    let uart = bulkhead_rt::console::base() as u64;
    let clear_active = (info.dist + gic::regs::GICD_ICACTIVER + 4 * (intid as usize / 32)) as u64;
    let bit = 1u32 << (intid % 32);
    ATTACK_SPIS[0].store(intid, Ordering::Release);
    irq::masked(|| {
        gic::configure(intid, gic::DEFAULT_PRIORITY);
        let imsc = try_read32(uart + UARTIMSC).unwrap_or(0);
        let _ = try_write32(uart + UARTIMSC, imsc | UART_INT_TX);
        // Sent: the line is high, the SPI taken at EL2, in a list register.
        say!(
            "relist: spi {} held high, its active state cleared {rounds} times",
            intid - 32
        );
        spin_ms(5);
        for _ in 0..rounds {
            let _ = try_write32(clear_active, bit);
            spin_ms(1);
        }
        let _ = try_write32(uart + UARTIMSC, imsc & !UART_INT_TX);
        let _ = try_write32(uart + UARTICR, UART_INT_TX);
    });
    spin_ms(20);
    say!(
        "relist: spi {} delivered {} time(s)",
        intid - 32,
        ATTACK_SPI_DELIVERED[0].load(Ordering::Acquire)
    );
    gic::disable(intid);
    // The same with its virtual timer (PPI), whose active state is banked.
    let clear_active = match info.version {
        Version::V3 => {
            gic::redistributor().map(|rd| rd + gic::regs::GICR_SGI_BASE + gic::regs::GICD_ICACTIVER)
        }
        Version::V2 => Some(info.dist + gic::regs::GICD_ICACTIVER),
    };
    let Some(clear_active) = clear_active.map(|a| a as u64) else {
        say!("relist: no redistributor");
        return;
    };
    let vtimer = VTIMER_INTID.load(Ordering::Relaxed);
    let before = TIMER_IRQS.load(Ordering::Acquire);
    irq::masked(|| {
        timer::arm_at(time::ticks());
        spin_ms(5);
        for _ in 0..rounds {
            let _ = try_write32(clear_active, 1 << vtimer);
            spin_ms(1);
        }
        timer::stop();
    });
    spin_ms(20);
    say!(
        "relist: timer delivered {} time(s)",
        TIMER_IRQS.load(Ordering::Acquire) - before
    );
}

/// `hog-irq`: see the module documentation. Never returns.
fn run_hog_irq(info: &gic::GicInfo) -> ! {
    use gic::regs::*;
    let Some(intid) = bulkhead_rt::console_intid().filter(|&i| i >= 32) else {
        say!("hog: no spi (the console has no interrupts)");
        bulkhead_rt::halt()
    };
    let uart = bulkhead_rt::console::base() as u64;
    let clear_active = (info.dist + GICD_ICACTIVER + 4 * (intid as usize / 32)) as u64;
    let bit = 1u32 << (intid % 32);
    irq::masked(|| {
        gic::configure(intid, 0);
        // The transmit interrupt: raised by every character sent (the line
        // below), cleared only through UARTICR, which this never writes.
        let imsc = try_read32(uart + UARTIMSC).unwrap_or(0);
        let _ = try_write32(uart + UARTIMSC, imsc | UART_INT_TX);
        say!(
            "hog: spi {} priority {:#x}",
            intid - 32,
            gic::priority(intid)
        );
        // Sent: the line is high again (pending, taken at EL2 and active).
        spin_ms(5);
        say!(
            "hog: pending {}, clearing its active state",
            u8::from(gic::is_pending(intid))
        );
        loop {
            let _ = try_write32(clear_active, bit);
        }
    })
}

fn arm_uart() {
    let Some(intid) = bulkhead_rt::console_intid().filter(|&i| i >= 32) else {
        say!("uart: no receive interrupt (the console has no interrupts)");
        return;
    };
    UART_INTID.store(intid, Ordering::Release);
    irq::masked(|| {
        bulkhead_rt::console::enable_rx_interrupt();
        gic::configure(intid, gic::DEFAULT_PRIORITY);
    });
    say!("uart: ready");
}

/// SYSTEM_RESET or SYSTEM_OFF due at a counter value.
struct Lifecycle {
    reset: bool,
    at: u64,
}

impl Lifecycle {
    fn name(&self) -> &'static str {
        if self.reset {
            "SYSTEM_RESET"
        } else {
            "SYSTEM_OFF"
        }
    }

    fn fire(&self) -> ! {
        say!("lifecycle: calling {}", self.name());
        let ret = if self.reset {
            psci::system_reset()
        } else {
            psci::system_off()
        };
        say!("lifecycle: {} returned {ret}", self.name());
        bulkhead_rt::halt()
    }
}

fn main(_dtb: usize) -> ! {
    let info = bulkhead_rt::info();
    say!("boot: start");
    bulkhead_rt::report_resources();
    let bootargs = if info.dtb().is_some() {
        info.bootargs()
    } else {
        NATIVE_BOOTARGS
    };
    say!("boot: bootargs \"{bootargs}\"");
    let config = parse(bootargs);
    if config.reset_state {
        // Before anything sets the GIC interface up.
        lifecycle::check_reset_state(info.dtb());
    }

    let gic_info = match gic::init() {
        Ok(g) => {
            let source = match g.source {
                gic::Source::DeviceTree => "device tree",
                gic::Source::Probed => "probed",
            };
            match g.version {
                Version::V3 => say!(
                    "gic: v3 dist={:#x} redist={:#x} ({source})",
                    g.dist,
                    g.redist
                ),
                Version::V2 => say!("gic: v2 dist={:#x} cpu={:#x} ({source})", g.dist, g.cpu_if),
            }
            Some(g)
        }
        Err(e) => {
            say!("gic: none ({e})");
            None
        }
    };
    let have_gic = gic_info.is_some();
    if have_gic {
        let vtimer = timer::intid();
        VTIMER_INTID.store(vtimer, Ordering::Relaxed);
        irq::set_handler(on_irq);
        gic::configure(vtimer, gic::DEFAULT_PRIORITY);
        for sgi in [SGI_PING, SGI_PONG, SGI_ATTACK, SGI_PROBE] {
            gic::configure(sgi, gic::DEFAULT_PRIORITY);
        }
        irq::enable();
    }
    let skipped = |what: &str| say!("{what}: skipped (no interrupt controller)");
    if config.reset_race {
        lifecycle::run_reset_race();
    }

    if config.psci {
        run_psci(have_gic);
    }
    let vcpus = vcpu_count(&info);
    let mut up = 1;
    if config.smp {
        up = run_smp(have_gic, vcpus);
    }
    if let Some(rounds) = config.sgi {
        if !have_gic {
            skipped("sgi");
        } else if !config.smp || up < 2 {
            say!("sgi: skipped (needs smp and a second vcpu up)");
        } else {
            run_sgi(have_gic, rounds);
        }
    }
    if config.sgi_burst {
        if have_gic {
            run_sgi_burst(have_gic, config.smp && up >= 2);
        } else {
            skipped("sgi-burst");
        }
    }
    if let Some(ms) = config.trigger_flip {
        match &gic_info {
            Some(g) => run_trigger_flip(g, ms),
            None => skipped("trigger-flip"),
        }
    }
    if config.sgi_regs {
        match &gic_info {
            Some(g) if g.version == Version::V3 => run_sgi_regs(have_gic, vcpus.min(up.max(1))),
            Some(_) => say!("sgi-regs: skipped (GICv3 only)"),
            None => skipped("sgi-regs"),
        }
    }
    if config.suspend_pending {
        if have_gic {
            run_suspend_pending();
        } else {
            skipped("suspend");
        }
    }
    if let Some(n) = config.timer {
        if have_gic {
            let period = config.timer_period_us.unwrap_or(DEFAULT_TIMER_PERIOD_US);
            run_timer(n, period, config.timer_late.unwrap_or(0));
        } else {
            skipped("timer");
        }
    }
    if config.attack_gic {
        match &gic_info {
            Some(g) => run_attack_gic(have_gic, g, config.foreign_spi, vcpus),
            None => skipped("attack"),
        }
    }
    if config.attack_sgi {
        match &gic_info {
            Some(g) => run_attack_sgi(have_gic, g),
            None => skipped("attack"),
        }
    }
    if let Some(mpidr) = config.attack_cpu_on {
        let ret = psci::cpu_on(mpidr, smp::entry(), 0);
        say!("attack: cpu_on mpidr {mpidr:#x} -> {ret}");
        let ret = psci::cpu_on(0, 0, 0);
        say!("attack: cpu_on own vcpu 0 at 0x0 -> {ret}");
    }
    if config.uart_echo {
        if have_gic {
            arm_uart();
        } else {
            skipped("uart");
        }
    }
    if let Some(rounds) = config.relist {
        match &gic_info {
            Some(g) => run_relist(g, rounds),
            None => skipped("relist"),
        }
    }
    if config.hog_irq {
        match &gic_info {
            Some(g) => run_hog_irq(g),
            None => skipped("hog"),
        }
    }

    if config.cpu_on_0 {
        lifecycle::run_cpu_on_0(have_gic);
    }
    if config.reset_state {
        match &gic_info {
            Some(g) => lifecycle::run_reset_state(g, info.dtb()),
            None => skipped("reset-state"),
        }
    }

    let lifecycle = match (config.reset_after, config.off_after) {
        (Some(ms), _) => Some((true, ms)),
        (None, Some(ms)) => Some((false, ms)),
        (None, None) => None,
    }
    .map(|(reset, ms)| {
        let l = Lifecycle {
            reset,
            at: time::ticks() + ms_to_ticks(ms),
        };
        say!("lifecycle: {} in {ms} ms", l.name());
        l
    });
    let beat_ticks = ms_to_ticks(HEARTBEAT_MS);
    let mut next_beat = time::ticks() + beat_ticks;
    let mut beat: u64 = 0;
    loop {
        let due = match (&lifecycle, config.no_heartbeat) {
            (Some(l), true) => l.at,
            (Some(l), false) => l.at.min(next_beat),
            (None, false) => next_beat,
            (None, true) => u64::MAX,
        };
        wait_until_tick(have_gic, &|| false, due);
        let now = time::ticks();
        if let Some(l) = lifecycle.as_ref().filter(|l| now >= l.at) {
            l.fire();
        }
        if !config.no_heartbeat && now >= next_beat {
            beat += 1;
            say!("heartbeat {beat}");
            next_beat += beat_ticks;
            if next_beat <= now {
                next_beat = now + beat_ticks;
            }
        }
    }
}
