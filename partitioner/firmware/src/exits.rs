//! Per-domain exit statistics (see `bulkhead_core::exits`): one slot per
//! cause and physical core, written only by that core with a plain load and
//! store (no lock, no atomic read-modify-write: this is on the interrupt
//! fast path), added up per domain only when printed. A core belongs to one
//! domain for the life of the partitioner, so a domain's counts are the sum
//! of its cores' slots, since reset (restarts included).

use bulkhead_core::exits::{initial_focus, next_focus, Cause, Command, Counts, Key, Keys, CAUSES};
use bulkhead_core::plan::{DomainPlan, MAX_CPUS, MAX_DOMAINS};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use log::info;
use spin::Mutex;

/// One core's slots, alone on their cache line(s).
#[repr(align(128))]
pub(crate) struct Slots([AtomicU64; CAUSES]);

pub(crate) static SLOTS: [Slots; MAX_CPUS] =
    [const { Slots([const { AtomicU64::new(0) }; CAUSES]) }; MAX_CPUS];

const _: () = assert!(MAX_CPUS.is_power_of_two());

/// For the assembly fast path (`crate::exceptions`): bytes from one core's
/// slots to the next, and from a core's slots to its `irq` and `sgi` counts.
pub(crate) const SLOTS_STRIDE: usize = core::mem::size_of::<Slots>();
pub(crate) const IRQ_SLOT_OFFSET: usize = Cause::Irq.index() * 8;
pub(crate) const SGI_SLOT_OFFSET: usize = Cause::Sgi.index() * 8;

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

/// The domain typed input goes to: its index, or [`NOBODY`] (the
/// partitioner, which ignores it).
static FOCUS: AtomicUsize = AtomicUsize::new(NOBODY);
const NOBODY: usize = usize::MAX;

/// Which domains have a virtual console (the ones input can go to).
fn consoles() -> heapless::Vec<bool, MAX_DOMAINS> {
    crate::domain::plan()
        .domains
        .iter()
        .map(|d| d.virtual_console.is_some())
        .collect()
}

/// Give the console's input to its first taker (the first domain with a
/// virtual console) and say so; called once, when the partitioner starts
/// taking console input.
pub fn init_focus() {
    let focus = initial_focus(&consoles());
    FOCUS.store(focus.unwrap_or(NOBODY), Ordering::Release);
    announce("goes", focus);
}

fn announce(verb: &str, focus: Option<usize>) {
    match focus.and_then(|i| crate::domain::plan().domains.get(i)) {
        Some(d) => info!(
            "console input {verb} to domain \"{}\" (Ctrl-a three times to switch)",
            d.name
        ),
        None => info!("console input {verb} to the partitioner (Ctrl-a three times to switch)"),
    }
}

/// Bytes for the focused domain, handed over in one go.
fn deliver(bytes: &mut heapless::Vec<u8, 128>) {
    let focus = FOCUS.load(Ordering::Acquire);
    if focus != NOBODY && !bytes.is_empty() {
        crate::domain::console_receive(focus, bytes);
    }
    bytes.clear();
}

/// The partitioner console's receive interrupt: read what was typed and
/// carry out every complete key sequence in order: input for the focused
/// domain, a focus switch, `Ctrl-a s` (no lock held while printing).
pub fn console_input() {
    let mut keys: heapless::Vec<Key, 128> = heapless::Vec::new();
    {
        let mut k = KEYS.lock();
        crate::console::receive(|b| {
            k.feed(b, |key| {
                let _ = keys.push(key);
            })
        });
    }
    let mut bytes: heapless::Vec<u8, 128> = heapless::Vec::new();
    for key in keys {
        match key {
            Key::Input(b) => {
                let _ = bytes.push(b);
            }
            Key::Command(c) => {
                deliver(&mut bytes);
                match c {
                    Command::ShowExits => print_all(),
                    Command::SwitchFocus => {
                        let now = FOCUS.load(Ordering::Acquire);
                        let next = next_focus((now != NOBODY).then_some(now), &consoles());
                        FOCUS.store(next.unwrap_or(NOBODY), Ordering::Release);
                        announce("now goes", next);
                    }
                }
            }
        }
    }
    deliver(&mut bytes);
}
