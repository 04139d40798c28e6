//! The lifecycle modes: `reset-state` (a restart gives the state of a cold
//! boot), `cpu-on-0` (PSCI CPU_ON of vCPU 0 follows PSCI) and `reset-race`
//! (a storm of racing SYSTEM_RESETs). See the table at the top of `main.rs`.

use bulkhead_rt::gic::{self, SgiTarget};
use bulkhead_rt::image::scratch;
use bulkhead_rt::{cpu, irq, psci, reset_state, smp};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The SGI a vCPU sends itself (`reset-state`) or vCPU 1 wakes vCPU 0 with
/// (`cpu-on-0`).
pub const SGI_SELF: u32 = 0;
/// Deliveries of [`SGI_SELF`].
static SELF_SEEN: AtomicUsize = AtomicUsize::new(0);

pub fn on_sgi_self() {
    SELF_SEEN.fetch_add(1, Ordering::AcqRel);
}

// ---- reset-state ----

/// Reports every register the boot vCPU was entered with that is not in its
/// cold reset state, GIC CPU interface included. Call before `gic::init`.
pub fn check_reset_state(dtb: Option<usize>) {
    check_scratch(dtb);
    let report = |name: &str, v: u64| say!("reset-state: dirty {name}={v:#x}");
    let mut dirty = reset_state::entry_dirty(report);
    dirty += reset_state::other_dirty(report);
    if let Some(info) = gic::discover() {
        dirty += irq::masked(|| reset_state::gic_dirty(&info, report));
    }
    if dirty == 0 {
        say!("reset-state: clean");
    } else {
        say!("reset-state: {dirty} dirty register(s)");
    }
}

/// Says whether the RAM above the image reads zero (`reset-state: ram
/// clean`), or where it does not.
fn check_scratch(dtb: Option<usize>) {
    let Some((start, end)) = scratch::range(dtb) else {
        say!("reset-state: no room for the ram check below the device tree");
        return;
    };
    match scratch::not_zero(start, end) {
        (0, _) => say!("reset-state: ram clean ({start:#x}..{end:#x} reads zero)"),
        (dirty, first) => {
            let (at, word) = first.unwrap_or_default();
            say!("reset-state: ram dirty: {dirty} word(s) not zero, the first at {at:#x} ({word:#x})")
        }
    }
}

/// Fills the RAM above the image for the next boot to check.
fn fill_scratch(dtb: Option<usize>) {
    if let Some((start, end)) = scratch::range(dtb) {
        scratch::fill(start, end);
        say!("reset-state: ram filled ({start:#x}..{end:#x})");
    }
}

/// An SGI at default priority to itself must arrive; then the scratch RAM
/// is filled, every register is left dirty and the domain resets itself.
pub fn run_reset_state(info: &gic::GicInfo, dtb: Option<usize>) -> ! {
    fill_scratch(dtb);
    gic::configure(SGI_SELF, gic::DEFAULT_PRIORITY);
    let before = SELF_SEEN.load(Ordering::Acquire);
    gic::send_sgi(SGI_SELF, SgiTarget::Vcpu(cpu::index()));
    let arrived = crate::wait_for(true, || SELF_SEEN.load(Ordering::Acquire) > before, 1000);
    say!(
        "reset-state: sgi at default priority {}",
        if arrived { "arrived" } else { "did not arrive" }
    );
    say!("reset-state: dirtying every register, then SYSTEM_RESET");
    irq::disable();
    reset_state::dirty_other();
    if !reset_state::dirty_gic_interface(info, SGI_SELF) {
        say!("reset-state: could not leave sgi {SGI_SELF} active");
    }
    reset_state::dirty_and_call(psci::conduit(), psci::fid::SYSTEM_RESET)
}

// ---- cpu-on-0 ----

/// The context id vCPU 1 starts vCPU 0 with.
const CONTEXT: u64 = 0xc0de_0000_0000_002a;
/// Set by vCPU 0 before its CPU_OFF: still there when it comes back, if its
/// memory was not reloaded.
const MARKER: u64 = 0x5eed_1234;
static MARKED: AtomicU64 = AtomicU64::new(0);
/// vCPU 1 tried CPU_ON of the running vCPU 0: it may now go off.
static MAY_GO_OFF: AtomicUsize = AtomicUsize::new(0);
const STEP_TIMEOUT_MS: u64 = 5000;

pub fn run_cpu_on_0(have_gic: bool) -> ! {
    if have_gic {
        gic::configure(SGI_SELF, gic::DEFAULT_PRIORITY);
    }
    MARKED.store(MARKER, Ordering::Release);
    let ret = smp::start(1, cpu_on_0_vcpu1);
    say!("cpu-on-0: cpu_on vcpu 1 -> {ret}");
    if !crate::wait_for(
        have_gic,
        || MAY_GO_OFF.load(Ordering::Acquire) != 0,
        STEP_TIMEOUT_MS,
    ) {
        say!("cpu-on-0: timeout (vcpu 1 never tried cpu_on of vcpu 0)");
    }
    say!("cpu-on-0: vcpu 0 powers off");
    irq::disable();
    let ret = psci::cpu_off();
    say!("cpu-on-0: cpu_off returned {ret}");
    bulkhead_rt::halt()
}

fn cpu_on_0_vcpu1(_vcpu: usize) -> ! {
    let ret = psci::cpu_on(0, smp::entry(), CONTEXT);
    say!("cpu-on-0: vcpu 1: cpu_on vcpu 0 while on -> {ret}");
    smp::set_main(0, cpu_on_0_again);
    MAY_GO_OFF.store(1, Ordering::Release);
    // Wake vCPU 0 (it sleeps until an interrupt).
    gic::send_sgi(SGI_SELF, SgiTarget::Vcpu(0));
    let deadline = bulkhead_rt::time::ticks() + crate::ms_to_ticks(STEP_TIMEOUT_MS);
    while psci::affinity_info(0) != psci::AFFINITY_OFF {
        if bulkhead_rt::time::ticks() > deadline {
            say!("cpu-on-0: timeout (vcpu 0 never went off)");
            bulkhead_rt::halt();
        }
        core::hint::spin_loop();
    }
    let ret = psci::cpu_on(0, smp::entry(), CONTEXT);
    say!("cpu-on-0: vcpu 1: cpu_on vcpu 0 after its cpu_off -> {ret}");
    loop {
        irq::wait_for_interrupt();
    }
}

/// vCPU 0, started again by vCPU 1 at the secondary entry.
fn cpu_on_0_again(vcpu: usize) -> ! {
    say!(
        "cpu-on-0: vcpu {vcpu} up at the secondary entry, context {:#x}, marker {:#x}",
        smp::context(),
        MARKED.load(Ordering::Acquire)
    );
    loop {
        irq::wait_for_interrupt();
    }
}

// ---- reset-race ----

/// vCPU 1 is up (`reset-race`).
static RACE_UP: AtomicUsize = AtomicUsize::new(0);

/// Spins for a pseudo-random 0..1023 counter ticks (the counter's low bits
/// when called), so that which vCPU's SYSTEM_RESET comes first varies.
fn jitter() {
    let t = bulkhead_rt::time::ticks();
    let until = t + (t.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54);
    while bulkhead_rt::time::ticks() < until {
        core::hint::spin_loop();
    }
}

/// vCPU 0 starts vCPU 1; as soon as vCPU 1 is up, vCPU 1 calls
/// SYSTEM_RESET and vCPU 0 either SYSTEM_RESET too or CPU_OFF (a random
/// bit), each after a short random delay: either may win, and the other
/// core, the domain's first one included, is stopped on its way in or
/// still on its way off when the domain restarts.
pub fn run_reset_race() -> ! {
    let ret = smp::start(1, reset_race_vcpu1);
    if ret != psci::SUCCESS {
        say!("reset-race: cpu_on vcpu 1 -> {ret}");
    } else {
        let deadline = bulkhead_rt::time::ticks() + crate::ms_to_ticks(STEP_TIMEOUT_MS);
        while RACE_UP.load(Ordering::Acquire) == 0 && bulkhead_rt::time::ticks() < deadline {
            core::hint::spin_loop();
        }
        jitter();
        if bulkhead_rt::time::ticks() & 0x10 != 0 {
            let ret = psci::cpu_off();
            say!("reset-race: cpu_off returned {ret}");
            bulkhead_rt::halt()
        }
    }
    let ret = psci::system_reset();
    say!("lifecycle: SYSTEM_RESET returned {ret}");
    bulkhead_rt::halt()
}

fn reset_race_vcpu1(_vcpu: usize) -> ! {
    RACE_UP.store(1, Ordering::Release);
    jitter();
    let ret = psci::system_reset();
    say!("lifecycle: SYSTEM_RESET returned {ret}");
    bulkhead_rt::halt()
}
