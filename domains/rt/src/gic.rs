//! A driver for the domain's interrupt controller: GICv3 or GICv2.
//!
//! Which one, and where, comes from the device tree: the node compatible
//! with `arm,gic-v3` (`reg` = distributor, redistributor region) or
//! `arm,cortex-a15-gic` / `arm,gic-400` (`reg` = distributor, CPU
//! interface). Without a device tree (a native run under QEMU) the
//! distributor at QEMU `virt`'s `0x0800_0000` is probed: `GICD_PIDR2.ArchRev`
//! (at 0xffe8) 3 or 4 means GICv3 with redistributors at `0x080a_0000`;
//! otherwise ArchRev 1 or 2 in a GICv2's `GICD_PIDR2` (at 0xfe8) means GICv2
//! with its CPU interface at `0x0801_0000`.
//!
//! [`init`] (once, on the boot vCPU) sets up the distributor and this
//! vCPU's interface; every other vCPU calls [`init_cpu`] (the runtime's
//! secondary entry does it). Then:
//!
//! * GICv3: the distributor has affinity routing and Group 1 enabled
//!   (`GICD_CTLR` = ARE | EnableGrp1 | EnableGrp0/1NS, which is right in
//!   every security view); each vCPU wakes the redistributor frame whose
//!   `GICR_TYPER` affinity is its MPIDR's and puts its SGIs and PPIs in
//!   Group 1; its CPU interface uses the system registers (SRE = 1, PMR =
//!   0xff, EOImode 0, Group 1 enabled), acknowledges with `ICC_IAR1_EL1`,
//!   ends with `ICC_EOIR1_EL1` and sends SGIs with `ICC_SGI1R_EL1`.
//! * GICv2: `GICD_CTLR` and `GICC_CTLR` enable both groups (and
//!   `GICC_CTLR.AckCtl`, so whichever group an interrupt is in, `GICC_IAR`
//!   acknowledges it as an IRQ), `GICC_PMR` = 0xff; SGIs go through
//!   `GICD_SGIR` with the target's CPU interface mask (read from the banked
//!   `GICD_ITARGETSR0..7` by each vCPU, `1 << index` if those read as zero).
//!
//! Interrupts are configured one at a time ([`configure`]: Group 1,
//! priority, routing to this vCPU for an SPI, enable). SGIs and PPIs are
//! per vCPU: the calls act on the calling vCPU's banked copy.

use crate::cpu::{self, MAX_VCPUS};
use crate::sysreg::{dsb_sy, isb, read_sysreg, write_sysreg};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Register offsets, for code that wants to poke at the GIC itself (the
/// `irq` test domain's isolation attacks).
pub mod regs {
    /// Distributor (and GICv3 redistributor SGI frame) registers.
    pub const GICD_CTLR: usize = 0x0000;
    pub const GICD_TYPER: usize = 0x0004;
    pub const GICD_IGROUPR: usize = 0x0080;
    pub const GICD_ISENABLER: usize = 0x0100;
    pub const GICD_ICENABLER: usize = 0x0180;
    pub const GICD_ISPENDR: usize = 0x0200;
    pub const GICD_ICPENDR: usize = 0x0280;
    pub const GICD_ICACTIVER: usize = 0x0380;
    pub const GICD_IPRIORITYR: usize = 0x0400;
    /// GICv2: one byte of CPU interface mask per interrupt.
    pub const GICD_ITARGETSR: usize = 0x0800;
    /// Two configuration bits per interrupt (bit 1 of each: edge-triggered).
    pub const GICD_ICFGR: usize = 0x0c00;
    /// GICv2: software generated interrupts.
    pub const GICD_SGIR: usize = 0x0f00;
    /// GICv3: one 64-bit affinity route per SPI, at `+ 8 * INTID`.
    pub const GICD_IROUTER: usize = 0x6000;
    /// GICv3/v4 peripheral ID 2 (ArchRev in bits \[7:4\]).
    pub const GICD_PIDR2: usize = 0xffe8;
    /// GICv1/v2 peripheral ID 2, in their 4 KiB distributor.
    pub const GICD_PIDR2_V2: usize = 0x0fe8;

    /// GICv3 redistributor, RD_base frame.
    pub const GICR_CTLR: usize = 0x0000;
    pub const GICR_TYPER: usize = 0x0008;
    pub const GICR_WAKER: usize = 0x0014;
    /// GICv3 redistributor: offset of the SGI_base frame from RD_base. Its
    /// registers for SGIs and PPIs sit at the GICD offsets above.
    pub const GICR_SGI_BASE: usize = 0x1_0000;

    /// GICv2 CPU interface.
    pub const GICC_CTLR: usize = 0x0000;
    pub const GICC_PMR: usize = 0x0004;
    pub const GICC_IAR: usize = 0x000c;
    pub const GICC_EOIR: usize = 0x0010;
}
use regs::*;

/// QEMU `virt`'s GIC, used without a device tree.
const NATIVE_GICD: usize = 0x0800_0000;
const NATIVE_GICR: usize = 0x080a_0000;
const NATIVE_GICC: usize = 0x0801_0000;

/// Size of the windows the driver touches.
const GICD_SIZE: usize = 0x1_0000;
const GICC_SIZE: usize = 0x2000;
/// GICv3 redistributor frames: RD_base + SGI_base (+ VLPI frames on GICv4).
const GICR_FRAMES: usize = 0x2_0000;
const GICR_FRAMES_VLPI: usize = 0x4_0000;
/// Most redistributors walked when the region size is unknown.
const MAX_REDISTRIBUTORS: usize = 256;

const GICD_CTLR_RWP: u32 = 1 << 31;
/// Group 0 (single security state) / Group 1 (non-secure view) enable.
const GICD_CTLR_ENABLE_G0_G1NS: u32 = 1 << 0;
/// Group 1 (single security state) / Group 1 non-secure with affinity
/// routing (non-secure view) enable.
const GICD_CTLR_ENABLE_G1: u32 = 1 << 1;
/// Affinity routing (ARE / ARE_NS).
const GICD_CTLR_ARE: u32 = 1 << 4;
const GICR_CTLR_RWP: u32 = 1 << 3;
const GICR_TYPER_VLPIS: u64 = 1 << 1;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// GICv2 GICC_CTLR: EnableGrp0 | EnableGrp1 | AckCtl.
const GICC_CTLR_ENABLE: u32 = 0b111;
/// GICv3 ICC_SGI1R_EL1.IRM: every PE but the sender.
const SGI1R_IRM: u64 = 1 << 40;
/// GICv2 GICD_SGIR.TargetListFilter = 0b01: every CPU interface but the sender's.
const SGIR_ALL_BUT_SELF: u32 = 0b01 << 24;

/// Spurious INTIDs (1020..=1023): nothing to acknowledge.
const SPURIOUS: core::ops::RangeInclusive<u32> = 1020..=1023;
/// How long register-write-pending and wake-up polls wait.
const POLL_LIMIT: u32 = 1_000_000;

/// Priority [`configure`] gives interrupts by default.
pub const DEFAULT_PRIORITY: u8 = 0xa0;

/// Architecture version of the interrupt controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

/// Where the driver learned about the GIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The device tree's interrupt-controller node.
    DeviceTree,
    /// No device tree: QEMU `virt`'s addresses, version from `GICD_PIDR2`.
    Probed,
}

/// The interrupt controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicInfo {
    pub version: Version,
    /// Distributor base.
    pub dist: usize,
    /// GICv3: base of the redistributor region (0 on GICv2).
    pub redist: usize,
    /// GICv3: size of the redistributor region, 0 if unknown.
    pub redist_size: usize,
    /// GICv2: CPU interface base (0 on GICv3).
    pub cpu_if: usize,
    pub source: Source,
}

/// Why the GIC could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// No interrupt controller: the device tree names none (or one the
    /// driver does not know, or one overlapping the image), or, without a
    /// device tree, no GIC answers at QEMU virt's address.
    NotFound,
    /// GICv3: no redistributor frame carries this vCPU's affinity.
    NoRedistributor,
    /// A register-write-pending or wake-up poll never finished.
    Timeout,
    /// This vCPU's index is past [`MAX_VCPUS`].
    BadCpu,
    /// [`init_cpu`] before [`init`].
    NotInitialised,
}

impl core::fmt::Display for GicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            GicError::NotFound => "no interrupt controller found",
            GicError::NoRedistributor => "no redistributor for this vCPU",
            GicError::Timeout => "GIC did not respond in time",
            GicError::BadCpu => "vCPU index out of range",
            GicError::NotInitialised => "GIC not initialised",
        })
    }
}

/// 0 = not initialised, else 2 or 3.
static VERSION: AtomicU8 = AtomicU8::new(0);
static DIST: AtomicUsize = AtomicUsize::new(0);
static REDIST: AtomicUsize = AtomicUsize::new(0);
static REDIST_SIZE: AtomicUsize = AtomicUsize::new(0);
static CPU_IF: AtomicUsize = AtomicUsize::new(0);
static SOURCE_DTB: AtomicU8 = AtomicU8::new(0);
/// GICv3: each vCPU's RD_base (0 = not set up yet).
static RD_BASE: [AtomicUsize; MAX_VCPUS] = [const { AtomicUsize::new(0) }; MAX_VCPUS];
/// GICv2: each vCPU's CPU interface mask (0 = not known yet).
static CPU_MASK: [AtomicU8; MAX_VCPUS] = [const { AtomicU8::new(0) }; MAX_VCPUS];

/// Finds the GIC without touching it (except, natively, reading
/// `GICD_PIDR2`).
pub fn discover() -> Option<GicInfo> {
    let info = match crate::dtb::fdt() {
        Some(fdt) => from_dtb(&fdt)?,
        None => probe_native()?,
    };
    let windows: [(usize, usize); 2] = match info.version {
        Version::V3 => [
            (info.dist, GICD_SIZE),
            (info.redist, info.redist_size.max(GICR_FRAMES)),
        ],
        Version::V2 => [(info.dist, GICD_SIZE), (info.cpu_if, GICC_SIZE)],
    };
    let clear = windows
        .iter()
        .all(|&(base, size)| base != 0 && !crate::is_own_memory(base as u64, size as u64));
    clear.then_some(info)
}

fn from_dtb(fdt: &fdt::Fdt<'static>) -> Option<GicInfo> {
    let (node, version) = if let Some(n) = fdt.find_compatible(&["arm,gic-v3"]) {
        (n, Version::V3)
    } else {
        let v2 = [
            "arm,cortex-a15-gic",
            "arm,gic-400",
            "arm,cortex-a7-gic",
            "arm,cortex-a9-gic",
        ];
        (fdt.find_compatible(&v2)?, Version::V2)
    };
    let mut reg = node.reg()?;
    let dist = reg.next()?.starting_address as usize;
    let second = reg.next()?;
    let base = second.starting_address as usize;
    Some(match version {
        Version::V3 => GicInfo {
            version,
            dist,
            redist: base,
            redist_size: second.size.unwrap_or(0),
            cpu_if: 0,
            source: Source::DeviceTree,
        },
        Version::V2 => GicInfo {
            version,
            dist,
            redist: 0,
            redist_size: 0,
            cpu_if: base,
            source: Source::DeviceTree,
        },
    })
}

/// GICv3 and v4 have a 64 KiB distributor with `GICD_PIDR2` at 0xffe8;
/// GICv1 and v2 a 4 KiB one with it at 0xfe8 (on QEMU `virt`, reading past
/// that aborts, which `try_read32` survives).
fn probe_native() -> Option<GicInfo> {
    let arch_rev = |offset: usize| {
        crate::try_read32((NATIVE_GICD + offset) as u64)
            .ok()
            .map(|pidr2| (pidr2 >> 4) & 0xf)
    };
    let version = if matches!(arch_rev(GICD_PIDR2), Some(3 | 4)) {
        Version::V3
    } else if matches!(arch_rev(GICD_PIDR2_V2), Some(1 | 2)) {
        Version::V2
    } else {
        return None;
    };
    Some(GicInfo {
        version,
        dist: NATIVE_GICD,
        redist: if version == Version::V3 {
            NATIVE_GICR
        } else {
            0
        },
        redist_size: 0,
        cpu_if: if version == Version::V2 {
            NATIVE_GICC
        } else {
            0
        },
        source: Source::Probed,
    })
}

/// The GIC [`init`] set up, if it has been.
pub fn info() -> Option<GicInfo> {
    let version = match VERSION.load(Ordering::Acquire) {
        2 => Version::V2,
        3 => Version::V3,
        _ => return None,
    };
    Some(GicInfo {
        version,
        dist: DIST.load(Ordering::Relaxed),
        redist: REDIST.load(Ordering::Relaxed),
        redist_size: REDIST_SIZE.load(Ordering::Relaxed),
        cpu_if: CPU_IF.load(Ordering::Relaxed),
        source: if SOURCE_DTB.load(Ordering::Relaxed) != 0 {
            Source::DeviceTree
        } else {
            Source::Probed
        },
    })
}

/// Whether [`init`] has succeeded.
pub fn present() -> bool {
    VERSION.load(Ordering::Acquire) != 0
}

fn version() -> Option<Version> {
    match VERSION.load(Ordering::Acquire) {
        2 => Some(Version::V2),
        3 => Some(Version::V3),
        _ => None,
    }
}

fn read32(addr: usize) -> u32 {
    // SAFETY: every address the driver computes lies inside a GIC register window found by
    // `discover`, which refuses windows overlapping the image or the device tree: device
    // registers, no memory Rust owns. The offsets are 4-byte aligned.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn write32(addr: usize, value: u32) {
    // SAFETY: as for `read32`: a 4-byte aligned GIC register, outside
    // everything Rust owns.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

fn read64(addr: usize) -> u64 {
    // SAFETY: as for `read32`; the 64-bit registers read this way
    // (GICR_TYPER, GICD_IROUTER<n>) are 8-byte aligned.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn write64(addr: usize, value: u64) {
    // SAFETY: as for `read64`.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
}

fn poll(mut done: impl FnMut() -> bool) -> Result<(), GicError> {
    for _ in 0..POLL_LIMIT {
        if done() {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(GicError::Timeout)
}

fn wait_dist_rwp(dist: usize) -> Result<(), GicError> {
    poll(|| read32(dist + GICD_CTLR) & GICD_CTLR_RWP == 0)
}

/// Finds the GIC, sets up its distributor and this vCPU's interface.
/// Call once, on the boot vCPU, with interrupts masked.
pub fn init() -> Result<GicInfo, GicError> {
    let info = discover().ok_or(GicError::NotFound)?;
    match info.version {
        Version::V3 => {
            write32(info.dist + GICD_CTLR, 0);
            wait_dist_rwp(info.dist)?;
            write32(
                info.dist + GICD_CTLR,
                GICD_CTLR_ARE | GICD_CTLR_ENABLE_G1 | GICD_CTLR_ENABLE_G0_G1NS,
            );
            wait_dist_rwp(info.dist)?;
        }
        Version::V2 => {
            write32(
                info.dist + GICD_CTLR,
                GICD_CTLR_ENABLE_G0_G1NS | GICD_CTLR_ENABLE_G1,
            );
        }
    }
    DIST.store(info.dist, Ordering::Relaxed);
    REDIST.store(info.redist, Ordering::Relaxed);
    REDIST_SIZE.store(info.redist_size, Ordering::Relaxed);
    CPU_IF.store(info.cpu_if, Ordering::Relaxed);
    SOURCE_DTB.store(
        u8::from(info.source == Source::DeviceTree),
        Ordering::Relaxed,
    );
    VERSION.store(
        match info.version {
            Version::V2 => 2,
            Version::V3 => 3,
        },
        Ordering::Release,
    );
    init_cpu()?;
    Ok(info)
}

/// Sets up this vCPU's part of the GIC: on GICv3 its redistributor (woken)
/// and system-register CPU interface, on GICv2 its CPU interface. Call
/// with interrupts masked, after [`init`] ran on the boot vCPU.
pub fn init_cpu() -> Result<(), GicError> {
    let vcpu = cpu::index();
    if vcpu >= MAX_VCPUS {
        return Err(GicError::BadCpu);
    }
    match version().ok_or(GicError::NotInitialised)? {
        Version::V3 => {
            let rd = find_redistributor().ok_or(GicError::NoRedistributor)?;
            let waker = read32(rd + GICR_WAKER);
            write32(rd + GICR_WAKER, waker & !GICR_WAKER_PROCESSOR_SLEEP);
            poll(|| read32(rd + GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP == 0)?;
            // SGIs and PPIs in Group 1 (they reset to Group 0, which a
            // GIC without security signals as FIQ).
            write32(rd + GICR_SGI_BASE + GICD_IGROUPR, u32::MAX);
            RD_BASE[vcpu].store(rd, Ordering::Release);

            // ICC_SRE_EL1.SRE = 1: the CPU interface through system registers.
            let sre = read_sysreg!("S3_0_C12_C12_5");
            write_sysreg!("S3_0_C12_C12_5", sre | 1);
            isb();
            // ICC_PMR_EL1 = 0xff: every priority gets through.
            write_sysreg!("S3_0_C4_C6_0", 0xff);
            // ICC_BPR1_EL1 = 0: no preemption grouping beyond the minimum.
            write_sysreg!("S3_0_C12_C12_3", 0);
            // ICC_CTLR_EL1 = 0: EOImode 0 (EOI drops priority and deactivates).
            write_sysreg!("S3_0_C12_C12_4", 0);
            // ICC_IGRPEN1_EL1 = 1: Group 1 interrupts on.
            write_sysreg!("S3_0_C12_C12_7", 1);
            isb();
        }
        Version::V2 => {
            let dist = DIST.load(Ordering::Relaxed);
            let cpu_if = CPU_IF.load(Ordering::Relaxed);
            // The banked ITARGETSR0..7 read as this CPU interface's mask.
            let mask = (0..8)
                .map(|i| read32(dist + GICD_ITARGETSR + 4 * i))
                .flat_map(u32::to_le_bytes)
                .find(|&b| b != 0)
                .unwrap_or(1 << vcpu);
            CPU_MASK[vcpu].store(mask, Ordering::Release);
            write32(cpu_if + GICC_PMR, 0xff);
            write32(cpu_if + GICC_CTLR, GICC_CTLR_ENABLE);
        }
    }
    Ok(())
}

/// GICv3: the RD_base of the redistributor whose `GICR_TYPER.Affinity`
/// is this vCPU's, walking the region frame by frame until `Last`.
fn find_redistributor() -> Option<usize> {
    let start = REDIST.load(Ordering::Relaxed);
    let size = REDIST_SIZE.load(Ordering::Relaxed);
    let me = cpu::affinity32();
    let mut frame = start;
    for _ in 0..MAX_REDISTRIBUTORS {
        if size != 0 && frame + GICR_FRAMES > start + size {
            return None;
        }
        let typer = read64(frame + GICR_TYPER);
        if (typer >> 32) as u32 == me {
            return Some(frame);
        }
        if typer & GICR_TYPER_LAST != 0 {
            return None;
        }
        frame += if typer & GICR_TYPER_VLPIS != 0 {
            GICR_FRAMES_VLPI
        } else {
            GICR_FRAMES
        };
    }
    None
}

/// GICv3: this vCPU's redistributor RD_base, once [`init_cpu`] found it.
pub fn redistributor() -> Option<usize> {
    let vcpu = cpu::index();
    let rd = RD_BASE.get(vcpu)?.load(Ordering::Acquire);
    (rd != 0).then_some(rd)
}

/// GICv2: the CPU interface mask of vCPU `vcpu` (`1 << vcpu` until that
/// vCPU has run [`init_cpu`]).
pub fn cpu_mask(vcpu: usize) -> u8 {
    match CPU_MASK.get(vcpu).map(|m| m.load(Ordering::Acquire)) {
        Some(0) | None => 1u8.checked_shl(vcpu as u32).unwrap_or(0),
        Some(m) => m,
    }
}

/// Base of the register frame holding `intid`'s enable/pending/priority
/// bits: this vCPU's redistributor SGI frame for SGIs and PPIs on GICv3,
/// the distributor otherwise. `None` before [`init`] / [`init_cpu`].
fn frame_of(intid: u32) -> Option<usize> {
    match version()? {
        Version::V3 if intid < 32 => Some(redistributor()? + GICR_SGI_BASE),
        _ => Some(DIST.load(Ordering::Relaxed)),
    }
}

/// Sets `intid`'s bit in the one-bit-per-interrupt register array at `reg`.
fn set_bit(reg: usize, intid: u32) {
    if let Some(base) = frame_of(intid) {
        write32(base + reg + 4 * (intid as usize / 32), 1 << (intid % 32));
    }
}

fn get_bit(reg: usize, intid: u32) -> bool {
    frame_of(intid).is_some_and(|base| {
        read32(base + reg + 4 * (intid as usize / 32)) & (1 << (intid % 32)) != 0
    })
}

/// Waits for a write to an enable-clear register to take effect (GICv3).
fn wait_rwp(intid: u32) {
    let result = match (version(), redistributor()) {
        (Some(Version::V3), Some(rd)) if intid < 32 => {
            poll(|| read32(rd + GICR_CTLR) & GICR_CTLR_RWP == 0)
        }
        (Some(Version::V3), _) => wait_dist_rwp(DIST.load(Ordering::Relaxed)),
        _ => Ok(()),
    };
    // A GIC that never finishes a write is not worth halting for here: the
    // interrupt may fire once more, which handlers tolerate.
    let _ = result;
}

/// Enables `intid` (for an SGI or PPI: on this vCPU).
pub fn enable(intid: u32) {
    set_bit(GICD_ISENABLER, intid);
}

/// Disables `intid` (for an SGI or PPI: on this vCPU).
pub fn disable(intid: u32) {
    set_bit(GICD_ICENABLER, intid);
    wait_rwp(intid);
}

/// Whether `intid` is enabled.
pub fn is_enabled(intid: u32) -> bool {
    get_bit(GICD_ISENABLER, intid)
}

/// Makes `intid` pending.
pub fn set_pending(intid: u32) {
    set_bit(GICD_ISPENDR, intid);
}

/// Clears `intid`'s pending state.
pub fn clear_pending(intid: u32) {
    set_bit(GICD_ICPENDR, intid);
}

/// Whether `intid` is pending.
pub fn is_pending(intid: u32) -> bool {
    get_bit(GICD_ISPENDR, intid)
}

/// Read-modify-writes byte `intid % 4` of the 32-bit word holding
/// `intid`'s byte in the byte-per-interrupt array at `reg` (32-bit
/// accesses work on every GIC and emulation; byte accesses need not).
fn set_byte(base: usize, reg: usize, intid: u32, value: u8) {
    let addr = base + reg + (intid as usize & !3);
    let shift = (intid % 4) * 8;
    let word = read32(addr) & !(0xff << shift);
    write32(addr, word | (u32::from(value) << shift));
}

fn get_byte(base: usize, reg: usize, intid: u32) -> u8 {
    let addr = base + reg + (intid as usize & !3);
    (read32(addr) >> ((intid % 4) * 8)) as u8
}

/// Sets `intid`'s priority (0 highest; the GIC may ignore low bits).
pub fn set_priority(intid: u32, priority: u8) {
    if let Some(base) = frame_of(intid) {
        set_byte(base, GICD_IPRIORITYR, intid, priority);
    }
}

/// `intid`'s priority.
pub fn priority(intid: u32) -> u8 {
    frame_of(intid).map_or(0, |base| get_byte(base, GICD_IPRIORITYR, intid))
}

/// GICv3: puts `intid` in Group 1 (the group this driver's CPU interface
/// takes). GICv2: nothing to do, the CPU interface takes both groups.
pub fn set_group1(intid: u32) {
    if version() != Some(Version::V3) {
        return;
    }
    if let Some(base) = frame_of(intid) {
        let addr = base + GICD_IGROUPR + 4 * (intid as usize / 32);
        write32(addr, read32(addr) | (1 << (intid % 32)));
    }
}

/// Routes SPI `intid` (32 and up) to this vCPU: GICv3 `GICD_IROUTER` =
/// this vCPU's affinity, GICv2 `GICD_ITARGETSR` = its CPU interface mask.
pub fn route_to_self(intid: u32) {
    match version() {
        Some(Version::V3) => set_route(intid, cpu::affinity()),
        Some(Version::V2) => set_route(intid, u64::from(cpu_mask(cpu::index()))),
        None => {}
    }
}

/// Writes SPI `intid`'s routing register as is: GICv3 `GICD_IROUTER<n>`
/// (64 bits), GICv2 its `GICD_ITARGETSR` byte (low 8 bits of `value`).
pub fn set_route(intid: u32, value: u64) {
    if intid < 32 {
        return;
    }
    let dist = DIST.load(Ordering::Relaxed);
    match version() {
        Some(Version::V3) => write64(dist + GICD_IROUTER + 8 * intid as usize, value),
        Some(Version::V2) => set_byte(dist, GICD_ITARGETSR, intid, value as u8),
        None => {}
    }
}

/// SPI `intid`'s routing register (see [`set_route`]).
pub fn route(intid: u32) -> u64 {
    let dist = DIST.load(Ordering::Relaxed);
    match version() {
        Some(Version::V3) if intid >= 32 => read64(dist + GICD_IROUTER + 8 * intid as usize),
        Some(Version::V2) if intid >= 32 => u64::from(get_byte(dist, GICD_ITARGETSR, intid)),
        _ => 0,
    }
}

/// Makes `intid` ready to fire at this vCPU: Group 1, `priority`, routed
/// here if it is an SPI, enabled.
pub fn configure(intid: u32, priority: u8) {
    set_group1(intid);
    set_priority(intid, priority);
    if intid >= 32 {
        route_to_self(intid);
    }
    enable(intid);
}

/// An acknowledged interrupt, to be handed back to [`eoi`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The acknowledge register's value (GICv2: with the source CPU of an SGI).
    raw: u32,
}

impl Ack {
    /// The interrupt's ID.
    pub fn intid(&self) -> u32 {
        match version() {
            Some(Version::V2) => self.raw & 0x3ff,
            _ => self.raw & 0xff_ffff,
        }
    }
}

/// Acknowledges the highest-priority pending interrupt of this vCPU;
/// `None` if there is none (a spurious INTID).
pub fn ack() -> Option<Ack> {
    let raw = match version()? {
        // ICC_IAR1_EL1.
        Version::V3 => read_sysreg!("S3_0_C12_C12_0") as u32,
        Version::V2 => read32(CPU_IF.load(Ordering::Relaxed) + GICC_IAR),
    };
    let ack = Ack { raw };
    (!SPURIOUS.contains(&ack.intid())).then_some(ack)
}

/// Signals the end of an interrupt [`ack`] returned (EOImode 0: priority
/// drop and deactivation in one).
pub fn eoi(ack: Ack) {
    match version() {
        // ICC_EOIR1_EL1.
        Some(Version::V3) => write_sysreg!("S3_0_C12_C12_1", u64::from(ack.raw)),
        Some(Version::V2) => write32(CPU_IF.load(Ordering::Relaxed) + GICC_EOIR, ack.raw),
        None => {}
    }
}

/// Whom an SGI goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiTarget {
    /// One vCPU, by index (Aff0; GICv2: its CPU interface mask).
    Vcpu(usize),
    /// Every vCPU but the sender (GICv3 IRM = 1, GICv2 filter 0b01).
    AllButSelf,
}

/// Sends SGI `intid` (0..16) to `target`.
pub fn send_sgi(intid: u32, target: SgiTarget) {
    let intid = intid & 0xf;
    match version() {
        Some(Version::V3) => {
            let value = match target {
                SgiTarget::Vcpu(v) => {
                    // Target list bit Aff0 % 16 in cluster Aff1 = Aff0 / 16.
                    let aff1 = (v as u64 >> 4) & 0xff;
                    (aff1 << 16) | (1 << (v % 16))
                }
                SgiTarget::AllButSelf => SGI1R_IRM,
            };
            send_sgi1r(value | (u64::from(intid) << 24));
        }
        Some(Version::V2) => {
            let value = match target {
                SgiTarget::Vcpu(v) => u32::from(cpu_mask(v)) << 16,
                SgiTarget::AllButSelf => SGIR_ALL_BUT_SELF,
            };
            send_sgir(value | intid);
        }
        None => {}
    }
}

/// GICv3: writes `value` to `ICC_SGI1R_EL1` as is (INTID in bits
/// \[27:24\], target list \[15:0\], Aff1 \[23:16\], Aff2 \[39:32\], IRM \[40\],
/// Aff3 \[55:48\]). Does nothing on GICv2, whose CPU has no such register.
pub fn send_sgi1r(value: u64) {
    if version() != Some(Version::V3) {
        return;
    }
    // Memory written before the SGI is visible to its handler.
    dsb_sy();
    // ICC_SGI1R_EL1.
    write_sysreg!("S3_0_C12_C11_5", value);
    isb();
}

/// GICv3: writes `value` to `ICC_ASGI1R_EL1` as is (same layout as
/// `ICC_SGI1R_EL1`, see [`send_sgi1r`]). Does nothing on GICv2.
pub fn send_asgi1r(value: u64) {
    if version() != Some(Version::V3) {
        return;
    }
    dsb_sy();
    // ICC_ASGI1R_EL1.
    write_sysreg!("S3_0_C12_C11_6", value);
    isb();
}

/// GICv3: writes `value` to `ICC_SGI0R_EL1` as is (same layout as
/// `ICC_SGI1R_EL1`, see [`send_sgi1r`]). Does nothing on GICv2.
pub fn send_sgi0r(value: u64) {
    if version() != Some(Version::V3) {
        return;
    }
    dsb_sy();
    // ICC_SGI0R_EL1.
    write_sysreg!("S3_0_C12_C11_7", value);
    isb();
}

/// GICv2: writes `value` to `GICD_SGIR` as is (filter \[25:24\], CPU target
/// list \[23:16\], INTID \[3:0\]). Does nothing on GICv3.
pub fn send_sgir(value: u32) {
    if version() != Some(Version::V2) {
        return;
    }
    dsb_sy();
    write32(DIST.load(Ordering::Relaxed) + GICD_SGIR, value);
}
