//! Interrupts for domains: the glue between the physical GIC (`gic`), the
//! virtual GIC model (`bulkhead_core::vgic`, pure and host-tested) and the
//! list registers of each core's virtual CPU interface.
//!
//! - A physical interrupt of a domain (its SPIs, the virtual timer PPI on its
//!   cores) is acknowledged at EL2, its priority dropped, and queued for the
//!   vCPU as a hardware interrupt: the domain's own EOI deactivates it,
//!   through the list register's hardware bit, or (on a GIC where that does
//!   not work, `Deactivation::Maintenance`) through the EOI maintenance
//!   interrupt, on which the partitioner deactivates it.
//! - Distributor and (GICv3) redistributor accesses trap and are emulated by
//!   the model, which only ever touches what the domain owns.
//! - SGIs are virtual: a domain's ICC_SGI1R_EL1, ICC_ASGI1R_EL1 or
//!   ICC_SGI0R_EL1 (GICv3) or GICD_SGIR (GICv2) write is turned into virtual
//!   SGIs for its own vCPUs only, queued on their cores, which are kicked
//!   with the partitioner's physical SGI. The common case (an
//!   ICC_SGI1R_EL1 or GICD_SGIR write whose targets all have the SGI
//!   enabled and run) takes a lock-free fast path instead
//!   (`bulkhead_core::vsgi`, [`send_sgi_fast`]): one atomic OR into each
//!   target core's pending-SGI bitmap (`SGI_PENDING`) and the kick; the
//!   target takes the bitmap with one swap on its way back to its vCPU
//!   (`flush_sgis`) and writes list registers directly. On GICv3 (with
//!   the interrupt fast path) the common cases of both sides are the
//!   vectors' assembly (`crate::exceptions`: `sgi1r_fast`, `irq_kick_v3`),
//!   which use `SGI_ROUTE`, `SGI_ON`, `SGI_PENDING` and `SGI_PRIORITY`.
//! - Queued interrupts go to free list registers before every return to the
//!   domain; if they run out, the underflow maintenance interrupt refills them.
//! - The virtual console's interrupt is a purely virtual SPI
//!   (`vgic::VirtualLine`, configured through the model like an owned SPI):
//!   whenever the emulated UART's line changes it is queued as a software
//!   interrupt for the vCPU it is routed to (kicking that core if it is
//!   another), or withdrawn.

use aarch64_cpu::registers::{Readable, Writeable, HCR_EL2};
use bulkhead_core::board::Range;
use bulkhead_core::exits::Cause;
use bulkhead_core::pagetable::{Attrs, FrameAllocator, MapError, Tables};
use bulkhead_core::plan::{
    DomainPlan, GicVersion, MAX_CPUS, MAX_DOMAINS, VGICD_IPA, VGICD_SIZE, VGICR_IPA, VGICR_STRIDE,
    VIRTUAL_CONSOLE_SPI, VTIMER_INTID,
};
use bulkhead_core::trap::Access;
use bulkhead_core::vgic::{self, PendingIrqs, PhysGic, VDistributor, Virq, VirtualLine, WithLine};
use bulkhead_core::vsgi::{self, PENDING_WORDS};
use core::sync::atomic::{
    AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use log::warn;
use spin::{Mutex, Once};

use crate::domain::{self, this_core};
use crate::exceptions::TrapFrame;
use crate::{exits, gic};

/// Owner of each INTID: domain index + 1, 0 = nobody.
static OWNER: [AtomicU8; 1024] = [const { AtomicU8::new(0) }; 1024];

/// Each domain's ownership description and virtual distributor, set
/// together (one `Once`: a reader sees both or neither).
static VGIC: [Once<(vgic::Domain, Mutex<VDistributor>)>; MAX_DOMAINS] =
    [const { Once::new() }; MAX_DOMAINS];

/// Domain `di`'s ownership description and virtual distributor, once set up.
#[inline(always)]
fn model(di: usize) -> Option<(&'static vgic::Domain, &'static Mutex<VDistributor>)> {
    VGIC[di].get().map(|(dom, vd)| (dom, vd))
}
/// Each domain's virtual console interrupt (used only by domains that have
/// a virtual console). Locked after the `VGIC` distributor when both are held.
static VLINE: [Mutex<VirtualLine>; MAX_DOMAINS] =
    [const { Mutex::new(VirtualLine::new(VCONSOLE_INTID)) }; MAX_DOMAINS];
const VCONSOLE_INTID: u32 = VIRTUAL_CONSOLE_SPI + vgic::FIRST_SPI;
/// Virtual interrupts waiting for a list register, per physical core.
static QUEUE: [Mutex<PendingIrqs>; MAX_CPUS] = [const { Mutex::new(PendingIrqs::new()) }; MAX_CPUS];
/// Per core: something may be waiting in its `QUEUE` (only changed with
/// that queue locked), so an empty queue costs no lock on the way back.
/// Also read by the interrupt fast path (`crate::exceptions`).
pub(crate) static QUEUED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per core: whether the virtual timer PPI of the vCPU there may be
/// injected (`TIMER_ON | priority`) or not (0). A copy of what the domain's
/// virtual distributor says, refreshed after every change to it, so the
/// most frequent interrupt needs neither the model's lock nor a look-up.
static TIMER: [AtomicU16; MAX_CPUS] = [const { AtomicU16::new(0) }; MAX_CPUS];
const TIMER_ON: u16 = 0x100;
/// Per core: the list register value that injects the virtual timer PPI
/// into the vCPU there (as [`inject_here`] writes it), or 0 when the
/// assembly fast path of
/// `crate::exceptions` must leave it to [`handle_physical`] (the timer not
/// deliverable, or a GIC the fast path does not handle: see
/// [`fast_path_gic`]). Refreshed with `TIMER`.
pub(crate) static TIMER_LR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per core: virtual SGIs the SGI fast path ([`send_sgi_fast`]) sent to
/// the vCPU there, waiting to be put into list registers (a bitmap of SGI
/// and source, `vsgi::pending_bit`). Set by senders on any core with an
/// atomic OR, taken by the core itself with an atomic swap (`flush_sgis`).
pub(crate) static SGI_PENDING: [[AtomicU64; PENDING_WORDS]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; PENDING_WORDS] }; MAX_CPUS];
/// Per core: the SGIs the vCPU there can take now (enabled, its
/// distributor on: `VDistributor::sgi_fast_state`), and their priorities.
/// A copy of the model's state like `TIMER`, refreshed after every change
/// to it, so the SGI fast path needs neither the model's lock nor a look-up.
pub(crate) static SGI_ON: [AtomicU16; MAX_CPUS] = [const { AtomicU16::new(0) }; MAX_CPUS];
pub(crate) static SGI_PRIORITY: [[AtomicU8; 16]; MAX_CPUS] =
    [const { [const { AtomicU8::new(vgic::RESET_PRIORITY) }; 16] }; MAX_CPUS];
/// Which GIC the fast path drives: 0 none, 2 GICv2 (memory-mapped CPU and
/// hypervisor interfaces, `gic::BASES`), 3 GICv3 (system registers). Set
/// when the first domain is set up.
pub(crate) static FAST_PATH_GIC: AtomicU32 = AtomicU32::new(0);
/// Per core, what the assembly SGI fast path of a GICv3 `ICC_SGI1R_EL1`
/// write or a GICv2 `GICD_SGIR` store (`crate::exceptions`, `sgi1r_fast`,
/// `sgir_fast`) needs to know of the domain
/// it runs, without the plan: set once when the domain is set up (a core
/// belongs to one domain, as one vCPU, for the partitioner's life).
#[repr(C)]
pub(crate) struct SgiRoute {
    /// The domain's vCPUs (bit `n` = vCPU `n`); 0 until set, or on a GIC
    /// the assembly does not drive: then that path is off.
    vcpus: AtomicU64,
    /// The vCPU on this core.
    vcpu: AtomicU64,
    /// Per vCPU: its physical core.
    core: [AtomicU64; MAX_CPUS],
    /// Per vCPU: the ICC_SGI1R_EL1 value that kicks its core
    /// (`gic::SGI_KICK`).
    kick: [AtomicU64; MAX_CPUS],
}

pub(crate) static SGI_ROUTE: [SgiRoute; MAX_CPUS] = [const {
    SgiRoute {
        vcpus: AtomicU64::new(0),
        vcpu: AtomicU64::new(0),
        core: [const { AtomicU64::new(0) }; MAX_CPUS],
        kick: [const { AtomicU64::new(0) }; MAX_CPUS],
    }
}; MAX_CPUS];
pub(crate) const SGI_ROUTE_STRIDE: usize = core::mem::size_of::<SgiRoute>();
pub(crate) const SGI_ROUTE_VCPUS: usize = core::mem::offset_of!(SgiRoute, vcpus);
pub(crate) const SGI_ROUTE_VCPU: usize = core::mem::offset_of!(SgiRoute, vcpu);
pub(crate) const SGI_ROUTE_CORE: usize = core::mem::offset_of!(SgiRoute, core);
pub(crate) const SGI_ROUTE_KICK: usize = core::mem::offset_of!(SgiRoute, kick);

/// Fill the `SGI_ROUTE` of domain `d`'s cores (a GIC with the fast path
/// only; the kicks are GICv3's: on GICv2 the path reads the target's CPU
/// interface, `gic::CPU_INTERFACE`, when it sends).
fn set_sgi_routes(d: &DomainPlan) {
    let gic = fast_path_gic();
    if gic == 0 {
        return;
    }
    let vcpus = (0..d.cpus.len()).fold(0u64, |m, v| m | 1 << v);
    for (vcpu, &core) in d.cpus.iter().enumerate() {
        let r = &SGI_ROUTE[core];
        r.vcpu.store(vcpu as u64, Ordering::Relaxed);
        for (v, &c) in d.cpus.iter().enumerate() {
            r.core[v].store(c as u64, Ordering::Relaxed);
            if gic == 3 {
                let kick = gic::sgi1r_value(gic::SGI_KICK, crate::board().cpus[c]);
                r.kick[v].store(kick, Ordering::Relaxed);
            }
        }
        // Last: the path only runs with the rest in place.
        r.vcpus.store(vcpus, Ordering::Release);
    }
}

/// [`lr_mask`], for the fast path (which only runs once it is set).
pub(crate) static LR_MASK: AtomicU64 = AtomicU64::new(0);

/// The GIC the assembly fast path can drive, if any: one that signals the
/// virtual IRQ itself (not `VirtualIrq::ViaHcrVi`, whose line must be
/// recomputed after every change to the list registers) and has the four
/// list registers the fast path looks at. Either way of deactivating
/// suits it: the list register value it writes is the one `inject_here`
/// would, and the EOI maintenance interrupt of `Deactivation::Maintenance`
/// comes to the general handler.
fn fast_path_gic() -> u32 {
    if gic::virtual_irq_via_hcr() || gic::lr_count() < 4 {
        return 0;
    }
    match gic::version() {
        GicVersion::V2 => 2,
        GicVersion::V3 => 3,
    }
}
/// INTID of the partitioner console's receive interrupt (`u32::MAX`: none).
static CONSOLE_INTID: AtomicU32 = AtomicU32::new(u32::MAX);

/// The partitioner's other own interrupt (the IOMMU's events): its INTID
/// (`u32::MAX`: none) and what handles it.
static OWN_INTID: AtomicU32 = AtomicU32::new(u32::MAX);
static OWN_HANDLER: spin::Once<fn()> = spin::Once::new();

/// Core each of the partitioner's own interrupts is taken on
/// (`usize::MAX`: not set up). Every core runs a domain, so each is taken
/// on some domain's core, at EL2, while it runs: the console's on the boot
/// core (or the first domain's first), the IOMMU's on the first core of
/// the first domain whose PCI functions the IOMMU translates (only their
/// DMA can fault: a domain pays for its own faults, not a neighbour). When
/// that core's vCPU goes off or its domain stops, the interrupt moves to a
/// core still running ([`leave_core`]); when none runs, the next core to
/// start takes it ([`arrive_core`]). No domain can thus switch off the
/// console's input, or the IOMMU's reports, for the others.
static CONSOLE_CORE: AtomicUsize = AtomicUsize::new(usize::MAX);
static OWN_CORE: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Serialises moves: two cores going off at once never both leave an
/// interrupt on the other.
static MOVES: Mutex<()> = Mutex::new(());

/// Whether domain `d` has PCI functions the IOMMU translates.
fn translated_dma(d: &DomainPlan) -> bool {
    d.devices
        .iter()
        .any(|x| x.pci.is_some() && !x.dma_unprotected)
}

/// Take SPI `spi` (edge-triggered) at EL2 for the partitioner itself
/// (`handler` runs on each): on the first core of the first domain whose
/// DMA the IOMMU translates, else on `core` (the boot core).
pub fn enable_partitioner_interrupt(spi: u32, core: usize, handler: fn()) {
    let intid = spi + 32;
    let core = domain::plan()
        .domains
        .iter()
        .find(|d| translated_dma(d))
        .map_or(core, |d| d.cpus[0]);
    OWN_HANDLER.call_once(|| handler);
    // An SMMU's wired interrupts are pulses: edge-triggered.
    gic::set_edge(intid, core, true);
    // Above every domain interrupt (see `vgic::PARTITIONER_PRIORITY`).
    gic::set_priority(intid, core, vgic::PARTITIONER_PRIORITY);
    gic::route(intid, core, crate::board().cpus[core]);
    OWN_CORE.store(core, Ordering::Release);
    OWN_INTID.store(intid, Ordering::Release);
    gic::set_enabled(intid, core, true);
    log::info!("IOMMU events taken on core {core}");
}

/// Take the partitioner console's receive interrupt (SPI `spi`) at EL2 on
/// the boot core (`core`), or if that runs no domain on the first core of
/// the first domain: typed keys are read there, while that core runs its
/// domain (see `exits::console_input`).
pub fn enable_console_input(spi: u32, core: usize) {
    let intid = spi + 32;
    let plan = domain::plan();
    let core = if plan.domains.iter().any(|d| d.cpus.contains(&core)) {
        core
    } else {
        match plan.domains.first() {
            Some(d) => d.cpus[0],
            None => core,
        }
    };
    gic::set_edge(intid, core, false);
    // Above every domain interrupt (see `vgic::PARTITIONER_PRIORITY`).
    gic::set_priority(intid, core, vgic::PARTITIONER_PRIORITY);
    gic::route(intid, core, crate::board().cpus[core]);
    CONSOLE_CORE.store(core, Ordering::Release);
    CONSOLE_INTID.store(intid, Ordering::Release);
    gic::set_enabled(intid, core, true);
    crate::console::enable_rx();
    exits::init_focus();
}

/// Route the partitioner interrupt `intid` (taken on `*at`) to `core`.
fn move_own(intid: &AtomicU32, at: &AtomicUsize, core: usize) {
    let intid = intid.load(Ordering::Acquire);
    if intid == u32::MAX || at.load(Ordering::Acquire) == core {
        return;
    }
    gic::route(intid, core, crate::board().cpus[core]);
    at.store(core, Ordering::Release);
}

/// A core that runs a domain's vCPU, other than `leaving`, in order of
/// preference: with `dma`, one of a domain whose DMA the IOMMU translates
/// first.
fn running_core(leaving: &[usize], dma: bool) -> Option<usize> {
    let plan = domain::plan();
    let running = |c: &usize| !leaving.contains(c) && domain::core_state(*c) == domain::ON;
    let first = |want_dma: bool| {
        plan.domains
            .iter()
            .enumerate()
            .filter(|&(i, d)| !domain::stopped(i) && (!want_dma || translated_dma(d)))
            .flat_map(|(_, d)| d.cpus.iter().copied())
            .find(running)
    };
    if dma {
        first(true).or_else(|| first(false))
    } else {
        first(false)
    }
}

/// Cores `leaving` stop running their vCPUs (a CPU_OFF, a stop or a
/// restart of their domain): the partitioner's interrupts taken on one of
/// them move to a core still running, if there is one (a key typed
/// meanwhile stays pending at the GIC and follows it).
pub fn leave_core(leaving: &[usize]) {
    let _held = MOVES.lock();
    for (intid, at, dma) in [
        (&CONSOLE_INTID, &CONSOLE_CORE, false),
        (&OWN_INTID, &OWN_CORE, true),
    ] {
        if leaving.contains(&at.load(Ordering::Acquire)) {
            if let Some(core) = running_core(leaving, dma) {
                move_own(intid, at, core);
            }
        }
    }
}

/// Core `core` starts running a vCPU: a partitioner interrupt left on a
/// core whose vCPU is off (every core was off when it had to move, or it
/// was first placed on a vCPU its domain has not started) comes here.
pub fn arrive_core(core: usize) {
    let _held = MOVES.lock();
    for (intid, at) in [(&CONSOLE_INTID, &CONSOLE_CORE), (&OWN_INTID, &OWN_CORE)] {
        let host = at.load(Ordering::Acquire);
        if host != usize::MAX && host != core && domain::core_state(host) == domain::OFF {
            move_own(intid, at, core);
        }
    }
}

/// First foreign GIC access of each domain already reported.
static REPORTED: [AtomicU8; MAX_DOMAINS] = [const { AtomicU8::new(0) }; MAX_DOMAINS];

/// The physical GIC as the model sees it, for domain `d`: vCPU numbers are
/// translated to the physical cores behind them.
struct Phys<'a> {
    d: &'a DomainPlan,
}

impl Phys<'_> {
    fn core(&self, vcpu: Option<usize>) -> usize {
        vcpu.and_then(|v| domain::core_of(self.d, v))
            .unwrap_or_else(this_core)
    }
}

impl PhysGic for Phys<'_> {
    fn set_enabled(&mut self, intid: u32, vcpu: Option<usize>, on: bool) {
        gic::set_enabled(intid, self.core(vcpu), on)
    }
    fn enabled(&self, intid: u32, vcpu: Option<usize>) -> bool {
        gic::enabled(intid, self.core(vcpu))
    }
    fn set_pending(&mut self, intid: u32, vcpu: Option<usize>, on: bool) {
        gic::set_pending(intid, self.core(vcpu), on)
    }
    fn pending(&self, intid: u32, vcpu: Option<usize>) -> bool {
        gic::pending(intid, self.core(vcpu))
    }
    fn set_active(&mut self, intid: u32, vcpu: Option<usize>, on: bool) {
        gic::set_active(intid, self.core(vcpu), on)
    }
    fn active(&self, intid: u32, vcpu: Option<usize>) -> bool {
        gic::active(intid, self.core(vcpu))
    }
    fn set_priority(&mut self, intid: u32, vcpu: Option<usize>, prio: u8) {
        gic::set_priority(intid, self.core(vcpu), prio)
    }
    fn priority(&self, intid: u32, vcpu: Option<usize>) -> u8 {
        gic::priority(intid, self.core(vcpu))
    }
    fn set_edge(&mut self, intid: u32, vcpu: Option<usize>, edge: bool) {
        gic::set_edge(intid, self.core(vcpu), edge)
    }
    fn edge(&self, intid: u32, vcpu: Option<usize>) -> bool {
        gic::edge(intid, self.core(vcpu))
    }
    fn route(&mut self, intid: u32, vcpu: usize) {
        let core = self.core(Some(vcpu));
        gic::route(intid, core, crate::board().cpus[core])
    }
}

/// Run `f` with the physical GIC as domain `di`'s model must see it: with
/// its virtual console's interrupt ([`VCONSOLE_INTID`]) as that console's
/// [`VirtualLine`] if it has one (locked after the model, if the caller
/// holds that), else the hardware alone: a domain without a virtual console
/// may own the physical SPI of that number, which must then reach the
/// hardware like any other.
fn with_phys<R>(di: usize, d: &DomainPlan, f: impl FnOnce(&mut dyn PhysGic) -> R) -> R {
    let mut phys = Phys { d };
    if d.virtual_console.is_some() {
        let mut line = VLINE[di].lock();
        f(&mut WithLine {
            phys: &mut phys,
            line: &mut line,
        })
    } else {
        f(&mut phys)
    }
}

/// GICv2: map the virtual CPU interface (GICV) where the domain expects its
/// CPU interface. Nothing to do on GICv3, whose CPU interface is system
/// registers.
pub fn map_virtual_cpu_interface(
    t: &mut Tables,
    a: &mut dyn FrameAllocator,
) -> Result<(), MapError> {
    // The same mapping the boot-time stage-2 check allows (one decision).
    match bulkhead_core::stage2::gicv2_virtual_cpu_interface(crate::board(), gic::version()) {
        Some(m) => t.map(a, m.ipa, m.pa, m.size, Attrs::DEVICE),
        None => Ok(()),
    }
}

/// Record what domain `di` owns and set up its virtual distributor; route
/// its SPIs to its first core, disabled.
pub fn init_domain(di: usize, d: &DomainPlan) {
    LR_MASK.store(lr_mask(), Ordering::Release);
    FAST_PATH_GIC.store(fast_path_gic(), Ordering::Release);
    set_sgi_routes(d);
    let dom = vgic::Domain::new(gic::version(), d);
    for dev in d.devices.iter() {
        for &spi in dev.spis.iter() {
            OWNER[(spi + 32) as usize].store(di as u8 + 1, Ordering::Release);
        }
    }
    let mut vd = VDistributor::new(&dom);
    with_phys(di, d, |phys| vd.reset(&dom, phys));
    refresh_copies(&dom, d, &vd);
    VGIC[di].call_once(|| (dom, Mutex::new(vd)));
}

/// Recompute the `TIMER` and `SGI_ON` copies for every vCPU of the
/// domain, from its model.
fn refresh_copies(dom: &vgic::Domain, d: &DomainPlan, vd: &VDistributor) {
    let phys = Phys { d };
    for (vcpu, &core) in d.cpus.iter().enumerate() {
        let (on, priorities) = vd.sgi_fast_state(dom, vcpu);
        // Off first: the priorities never pair with an old enable.
        SGI_ON[core].store(0, Ordering::Release);
        for (p, &v) in SGI_PRIORITY[core].iter().zip(priorities.iter()) {
            p.store(v, Ordering::Relaxed);
        }
        SGI_ON[core].store(on, Ordering::Release);
        let v = if vd.deliverable(dom, &phys, vcpu, VTIMER_INTID) {
            TIMER_ON | u16::from(vd.priority(dom, &phys, vcpu, VTIMER_INTID))
        } else {
            0
        };
        let lr = if v != 0 && fast_path_gic() != 0 {
            let virq = Virq {
                intid: VTIMER_INTID,
                hw: true,
                priority: v as u8,
                source: 0,
            };
            vgic::lr(gic::version(), &virq, gic::deactivation())
        } else {
            0
        };
        // Off first, so the fast path never pairs a new state with an old
        // LR value.
        TIMER_LR[core].store(0, Ordering::Release);
        TIMER[core].store(v, Ordering::Release);
        TIMER_LR[core].store(lr, Ordering::Release);
    }
}

/// Back to reset state: every interrupt of the domain disabled and
/// inactive, nothing queued for its cores.
pub fn reset_domain(di: usize, d: &DomainPlan) {
    if let Some((dom, vd)) = model(di) {
        let mut vd = vd.lock();
        with_phys(di, d, |phys| vd.reset(dom, phys));
        VLINE[di].lock().set_level(false);
        refresh_copies(dom, d, &vd);
    }
    for &c in d.cpus.iter() {
        QUEUE[c].lock().clear();
        QUEUED[c].store(false, Ordering::Release);
        clear_sgis(c);
    }
}

/// Forget the SGIs the fast path left for `core`'s vCPU.
fn clear_sgis(core: usize) {
    for w in SGI_PENDING[core].iter() {
        w.store(0, Ordering::Release);
    }
}

/// A vCPU starts (on its own core): empty list registers, its banked
/// interrupt state (SGIs, the timer PPI) at reset, virtual interface on.
pub fn reset_vcpu() {
    clear_vcpu();
    let (di, d, vcpu) = domain::current();
    if let Some((dom, vd)) = model(di) {
        let mut vd = vd.lock();
        with_phys(di, d, |phys| vd.reset_vcpu(dom, phys, vcpu));
        refresh_copies(dom, d, &vd);
    }
    gic::set_virtual_interface(true, false);
}

/// A vCPU stops: deactivate the physical interrupts its list registers
/// held, and those still queued for them (acknowledged, so active: their
/// EOI will never come, and the device's interrupt would never fire
/// again), and empty both.
pub fn clear_vcpu() {
    for i in 0..gic::lr_count() {
        let lr = gic::read_lr(i);
        if let Some(pintid) = vgic::lr_physical(gic::version(), lr) {
            gic::deactivate(pintid);
        }
        gic::write_lr(i, 0);
    }
    let core = this_core();
    let mut q = QUEUE[core].lock();
    while let Some(v) = q.pop() {
        if v.hw {
            gic::deactivate(v.intid);
        }
    }
    QUEUED[core].store(false, Ordering::Release);
    drop(q);
    clear_sgis(core);
}

/// Queue a virtual interrupt for `core`'s vCPU, kicking it if it is not us.
fn queue(core: usize, v: Virq) {
    let mut q = QUEUE[core].lock();
    let pushed = q.push(v);
    QUEUED[core].store(true, Ordering::Release);
    drop(q);
    if pushed.is_err() {
        warn!(
            "virtual interrupt queue of core {core} full: INTID {} dropped",
            u64::from(v.intid)
        );
    }
    if core != this_core() {
        gic::send_sgi(gic::SGI_KICK, core, crate::board().cpus[core]);
    }
}

/// Domain `di`'s virtual console raised (`level`) or lowered its
/// interrupt line: queue its virtual SPI for the vCPU it is routed to if
/// that vCPU runs and the guest has it enabled (kicking the vCPU's core if
/// it is not this one), or withdraw what still waits when it dropped.
/// Level semantics: called after every access to the console and whenever
/// input arrives; a line still high while the guest handles it is made
/// pending again in place (`flush`), so it comes back after the EOI.
pub fn set_console_line(di: usize, d: &DomainPlan, level: bool) {
    VLINE[di].lock().set_level(level);
    sync_console_line(di, d);
}

fn sync_console_line(di: usize, d: &DomainPlan) {
    let Some((dom, vd)) = model(di) else {
        return;
    };
    let (wanted, vcpu) = {
        // The model first (the lock order), for the line's virtual priority.
        let vd = vd.lock();
        let mut line = VLINE[di].lock();
        let wanted = line.delivery().map(|vcpu| {
            let phys = Phys { d };
            (vcpu, vd.priority(dom, &phys, vcpu, VCONSOLE_INTID))
        });
        (wanted, line.vcpu())
    };
    match wanted {
        Some((vcpu, priority)) => {
            let Some(core) = domain::core_of(d, vcpu) else {
                return;
            };
            // An off vCPU gets it when it next touches its console.
            if domain::core_state(core) == domain::ON {
                queue(
                    core,
                    Virq {
                        intid: VCONSOLE_INTID,
                        hw: false,
                        priority,
                        source: 0,
                    },
                );
            }
        }
        None => {
            if let Some(core) = domain::core_of(d, vcpu) {
                withdraw(core, VCONSOLE_INTID);
            }
        }
    }
}

/// Take software interrupt `intid` back from `core`'s queue, and from this
/// core's list registers where it is still only pending (another core's
/// are its own: there the guest may take it once more and find nothing).
fn withdraw(core: usize, intid: u32) {
    {
        let mut q = QUEUE[core].lock();
        if q.remove(intid) {
            QUEUED[core].store(!q.is_empty(), Ordering::Release);
        }
    }
    if core == this_core() {
        let v = gic::version();
        let used = !gic::empty_lrs() & lr_mask();
        let mut bits = used;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if let Some(value) = vgic::lr_withdraw(v, gic::read_lr(i), intid) {
                gic::write_lr(i, value);
            }
        }
    }
}

/// Wait, at EL2, until this core's vCPU has an interrupt to take (PSCI
/// CPU_SUSPEND standby). A `wfi` here wakes only for a physical interrupt:
/// a virtual one already pending in a list register, or waiting in this
/// core's queue for a free one, does not end it (virtual interrupts are
/// not signalled at EL2). So those end the wait before it starts. Every
/// virtual interrupt that comes later arrives with a physical one to this
/// core (its own timer or SPIs, or another core's kick after queueing for
/// it), which ends the `wfi`, masked as interrupts are at EL2; it is taken
/// on the way back to the vCPU. May return early, which standby allows.
pub fn wait_for_vcpu_interrupt() {
    if QUEUED[this_core()].load(Ordering::Acquire) || sgis_pending(this_core()) {
        return;
    }
    let v = gic::version();
    let lrs = gic::empty_lrs();
    let pending = (0..gic::lr_count())
        .filter(|&i| lrs & (1 << i) == 0)
        .any(|i| vgic::lr_pending(v, gic::read_lr(i)));
    if !pending {
        aarch64_cpu::asm::wfi();
    }
}

/// Take the highest-priority pending physical interrupt. One per exit:
/// another one pending takes the core straight back to EL2, and the common
/// case (one interrupt) saves a look at the GIC.
pub fn handle_physical() {
    take(gic::ack());
}

/// [`handle_physical`] for an interrupt the assembly fast path of
/// `crate::exceptions` acknowledged already but does not handle itself
/// (`raw`: what the acknowledge register returned).
pub fn handle_acknowledged(raw: u32) {
    take(gic::ack_from_raw(raw));
}

#[inline(always)]
fn take(ack: Option<gic::Ack>) {
    let core = this_core();
    if let Some(ack) = ack {
        gic::eoi(ack);
        let intid = ack.intid;
        match intid {
            gic::SGI_KICK => {
                // Kicks only make this core look at its queue and requests.
                exits::count(core, Cause::Irq);
                gic::deactivate_ack(ack);
            }
            gic::MAINTENANCE_INTID => {
                exits::count(core, Cause::Maintenance);
                // The guest ended interrupts whose physical side is ours to
                // deactivate, or list registers ran low (refilled on return).
                end_eoied();
                gic::set_virtual_interface(true, false);
                gic::deactivate_ack(ack);
            }
            VTIMER_INTID => {
                // The hot path: the vCPU on this core's own timer.
                exits::count(core, Cause::Irq);
                let t = TIMER[core].load(Ordering::Acquire);
                if t & TIMER_ON != 0 {
                    deliver_here(core, intid, t as u8);
                } else {
                    gic::deactivate_ack(ack);
                }
            }
            _ if intid == OWN_INTID.load(Ordering::Relaxed) => {
                exits::count(core, Cause::Other);
                if let Some(handler) = OWN_HANDLER.get() {
                    handler();
                }
                gic::deactivate_ack(ack);
            }
            _ if intid == CONSOLE_INTID.load(Ordering::Relaxed) => {
                // The partitioner's own console, not the domain's.
                exits::count(core, Cause::Other);
                exits::console_input();
                gic::deactivate_ack(ack);
            }
            _ => {
                exits::count(core, Cause::Irq);
                let (di, d, vcpu) = domain::current();
                let owned = OWNER[intid as usize].load(Ordering::Acquire) as usize == di + 1;
                // One look at the model: is it wanted, and at what priority.
                let wanted = match (owned, model(di)) {
                    (true, Some((dom, vd))) => {
                        let phys = Phys { d };
                        let vd = vd.lock();
                        vd.deliverable(dom, &phys, vcpu, intid)
                            .then(|| vd.priority(dom, &phys, vcpu, intid))
                    }
                    _ => None,
                };
                if let Some(prio) = wanted {
                    deliver_here(core, intid, prio);
                } else {
                    // Not (or no longer) wanted by the domain on this core.
                    gic::deactivate_ack(ack);
                }
            }
        }
    } else {
        // Spurious: nothing to take after all.
        exits::count(core, Cause::Other);
    }
}

/// Hand physical interrupt `intid`, taken on this core, to its vCPU here.
fn deliver_here(core: usize, intid: u32, priority: u8) {
    let virq = Virq {
        intid,
        hw: true,
        priority,
        source: 0,
    };
    if !inject_here(&virq) {
        queue(core, virq);
    }
}

/// EOI maintenance (`Deactivation::Maintenance`): deactivate the physical
/// interrupt behind each list register the guest ended, and free it.
fn end_eoied() {
    let mut eoied = gic::eoied_lrs();
    let v = gic::version();
    while eoied != 0 {
        let i = eoied.trailing_zeros() as usize;
        eoied &= eoied - 1;
        let lr = gic::read_lr(i);
        gic::write_lr(i, 0);
        if let Some(pintid) = vgic::lr_physical(v, lr) {
            gic::deactivate(pintid);
        }
    }
}

/// Mask of the list registers this core has.
fn lr_mask() -> u64 {
    match gic::lr_count() {
        n @ 0..64 => (1u64 << n) - 1,
        _ => !0,
    }
}

/// Whether one of the `used` list registers of this core holds physical
/// interrupt `intid` (`vgic::lr_holds_physical`): only when the domain
/// cleared its active state itself (`ICACTIVER`) while it was there, and
/// it was taken again. It then goes into no second list register.
fn held_by_lr(mut used: u64, intid: u32) -> bool {
    let v = gic::version();
    while used != 0 {
        let i = used.trailing_zeros() as usize;
        used &= used - 1;
        if vgic::lr_holds_physical(v, gic::read_lr(i), intid) {
            return true;
        }
    }
    false
}

/// The fast path for a physical interrupt taken on the core of the vCPU it
/// is for: straight into a free list register, unless others are waiting
/// (they may come first) or none is free. A physically backed interrupt
/// is normally not in a list register already (its physical side stays
/// active until the guest ends it); if the domain cleared that active
/// state itself, the entry still there takes it ([`held_by_lr`]). False
/// if it must be queued instead.
fn inject_here(virq: &Virq) -> bool {
    // Others only ever add to this core's queue (and then kick it); its list
    // registers are this core's alone.
    if !virq.hw || QUEUED[this_core()].load(Ordering::Acquire) {
        return false;
    }
    let free = gic::empty_lrs() & lr_mask();
    if held_by_lr(!free & lr_mask(), virq.intid) {
        // Merged: that entry's end deactivates it.
        return true;
    }
    if free == 0 {
        return false;
    }
    gic::write_lr(
        free.trailing_zeros() as usize,
        vgic::lr(gic::version(), virq, gic::deactivation()),
    );
    true
}

/// Move queued virtual interrupts into free list registers; ask for the
/// underflow maintenance interrupt if some are left waiting. An SGI a list
/// register already holds is never given a second one (the architecture
/// forbids it): it is merged, or made pending again in place.
#[inline(always)]
pub fn flush() {
    let core = this_core();
    if sgis_pending(core) {
        flush_sgis(core);
    }
    if QUEUED[core].load(Ordering::Acquire) {
        flush_queue(core);
    }
    if gic::virtual_irq_via_hcr() {
        sync_virtual_irq_line();
    }
}

/// HCR_EL2.VI: the virtual IRQ a GIC whose virtual IRQ output is not wired
/// to the core (`VirtualIrq::ViaHcrVi`) never raises.
const HCR_VI: u64 = 1 << 7;

/// `VirtualIrq::ViaHcrVi`: stand in for the GIC's virtual IRQ line, on
/// this core, from the list registers as they are now (called on every
/// way back to the vCPU, after every change the partitioner makes to
/// them). HCR_EL2.VI is asserted exactly while the virtual CPU interface
/// would signal an interrupt (`vgic::virtual_irq_signal`: a pending entry
/// whose group is enabled and whose priority passes the mask and the
/// running priority), so the vCPU never takes an interrupt without one to
/// acknowledge. The guest changes the list registers
/// without exiting (its acknowledge makes an entry active, its EOI frees
/// it), so the maintenance interrupts that end its run when the answer
/// changes are asked for too: no pending entry left (NPIE) while VI is up,
/// the group enabled (VGrp<n>EIE) while an entry waits for that, and, for
/// an entry held back only by the running priority, a maintenance
/// interrupt at the EOI of each active software SGI (its LR's EOI bit).
/// Their exit ends in `flush` again, which recomputes everything.
#[inline(never)]
fn sync_virtual_irq_line() {
    let used = !gic::empty_lrs() & lr_mask();
    let lrs = (0..gic::lr_count())
        .filter(|&i| used & (1 << i) != 0)
        .map(gic::read_lr);
    let (vmcr, active, pri_bits) = gic::virtual_interface_masks();
    let signal = vgic::virtual_irq_signal(lrs, vmcr, active, pri_bits);
    gic::set_maintenance_triggers(vgic::ICH_HCR_VI_TRIGGERS, signal.maintenance);
    if signal.held_by_running {
        // The guest's EOI of an active software SGI lets the waiting entry
        // through without an exit: have that EOI exit (maintenance), so VI
        // is raised for it. (An active hardware entry's EOI deactivates its
        // physical interrupt, which brings the next exit soon enough.)
        for i in (0..gic::lr_count()).filter(|&i| used & (1 << i) != 0) {
            if let Some(lr) = vgic::lr_with_eoi_maintenance(gic::read_lr(i)) {
                gic::write_lr(i, lr);
            }
        }
    }
    let hcr = HCR_EL2.get();
    let want = if signal.irq {
        hcr | HCR_VI
    } else {
        hcr & !HCR_VI
    };
    if want != hcr {
        HCR_EL2.set(want);
    }
}

/// Whether the SGI fast path left SGIs for `core`'s vCPU.
#[inline(always)]
fn sgis_pending(core: usize) -> bool {
    SGI_PENDING[core]
        .iter()
        .any(|w| w.load(Ordering::Relaxed) != 0)
}

/// Put the SGIs the fast path sent to this core's vCPU into list
/// registers: merged into one that holds the same SGI already (made
/// pending again if it is active: the architecture forbids a second entry),
/// else into a free one; behind the queue when something waits there
/// (it may come first), or into it when no list register is free.
#[inline(never)]
fn flush_sgis(core: usize) {
    let v = gic::version();
    let mask = lr_mask();
    for (w, word) in SGI_PENDING[core].iter().enumerate() {
        // A plain look first: on GICv3 only the first word is ever used.
        if word.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let mut bits = word.swap(0, Ordering::Acquire);
        while let Some((intid, source)) = vsgi::next_pending(w, &mut bits) {
            let virq = Virq {
                intid,
                hw: false,
                priority: SGI_PRIORITY[core][intid as usize & 0xf].load(Ordering::Relaxed),
                source,
            };
            if !QUEUED[core].load(Ordering::Acquire) {
                let free = gic::empty_lrs() & mask;
                let used = !free & mask;
                let held = if used != 0 {
                    merge(v, used, &virq)
                } else {
                    Held::No
                };
                match held {
                    Held::Merged => continue,
                    // Into the queue, whose flush waits for that EOI.
                    Held::AfterEoi => {}
                    Held::No if free != 0 => {
                        // A software interrupt: how hardware ones end does not matter.
                        let lr = vgic::lr(v, &virq, vgic::Deactivation::Hardware);
                        gic::write_lr(free.trailing_zeros() as usize, lr);
                        continue;
                    }
                    Held::No => {}
                }
            }
            let mut q = QUEUE[core].lock();
            if q.push(virq).is_err() {
                warn!("virtual interrupt queue of core {core} full: SGI {intid} dropped");
            }
            QUEUED[core].store(true, Ordering::Release);
        }
    }
}

/// The SGI fast path (`bulkhead_core::vsgi`): vCPU `sender` of domain `d`
/// sends `sgi`. Only if every target has it enabled (with its distributor
/// on) and runs: a bit in each target core's `SGI_PENDING`, and a kick for
/// each other core; no lock, no look at the model. False, having done
/// nothing, if the general path must take the write (it latches the SGI for
/// a target that cannot take it now).
pub fn send_sgi_fast(d: &DomainPlan, sender: usize, sgi: vsgi::Sgi) -> bool {
    let bit = 1u16 << (sgi.intid & 0xf);
    let mut t = sgi.targets;
    while t != 0 {
        let vcpu = t.trailing_zeros() as usize;
        t &= t - 1;
        let Some(core) = domain::core_of(d, vcpu) else {
            return false;
        };
        if SGI_ON[core].load(Ordering::Acquire) & bit == 0 || domain::core_state(core) != domain::ON
        {
            return false;
        }
    }
    // GICv2 tells the receiver which CPU sent an SGI; GICv3 does not.
    let source = if gic::version() == GicVersion::V2 {
        sender
    } else {
        0
    };
    let (w, b) = vsgi::pending_bit(source, sgi.intid);
    let here = this_core();
    let mut t = sgi.targets;
    while t != 0 {
        let vcpu = t.trailing_zeros() as usize;
        t &= t - 1;
        if let Some(core) = domain::core_of(d, vcpu) {
            SGI_PENDING[core][w].fetch_or(b, Ordering::Release);
            // This core's own vCPU gets it on the way back (`flush`).
            if core != here {
                gic::send_sgi(gic::SGI_KICK, core, crate::board().cpus[core]);
            }
        }
    }
    true
}

#[inline(never)]
fn flush_queue(core: usize) {
    let mut q = QUEUE[core].lock();
    let v = gic::version();
    let how = gic::deactivation();
    let mask = lr_mask();
    let mut free = gic::empty_lrs() & mask;
    let mut after_eoi = false;
    while let Some(&virq) = q.peek() {
        if virq.hw && held_by_lr(!free & mask, virq.intid) {
            // Already in a list register (see `inject_here`): merged.
            q.pop();
            continue;
        }
        if !virq.hw {
            match merge(v, !free & mask, &virq) {
                Held::Merged => {
                    q.pop();
                    continue;
                }
                // The same SGI is active and the line is HCR_EL2.VI: it
                // (and what queues behind it) goes in at the guest's EOI,
                // which exits (EOI maintenance).
                Held::AfterEoi => {
                    after_eoi = true;
                    break;
                }
                Held::No => {}
            }
        }
        if free == 0 {
            break;
        }
        q.pop();
        let i = free.trailing_zeros() as usize;
        free &= free - 1;
        gic::write_lr(i, vgic::lr(v, &virq, how));
    }
    QUEUED[core].store(!q.is_empty(), Ordering::Release);
    // Underflow maintenance would fire at once with the registers nearly
    // empty, and again at every return, until that EOI: not while waiting
    // for it.
    gic::set_virtual_interface(true, !q.is_empty() && !after_eoi);
}

/// Whether a software interrupt is already held by a list register.
enum Held {
    /// Yes, and it is pending there now: done with it.
    Merged,
    /// The same SGI is active there and may not be made pending in place
    /// (`vgic::LrMatch::WaitForEoi`): it waits for the guest's EOI.
    AfterEoi,
    /// No: it needs a register of its own.
    No,
}

/// Whether software interrupt `virq` is already held by one of the `used`
/// list registers: merged if pending there, made pending again if active
/// (or, on a `ViaHcrVi` board, an active SGI's EOI made to exit).
fn merge(v: GicVersion, mut used: u64, virq: &Virq) -> Held {
    let via_hcr = gic::virtual_irq_via_hcr();
    while used != 0 {
        let i = used.trailing_zeros() as usize;
        used &= used - 1;
        match vgic::lr_match(v, gic::read_lr(i), virq, via_hcr) {
            vgic::LrMatch::Other => {}
            vgic::LrMatch::AlreadyPending => return Held::Merged,
            vgic::LrMatch::Repend(value) => {
                gic::write_lr(i, value);
                return Held::Merged;
            }
            vgic::LrMatch::WaitForEoi(value) => {
                gic::write_lr(i, value);
                return Held::AfterEoi;
            }
        }
    }
    Held::No
}

fn report_foreign(di: usize, d: &DomainPlan, what: &dyn core::fmt::Display) {
    if REPORTED[di].swap(1, Ordering::AcqRel) == 0 {
        warn!(
            "domain \"{}\" core {}: GIC access to an interrupt it does not own: {} (ignored; first such access, reported once)",
            d.name,
            this_core(),
            what
        );
    }
}

/// Whether `ipa` is in domain `d`'s virtual distributor and whether it is
/// in its (GICv3) redistributors.
fn vgic_regions(d: &DomainPlan, ipa: u64) -> (bool, bool) {
    let dist = Range::new(VGICD_IPA, VGICD_SIZE);
    let redist = Range::new(VGICR_IPA, VGICR_STRIDE * d.cpus.len() as u64);
    (
        dist.contains_addr(ipa),
        gic::version() == GicVersion::V3 && redist.contains_addr(ipa),
    )
}

/// Whether `ipa` is a register of domain `di`'s virtual GIC (what
/// [`emulate_mmio`] answers).
pub fn in_virtual_gic(di: usize, d: &DomainPlan, ipa: u64) -> bool {
    let (dist, redist) = vgic_regions(d, ipa);
    model(di).is_some() && (dist || redist)
}

/// Emulate a distributor or redistributor access. False if `ipa` is not in
/// the virtual GIC's trapped windows.
pub fn emulate_mmio(
    di: usize,
    d: &DomainPlan,
    vcpu: usize,
    ipa: u64,
    write: bool,
    a: Access,
    frame: &mut TrapFrame,
) -> bool {
    let Some((dom, vd)) = model(di) else {
        return false;
    };
    let (in_dist, in_redist) = vgic_regions(d, ipa);
    if !in_dist && !in_redist {
        return false;
    }
    let value = frame.reg(a.reg);
    let outcome = {
        let mut vd = vd.lock();
        let outcome = with_phys(di, d, |phys| match (in_dist, write) {
            (true, false) => vd.read(dom, phys, vcpu, ipa - VGICD_IPA, a.size),
            (true, true) => vd.write(dom, phys, vcpu, ipa - VGICD_IPA, a.size, value),
            (false, false) => vd.read_redist(dom, phys, vcpu, ipa - VGICR_IPA, a.size),
            (false, true) => vd.write_redist(dom, phys, vcpu, ipa - VGICR_IPA, a.size, value),
        });
        if write {
            refresh_copies(dom, d, &vd);
        }
        outcome
    };
    if write && d.virtual_console.is_some() {
        // The guest may just have enabled, routed or pended its console's
        // interrupt.
        sync_console_line(di, d);
    }
    if let Some(f) = &outcome.foreign {
        report_foreign(di, d, f);
    }
    if !write {
        frame.set_reg(a.reg, a.load_value(outcome.value));
    }
    if let Some(sgi) = outcome.sgi {
        deliver_sgi(di, d, vcpu, sgi);
    }
    drain_latched(di, d, outcome.sgi_ready);
    true
}

/// Queue the SGIs the model had latched for vCPUs in `ready` (they just
/// became deliverable: enabled, or their distributor turned on).
fn drain_latched(di: usize, d: &DomainPlan, ready: u8) {
    let Some((dom, vd)) = model(di) else {
        return;
    };
    for target in 0..d.cpus.len() {
        if ready & (1 << target) == 0 {
            continue;
        }
        let Some(core) = domain::core_of(d, target) else {
            continue;
        };
        while let Some(v) = vd.lock().take_sgi(dom, target) {
            queue(core, v);
        }
    }
}

/// Emulate a trapped GIC system register access (GICv3 SGI generation:
/// `ICC_SGI1R_EL1`, `ICC_ASGI1R_EL1`, `ICC_SGI0R_EL1`). False if it is not one.
pub fn emulate_sysreg(
    di: usize,
    d: &DomainPlan,
    vcpu: usize,
    read: bool,
    enc: (u8, u8, u8, u8, u8),
    value: u64,
) -> bool {
    // ICC_SGI1R_EL1, ICC_ASGI1R_EL1 and ICC_SGI0R_EL1, treated the same
    // (one group here): see `vgic::SgiRegister`.
    let Some(reg) = vgic::SgiRegister::decode(enc).filter(|_| !read) else {
        return false;
    };
    let Some((dom, vd)) = model(di) else {
        return false;
    };
    let req = vd.lock().sgi1r(dom, vcpu, value);
    if req.foreign {
        report_foreign(
            di,
            d,
            &format_args!(
                "SGI {} to vCPUs it does not have ({} {value:#x})",
                u64::from(req.intid),
                reg.name()
            ),
        );
    }
    deliver_sgi(di, d, vcpu, req);
    true
}

/// Queue a virtual SGI on each of its (own, deliverable) target vCPUs;
/// the model latched the others until they can take it.
fn deliver_sgi(di: usize, d: &DomainPlan, sender: usize, req: vgic::SgiRequest) {
    let Some((dom, vd)) = model(di) else {
        return;
    };
    // GICv2 tells the receiver which CPU sent an SGI; GICv3 does not.
    let source = if dom.version == GicVersion::V2 {
        sender as u8
    } else {
        0
    };
    for target in 0..d.cpus.len() {
        if req.targets & (1 << target) == 0 {
            continue;
        }
        let Some(core) = domain::core_of(d, target) else {
            continue;
        };
        let prio = req.priorities.get(target).copied().unwrap_or(0xff);
        if domain::core_state(core) == domain::ON {
            queue(
                core,
                Virq {
                    intid: req.intid,
                    hw: false,
                    priority: prio,
                    source,
                },
            );
        } else {
            vd.lock().pend_sgi(dom, target, req.intid, sender);
        }
    }
}
