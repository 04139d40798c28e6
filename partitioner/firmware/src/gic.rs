//! The physical interrupt controller, GICv3 or GICv2, whichever the board
//! turns out to have (probed at boot from the distributor's PIDR2). The
//! partitioner owns it: every physical interrupt is taken at EL2
//! (HCR_EL2.IMO/FMO), acknowledged here, and handed to a domain through the
//! list registers of its vCPU's virtual CPU interface.
//!
//! EOImode is 1 at EL2: the partitioner's EOI only drops the running
//! priority; a passed-through interrupt stays active until the domain's own
//! end-of-interrupt deactivates it through the list register's hardware bit.

use bulkhead_core::board::{Board, Gic};
use bulkhead_core::plan::{GicVersion, MAX_CPUS};
use bulkhead_core::vgic::{Deactivation, VirtualIrq};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// Physical SGI the partitioner uses to kick another core (new virtual
/// interrupts queued for it, or a stop/restart request).
pub const SGI_KICK: u32 = 0;
/// GIC maintenance interrupt (PPI 9): list registers ran low.
pub const MAINTENANCE_INTID: u32 = 25;
const SPURIOUS: u32 = 1020;

/// What `probe` found.
enum Found {
    V3 {
        gicd: usize,
    },
    V2 {
        gicd: usize,
        gicc: usize,
        gich: usize,
        deactivation: Deactivation,
    },
}

/// What `probe` found, in plain atomics rather than a `Once`: `version()` is on
/// every interrupt's path, and the probe happens once, on the boot core,
/// before any core takes an interrupt (secondaries start after it).
static IS_V2: AtomicBool = AtomicBool::new(false);
static MAINTENANCE_DEACTIVATION: AtomicBool = AtomicBool::new(false);
/// GICv3 whose virtual IRQ line is not wired (`VirtualIrq::ViaHcrVi`).
static VIRTUAL_IRQ_VIA_HCR: AtomicBool = AtomicBool::new(false);
/// GICD, GICC, GICH bases (the last two GICv2 only).
pub(crate) static BASES: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];

fn set_hw(h: Found) {
    let (v2, bases, maint) = match h {
        Found::V3 { gicd } => (false, [gicd, 0, 0], false),
        Found::V2 {
            gicd,
            gicc,
            gich,
            deactivation,
        } => (
            true,
            [gicd, gicc, gich],
            deactivation == Deactivation::Maintenance,
        ),
    };
    for (slot, b) in BASES.iter().zip(bases) {
        slot.store(b, Ordering::Relaxed);
    }
    MAINTENANCE_DEACTIVATION.store(maint, Ordering::Relaxed);
    IS_V2.store(v2, Ordering::Release);
}
/// GICv3: base of each core's redistributor (RD_base); found by affinity.
static GICR: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// Number of list registers (the same on every core).
static LRS: AtomicUsize = AtomicUsize::new(0);

/// GICv2: each core's CPU-interface mask, as the core read it from the
/// hardware at its `init_cpu` (0: not known yet). The interface a core is
/// wired to need not be its board index; every SGI target list and SPI
/// target byte uses this.
pub(crate) static CPU_INTERFACE: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// GICv2: a kick was sent to the core before its interface was known; the
/// core kicks itself once it knows it (see `send_sgi`).
static KICK_MISSED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// GICv2 INTIDs (SPIs 32..1020).
const V2_INTIDS: usize = 1020;
/// GICv2: an SPI routed to a core whose interface was not known yet, as
/// that core's index + 1 (0: none); the core writes the target byte when it
/// learns its interface. Guarded by `ROUTES`.
static PENDING_ROUTE: [AtomicU8; V2_INTIDS] = [const { AtomicU8::new(0) }; V2_INTIDS];
/// Serialises GICv2 routing with a core's first look at its interface, so
/// that a route to a core is either written with its mask or left in
/// `PENDING_ROUTE` for it. A leaf lock, interrupts masked.
static ROUTES: spin::Mutex<()> = spin::Mutex::new(());

/// GICv2: the CPU-interface mask of board core `core`, once it has read it.
fn interface_mask(core: usize) -> u8 {
    CPU_INTERFACE
        .get(core)
        .map_or(0, |m| m.load(Ordering::SeqCst))
}

/// GICv2: the CPU interface.
fn gicc() -> usize {
    BASES[1].load(Ordering::Relaxed)
}

/// GICv2: the hypervisor interface.
fn gich() -> usize {
    BASES[2].load(Ordering::Relaxed)
}

fn rd32(addr: usize) -> u32 {
    // SAFETY: every address passed here lies in a GIC MMIO region of the
    // board, mapped as device memory in the EL2 map and owned by the
    // partitioner (validation keeps it out of every domain).
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn wr32(addr: usize, v: u32) {
    // SAFETY: as for `rd32`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}

fn wr64(addr: usize, v: u64) {
    // SAFETY: as for `rd32`; IROUTER registers are 64-bit and 8-byte aligned.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}

fn rd64(addr: usize) -> u64 {
    // SAFETY: as for `wr64`.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

macro_rules! sysreg {
    (read $name:literal) => {{
        let v: u64;
        // SAFETY: reading a GIC system register at EL2 has no side effect on
        // memory; the ones with side effects (IAR) are the point of the call.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack)) };
        v
    }};
    (write $name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: writing a GIC system register at EL2 changes interrupt
        // state only, never memory; the partitioner owns the CPU interface.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) v, options(nostack)) };
    }};
}

// GICD registers (same layout on v2 and v3 for these).
const GICD_CTLR: usize = 0x000;
const GICD_TYPER: usize = 0x004;
const GICD_IGROUPR: usize = 0x080;
const GICD_ISENABLER: usize = 0x100;
const GICD_ICENABLER: usize = 0x180;
const GICD_ISPENDR: usize = 0x200;
const GICD_ICPENDR: usize = 0x280;
const GICD_ISACTIVER: usize = 0x300;
const GICD_ICACTIVER: usize = 0x380;
const GICD_IPRIORITYR: usize = 0x400;
const GICD_ITARGETSR: usize = 0x800;
const GICD_ICFGR: usize = 0xc00;
pub(crate) const GICD_SGIR: usize = 0xf00;
const GICD_IROUTER: usize = 0x6000;
/// PIDR2 of a GICv3 distributor (64 KiB frame) and of a GICv2 one (4 KiB).
const GICD_PIDR2_V3: usize = 0xffe8;
const GICD_PIDR2_V2: usize = 0xfe8;
// GICR (v3): RD_base and SGI_base frames.
const GICR_WAKER: usize = 0x14;
const GICR_TYPER: usize = 0x8;
const SGI_BASE: usize = 0x1_0000;
// GICC / GICH (v2).
const GICC_CTLR: usize = 0x0;
const GICC_PMR: usize = 0x4;
pub(crate) const GICC_IAR: usize = 0xc;
pub(crate) const GICC_EOIR: usize = 0x10;
pub(crate) const GICC_DIR: usize = 0x1000;
const GICH_HCR: usize = 0x0;
const GICH_VTR: usize = 0x4;
const GICH_VMCR: usize = 0x8;
const GICH_APR: usize = 0xf0;
const GICH_EISR0: usize = 0x20;
pub(crate) const GICH_ELRSR0: usize = 0x30;
pub(crate) const GICH_LR0: usize = 0x100;

/// Default priority of every interrupt at the physical level, and the one
/// every interrupt of a domain keeps (a domain's priorities are virtual).
const DEFAULT_PRIORITY: u8 = bulkhead_core::vgic::RESET_PRIORITY;
/// The partitioner's own interrupts (the kick, the maintenance interrupt,
/// and those `irq` sets up: console input, IOMMU events) come first.
const PARTITIONER_PRIORITY: u8 = bulkhead_core::vgic::PARTITIONER_PRIORITY;

/// Find out which GIC the board has (its distributor's architecture
/// revision). The GICv2 location is read first: it lies inside both
/// distributors (a GICv3 reads it as zero), while the GICv3 one lies past
/// the end of a GICv2 distributor.
pub fn probe(board: &Board) -> Option<GicVersion> {
    for g in board.gics {
        let base = g.distributor().base as usize;
        let v2 = (rd32(base + GICD_PIDR2_V2) >> 4) & 0xf;
        let rev = if matches!(v2, 1 | 2) {
            v2
        } else {
            (rd32(base + GICD_PIDR2_V3) >> 4) & 0xf
        };
        match (g, rev) {
            (
                Gic::V3 {
                    distributor,
                    virtual_irq,
                    ..
                },
                3 | 4,
            ) => {
                VIRTUAL_IRQ_VIA_HCR.store(*virtual_irq == VirtualIrq::ViaHcrVi, Ordering::Relaxed);
                set_hw(Found::V3 {
                    gicd: distributor.base as usize,
                });
                return Some(GicVersion::V3);
            }
            (
                Gic::V2 {
                    distributor,
                    cpu_interface,
                    hyp_interface,
                    deactivation,
                    ..
                },
                1 | 2,
            ) => {
                set_hw(Found::V2 {
                    gicd: distributor.base as usize,
                    gicc: cpu_interface.base as usize,
                    gich: hyp_interface.base as usize,
                    deactivation: *deactivation,
                });
                return Some(GicVersion::V2);
            }
            _ => {}
        }
    }
    None
}

/// The redistributor frames of a GICv3 board.
fn gicr_range(board: &Board) -> (usize, usize) {
    board
        .gics
        .iter()
        .find_map(|g| match g {
            Gic::V3 { redistributors, .. } => {
                Some((redistributors.base as usize, redistributors.size as usize))
            }
            _ => None,
        })
        .unwrap_or((0, 0))
}

/// The redistributor frame of the core with this MPIDR.
fn find_redistributor(board: &Board, mpidr: u64) -> Option<usize> {
    let (base, size) = gicr_range(board);
    // GICR_TYPER.Affinity_Value is Aff3.Aff2.Aff1.Aff0.
    let aff = (mpidr & 0xff_ffff) | (((mpidr >> 32) & 0xff) << 24);
    let mut frame = base;
    while frame + 0x2_0000 <= base + size {
        let typer = rd64(frame + GICR_TYPER);
        if typer >> 32 == aff {
            return Some(frame);
        }
        if typer & (1 << 4) != 0 {
            return None; // the Last frame
        }
        frame += 0x2_0000;
    }
    None
}

/// Why board core `core` is missing from this machine as its interrupt
/// controller sees it (after [`init_distributor`]), or `None` if it is
/// there: on GICv3 it has a redistributor; on GICv2 its index is below the
/// number of CPU interfaces (GICD_TYPER.CPUNumber + 1).
pub fn absent(core: usize) -> Option<&'static str> {
    match version() {
        GicVersion::V3 => (GICR[core].load(Ordering::Acquire) == 0)
            .then_some("no GIC redistributor answers for it"),
        GicVersion::V2 => {
            let interfaces = ((rd32(gicd() + GICD_TYPER) >> 5) & 0b111) as usize + 1;
            (core >= interfaces).then_some("the GICv2 distributor has fewer CPU interfaces")
        }
    }
}

/// Number of SPI-capable interrupt lines, from GICD_TYPER.
fn lines(gicd: usize) -> u32 {
    32 * ((rd32(gicd + GICD_TYPER) & 0x1f) + 1)
}

/// Distributor set-up, once, on the boot core: every SPI group 1, disabled,
/// inactive, default priority, level; then the distributor on. On GICv3
/// also find every core's redistributor, so any core can reach another's.
/// A core the board lists but the machine lacks (QEMU started with fewer
/// `-smp` cores) has none; [`absent`] says so, and no domain may use it.
pub fn init_distributor(board: &Board) {
    if let GicVersion::V3 = version() {
        for (core, &mpidr) in board.cpus.iter().enumerate() {
            GICR[core].store(
                find_redistributor(board, mpidr).unwrap_or(0),
                Ordering::Release,
            );
        }
    }
    let gicd = gicd();
    wr32(gicd + GICD_CTLR, 0);
    let n = lines(gicd);
    // GICv3 (single security state): group 1. GICv2 without the security
    // extensions: group 0, which is signalled as IRQ.
    let group = match version() {
        GicVersion::V3 => !0,
        GicVersion::V2 => 0,
    };
    for i in (32..n).step_by(32) {
        let reg = (i / 32) as usize * 4;
        wr32(gicd + GICD_ICENABLER + reg, !0);
        wr32(gicd + GICD_ICPENDR + reg, !0);
        wr32(gicd + GICD_ICACTIVER + reg, !0);
        wr32(gicd + GICD_IGROUPR + reg, group);
    }
    for i in 32..n {
        set_priority(i, 0, DEFAULT_PRIORITY);
    }
    match version() {
        // ARE (bit 4) + EnableGrp1 (bit 1) + EnableGrp0: single security state.
        GicVersion::V3 => wr32(gicd + GICD_CTLR, (1 << 4) | 0b11),
        GicVersion::V2 => wr32(gicd + GICD_CTLR, 0b1),
    }
}

/// Per-core set-up: this core's redistributor (GICv3) and CPU interface at
/// EL2, the virtual interface on, the partitioner's SGI and the maintenance
/// interrupt enabled.
pub fn init_cpu(core: usize) {
    match version() {
        GicVersion::V3 => {
            let found = GICR[core].load(Ordering::Acquire);
            if found == 0 {
                // Only the boot core can get here without one: the others
                // start only for a domain, which `absent` vetted.
                crate::fatal(format_args!(
                    "no GIC redistributor for core {core} (MPIDR {:#x})",
                    crate::board().cpus[core]
                ));
            }
            // Wake the redistributor.
            let waker = rd32(found + GICR_WAKER);
            wr32(found + GICR_WAKER, waker & !(1 << 1));
            while rd32(found + GICR_WAKER) & (1 << 2) != 0 {}
            let sgi = found + SGI_BASE;
            wr32(sgi + GICD_ICENABLER, !0);
            wr32(sgi + GICD_ICPENDR, !0);
            wr32(sgi + GICD_ICACTIVER, !0);
            wr32(sgi + GICD_IGROUPR, !0);
            for i in 0..32 {
                write_byte(sgi + GICD_IPRIORITYR + i, DEFAULT_PRIORITY);
            }
            // ICC_SRE_EL2: SRE (system registers) + Enable (EL1 may use them).
            sysreg!(write "S3_4_C12_C9_5", 0b1001);
            sysreg!(write "S3_0_C4_C6_0", 0xff); // ICC_PMR_EL1
            sysreg!(write "S3_0_C12_C12_4", 1 << 1); // ICC_CTLR_EL1: EOImode 1
            sysreg!(write "S3_0_C12_C12_7", 1); // ICC_IGRPEN1_EL1
            let vtr = sysreg!(read "S3_4_C12_C11_1"); // ICH_VTR_EL2
            LRS.store(((vtr & 0x1f) + 1) as usize, Ordering::Relaxed);
            for i in 0..lr_count() {
                write_lr(i, 0);
            }
        }
        GicVersion::V2 => {
            let (gicd, gicc, gich) = (gicd(), gicc(), gich());
            learn_cpu_interface(gicd, core);
            wr32(gicd + GICD_ICENABLER, !0);
            wr32(gicd + GICD_ICPENDR, !0);
            wr32(gicd + GICD_ICACTIVER, !0);
            wr32(gicd + GICD_IGROUPR, 0);
            for i in 0..32 {
                write_byte(gicd + GICD_IPRIORITYR + i, DEFAULT_PRIORITY);
            }
            wr32(gicc + GICC_PMR, 0xff);
            // Without the security extensions everything is group 0, signalled
            // as IRQ. EnableGrp0 + EOImode (bit 9): EOI drops the priority,
            // DIR deactivates.
            wr32(gicc + GICC_CTLR, 1 | (1 << 9));
            LRS.store(
                ((rd32(gich + GICH_VTR) & 0x3f) + 1) as usize,
                Ordering::Relaxed,
            );
            for i in 0..lr_count() {
                write_lr(i, 0);
            }
        }
    }
    set_virtual_interface(true, false);
    set_priority(SGI_KICK, core, PARTITIONER_PRIORITY);
    set_priority(MAINTENANCE_INTID, core, PARTITIONER_PRIORITY);
    set_enabled(SGI_KICK, core, true);
    set_enabled(MAINTENANCE_INTID, core, true);
    if let GicVersion::V2 = version() {
        replay_missed_kick(gicd(), core);
    }
}

/// GICv2: read this core's CPU-interface mask from the banked
/// `GICD_ITARGETSR0..7`, record it (reported once), and carry out what
/// waited for it: SPI routes to this core (a kick sent to it waits for
/// `replay_missed_kick`, once its SGI is enabled).
fn learn_cpu_interface(gicd: usize, core: usize) {
    let mut words = [0u32; 8];
    for (i, w) in words.iter_mut().enumerate() {
        *w = rd32(gicd + GICD_ITARGETSR + 4 * i);
    }
    let interfaces = ((rd32(gicd + GICD_TYPER) >> 5) & 0x7) + 1;
    let mask = match bulkhead_core::gicv2::own_interface_mask(words, interfaces) {
        Ok(m) => m,
        Err(e) => crate::fatal(format_args!("core {core}: {e}")),
    };
    if let Some(other) = (0..MAX_CPUS).find(|&c| c != core && interface_mask(c) == mask) {
        crate::fatal(format_args!(
            "core {core}: GICv2 CPU interface {} is already core {other}'s",
            u64::from(mask.trailing_zeros())
        ));
    }
    let Some(slot) = CPU_INTERFACE.get(core) else {
        crate::fatal(format_args!("core {core}: beyond the GIC's cores"));
    };
    let before = slot.swap(mask, Ordering::SeqCst);
    if before == 0 {
        log::info!(
            "core {core}: GICv2 CPU interface {}",
            u64::from(mask.trailing_zeros())
        );
    } else if before != mask {
        crate::fatal(format_args!(
            "core {core}: GICv2 CPU interface changed from mask {:#x} to {:#x}",
            u32::from(before),
            u32::from(mask)
        ));
    }
    {
        let _held = ROUTES.lock();
        let me = (core + 1) as u8;
        for (intid, p) in PENDING_ROUTE.iter().enumerate().skip(32) {
            if p.load(Ordering::Relaxed) == me {
                p.store(0, Ordering::Relaxed);
                write_byte(gicd + GICD_ITARGETSR + intid, mask);
            }
        }
    }
}

/// GICv2: a kick sent to this core before it knew its interface is sent
/// again, to itself, now that its SGI is enabled.
fn replay_missed_kick(gicd: usize, core: usize) {
    if KICK_MISSED
        .get(core)
        .is_some_and(|m| m.swap(false, Ordering::SeqCst))
    {
        // TargetListFilter 0b10: this core only.
        wr32(gicd + GICD_SGIR, (0b10 << 24) | (SGI_KICK & 0xf));
    }
}

fn write_byte(addr: usize, v: u8) {
    // SAFETY: as for `rd32`; priority registers are byte-accessible.
    unsafe { core::ptr::write_volatile(addr as *mut u8, v) }
}

fn read_byte(addr: usize) -> u8 {
    // SAFETY: as for `write_byte`.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

/// ICH_HCR_EL2 / GICH_HCR: virtual CPU interface on, and the underflow
/// maintenance interrupt when `underflow` (list registers need refilling).
pub fn set_virtual_interface(on: bool, underflow: bool) {
    let v = (on as u64) | ((underflow as u64) << 1);
    match version() {
        GicVersion::V3 => sysreg!(write "S3_4_C12_C11_0", v),
        GicVersion::V2 => wr32(gich() + GICH_HCR, v as u32),
    }
}

/// Whether the partitioner must drive the vCPU's virtual IRQ itself
/// (HCR_EL2.VI): a GICv3 whose virtual IRQ output is not wired to the
/// cores (`VirtualIrq::ViaHcrVi`, QEMU's imx8mp-evk).
#[inline(always)]
pub fn virtual_irq_via_hcr() -> bool {
    VIRTUAL_IRQ_VIA_HCR.load(Ordering::Relaxed)
}

/// GICv3: what decides whether the virtual CPU interface signals an
/// interrupt, besides the list registers: ICH_VMCR_EL2, the active
/// priorities of both groups (ICH_AP0R0_EL2 | ICH_AP1R0_EL2) and the number
/// of priority bits (ICH_VTR_EL2.PRIbits + 1).
pub fn virtual_interface_masks() -> (u64, u32, u32) {
    let vmcr = sysreg!(read "S3_4_C12_C11_7");
    let active = sysreg!(read "S3_4_C12_C8_0") | sysreg!(read "S3_4_C12_C9_0");
    let vtr = sysreg!(read "S3_4_C12_C11_1");
    (vmcr, active as u32, (((vtr >> 29) & 0b111) + 1) as u32)
}

/// GICv3: set the maintenance enables within `mask` of ICH_HCR_EL2 to
/// `bits`, leaving the others (En, UIE) as they are.
pub fn set_maintenance_triggers(mask: u64, bits: u64) {
    let hcr = sysreg!(read "S3_4_C12_C11_0");
    let new = (hcr & !mask) | (bits & mask);
    if new != hcr {
        sysreg!(write "S3_4_C12_C11_0", new);
    }
}

/// An acknowledged physical interrupt: its INTID, and the whole
/// acknowledge value (on GICv2 an SGI's also names its sender, and the EOI
/// and deactivation must name it too).
#[derive(Clone, Copy)]
pub struct Ack {
    pub intid: u32,
    raw: u32,
}

/// Acknowledge the highest-priority pending physical interrupt.
pub fn ack() -> Option<Ack> {
    let raw = match version() {
        GicVersion::V3 => sysreg!(read "S3_0_C12_C12_0") as u32,
        GicVersion::V2 => rd32(gicc() + GICC_IAR),
    };
    ack_from_raw(raw)
}

/// The interrupt an acknowledge register read returned (`raw`), if not
/// spurious.
#[inline(always)]
pub fn ack_from_raw(raw: u32) -> Option<Ack> {
    let raw = match version() {
        GicVersion::V3 => raw & 0xff_ffff,
        GicVersion::V2 => raw & 0x1fff,
    };
    let intid = match version() {
        GicVersion::V3 => raw,
        GicVersion::V2 => raw & 0x3ff,
    };
    (intid < SPURIOUS).then_some(Ack { intid, raw })
}

/// Drop the running priority (the interrupt stays active).
pub fn eoi(a: Ack) {
    match version() {
        GicVersion::V3 => sysreg!(write "S3_0_C12_C12_1", a.raw as u64),
        GicVersion::V2 => wr32(gicc() + GICC_EOIR, a.raw),
    }
}

/// Deactivate an interrupt the partitioner acknowledged and handled itself.
pub fn deactivate_ack(a: Ack) {
    deactivate(a.raw)
}

/// Deactivate a passed-through SPI or PPI (its guest will not, or cannot).
pub fn deactivate(intid: u32) {
    match version() {
        GicVersion::V3 => sysreg!(write "S3_0_C12_C11_1", intid as u64),
        GicVersion::V2 => wr32(gicc() + GICC_DIR, intid),
    }
}

/// GICv3: the ICC_SGI1R_EL1 value that sends SGI `intid` to the core
/// with MPIDR `mpidr`.
pub fn sgi1r_value(intid: u32, mpidr: u64) -> u64 {
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    let target = 1u64 << (mpidr & 0xf);
    (aff3 << 48) | (aff2 << 32) | ((intid as u64 & 0xf) << 24) | (aff1 << 16) | target
}

/// Send the partitioner's SGI `intid` to physical core `core`.
pub fn send_sgi(intid: u32, core: usize, mpidr: u64) {
    // What the receiver is kicked to look at (its queue, its request) must
    // be visible before the SGI can arrive.
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
    match version() {
        GicVersion::V3 => sysreg!(write "S3_0_C12_C11_5", sgi1r_value(intid, mpidr)),
        GicVersion::V2 => {
            let mut mask = interface_mask(core);
            if let (0, SGI_KICK, Some(missed)) = (mask, intid, KICK_MISSED.get(core)) {
                // The core has not read its interface yet: it kicks itself
                // when it has (`replay_missed_kick`). Flag first, look again
                // after: either this sees the mask or that sees the flag.
                missed.store(true, Ordering::SeqCst);
                mask = interface_mask(core);
            }
            if mask != 0 {
                wr32(gicd() + GICD_SGIR, (u32::from(mask) << 16) | (intid & 0xf));
            }
        }
    }
}

/// The distributor.
fn gicd() -> usize {
    BASES[0].load(Ordering::Relaxed)
}

/// The register bank holding `intid`'s bits: the distributor for SPIs, the
/// core's redistributor SGI frame (v3) or the banked distributor (v2, this
/// core only) for SGIs and PPIs.
fn bank(intid: u32, core: usize) -> usize {
    match version() {
        GicVersion::V3 if intid < 32 => GICR[core].load(Ordering::Acquire) + SGI_BASE,
        _ => gicd(),
    }
}

fn bit_reg(base: usize, intid: u32) -> (usize, u32) {
    (base + (intid / 32) as usize * 4, 1 << (intid % 32))
}

/// Enable or disable `intid`; an SGI/PPI on physical core `core` (GICv2:
/// only this core's bank is reachable).
pub fn set_enabled(intid: u32, core: usize, on: bool) {
    let (r, b) = bit_reg(bank(intid, core), intid);
    wr32(r + if on { GICD_ISENABLER } else { GICD_ICENABLER }, b);
}

pub fn enabled(intid: u32, core: usize) -> bool {
    let (r, b) = bit_reg(bank(intid, core), intid);
    rd32(r + GICD_ISENABLER) & b != 0
}

pub fn set_pending(intid: u32, core: usize, on: bool) {
    let (r, b) = bit_reg(bank(intid, core), intid);
    wr32(r + if on { GICD_ISPENDR } else { GICD_ICPENDR }, b);
}

pub fn pending(intid: u32, core: usize) -> bool {
    let (r, b) = bit_reg(bank(intid, core), intid);
    rd32(r + GICD_ISPENDR) & b != 0
}

pub fn set_active(intid: u32, core: usize, on: bool) {
    let (r, b) = bit_reg(bank(intid, core), intid);
    wr32(r + if on { GICD_ISACTIVER } else { GICD_ICACTIVER }, b);
}

pub fn active(intid: u32, core: usize) -> bool {
    let (r, b) = bit_reg(bank(intid, core), intid);
    rd32(r + GICD_ISACTIVER) & b != 0
}

pub fn set_priority(intid: u32, core: usize, prio: u8) {
    write_byte(bank(intid, core) + GICD_IPRIORITYR + intid as usize, prio);
}

pub fn priority(intid: u32, core: usize) -> u8 {
    read_byte(bank(intid, core) + GICD_IPRIORITYR + intid as usize)
}

/// Serialises every read-modify-write of a physical GIC register that
/// holds the state of more than one interrupt (and so possibly of more than
/// one domain): without it, two cores changing their own interrupts' fields
/// in the same word at once could each write back the other's old value.
/// Registers with a set and a clear register (enable, pending, active),
/// byte-per-interrupt ones (priority, GICv2 targets, written as bytes) and
/// GICv3 IROUTER need no lock: they are written one interrupt at a time.
/// Every other shared register (GICD_CTLR, IGROUPR) is written only at boot,
/// on the boot core, before any other core runs. A leaf lock, taken with
/// interrupts masked (as at EL2 always), held for two register accesses.
static RMW: spin::Mutex<()> = spin::Mutex::new(());

/// Replace the bits of `mask` in the 32-bit register at `addr` by those of
/// `value`, other cores' read-modify-writes excluded.
fn rmw32(addr: usize, mask: u32, value: u32) {
    let _held = RMW.lock();
    let v = rd32(addr);
    wr32(addr, (v & !mask) | (value & mask));
}

/// Edge (true) or level (false) triggered. The configuration register
/// holds 16 interrupts (on `virt`, every assignable SPI shares one): a
/// read-modify-write under [`RMW`].
pub fn set_edge(intid: u32, core: usize, edge: bool) {
    let r = bank(intid, core) + GICD_ICFGR + (intid / 16) as usize * 4;
    let bit = 1 << ((intid % 16) * 2 + 1);
    rmw32(r, bit, if edge { bit } else { 0 });
}

pub fn edge(intid: u32, core: usize) -> bool {
    let r = bank(intid, core) + GICD_ICFGR + (intid / 16) as usize * 4;
    rd32(r) & (1 << ((intid % 16) * 2 + 1)) != 0
}

/// Route SPI `intid` to physical core `core` (with MPIDR `mpidr`). On
/// GICv2 the target is the core's CPU interface, as the core read it; a
/// route to a core that has not read it yet is written when it has.
pub fn route(intid: u32, core: usize, mpidr: u64) {
    match version() {
        GicVersion::V3 => {
            let aff = mpidr & 0xff_00ff_ffff;
            wr64(gicd() + GICD_IROUTER + intid as usize * 8, aff);
        }
        GicVersion::V2 => {
            let gicd = gicd();
            let Some(pending) = PENDING_ROUTE.get(intid as usize) else {
                return;
            };
            let _held = ROUTES.lock();
            let mask = interface_mask(core);
            if mask == 0 {
                pending.store((core + 1) as u8, Ordering::Relaxed);
                // Until then it reaches no core.
                write_byte(gicd + GICD_ITARGETSR + intid as usize, 0);
            } else {
                pending.store(0, Ordering::Relaxed);
                write_byte(gicd + GICD_ITARGETSR + intid as usize, mask);
            }
        }
    }
}

/// Number of list registers.
pub fn lr_count() -> usize {
    LRS.load(Ordering::Relaxed)
}

/// Read list register `i`.
pub fn read_lr(i: usize) -> u64 {
    match version() {
        GicVersion::V3 => match i {
            0 => sysreg!(read "S3_4_C12_C12_0"),
            1 => sysreg!(read "S3_4_C12_C12_1"),
            2 => sysreg!(read "S3_4_C12_C12_2"),
            3 => sysreg!(read "S3_4_C12_C12_3"),
            4 => sysreg!(read "S3_4_C12_C12_4"),
            5 => sysreg!(read "S3_4_C12_C12_5"),
            6 => sysreg!(read "S3_4_C12_C12_6"),
            7 => sysreg!(read "S3_4_C12_C12_7"),
            8 => sysreg!(read "S3_4_C12_C13_0"),
            9 => sysreg!(read "S3_4_C12_C13_1"),
            10 => sysreg!(read "S3_4_C12_C13_2"),
            11 => sysreg!(read "S3_4_C12_C13_3"),
            12 => sysreg!(read "S3_4_C12_C13_4"),
            13 => sysreg!(read "S3_4_C12_C13_5"),
            14 => sysreg!(read "S3_4_C12_C13_6"),
            _ => sysreg!(read "S3_4_C12_C13_7"),
        },
        GicVersion::V2 => rd32(gich() + GICH_LR0 + 4 * i) as u64,
    }
}

/// Write list register `i`.
pub fn write_lr(i: usize, v: u64) {
    match version() {
        GicVersion::V3 => match i {
            0 => sysreg!(write "S3_4_C12_C12_0", v),
            1 => sysreg!(write "S3_4_C12_C12_1", v),
            2 => sysreg!(write "S3_4_C12_C12_2", v),
            3 => sysreg!(write "S3_4_C12_C12_3", v),
            4 => sysreg!(write "S3_4_C12_C12_4", v),
            5 => sysreg!(write "S3_4_C12_C12_5", v),
            6 => sysreg!(write "S3_4_C12_C12_6", v),
            7 => sysreg!(write "S3_4_C12_C12_7", v),
            8 => sysreg!(write "S3_4_C12_C13_0", v),
            9 => sysreg!(write "S3_4_C12_C13_1", v),
            10 => sysreg!(write "S3_4_C12_C13_2", v),
            11 => sysreg!(write "S3_4_C12_C13_3", v),
            12 => sysreg!(write "S3_4_C12_C13_4", v),
            13 => sysreg!(write "S3_4_C12_C13_5", v),
            14 => sysreg!(write "S3_4_C12_C13_6", v),
            _ => sysreg!(write "S3_4_C12_C13_7", v),
        },
        GicVersion::V2 => wr32(gich() + GICH_LR0 + 4 * i, v as u32),
    }
}

/// Bitmap of list registers whose interrupt the guest ended and that ask
/// for EOI maintenance (ICH_EISR_EL2 / GICH_EISR0).
pub fn eoied_lrs() -> u64 {
    match version() {
        GicVersion::V3 => sysreg!(read "S3_4_C12_C11_3"),
        GicVersion::V2 => rd32(gich() + GICH_EISR0) as u64,
    }
}

/// How passed-through interrupts are deactivated on this GIC.
pub fn deactivation() -> Deactivation {
    match version() {
        GicVersion::V3 => Deactivation::Hardware,
        GicVersion::V2 => {
            if MAINTENANCE_DEACTIVATION.load(Ordering::Relaxed) {
                Deactivation::Maintenance
            } else {
                Deactivation::Hardware
            }
        }
    }
}

/// Bitmap of empty list registers.
pub fn empty_lrs() -> u64 {
    match version() {
        GicVersion::V3 => sysreg!(read "S3_4_C12_C11_5"),
        GicVersion::V2 => rd32(gich() + GICH_ELRSR0) as u64,
    }
}

/// Which GIC the board has (only `IS_V2` is loaded: each base is loaded
/// where it is used, by [`gicd`], [`gicc`], [`gich`]).
pub fn version() -> GicVersion {
    if IS_V2.load(Ordering::Relaxed) {
        GicVersion::V2
    } else {
        GicVersion::V3
    }
}

/// The virtual CPU interface state a vCPU starts with, as at a cold reset
/// (`bulkhead_core::lifecycle::vmcr_reset`): no active priorities (an
/// interrupt a previous run left active without its EOI is forgotten),
/// priority mask 0, binary points at their minimum, both groups disabled,
/// EOImode 0. The list registers are emptied by `irq::clear_vcpu`.
pub fn reset_virtual_cpu_interface() {
    use bulkhead_core::lifecycle::{active_priority_registers, vmcr_reset};
    match version() {
        GicVersion::V3 => {
            let vtr = sysreg!(read "S3_4_C12_C11_1"); // ICH_VTR_EL2
            let aprs = active_priority_registers(GicVersion::V3, vtr);
            // ICH_AP0R<n>_EL2 and ICH_AP1R<n>_EL2, those the interface has.
            sysreg!(write "S3_4_C12_C8_0", 0);
            sysreg!(write "S3_4_C12_C9_0", 0);
            if aprs > 1 {
                sysreg!(write "S3_4_C12_C8_1", 0);
                sysreg!(write "S3_4_C12_C9_1", 0);
            }
            if aprs > 2 {
                sysreg!(write "S3_4_C12_C8_2", 0);
                sysreg!(write "S3_4_C12_C9_2", 0);
                sysreg!(write "S3_4_C12_C8_3", 0);
                sysreg!(write "S3_4_C12_C9_3", 0);
            }
            // ICH_VMCR_EL2.
            sysreg!(write "S3_4_C12_C11_7", vmcr_reset(GicVersion::V3, vtr));
        }
        GicVersion::V2 => {
            let gich = gich();
            let vtr = u64::from(rd32(gich + GICH_VTR));
            wr32(gich + GICH_APR, 0);
            wr32(gich + GICH_VMCR, vmcr_reset(GicVersion::V2, vtr) as u32);
        }
    }
}
