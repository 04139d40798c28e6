//! Per-domain exit statistics (see `bulkhead_core::exits`): one slot per
//! cause and physical core, written only by that core with a plain load and
//! store (no lock, no atomic read-modify-write: this is on the interrupt
//! fast path), added up per domain only when printed. A core belongs to one
//! domain for the life of the partitioner, so a domain's counts are the sum
//! of its cores' slots, since reset (restarts included).

use bulkhead_core::exits::{Cause, Command, Counts, Keys, CAUSES};
use bulkhead_core::plan::{DomainPlan, MAX_CPUS};
use core::sync::atomic::{AtomicU64, Ordering};
use log::info;
use spin::Mutex;

/// One core's slots, alone on their cache line(s).
#[repr(align(128))]
struct Slots([AtomicU64; CAUSES]);

static SLOTS: [Slots; MAX_CPUS] =
    [const { Slots([const { AtomicU64::new(0) }; CAUSES]) }; MAX_CPUS];

const _: () = assert!(MAX_CPUS.is_power_of_two());

/// Count one exit of `core` (which must be the calling core) for `cause`.
/// A handful of instructions: no branch (a core index is always below
/// `MAX_CPUS`, so the mask only spares the bounds check).
#[inline(always)]
pub fn count(core: usize, cause: Cause) {
    let s = &SLOTS[core & (MAX_CPUS - 1)].0[cause.index()];
    // Only this core writes its slot: load and store cannot lose a count.
    s.store(s.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Count one exit of the calling core.
#[inline(always)]
pub fn count_here(cause: Cause) {
    count(crate::domain::this_core(), cause)
}

/// Domain `d`'s counts so far (other cores' latest stores may not be seen
/// yet; a stopped domain's are final).
pub fn of(d: &DomainPlan) -> Counts {
    let mut c = Counts::default();
    for &core in d.cpus.iter() {
        if let Some(s) = SLOTS.get(core) {
            c.add(&core::array::from_fn(|i| s.0[i].load(Ordering::Relaxed)));
        }
    }
    c
}

/// Print domain `d`'s line: `exits domain "name": irq=N ... total=N`.
pub fn print(d: &DomainPlan) {
    info!("exits domain \"{}\": {}", d.name, of(d));
}

/// Every domain's line, after a header with the time, for `Ctrl-a s`.
pub fn print_all() {
    let (ms, frac) = crate::domain::ms_since_reset();
    let plan = crate::domain::plan();
    info!(
        "exit counts of {} domain(s), {}.{:03} ms after reset:",
        plan.domains.len(),
        ms,
        frac
    );
    for d in plan.domains.iter() {
        print(d);
    }
}

/// The partitioner console's key sequences (input arrives on one core).
static KEYS: Mutex<Keys> = Mutex::new(Keys::new());

/// The partitioner console's receive interrupt: read what was typed and
/// carry out any complete key sequence (no lock held while printing).
pub fn console_input() {
    let mut show = false;
    {
        let mut keys = KEYS.lock();
        crate::console::receive(|b| {
            if keys.feed(b) == Some(Command::ShowExits) {
                show = true;
            }
        });
    }
    if show {
        print_all();
    }
}
