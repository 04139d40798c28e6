//! Domains at run time: loading them, starting and stopping their cores,
//! restarting them, and dispatching everything a domain traps for (the
//! virtual console, the virtual GIC, PSCI calls, faults on addresses it does
//! not own).

use aarch64_cpu::registers::{
    Readable, Writeable, CNTFRQ_EL0, CNTPCT_EL0, CNTVOFF_EL2, ELR_EL1, ESR_EL1, ESR_EL2, FAR_EL1,
    FAR_EL2, HCR_EL2, HPFAR_EL2, MPIDR_EL1, SPSR_EL1, TPIDR_EL2, VBAR_EL1,
};
use bulkhead_core::board::{Range, Stage2Leaves};
use bulkhead_core::package::Package;
use bulkhead_core::pagetable::{Regime, Tables};
use bulkhead_core::plan::{DomainPlan, FaultPolicy, Mapping, Plan, MAX_CPUS, MAX_DOMAINS};
use bulkhead_core::trap::{self, Exit, Syndrome};
use bulkhead_core::vconsole::VirtualConsole;
use bulkhead_core::{dtb, stage2};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use log::{error, info, warn};
use spin::{Mutex, Once};

use crate::exceptions::TrapFrame;
use crate::report::limited;
use crate::{boot, exits, gic, irq, mmu, psci};
use bulkhead_core::exits::Cause;
use bulkhead_core::ratelimit::Kind;

/// The plan and the package, set together by [`setup`] (in one `Once`).
static PLAN_AND_PACKAGE: Once<(Plan, Package<'static>)> = Once::new();
/// A domain at run time: everything the partitioner keeps about it besides
/// its plan (`bulkhead_core::plan::DomainPlan`, fixed at boot). One per
/// domain in [`DOMAINS`], indexed like the plan's domains.
struct Domain {
    /// Stage-2 root.
    root: AtomicU64,
    /// Root of the tables its PCI functions' DMA is translated with: the
    /// same as `root` unless the CPUs' tables map something only CPUs may
    /// reach (the GICv2 virtual CPU interface), see [`setup`].
    dma_root: AtomicU64,
    /// Guest address of its device tree.
    dtb: AtomicU64,
    /// Its memory is in its boot state (image, initrd, device tree in
    /// place); cleared by a restart, set by the domain's first core, which
    /// loads it just before it starts the domain. Domains thus load in
    /// parallel, each on its own core: a small real-time domain starts at
    /// once, whatever a Linux neighbour has to copy and zero.
    loaded: AtomicBool,
    /// Its images passed their CRC-32 check (done once, by the core that
    /// first loads the domain).
    verified: AtomicBool,
    /// Restarts so far.
    restarts: AtomicU32,
    /// A stop or restart of the domain is under way (set by the core doing
    /// it; see [`claim_transition`]).
    transition: AtomicBool,
    /// What changes while it runs, under one lock.
    state: Mutex<DomainState>,
}

impl Domain {
    const fn new() -> Self {
        Self {
            root: AtomicU64::new(0),
            dma_root: AtomicU64::new(0),
            dtb: AtomicU64::new(0),
            loaded: AtomicBool::new(false),
            verified: AtomicBool::new(false),
            restarts: AtomicU32::new(0),
            transition: AtomicBool::new(false),
            state: Mutex::new(DomainState {
                console: VirtualConsole::new(),
                stopped: false,
                faults: 0,
                reported_call: false,
                reported_sysreg: false,
                reported_set_way: false,
            }),
        }
    }
}

static DOMAINS: [Domain; MAX_DOMAINS] = [const { Domain::new() }; MAX_DOMAINS];

/// Power state of each core's vCPU.
pub const OFF: usize = 0;
pub const ON_PENDING: usize = 1;
pub const ON: usize = 2;
/// A request another core left for this one (see [`kick`]).
const REQ_NONE: usize = 0;
const REQ_STOP: usize = 1;

/// A physical core at run time: which vCPU of which domain it runs and
/// where that vCPU is in its life. One per board core in [`CORES`].
pub(crate) struct Core {
    /// Domain index + 1 (0 = none).
    domain: AtomicUsize,
    /// vCPU index within its domain.
    vcpu: AtomicUsize,
    /// Power state of its vCPU: [`OFF`], [`ON_PENDING`] or [`ON`].
    state: AtomicUsize,
    /// Entry point and context id a guest's PSCI CPU_ON gave the vCPU.
    start: Mutex<(u64, u64)>,
    /// The next start of this core's vCPU is its domain's boot (or
    /// restart): at the image entry, with the device tree in x0, the memory
    /// loaded first if it is not. Any other start (a PSCI CPU_ON from the
    /// domain, even of its vCPU 0) is at the entry and context id CPU_ON
    /// gave, over live memory.
    boot: AtomicBool,
    /// A request another core left for this one (see [`kick`]).
    request: AtomicUsize,
    /// Where the domain's set/way maintenance since its last other exit
    /// stands: [`SET_WAY_NONE`], [`SET_WAY_DONE`] or [`SET_WAY_PARTIAL`]
    /// (see [`set_way`]). Any other exit stores [`SET_WAY_NONE`] (also the
    /// assembly SGI fast path, as a zero byte).
    set_way: AtomicU8,
    /// With [`SET_WAY_PARTIAL`]: where the clean resumes.
    set_way_cursor: Mutex<bulkhead_core::setway::Cursor>,
}

impl Core {
    const fn new() -> Self {
        Self {
            domain: AtomicUsize::new(0),
            vcpu: AtomicUsize::new(0),
            state: AtomicUsize::new(OFF),
            start: Mutex::new((0, 0)),
            boot: AtomicBool::new(false),
            request: AtomicUsize::new(REQ_NONE),
            set_way: AtomicU8::new(SET_WAY_NONE),
            set_way_cursor: Mutex::new(bulkhead_core::setway::Cursor {
                region: 0,
                offset: 0,
            }),
        }
    }
}

/// Also read by the interrupt fast path (`crate::exceptions`: a core's
/// `request`, at [`CORE_STRIDE`] and [`REQUEST_OFFSET`]).
pub(crate) static CORES: [Core; MAX_CPUS] = [const { Core::new() }; MAX_CPUS];
/// Bytes from one core's [`Core`] to the next.
pub(crate) const CORE_STRIDE: usize = core::mem::size_of::<Core>();
/// Where a [`Core`]'s `request` is (0: [`REQ_NONE`]).
pub(crate) const REQUEST_OFFSET: usize = core::mem::offset_of!(Core, request);
/// Where a [`Core`]'s `state` and `set_way` are.
pub(crate) const STATE_OFFSET: usize = core::mem::offset_of!(Core, state);
pub(crate) const SET_WAY_OFFSET: usize = core::mem::offset_of!(Core, set_way);
const _: () = assert!(REQ_NONE == 0 && CORE_STRIDE < 4096 && REQUEST_OFFSET < 4096);
const _: () = assert!(STATE_OFFSET < 4096 && SET_WAY_OFFSET < 4096 && SET_WAY_NONE == 0);
/// [`Core::set_way`]: no set/way operation since the last other exit; one
/// carried out in full; one whose clean gave way to an interrupt and
/// resumes when the instruction traps again.
const SET_WAY_NONE: u8 = 0;
const SET_WAY_DONE: u8 = 1;
const SET_WAY_PARTIAL: u8 = 2;

/// Mutable per-domain state.
struct DomainState {
    console: VirtualConsole,
    stopped: bool,
    /// Accesses outside the domain so far.
    faults: u64,
    /// Unsupported calls already reported (only the first is logged).
    reported_call: bool,
    reported_sysreg: bool,
    reported_set_way: bool,
}

/// Whether domain `di` has stopped for good.
pub fn stopped(di: usize) -> bool {
    DOMAINS[di].state.lock().stopped
}

pub fn plan() -> &'static Plan {
    &PLAN_AND_PACKAGE
        .get()
        .expect("domains run only after the plan is set")
        .0
}

/// Milliseconds since reset, from the physical counter (which starts at reset).
pub fn ms_since_reset() -> (u64, u64) {
    let us = bulkhead_core::ticks_to_us(CNTPCT_EL0.get(), CNTFRQ_EL0.get());
    (us / 1000, us % 1000)
}

/// Build every domain's stage 2 and its virtual GIC (its memory is loaded
/// later, by its own first core: see `Domain::loaded`), then check the tables
/// (`verify_stage2`). `partitioner` is the RAM the partitioner occupies.
pub fn setup(plan: Plan, pkg: Package<'static>, partitioner: Range) {
    let plan = &PLAN_AND_PACKAGE.call_once(|| (plan, pkg)).0;
    let board = crate::board();
    for (i, d) in plan.domains.iter().enumerate() {
        let root = {
            let mut alloc = mmu::PoolAlloc::lock();
            let tables = stage2::build(d, board.stage2, &mut alloc).and_then(|mut t| {
                irq::map_virtual_cpu_interface(&mut t, &mut alloc)?;
                Ok(t)
            });
            match tables {
                Ok(t) => t.root,
                Err(e) => crate::fatal(format_args!(
                    "domain \"{}\": cannot build its stage-2 tables: {}",
                    d.name,
                    crate::debug::MapErr(e)
                )),
            }
        };
        // DMA gets tables of its own where the CPUs' map the GICv2 virtual
        // CPU interface: that is one device for every core, telling cores
        // apart by who asks, and a device's DMA is nobody's core. These
        // hold exactly the plan's RAM and devices (blocks where they fit:
        // nothing walks them but the IOMMU and `verify_stage2`).
        let dma_root = if stage2::dma_needs_own_tables(d, board, gic::version()) {
            let mut alloc = mmu::PoolAlloc::lock();
            match stage2::build(d, Stage2Leaves::Blocks, &mut alloc) {
                Ok(t) => t.root,
                Err(e) => crate::fatal(format_args!(
                    "domain \"{}\": cannot build its DMA stage-2 tables: {}",
                    d.name,
                    crate::debug::MapErr(e)
                )),
            }
        } else {
            root
        };
        DOMAINS[i].root.store(root, Ordering::Release);
        DOMAINS[i].dma_root.store(dma_root, Ordering::Release);
        for (v, &c) in d.cpus.iter().enumerate() {
            CORES[c].domain.store(i + 1, Ordering::Release);
            CORES[c].vcpu.store(v, Ordering::Release);
        }
        irq::init_domain(i, d);
        let cores: heapless::Vec<u64, MAX_CPUS> = d.cpus.iter().map(|&c| board.cpus[c]).collect();
        info!(
            "domain \"{}\": VMID {}, cores {}, {} RAM region(s), {} device(s), image {} bytes, fault policy {}",
            d.name,
            u64::from(d.vmid),
            crate::debug::List(&cores),
            d.ram.len(),
            d.devices.len(),
            d.image_size,
            policy_name(d.fault_policy)
        );
        for m in d.mappings() {
            let kind = match m.kind {
                bulkhead_core::plan::MemKind::Ram => "RAM",
                bulkhead_core::plan::MemKind::Device => "device",
            };
            info!(
                "  {kind:>6} IPA {:#011x}..{:#011x} -> PA {:#011x}",
                m.ipa,
                m.ipa + m.size,
                m.pa
            );
        }
    }
    verify_stage2(plan, partitioner);
    crate::pci::attach_all(plan, |i| DOMAINS[i].dma_root.load(Ordering::Acquire));
    info!(
        "translation tables: {} of the pool's frames used",
        mmu::PoolAlloc::lock().used()
    );
}

/// The last check before any domain starts: walk every domain's stage-2
/// tables against its plan (`stage2::verify`: each leaf a page the domain
/// owns, at the planned address, with its kind's attributes; every owned
/// page mapped), then check that no physical page is mapped by two domains
/// and none of the partitioner's by any (`stage2::disjoint`). A finding
/// refuses the configuration, like a config error.
fn verify_stage2(plan: &Plan, partitioner: Range) {
    let board = crate::board();
    let start = CNTPCT_EL0.get();
    let extra: heapless::Vec<Mapping, 1> =
        stage2::gicv2_virtual_cpu_interface(board, gic::version())
            .into_iter()
            .collect();
    let mut pages = 0;
    let mut walked = Ok(());
    {
        let mut alloc = mmu::PoolAlloc::lock();
        for (i, d) in plan.domains.iter().enumerate() {
            let tables = Tables {
                regime: Regime::Stage2,
                root: DOMAINS[i].root.load(Ordering::Acquire),
            };
            match stage2::verify(d, &extra, &tables, &mut alloc) {
                Ok(w) => pages += w.pages,
                Err(f) => {
                    walked = Err(f);
                    break;
                }
            }
            // The DMA tables, where they are their own: the plan's
            // mappings, nothing else allowed.
            let dma_root = DOMAINS[i].dma_root.load(Ordering::Acquire);
            if dma_root != tables.root {
                let dma = Tables {
                    regime: Regime::Stage2,
                    root: dma_root,
                };
                if let Err(f) = stage2::verify(d, &[], &dma, &mut alloc) {
                    walked = Err(f);
                    break;
                }
            }
        }
    }
    let result = walked.and_then(|()| stage2::disjoint(&plan.domains, board, partitioner));
    let us = bulkhead_core::ticks_to_us(CNTPCT_EL0.get().wrapping_sub(start), CNTFRQ_EL0.get());
    match result {
        Ok(()) => info!(
            "stage 2 verified: {} domains, {} pages, no page shared{} ({} us)",
            plan.domains.len(),
            pages,
            if extra.is_empty() {
                ""
            } else {
                " but the GICv2 virtual CPU interface"
            },
            us
        ),
        Err(f) => {
            error!("stage 2 check failed: {f}");
            crate::refuse()
        }
    }
}

fn policy_name(p: FaultPolicy) -> &'static str {
    match p {
        FaultPolicy::InjectAbort => "inject-abort",
        FaultPolicy::Stop => "stop",
        FaultPolicy::Restart => "restart",
    }
}

/// Put a domain's memory in its boot state: its images' checksums checked
/// (the first time), all RAM zeroed, the image copied from the package
/// (which is read-only, so always pristine) to its entry point, its device
/// tree at the top of its entry region.
fn load(i: usize, d: &DomainPlan) {
    let gic = gic::version();
    let pkg = &PLAN_AND_PACKAGE.get().expect("set before any load").1;
    let initrd = bulkhead_core::plan::initrd_name(&d.name);
    // Its images' checksums, once (the package is read-only and no domain
    // maps it): a damaged image stops only its own domain.
    if !DOMAINS[i].verified.load(Ordering::Acquire) {
        let crc = crate::checksum::crc32_updater();
        for entry in [d.name.as_str(), initrd.as_str()] {
            if let Err(e) = pkg.verify(entry, crc) {
                error!("domain \"{}\": {e}", d.name);
                stop_domain(i, d, "its image failed its CRC-32 check");
            }
        }
        DOMAINS[i].verified.store(true, Ordering::Release);
    }
    // The domain's RAM is mapped at EL2 on this core only, and only until
    // it is loaded.
    mmu::map_domain_ram(d);
    for m in d.ram.iter() {
        // SAFETY: validation proved every RAM mapping lies in board RAM (mapped normal, read/write
        // at EL2 on this core just above), outside the partitioner and every other domain; the domain
        // is not running (not yet started, or all its cores are off), so nothing else touches it.
        unsafe { mmu::zero(m.pa, m.size) };
    }
    let image = pkg.image(&d.name).unwrap_or(&[]);
    let Some(load) = ram_pa(d, d.entry) else {
        crate::fatal(format_args!(
            "domain \"{}\": entry point outside its RAM",
            d.name
        ));
    };
    // SAFETY: validation proved the image fits between the entry point and
    // the end of the RAM mapping that holds it.
    unsafe { mmu::copy(load, image) };
    if let Some(ipa) = dtb::initrd_ipa(d) {
        let rd = pkg.image(&initrd).unwrap_or(&[]);
        let pa = ram_pa(d, ipa).unwrap_or(0);
        // SAFETY: validation left room for the initial RAM disk between the
        // image and the device tree, inside the same RAM mapping.
        unsafe { mmu::copy(pa, rd) };
    }
    let mut buf = [0u8; dtb::DTB_MAX];
    // A hand-written tree (checked at boot against the domain's resources)
    // replaces the generated one.
    let tree = match pkg.image(&bulkhead_core::plan::dtb_name(&d.name)) {
        Some(supplied) if supplied.len() <= buf.len() => {
            buf[..supplied.len()].copy_from_slice(supplied);
            Ok(supplied.len())
        }
        _ => {
            // This run's own seeds (none without a root seed).
            let run = DOMAINS[i].restarts.load(Ordering::Acquire);
            let seeds = crate::entropy::for_domain(&d.name, run);
            dtb::domain_tree_seeded(d, gic, seeds.as_ref(), &mut buf)
        }
    };
    match (tree, dtb::dtb_ipa(d)) {
        (Ok(len), Some(ipa)) => {
            let pa = ram_pa(d, ipa).unwrap_or(0);
            // SAFETY: `dtb_ipa` places the tree inside the RAM mapping of the
            // entry point, above the image; it is domain RAM as above.
            unsafe { mmu::copy(pa, &buf[..len]) };
            DOMAINS[i].dtb.store(ipa, Ordering::Release);
        }
        (tree, ipa) => crate::fatal(format_args!(
            "domain \"{}\": cannot place its device tree ({}, {})",
            d.name,
            crate::debug::DtbErr(tree.err()),
            crate::debug::OptU64(ipa)
        )),
    }
    for m in d.ram.iter() {
        mmu::clean_to_poc(m.pa, m.size);
    }
    mmu::unmap_domain_ram(d);
    // Its PCI functions may master the bus again (a restart stopped them).
    crate::pci::enable(i, d);
}

/// The physical address of domain `d`'s RAM at `ipa`, if it has RAM there
/// (one copy for [`load`]'s three uses).
#[inline(never)]
fn ram_pa(d: &DomainPlan, ipa: u64) -> Option<u64> {
    d.ram_at(ipa).map(|m| m.pa + (ipa - m.ipa))
}

/// Start each domain's first vCPU; this core then runs its own vCPU, or
/// powers off until a domain asks for it.
pub fn start_all(boot_core: usize) -> ! {
    // Every first core is pending before any starts: a core that starts
    // never mistakes one still to come for one that is off
    // (`irq::arrive_core`).
    for d in plan().domains.iter() {
        CORES[d.cpus[0]].boot.store(true, Ordering::Release);
        CORES[d.cpus[0]].state.store(ON_PENDING, Ordering::Release);
    }
    for (i, d) in plan().domains.iter().enumerate() {
        let first = d.cpus[0];
        if first == boot_core {
            continue;
        }
        if let Err(why) = power_on(d, first) {
            CORES[first].state.store(OFF, Ordering::Release);
            DOMAINS[i].state.lock().stopped = true;
            error!("domain \"{}\" stopped: {why}", d.name);
        }
    }
    if CORES[boot_core].state.load(Ordering::Acquire) == ON_PENDING {
        launch(boot_core);
    }
    if CORES[boot_core].domain.load(Ordering::Acquire) == 0 {
        info!("core {boot_core} belongs to no domain: powering it off");
    }
    park()
}

/// Why a core could not be powered on.
pub struct PowerOnFailed {
    core: usize,
    ret: i64,
    attempts: u32,
}

impl core::fmt::Display for PowerOnFailed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "starting core {} failed ({}) after {} attempt(s)",
            self.core,
            crate::debug::I64(self.ret),
            u64::from(self.attempts)
        )
    }
}

/// Power physical core `core` on at the secondary entry (it then runs
/// [`launch`]). A core whose vCPU was just turned off may still be on its
/// way to its own CPU_OFF (it marks itself off first), so the platform may
/// answer ALREADY_ON (or ON_PENDING) for a while: that is retried, about a
/// millisecond apart, a bounded number of times
/// (`bulkhead_core::lifecycle::power_on_outcome`); an error, reported, if
/// the core never comes.
fn power_on(d: &DomainPlan, core: usize) -> Result<(), PowerOnFailed> {
    use bulkhead_core::lifecycle::{power_on_outcome, PowerOn};
    let di = CORES[core].domain.load(Ordering::Acquire).wrapping_sub(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = crate::power::cpu_on(core);
        match power_on_outcome(r, attempt) {
            // (A start that needed retries is not reported: the core was
            // only finishing its own CPU_OFF.)
            PowerOn::Started => return Ok(()),
            PowerOn::Retry => spin_ms(1),
            PowerOn::Failed => {
                let e = PowerOnFailed {
                    core,
                    ret: r,
                    attempts: attempt,
                };
                limited!(di, d, Kind::Lifecycle, error!("domain \"{}\": {e}", d.name));
                return Err(e);
            }
        }
    }
}

/// Busy-wait about `ms` milliseconds of the physical counter.
pub(crate) fn spin_ms(ms: u64) {
    let start = CNTPCT_EL0.get();
    let ticks = CNTFRQ_EL0.get() * ms / 1000;
    while CNTPCT_EL0.get().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

/// Power this core off until it is started again (see `crate::power`).
pub fn park() -> ! {
    crate::power::park(this_core())
}

/// Index of the core we run on (cached in TPIDR_EL2).
pub fn this_core() -> usize {
    TPIDR_EL2.get() as usize
}

/// Fill TPIDR_EL2 with this core's board index.
pub fn identify_core() -> usize {
    let idx = crate::board()
        .cpu_index(MPIDR_EL1.get())
        .unwrap_or_else(|| {
            crate::fatal(format_args!(
                "running on a core the board does not list (MPIDR {:#x})",
                MPIDR_EL1.get()
            ))
        });
    TPIDR_EL2.set(idx as u64);
    idx
}

/// The vCPU state of core `core`.
pub fn core_state(core: usize) -> usize {
    CORES[core].state.load(Ordering::Acquire)
}

/// Enter this core's vCPU from reset.
pub fn launch(core: usize) -> ! {
    let di = CORES[core].domain.load(Ordering::Acquire);
    if di == 0 || CORES[core].request.swap(REQ_NONE, Ordering::SeqCst) == REQ_STOP {
        CORES[core].state.store(OFF, Ordering::Release);
        park();
    }
    let d = &plan().domains[di - 1];
    let vcpu = CORES[core].vcpu.load(Ordering::Acquire);
    let mut frame = TrapFrame::ZERO;
    let boot = CORES[core].boot.swap(false, Ordering::AcqRel);
    if boot {
        if !DOMAINS[di - 1].loaded.load(Ordering::Acquire) {
            load(di - 1, d);
            DOMAINS[di - 1].loaded.store(true, Ordering::Release);
        }
        frame.x[0] = DOMAINS[di - 1].dtb.load(Ordering::Acquire);
        frame.elr = d.entry;
    } else {
        let (entry, ctx) = *CORES[core].start.lock();
        frame.x[0] = ctx;
        frame.elr = entry;
    }
    frame.spsr = trap::SPSR_EL1H_DAIF_MASKED;
    // The domain's identity: virtual MPIDR = its vCPU index; its counter
    // offset is zero, so it sees the same time as the partitioner.
    set_vmpidr(vcpu as u64);
    CNTVOFF_EL2.set(0);
    crate::cpu::enter_guest_controls(core);
    // Every EL1/EL0 register the domain can see as at a cold boot (with
    // FP/SIMD untrapped, as just set), and its virtual CPU interface too:
    // nothing a previous run left behind survives a restart or a CPU_ON.
    crate::el1::reset();
    // No set/way operation of the core's previous run counts as done for
    // this one (that one's last exit may have been one, taken by a stop).
    CORES[core].set_way.store(SET_WAY_NONE, Ordering::Relaxed);
    irq::reset_vcpu();
    gic::reset_virtual_cpu_interface();
    mmu::install_stage2(DOMAINS[di - 1].root.load(Ordering::Acquire), d.vmid);
    HCR_EL2.set(crate::cpu::hcr_el2());
    CORES[core].state.store(ON, Ordering::Release);
    irq::arrive_core(core);
    let (ms, frac) = ms_since_reset();
    // A (re)boot of the domain happens at most restart-limit + 1 times and
    // is always reported; a start by the domain's own CPU_ON can be
    // repeated without end, and goes through its rate limit.
    let start = || {
        info!(
            "domain \"{}\": vCPU {} starts on core {} at {:#x}, {}.{:03} ms after reset",
            d.name, vcpu, core, frame.elr, ms, frac
        )
    };
    if boot {
        start();
    } else {
        limited!(di - 1, d, Kind::Lifecycle, start());
    }
    boot::enter_guest(&frame, core)
}

fn set_vmpidr(vcpu: u64) {
    // SAFETY: VMPIDR_EL2 only changes what the domain reads as MPIDR_EL1.
    unsafe { core::arch::asm!("msr vmpidr_el2, {}", in(reg) (1u64 << 31) | vcpu) };
}

/// The domain and vCPU running on this core.
pub fn current() -> (usize, &'static DomainPlan, usize) {
    let core = this_core();
    let di = CORES[core].domain.load(Ordering::Acquire);
    let d = plan()
        .domains
        .get(di.wrapping_sub(1))
        .unwrap_or_else(|| crate::fatal(format_args!("trap on core {core}, which runs no domain")));
    (di - 1, d, CORES[core].vcpu.load(Ordering::Acquire))
}

/// The physical core of vCPU `vcpu` of domain `d`.
pub fn core_of(d: &DomainPlan, vcpu: usize) -> Option<usize> {
    d.cpus.get(vcpu).copied()
}

/// A synchronous exception from a domain.
pub fn handle_sync(frame: &mut TrapFrame) {
    let esr = ESR_EL2.get();
    if sgi_trap(esr, frame) {
        return;
    }
    let (di, d, vcpu) = current();
    // Emulated instructions are stepped over by their own length.
    let step = trap::instruction_len(esr);
    let exit = trap::decode(esr);
    if !matches!(exit, Exit::SysReg { op0: 1, .. }) {
        CORES[this_core()]
            .set_way
            .store(SET_WAY_NONE, Ordering::Relaxed);
    }
    match exit {
        Exit::DataAbort {
            write,
            access: Some(a),
            ..
        } => {
            let ipa = fault_ipa();
            let console = d.virtual_console.is_some_and(|vc| ipa & !0xfff == vc);
            if a.misaligned(ipa) {
                // Before any emulation: every emulated register is
                // naturally aligned, and a forwarded misaligned access (to
                // a PCI function's configuration space) would be the
                // partitioner's own to Device memory, an alignment fault
                // at EL2. The guest gets what hardware gives: a bus error.
                // (Any other misaligned access that traps is outside the
                // domain, and reported so.)
                if console || irq::in_virtual_gic(di, d, ipa) || crate::pci::in_window(d, ipa) {
                    outside_access(
                        di,
                        d,
                        vcpu,
                        frame,
                        esr,
                        format_args!(
                            "misaligned {}-byte access to an emulated device",
                            u64::from(a.size)
                        ),
                    );
                } else {
                    outside_access(di, d, vcpu, frame, esr, OUTSIDE);
                }
            } else if console {
                exits::count_here(Cause::Vconsole);
                let off = ipa & 0xfff;
                // A finished line is copied out and printed after the
                // domain's lock is released: its other vCPUs never wait
                // for the console.
                let mut line = heapless::Vec::<u8, { bulkhead_core::vconsole::LINE }>::new();
                let mut done = false;
                let level = {
                    let mut st = DOMAINS[di].state.lock();
                    if write {
                        let v = frame.reg(a.reg);
                        st.console.write(off, v, |l| {
                            line.clear();
                            let _ = line.extend_from_slice(l);
                            done = true;
                        });
                    } else {
                        let v = st.console.read(off);
                        frame.set_reg(a.reg, a.load_value(v));
                    }
                    st.console.interrupt()
                };
                // Every access may change the UART's interrupt line.
                irq::set_console_line(di, d, level);
                if done {
                    crate::console::domain_line(&d.name, &line);
                }
                step_over(frame, step);
            } else if irq::emulate_mmio(di, d, vcpu, ipa, write, a, frame) {
                // A GICv2 GICD_SGIR write is an SGI; the rest of the
                // distributor and redistributor is the virtual GIC's.
                let sgir = bulkhead_core::plan::VGICD_IPA + bulkhead_core::vgic::regs::GICD_SGIR;
                exits::count_here(
                    if write && ipa == sgir && gic::version() == bulkhead_core::plan::GicVersion::V2
                    {
                        Cause::Sgi
                    } else {
                        Cause::Vgic
                    },
                );
                step_over(frame, step);
            } else if crate::pci::emulate_config(di, d, ipa, write, a, frame) {
                exits::count_here(Cause::Vecam);
                step_over(frame, step);
            } else {
                outside_access(di, d, vcpu, frame, esr, OUTSIDE);
            }
        }
        Exit::DataAbort { .. } | Exit::InstructionAbort { .. } => {
            outside_access(di, d, vcpu, frame, esr, OUTSIDE)
        }
        Exit::Hvc { .. } => {
            exits::count_here(Cause::Psci);
            psci::guest_call(di, d, vcpu, frame, "HVC")
        }
        Exit::Smc { .. } => {
            exits::count_here(Cause::Psci);
            // A trapped SMC leaves ELR_EL2 on the SMC itself.
            step_over(frame, step);
            psci::guest_call(di, d, vcpu, frame, "SMC");
        }
        Exit::SysReg {
            read,
            reg,
            op0,
            op1,
            crn,
            crm,
            op2,
        } => {
            exits::count_here(
                if bulkhead_core::vsgi::is_sgi_register(read, op0, op1, crn, crm, op2) {
                    Cause::Sgi
                } else {
                    Cause::Sysreg
                },
            );
            // A set/way operation whose clean gave way to an interrupt is
            // not complete: it is not stepped over, and resumes when it
            // traps again.
            let mut complete = true;
            if let Some(op) = trap::set_way_op(op0, op1, crn, crm, op2) {
                complete = set_way(di, d, op, reg);
            } else if !irq::emulate_sysreg(
                di,
                d,
                vcpu,
                read,
                (op0, op1, crn, crm, op2),
                frame.reg(reg),
            ) {
                report_ignored_register(di, d, esr, frame.elr, read);
                if read {
                    frame.set_reg(reg, 0);
                }
            }
            if complete {
                step_over(frame, step);
            }
        }
        Exit::Coproc(c) if trap::from_aarch32_el0(frame.spsr) => {
            // An AArch32 process (EL0 under the domain's AArch64 kernel)
            // reached a trapped coprocessor register: as for AArch64, it
            // reads as zero and writes are ignored, never fatal. A
            // conditional instruction may trap with its condition failed:
            // then it does nothing but step over it.
            exits::count_here(Cause::Sysreg);
            if trap::aarch32_condition_passed(c.cond, frame.spsr) {
                report_ignored_register(di, d, esr, frame.elr, c.read);
                for r in c.read_registers().into_iter().flatten() {
                    // The whole X register: its upper half stays zero.
                    frame.set_reg(r, 0);
                }
                if c.reads_into_flags() {
                    frame.spsr &= !(0xf << 28);
                }
            }
            step_over(frame, step);
        }
        Exit::Wfx => {
            exits::count_here(Cause::Wfx);
            step_over(frame, step)
        }
        // AArch32 coprocessor traps come only from EL0 (EL1 is AArch64,
        // HCR_EL2.RW): anything else is unexpected.
        Exit::Coproc(_) | Exit::Other { .. } => {
            exits::count_here(Cause::Other);
            limited!(
                di,
                d,
                Kind::Lifecycle,
                error!(
                    "domain \"{}\" core {}: unexpected exception {} (ESR_EL2 {:#x}) at PC {:#x}",
                    d.name,
                    this_core(),
                    Syndrome(esr),
                    esr,
                    frame.elr
                )
            );
            crashed(di, d, "it took an exception the partitioner cannot reflect");
        }
    }
    irq::flush();
}

/// Step the domain over the trapped instruction it emulated, `len` bytes
/// (`trap::instruction_len`); a T32 instruction of an AArch32 EL0 in an IT
/// block also advances the block (`trap::step_spsr`), as its completion
/// would have, so the next instruction runs under its own condition.
fn step_over(frame: &mut TrapFrame, len: u64) {
    frame.spsr = trap::step_spsr(frame.spsr);
    frame.elr += len;
}

/// Report a trapped register access that is ignored (reads as zero,
/// writes dropped), AArch64 `MRS`/`MSR` or AArch32 `MRC`/`MCR`/`MRRC`/
/// `MCRR`: only the domain's first one, ever.
fn report_ignored_register(di: usize, d: &DomainPlan, esr: u64, pc: u64, read: bool) {
    // The flag under the domain's lock, the line after it: no lock is
    // held while a line waits its turn on the console.
    let first = !core::mem::replace(&mut DOMAINS[di].state.lock().reported_sysreg, true);
    if first {
        warn!(
            "domain \"{}\" core {}: trapped {} at PC {:#x}: ignored{} (reported once)",
            d.name,
            this_core(),
            Syndrome(esr),
            pc,
            if read { ", reads as zero" } else { "" }
        );
    }
}

/// The SGI fast path (`bulkhead_core::vsgi`, `irq::send_sgi_fast`): a
/// GICv3 `ICC_SGI1R_EL1` write or a GICv2 `GICD_SGIR` write whose targets
/// are all the domain's own and can all take the SGI now, recognised from
/// the syndrome before any general decoding. Counted as `sgi`, as the
/// general path counts it. False, having
/// done nothing, for anything else: the general path takes it. Not on a
/// board whose virtual IRQ goes through HCR_EL2.VI (`VirtualIrq::ViaHcrVi`,
/// QEMU's i.MX 8M Plus): there the line is recomputed from the list
/// registers at each exit, and the general path, which goes through the
/// model and the queue, is the one proven there (a full test run once
/// hung that board's Linux shell test with the fast path on).
#[inline(always)]
fn sgi_trap(esr: u64, frame: &mut TrapFrame) -> bool {
    use bulkhead_core::vsgi;
    if gic::virtual_irq_via_hcr() {
        return false;
    }
    let (value, v2) = if let Some(rt) = vsgi::sgi1r_write(esr) {
        (frame.reg(rt), false)
    } else if let Some(rt) = vsgi::word_write(esr) {
        if fault_ipa() != bulkhead_core::plan::VGICD_IPA + bulkhead_core::vgic::regs::GICD_SGIR
            || gic::version() != bulkhead_core::plan::GicVersion::V2
        {
            return false;
        }
        (frame.reg(rt), true)
    } else {
        return false;
    };
    let core = this_core();
    let di = CORES[core].domain.load(Ordering::Acquire);
    let Some(d) = plan().domains.get(di.wrapping_sub(1)) else {
        return false;
    };
    let vcpu = CORES[core].vcpu.load(Ordering::Acquire);
    let vcpus = ((1u32 << d.cpus.len()) - 1) as u8;
    let sgi = if v2 {
        vsgi::sgir_targets(value as u32, vcpu, vcpus)
    } else {
        vsgi::sgi1r_targets(value, vcpu, vcpus)
    };
    if !sgi.is_some_and(|sgi| irq::send_sgi_fast(d, vcpu, sgi)) {
        return false;
    }
    exits::count(core, Cause::Sgi);
    CORES[core].set_way.store(SET_WAY_NONE, Ordering::Relaxed);
    step_over(frame, trap::instruction_len(esr));
    irq::flush();
    true
}

/// A trapped data cache maintenance by set/way (HCR_EL2.TSW). On a cache
/// shared with other cores, a domain's `DC ISW` would discard other
/// domains' dirty lines, and its `DC CISW` would cost them their cached
/// data. The operation is turned into a clean and invalidate, by address,
/// of the domain's own memory only, which is what the domain wants from
/// any whole-cache set/way loop (never a plain invalidate, which could lose
/// data). A loop issues one operation per set and way: the first one does
/// the work, the rest of the loop (until the domain exits to EL2 for any
/// other reason) costs only the trap.
///
/// The clean goes in pieces and gives way to a pending physical interrupt
/// (`bulkhead_core::setway`): this core may take the partitioner's own
/// interrupts (its console's input, the IOMMU's reports) and its domain's
/// stop request, none of which may wait for a clean of the whole RAM, over
/// and over, when the domain repeats the operation after every other exit.
/// False then: the operation is not complete, the instruction is not
/// stepped over, and it resumes the clean when it traps again, after the
/// interrupt.
fn set_way(di: usize, d: &DomainPlan, op: &str, reg: u8) -> bool {
    use bulkhead_core::setway::{self, Cursor, Progress};
    let core = this_core();
    let state = CORES[core].set_way.load(Ordering::Relaxed);
    if state == SET_WAY_DONE {
        return true;
    }
    let mut cursor = if state == SET_WAY_PARTIAL {
        *CORES[core].set_way_cursor.lock()
    } else {
        Cursor::default()
    };
    mmu::map_domain_ram(d);
    let progress = setway::clean(&d.ram, &mut cursor, mmu::clean_to_poc, interrupt_pending);
    mmu::unmap_domain_ram(d);
    if progress == Progress::GaveWay {
        *CORES[core].set_way_cursor.lock() = cursor;
        CORES[core]
            .set_way
            .store(SET_WAY_PARTIAL, Ordering::Relaxed);
        return false;
    }
    CORES[core].set_way.store(SET_WAY_DONE, Ordering::Relaxed);
    let first = !core::mem::replace(&mut DOMAINS[di].state.lock().reported_set_way, true);
    if first {
        info!(
            "domain \"{}\" core {}: set/way cache maintenance ({op}, x{}) carried out as clean and invalidate of its own memory only (reported once)",
            d.name,
            core,
            u64::from(reg)
        );
    }
    true
}

/// Whether a physical interrupt (or SError) waits for this core: taken
/// as soon as it returns to its domain (EL2 runs with them masked).
fn interrupt_pending() -> bool {
    // ISR_EL1 read at EL2 shows the physical A, I and F lines.
    let isr: u64;
    // SAFETY: reading ISR_EL1 has no side effects.
    unsafe { core::arch::asm!("mrs {}, isr_el1", out(reg) isr, options(nomem, nostack)) };
    isr & 0x1c0 != 0
}

/// The faulting guest-physical address of a stage-2 abort.
fn fault_ipa() -> u64 {
    ((HPFAR_EL2.get() >> 4) << 12) | (FAR_EL2.get() & 0xfff)
}

/// How [`outside_access`] describes an access to an address the domain
/// does not own.
const OUTSIDE: core::fmt::Arguments<'static> = format_args!("access outside the domain");

/// The domain touched an address it does not own (`what`: [`OUTSIDE`]), or
/// made an access the partitioner refuses as if it did (`what` says which):
/// counted as a fault, reported, and its fault policy applied.
fn outside_access(
    di: usize,
    d: &DomainPlan,
    vcpu: usize,
    frame: &mut TrapFrame,
    esr: u64,
    what: core::fmt::Arguments<'_>,
) {
    exits::count_here(Cause::Fault);
    let ipa = fault_ipa();
    let far = FAR_EL2.get();
    let n = {
        let mut st = DOMAINS[di].state.lock();
        st.faults += 1;
        st.faults
    };
    let action = match d.fault_policy {
        FaultPolicy::InjectAbort => "injected synchronous external abort",
        FaultPolicy::Stop => "stopping the domain",
        FaultPolicy::Restart => "restarting the domain",
    };
    limited!(
        di,
        d,
        Kind::Fault,
        warn!(
            "domain \"{}\" vCPU {} core {}: {} #{}: IPA {:#x} (VA {:#x}, PC {:#x}): {} [ESR_EL2 {:#x}] -> {}",
            d.name, vcpu, this_core(), what, n, ipa, far, frame.elr, Syndrome(esr), esr, action
        )
    );
    match d.fault_policy {
        FaultPolicy::InjectAbort => {
            let inj = trap::external_abort(esr, frame.spsr, frame.elr, far, VBAR_EL1.get());
            ESR_EL1.set(inj.esr_el1);
            FAR_EL1.set(inj.far_el1);
            ELR_EL1.set(inj.elr_el1);
            SPSR_EL1.set(inj.spsr_el1);
            frame.elr = inj.elr_el2;
            frame.spsr = inj.spsr_el2;
        }
        FaultPolicy::Stop => stop_domain(di, d, "its fault policy is \"stop\""),
        FaultPolicy::Restart => restart_domain(di, d, "its fault policy is \"restart\""),
    }
}

/// A crash that cannot be reflected: the policy decides, stop by default.
pub fn crashed(di: usize, d: &DomainPlan, why: &str) -> ! {
    match d.fault_policy {
        FaultPolicy::Restart => restart_domain(di, d, why),
        _ => stop_domain(di, d, why),
    }
}

/// Ask every other core of domain `d` to stop, and wait until they have:
/// until then, one of them may still run the domain, so its memory must
/// not be touched. The request goes to every core, off ones included: a
/// core the domain powers on (CPU_ON from a vCPU not stopped yet) while
/// this runs sees it in `launch` and parks instead of entering the domain.
/// The wait ends only once two passes in a row see every other core off: a
/// vCPU's CPU_ON of another core comes before its own core goes off, so a
/// pass that begins after the first pass saw the last core off sees any
/// such power-on, and waits for that core to park. It never gives up (a
/// kicked core stops at its next exit to EL2, which the kick forces); a
/// core slow to stop is kicked again and reported.
fn stop_other_cores(d: &DomainPlan) {
    let me = this_core();
    let board = crate::board();
    let kick_all = || {
        for &c in d.cpus.iter().filter(|&&c| c != me) {
            // SeqCst: the request is visible to a core before it can be seen
            // off here and then powered on by a vCPU (see `launch`).
            CORES[c].request.store(REQ_STOP, Ordering::SeqCst);
            if CORES[c].state.load(Ordering::SeqCst) != OFF {
                gic::send_sgi(gic::SGI_KICK, c, board.cpus[c]);
            }
        }
    };
    kick_all();
    let freq = CNTFRQ_EL0.get().max(1);
    let start = CNTPCT_EL0.get();
    let mut last_kick = start;
    let mut reported = false;
    let mut quiet_passes = 0;
    loop {
        let running = d
            .cpus
            .iter()
            .find(|&&c| c != me && CORES[c].state.load(Ordering::SeqCst) != OFF);
        let Some(&c) = running else {
            quiet_passes += 1;
            if quiet_passes == 2 {
                break;
            }
            continue;
        };
        quiet_passes = 0;
        let now = CNTPCT_EL0.get();
        if !reported && now.wrapping_sub(start) > freq {
            reported = true;
            warn!(
                "domain \"{}\": core {c} has not stopped after a second; still waiting (its memory stays untouched until it has)",
                d.name
            );
        }
        if now.wrapping_sub(last_kick) > freq / 10 {
            last_kick = now;
            kick_all();
        }
        core::hint::spin_loop();
    }
}

/// Called on a core at every exit: honour a stop request left by another core.
pub fn check_requests() {
    let core = this_core();
    // A plain load first: requests are rare, and this is on every exit.
    if CORES[core].request.load(Ordering::Acquire) != REQ_NONE
        && CORES[core].request.swap(REQ_NONE, Ordering::AcqRel) == REQ_STOP
    {
        irq::clear_vcpu();
        CORES[core].state.store(OFF, Ordering::Release);
        park();
    }
}

/// Stop domain `di` for good: all its cores off.
/// Claim the domain's stop/restart; a core that loses the race (two vCPUs
/// asking at once) just turns its own vCPU off and lets the winner finish.
fn claim_transition(di: usize) {
    if DOMAINS[di].transition.swap(true, Ordering::AcqRel) {
        irq::clear_vcpu();
        CORES[this_core()].state.store(OFF, Ordering::Release);
        park();
    }
}

pub fn stop_domain(di: usize, d: &DomainPlan, why: &str) -> ! {
    claim_transition(di);
    DOMAINS[di].state.lock().stopped = true;
    stop_other_cores(d);
    // The console's keys and the IOMMU's reports keep coming, on a core
    // that still runs a domain (before the functions' resets, which take
    // their time here with interrupts masked).
    irq::leave_core(&d.cpus);
    crate::pci::quiesce(d, true);
    irq::reset_domain(di, d);
    // Once in a domain's life, so never suppressed; the counts of what was
    // come first.
    crate::report::flush(di, &d.name);
    // Its cores are all off: the counts are final.
    exits::print(d);
    warn!(
        "domain \"{}\" stopped: {}; the other domains are unaffected",
        d.name, why
    );
    irq::clear_vcpu();
    CORES[this_core()].state.store(OFF, Ordering::Release);
    park()
}

/// Restart domain `di` from its pristine image; stop it past the limit.
pub fn restart_domain(di: usize, d: &DomainPlan, why: &str) -> ! {
    let n = DOMAINS[di].restarts.load(Ordering::Acquire) + 1;
    if n > d.restart_limit {
        stop_domain(di, d, "restart limit reached");
    }
    claim_transition(di);
    DOMAINS[di].restarts.store(n, Ordering::Release);
    // Restarts are bounded by the domain's restart-limit: each is reported
    // (after the counts of anything its rate limit suppressed).
    crate::report::flush(di, &d.name);
    warn!(
        "domain \"{}\" restarting ({} of at most {}): {}",
        d.name,
        u64::from(n),
        u64::from(d.restart_limit),
        why
    );
    stop_other_cores(d);
    irq::leave_core(&d.cpus);
    crate::pci::quiesce(d, false);
    irq::reset_domain(di, d);
    irq::clear_vcpu();
    // Its first core reloads its memory when it starts it again.
    DOMAINS[di].loaded.store(false, Ordering::Release);
    {
        let mut st = DOMAINS[di].state.lock();
        st.console = VirtualConsole::new();
        st.stopped = false;
    }
    let me = this_core();
    for &c in d.cpus.iter() {
        CORES[c].state.store(OFF, Ordering::Release);
        // A core that stopped on its own never consumed its stop request.
        CORES[c].request.store(REQ_NONE, Ordering::Release);
    }
    let first = d.cpus[0];
    CORES[first].boot.store(true, Ordering::Release);
    CORES[first].state.store(ON_PENDING, Ordering::Release);
    DOMAINS[di].transition.store(false, Ordering::Release);
    if first == me {
        launch(me);
    }
    if let Err(why) = power_on(d, first) {
        // Nothing of the domain runs: its first core never came.
        CORES[first].boot.store(false, Ordering::Release);
        CORES[first].state.store(OFF, Ordering::Release);
        stop_domain(di, d, alloc_free_reason(&why).as_str());
    }
    park()
}

/// A stop reason naming a failed power-on, without an allocator.
fn alloc_free_reason(why: &PowerOnFailed) -> heapless::String<96> {
    use core::fmt::Write;
    let mut s = heapless::String::new();
    let _ = write!(s, "its first core could not be powered on ({why})");
    s
}

/// Start vCPU `vcpu` of domain `d` at `entry` (PSCI CPU_ON from the domain).
pub fn start_vcpu(d: &DomainPlan, vcpu: usize, entry: u64, ctx: u64) -> i64 {
    use bulkhead_core::psci::{
        ALREADY_ON, INVALID_ADDRESS, INVALID_PARAMETERS, ON_PENDING as RET_ON_PENDING, SUCCESS,
    };
    let Some(core) = core_of(d, vcpu) else {
        return INVALID_PARAMETERS;
    };
    if d.ram_at(entry).is_none() {
        return INVALID_ADDRESS;
    }
    match CORES[core]
        .state
        .compare_exchange(OFF, ON_PENDING, Ordering::SeqCst, Ordering::SeqCst)
    {
        Ok(_) => {}
        Err(ON) => return ALREADY_ON,
        Err(_) => return RET_ON_PENDING,
    }
    *CORES[core].start.lock() = (entry, ctx);
    CORES[core].boot.store(false, Ordering::Release);
    if power_on(d, core).is_err() {
        CORES[core].state.store(OFF, Ordering::Release);
        return bulkhead_core::lifecycle::INTERNAL_FAILURE;
    }
    SUCCESS
}

/// Turn this core's vCPU off (PSCI CPU_OFF from the domain).
pub fn stop_this_vcpu(d: &DomainPlan) -> ! {
    let core = this_core();
    irq::clear_vcpu();
    CORES[core].state.store(OFF, Ordering::Release);
    irq::leave_core(&[core]);
    let di = CORES[core].domain.load(Ordering::Acquire).wrapping_sub(1);
    limited!(
        di,
        d,
        Kind::Lifecycle,
        info!("domain \"{}\": vCPU on core {} powered off", d.name, core)
    );
    park()
}

/// Report an unsupported call, once per domain.
pub fn report_call_once(di: usize, d: &DomainPlan, conduit: &str, fid: u32, pc: u64) {
    let first = !core::mem::replace(&mut DOMAINS[di].state.lock().reported_call, true);
    if first {
        warn!(
            "domain \"{}\": unsupported {} function {:#010x} at PC {:#x}: answered NOT_SUPPORTED, not forwarded (reported once)",
            d.name, conduit, fid, pc
        );
    }
}

/// A byte typed on the partitioner console for domain `di` (which has a
/// virtual console and the input focus): queued in its receive FIFO (or
/// dropped and counted when that is full), and its console's interrupt
/// line updated, whichever core runs its vCPUs.
pub fn console_receive(di: usize, bytes: &[u8]) {
    let Some(d) = plan().domains.get(di) else {
        return;
    };
    let level = {
        let mut st = DOMAINS[di].state.lock();
        for &b in bytes {
            st.console.receive(b);
        }
        st.console.interrupt()
    };
    irq::set_console_line(di, d, level);
}

/// A physical interrupt reached EL2 while a domain ran.
pub fn handle_interrupt() {
    irq::handle_physical();
    check_requests();
    irq::flush();
}

/// [`handle_interrupt`] for an interrupt the fast path acknowledged
/// (`raw`) but left to the general one.
pub fn handle_acknowledged_interrupt(raw: u32) {
    irq::handle_acknowledged(raw);
    check_requests();
    irq::flush();
}

/// An SError from a domain: it cannot be reflected precisely.
pub fn handle_serror(frame: &mut TrapFrame) {
    exits::count_here(Cause::Other);
    let (di, d, _) = current();
    limited!(
        di,
        d,
        Kind::Lifecycle,
        error!(
            "domain \"{}\" core {}: SError (ESR_EL2 {:#x}) at PC {:#x}",
            d.name,
            this_core(),
            ESR_EL2.get(),
            frame.elr
        )
    );
    crashed(di, d, "it caused an SError");
}
