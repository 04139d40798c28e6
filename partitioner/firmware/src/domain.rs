//! Domains at run time: loading them, starting their cores, and everything
//! that happens when one of them traps: the virtual console, PSCI calls,
//! faults on addresses it does not own (reflected as a synchronous external
//! abort or stopping the domain, per its fault policy).

use aarch64_cpu::registers::{
    Readable, Writeable, CNTFRQ_EL0, CNTPCT_EL0, CNTVOFF_EL2, ELR_EL1, ESR_EL1, ESR_EL2, FAR_EL1,
    FAR_EL2, HCR_EL2, HPFAR_EL2, MPIDR_EL1, SCTLR_EL1, SPSR_EL1, TPIDR_EL2, VBAR_EL1,
};
use bulkhead_core::package::Package;
use bulkhead_core::plan::{DomainPlan, FaultPolicy, Plan, MAX_CPUS, MAX_DOMAINS};
use bulkhead_core::trap::{self, Exit, Syndrome};
use bulkhead_core::vconsole::VirtualConsole;
use bulkhead_core::{dtb, stage2, sysregs};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use log::{error, info, warn};
use spin::{Mutex, Once};

use crate::exceptions::TrapFrame;
use crate::{boot, mmu, psci};

static PLAN: Once<Plan> = Once::new();
/// Stage-2 root of each domain.
static ROOTS: [AtomicU64; MAX_DOMAINS] = [const { AtomicU64::new(0) }; MAX_DOMAINS];
/// Guest address of each domain's device tree.
static DTBS: [AtomicU64; MAX_DOMAINS] = [const { AtomicU64::new(0) }; MAX_DOMAINS];

/// What each physical core runs: domain index + 1 (0 = none) and vCPU index.
static CORE_DOMAIN: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
static CORE_VCPU: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// Power state of each core's vCPU.
const OFF: usize = 0;
const ON_PENDING: usize = 1;
const ON: usize = 2;
static CORE_STATE: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(OFF) }; MAX_CPUS];
/// Entry point and context id a guest's PSCI CPU_ON gave a vCPU.
static CORE_START: [Mutex<(u64, u64)>; MAX_CPUS] = [const { Mutex::new((0, 0)) }; MAX_CPUS];

/// Mutable per-domain state.
struct DomainState {
    console: VirtualConsole,
    stopped: bool,
    /// Accesses outside the domain so far.
    faults: u64,
    /// Unsupported calls already reported (only the first is logged).
    reported_call: bool,
    reported_sysreg: bool,
}

static STATE: [Mutex<DomainState>; MAX_DOMAINS] = [const {
    Mutex::new(DomainState {
        console: VirtualConsole::new(),
        stopped: false,
        faults: 0,
        reported_call: false,
        reported_sysreg: false,
    })
}; MAX_DOMAINS];

fn plan() -> &'static Plan {
    PLAN.get()
        .expect("traps only come from domains, which start after the plan is set")
}

/// Milliseconds since reset, from the physical counter (which starts at reset).
pub fn ms_since_reset() -> (u64, u64) {
    let ticks = CNTPCT_EL0.get();
    let freq = CNTFRQ_EL0.get().max(1);
    let us = ticks * 1_000_000 / freq;
    (us / 1000, us % 1000)
}

/// A byte view of physical memory.
///
/// # Safety
/// `[pa, pa + len)` must be RAM mapped read/write at EL2 that nothing else
/// uses while the slice lives (domain memory before its domain starts).
unsafe fn phys_mut(pa: u64, len: u64) -> &'static mut [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts_mut(pa as *mut u8, len as usize) }
}

/// Build every domain's stage 2, load its image and device tree.
pub fn setup(plan: Plan, pkg: &Package) {
    let plan = PLAN.call_once(|| plan);
    let board = crate::board();
    for (i, d) in plan.domains.iter().enumerate() {
        let root = {
            let mut alloc = mmu::PoolAlloc::lock();
            match stage2::build(d, &mut alloc) {
                Ok(t) => t.root,
                Err(e) => crate::fatal(format_args!(
                    "domain \"{}\": cannot build its stage-2 tables: {e:?}",
                    d.name
                )),
            }
        };
        ROOTS[i].store(root, Ordering::Release);
        for (v, &c) in d.cpus.iter().enumerate() {
            CORE_DOMAIN[c].store(i + 1, Ordering::Release);
            CORE_VCPU[c].store(v, Ordering::Release);
        }
        // Zero all of the domain's RAM, then copy its image to its entry point.
        for m in d.ram.iter() {
            // SAFETY: validation proved every RAM mapping lies in board RAM,
            // outside the partitioner and every other domain; the domain has
            // not started, so nothing else touches it.
            unsafe { phys_mut(m.pa, m.size) }.fill(0);
        }
        let image = pkg.image(&d.name).unwrap_or(&[]);
        let load = d.ram_at(d.entry).map(|m| m.pa + (d.entry - m.ipa));
        let Some(load) = load else {
            crate::fatal(format_args!(
                "domain \"{}\": entry point outside its RAM",
                d.name
            ));
        };
        // SAFETY: validation proved the image fits between the entry point and
        // the end of the RAM mapping that holds it.
        unsafe { phys_mut(load, image.len() as u64) }.copy_from_slice(image);
        let mut buf = [0u8; dtb::DTB_MAX];
        let tree = dtb::domain_tree(d, &mut buf);
        match (tree, dtb::dtb_ipa(d)) {
            (Ok(len), Some(ipa)) => {
                let pa = d.ram_at(ipa).map(|m| m.pa + (ipa - m.ipa)).unwrap_or(0);
                // SAFETY: `dtb_ipa` places the tree inside the RAM mapping of
                // the entry point, above the image; it is domain RAM as above.
                unsafe { phys_mut(pa, len as u64) }.copy_from_slice(&buf[..len]);
                DTBS[i].store(ipa, Ordering::Release);
            }
            (tree, ipa) => crate::fatal(format_args!(
                "domain \"{}\": cannot place its device tree ({:?}, {:?})",
                d.name,
                tree.err(),
                ipa
            )),
        }
        for m in d.ram.iter() {
            mmu::clean_to_poc(m.pa, m.size);
        }
        let cores: heapless::Vec<u64, MAX_CPUS> = d.cpus.iter().map(|&c| board.cpus[c]).collect();
        info!(
            "domain \"{}\": VMID {}, cores {:?}, {} RAM region(s), {} device(s), image {} bytes, fault policy {}",
            d.name,
            d.vmid,
            cores.as_slice(),
            d.ram.len(),
            d.devices.len(),
            image.len(),
            match d.fault_policy {
                FaultPolicy::InjectAbort => "inject-abort",
                FaultPolicy::Stop => "stop",
            }
        );
        for m in d.mappings() {
            info!(
                "  {:>6} IPA {:#011x}..{:#011x} -> PA {:#011x}",
                match m.kind {
                    bulkhead_core::plan::MemKind::Ram => "RAM",
                    bulkhead_core::plan::MemKind::Device => "device",
                },
                m.ipa,
                m.ipa + m.size,
                m.pa
            );
        }
    }
    info!(
        "translation tables: {} of the pool's frames used",
        mmu::PoolAlloc::lock().used()
    );
}

/// Start each domain's first vCPU; this core then runs its own vCPU, waits
/// for a CPU_ON, or powers off.
pub fn start_all(boot_core: usize) -> ! {
    let board = crate::board();
    for d in plan().domains.iter() {
        let first = d.cpus[0];
        CORE_STATE[first].store(ON_PENDING, Ordering::Release);
        if first == boot_core {
            continue;
        }
        let r = psci::cpu_on(
            board.cpus[first],
            boot::secondary_entry as *const () as u64,
            first as u64,
        );
        if r != 0 {
            error!(
                "domain \"{}\": PSCI CPU_ON of core {} failed ({})",
                d.name, first, r
            );
        }
    }
    idle_or_run(boot_core)
}

/// Run this core's vCPU if it has been asked to start; otherwise power off.
fn idle_or_run(core: usize) -> ! {
    if CORE_STATE[core].load(Ordering::Acquire) == ON_PENDING {
        launch(core);
    }
    if CORE_DOMAIN[core].load(Ordering::Acquire) == 0 {
        info!("core {core} belongs to no domain: powering it off");
    }
    park()
}

/// Power this core off for good (or halt it if the firmware refuses).
pub fn park() -> ! {
    let r = psci::cpu_off();
    warn!("PSCI CPU_OFF failed ({r}); halting the core instead");
    crate::halt()
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

/// Enter this core's vCPU for the first time.
pub fn launch(core: usize) -> ! {
    let di = CORE_DOMAIN[core].load(Ordering::Acquire);
    if di == 0 {
        park();
    }
    let d = &plan().domains[di - 1];
    let vcpu = CORE_VCPU[core].load(Ordering::Acquire);
    let mut frame = TrapFrame::ZERO;
    if vcpu == 0 {
        frame.x[0] = DTBS[di - 1].load(Ordering::Acquire);
        frame.elr = d.entry;
    } else {
        let (entry, ctx) = *CORE_START[core].lock();
        frame.x[0] = ctx;
        frame.elr = entry;
    }
    frame.spsr = trap::SPSR_EL1H_DAIF_MASKED;
    // EL1 state a core has at reset: MMU off, no vectors.
    SCTLR_EL1.set(sysregs::SCTLR_EL1_RESET);
    VBAR_EL1.set(0);
    // The domain's identity: virtual MPIDR = its vCPU index; its counter
    // offset is zero, so it sees the same time as the partitioner.
    set_vmpidr(vcpu as u64);
    CNTVOFF_EL2.set(0);
    // SAFETY: CNTHCTL_EL2 and CPTR_EL2 only decide which EL1 accesses to timers
    // and FP/SIMD trap to EL2; they don't affect memory safety.
    unsafe {
        core::arch::asm!("msr cnthctl_el2, {}", in(reg) sysregs::CNTHCTL_EL2);
        // CPTR_EL2 RES1 bits with TFP clear: the domain's FP/SIMD does not trap
        // (the partitioner is built soft-float, so it never touches FP state).
        core::arch::asm!("msr cptr_el2, {}", "isb", in(reg) 0x33ffu64);
    }
    mmu::install_stage2(ROOTS[di - 1].load(Ordering::Acquire), d.vmid);
    HCR_EL2.set(sysregs::hcr_el2_guest());
    CORE_STATE[core].store(ON, Ordering::Release);
    let (ms, frac) = ms_since_reset();
    info!(
        "domain \"{}\": vCPU {} starts on core {} at {:#x}, {}.{:03} ms after reset",
        d.name, vcpu, core, frame.elr, ms, frac
    );
    boot::enter_guest(&frame, core)
}

fn set_vmpidr(vcpu: u64) {
    // SAFETY: VMPIDR_EL2 only changes what the domain reads as MPIDR_EL1.
    unsafe { core::arch::asm!("msr vmpidr_el2, {}", in(reg) (1u64 << 31) | vcpu) };
}

/// The domain and vCPU running on this core.
fn current() -> (usize, &'static DomainPlan, usize) {
    let core = this_core();
    let di = CORE_DOMAIN[core].load(Ordering::Acquire);
    let d = plan()
        .domains
        .get(di.wrapping_sub(1))
        .unwrap_or_else(|| crate::fatal(format_args!("trap on core {core}, which runs no domain")));
    (di - 1, d, CORE_VCPU[core].load(Ordering::Acquire))
}

/// A synchronous exception from a domain.
pub fn handle_sync(frame: &mut TrapFrame) {
    let (di, d, vcpu) = current();
    let esr = ESR_EL2.get();
    match trap::decode(esr) {
        Exit::DataAbort {
            write,
            access: Some(a),
            ..
        } if d
            .virtual_console
            .is_some_and(|vc| page_of(fault_ipa()) == vc) =>
        {
            let off = fault_ipa() & 0xfff;
            let mut st = STATE[di].lock();
            if write {
                let v = frame.reg(a.reg);
                st.console
                    .write(off, v, |line| crate::console::domain_line(&d.name, line));
            } else {
                let v = st.console.read(off);
                frame.set_reg(a.reg, v);
            }
            frame.elr += 4;
        }
        Exit::DataAbort { .. } | Exit::InstructionAbort { .. } => {
            outside_access(di, d, vcpu, frame, esr)
        }
        Exit::Hvc { .. } => guest_call(di, d, frame, "HVC"),
        Exit::Smc { .. } => {
            // A trapped SMC leaves ELR_EL2 on the SMC itself.
            frame.elr += 4;
            guest_call(di, d, frame, "SMC");
        }
        Exit::SysReg { read, reg, .. } => {
            let mut st = STATE[di].lock();
            if !st.reported_sysreg {
                st.reported_sysreg = true;
                warn!(
                    "domain \"{}\" core {}: trapped {} at PC {:#x}: ignored{} (reported once)",
                    d.name,
                    this_core(),
                    Syndrome(esr),
                    frame.elr,
                    if read { ", reads as zero" } else { "" }
                );
            }
            if read {
                frame.set_reg(reg, 0);
            }
            frame.elr += 4;
        }
        Exit::Wfx => frame.elr += 4,
        Exit::Other { .. } => {
            error!(
                "domain \"{}\" core {}: unexpected exception {} (ESR_EL2 {:#x}) at PC {:#x}",
                d.name,
                this_core(),
                Syndrome(esr),
                esr,
                frame.elr
            );
            stop(di, d, "it took an exception the partitioner cannot reflect");
        }
    }
}

fn page_of(a: u64) -> u64 {
    a & !0xfff
}

/// The faulting guest-physical address of a stage-2 abort.
fn fault_ipa() -> u64 {
    ((HPFAR_EL2.get() >> 4) << 12) | (FAR_EL2.get() & 0xfff)
}

/// The domain touched an address it does not own.
fn outside_access(di: usize, d: &DomainPlan, vcpu: usize, frame: &mut TrapFrame, esr: u64) {
    let ipa = fault_ipa();
    let far = FAR_EL2.get();
    let n = {
        let mut st = STATE[di].lock();
        st.faults += 1;
        st.faults
    };
    let action = match d.fault_policy {
        FaultPolicy::InjectAbort => "injected synchronous external abort",
        FaultPolicy::Stop => "stopping the domain",
    };
    warn!(
        "domain \"{}\" vCPU {} core {}: access outside the domain #{}: IPA {:#x} (VA {:#x}, PC {:#x}): {} [ESR_EL2 {:#x}] -> {}",
        d.name, vcpu, this_core(), n, ipa, far, frame.elr, Syndrome(esr), esr, action
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
        FaultPolicy::Stop => stop(di, d, "its fault policy is \"stop\""),
    }
}

/// Stop the domain: this core powers off and its other cores never start.
fn stop(di: usize, d: &DomainPlan, why: &str) -> ! {
    STATE[di].lock().stopped = true;
    for (c, owner) in CORE_DOMAIN.iter().enumerate() {
        if owner.load(Ordering::Acquire) == di + 1 {
            CORE_STATE[c].store(OFF, Ordering::Release);
        }
    }
    warn!(
        "domain \"{}\" stopped: {}; the other domains are unaffected",
        d.name, why
    );
    park()
}

// PSCI and SMCCC function identifiers a domain may call.
const SMCCC_VERSION: u32 = 0x8000_0000;
const PSCI_VERSION: u32 = 0x8400_0000;
const PSCI_CPU_OFF: u32 = 0x8400_0002;
const PSCI_CPU_ON_32: u32 = 0x8400_0003;
const PSCI_CPU_ON_64: u32 = 0xc400_0003;
const PSCI_AFFINITY_INFO_32: u32 = 0x8400_0004;
const PSCI_AFFINITY_INFO_64: u32 = 0xc400_0004;
const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
const PSCI_SYSTEM_RESET: u32 = 0x8400_0009;
const PSCI_FEATURES: u32 = 0x8400_000a;

const NOT_SUPPORTED: i64 = -1;
const INVALID_PARAMETERS: i64 = -2;
const ALREADY_ON: i64 = -4;
const ON_PENDING_RET: i64 = -5;

fn supported(fid: u32) -> bool {
    matches!(
        fid,
        SMCCC_VERSION
            | PSCI_VERSION
            | PSCI_CPU_OFF
            | PSCI_CPU_ON_32
            | PSCI_CPU_ON_64
            | PSCI_AFFINITY_INFO_32
            | PSCI_AFFINITY_INFO_64
            | PSCI_SYSTEM_OFF
            | PSCI_SYSTEM_RESET
            | PSCI_FEATURES
    )
}

/// An HVC or SMC from a domain. Answered here; never forwarded to firmware.
fn guest_call(di: usize, d: &'static DomainPlan, frame: &mut TrapFrame, conduit: &str) {
    let fid = frame.x[0] as u32;
    let ret: i64 = match fid {
        SMCCC_VERSION => 0x1_0001,
        PSCI_VERSION => 0x1_0000,
        PSCI_FEATURES => {
            if supported(frame.x[1] as u32) {
                0
            } else {
                NOT_SUPPORTED
            }
        }
        PSCI_CPU_ON_32 | PSCI_CPU_ON_64 => cpu_on(d, frame.x[1], frame.x[2], frame.x[3]),
        PSCI_AFFINITY_INFO_32 | PSCI_AFFINITY_INFO_64 => match vcpu_core(d, frame.x[1]) {
            Some(c) => {
                if CORE_STATE[c].load(Ordering::Acquire) == OFF {
                    1
                } else {
                    0
                }
            }
            None => INVALID_PARAMETERS,
        },
        PSCI_CPU_OFF => {
            let core = this_core();
            CORE_STATE[core].store(OFF, Ordering::Release);
            info!("domain \"{}\": vCPU on core {} powered off", d.name, core);
            park();
        }
        PSCI_SYSTEM_OFF => stop(di, d, "it asked for SYSTEM_OFF"),
        PSCI_SYSTEM_RESET => stop(
            di,
            d,
            "it asked for SYSTEM_RESET (restart is not supported yet)",
        ),
        _ => {
            let mut st = STATE[di].lock();
            if !st.reported_call {
                st.reported_call = true;
                warn!(
                    "domain \"{}\": unsupported {} function {:#010x} at PC {:#x}: answered NOT_SUPPORTED, not forwarded (reported once)",
                    d.name, conduit, fid, frame.elr
                );
            }
            NOT_SUPPORTED
        }
    };
    frame.x[0] = ret as u64;
}

/// The physical core behind a domain's virtual MPIDR, if it is one of its own.
fn vcpu_core(d: &DomainPlan, vmpidr: u64) -> Option<usize> {
    if vmpidr & !0xff != 0 {
        return None;
    }
    d.cpus.get(vmpidr as usize).copied()
}

fn cpu_on(d: &DomainPlan, target: u64, entry: u64, ctx: u64) -> i64 {
    let Some(core) = vcpu_core(d, target) else {
        warn!(
            "domain \"{}\": CPU_ON of vCPU {:#x}, which it does not have: refused",
            d.name, target
        );
        return INVALID_PARAMETERS;
    };
    if d.ram_at(entry).is_none() {
        return INVALID_PARAMETERS;
    }
    match CORE_STATE[core].compare_exchange(OFF, ON_PENDING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(ON) => return ALREADY_ON,
        Err(_) => return ON_PENDING_RET,
    }
    *CORE_START[core].lock() = (entry, ctx);
    let r = psci::cpu_on(
        crate::board().cpus[core],
        boot::secondary_entry as *const () as u64,
        core as u64,
    );
    if r != 0 {
        CORE_STATE[core].store(OFF, Ordering::Release);
        error!(
            "domain \"{}\": physical CPU_ON of core {} failed ({})",
            d.name, core, r
        );
        return INVALID_PARAMETERS;
    }
    0
}

/// A physical interrupt reached EL2. None is enabled yet, so it is reported.
pub fn handle_interrupt(_frame: &mut TrapFrame) {
    warn!("unexpected physical interrupt on core {}", this_core());
}

/// An SError from a domain: it cannot be reflected precisely, so the domain stops.
pub fn handle_serror(frame: &mut TrapFrame) {
    let (di, d, _) = current();
    error!(
        "domain \"{}\" core {}: SError (ESR_EL2 {:#x}) at PC {:#x}",
        d.name,
        this_core(),
        ESR_EL2.get(),
        frame.elr
    );
    stop(di, d, "it caused an SError");
}
