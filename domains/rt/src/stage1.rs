//! A minimal stage-1 identity map, on only while a closure runs
//! ([`with_normal_window`]).
//!
//! The runtime runs with its MMU off, where every data access is to Device
//! memory and a misaligned one is an alignment fault at EL1, before stage 2
//! sees it. To make a misaligned access reach the partitioner (the probe's
//! `misaligned=` word), the domain maps the target as Normal memory:
//!
//! * 4 KiB granule, `T0SZ` = 25 (39-bit addresses, so the walk starts at
//!   level 1, whose entries are 1 GiB blocks), walks non-cacheable,
//!   `TTBR1_EL1` walks off;
//! * `MAIR_EL1` attribute 0 Device-nGnRnE, attribute 1 Normal
//!   Non-cacheable;
//! * the GiB of the image (code, data, stacks) Normal and executable, the
//!   2 MiB around the target Normal (through a level-2 table whose other
//!   blocks are Device), every other GiB Device and never executable;
//! * `SCTLR_EL1.M` set with `C`, `I` and `A` clear: nothing is ever cached,
//!   so turning translation off again needs no cache maintenance, and
//!   misaligned accesses to Normal memory are allowed.
//!
//! Afterwards `SCTLR_EL1`, `TCR_EL1`, `MAIR_EL1` and `TTBR0_EL1` get their
//! old values back and the TLBs are invalidated. One vCPU at a time (the
//! tables are shared); interrupts stay masked throughout.

use crate::sysreg::read_sysreg;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const ENTRIES: usize = 512;
const GIB_SHIFT: u32 = 30;
const BLOCK_2M_SHIFT: u32 = 21;
/// `T0SZ` = 25: 39-bit input addresses, the walk starts at level 1.
const T0SZ: u64 = 25;
/// The highest address the map covers, exclusive.
const LIMIT: u64 = 1 << (64 - T0SZ);

/// A translation table (4 KiB, 4 KiB aligned).
#[repr(C, align(4096))]
struct Table([AtomicU64; ENTRIES]);

static LEVEL1: Table = Table([const { AtomicU64::new(0) }; ENTRIES]);
static LEVEL2: Table = Table([const { AtomicU64::new(0) }; ENTRIES]);
/// The tables are in use (a second user would rewrite them under the first).
static BUSY: AtomicBool = AtomicBool::new(false);

/// Block descriptor (levels 1 and 2).
const BLOCK: u64 = 0b01;
/// Table descriptor (level 1).
const TABLE: u64 = 0b11;
/// Access flag: set, so no access flag fault.
const AF: u64 = 1 << 10;
/// Inner shareable.
const SH_INNER: u64 = 0b11 << 8;
/// `AttrIndx` 0: Device-nGnRnE.
const ATTR_DEVICE: u64 = 0 << 2;
/// `AttrIndx` 1: Normal.
const ATTR_NORMAL: u64 = 1 << 2;
/// Never executable, at EL1 (PXN) or EL0 (UXN).
const XN: u64 = (1 << 53) | (1 << 54);
/// `MAIR_EL1`: attribute 0 Device-nGnRnE (0x00), attribute 1 Normal,
/// inner and outer Non-cacheable (0x44).
const MAIR: u64 = 0x44 << 8;
/// `TCR_EL1`: T0SZ, walks non-cacheable and non-shareable (IRGN0 = ORGN0 =
/// SH0 = 0), TG0 4 KiB (0), EPD1 (no TTBR1 walks); IPS is added at run time.
const TCR: u64 = T0SZ | (1 << 23);
const SCTLR_M: u64 = 1 << 0;
const SCTLR_A: u64 = 1 << 1;
const SCTLR_C: u64 = 1 << 2;
const SCTLR_I: u64 = 1 << 12;

const fn device(base: u64) -> u64 {
    base | BLOCK | AF | ATTR_DEVICE | XN
}
const fn normal(base: u64) -> u64 {
    base | BLOCK | AF | ATTR_NORMAL | SH_INNER
}

/// Fills the tables: see the module documentation.
fn build(image_gib: u64, target: u64) {
    let target_gib = target >> GIB_SHIFT;
    for (i, e) in LEVEL1.0.iter().enumerate() {
        let gib = i as u64;
        let base = gib << GIB_SHIFT;
        let d = if gib == image_gib {
            normal(base)
        } else if gib == target_gib {
            LEVEL2.0.as_ptr() as u64 | TABLE
        } else {
            device(base)
        };
        e.store(d, Ordering::SeqCst);
    }
    let target_block = (target >> BLOCK_2M_SHIFT) as usize % ENTRIES;
    for (i, e) in LEVEL2.0.iter().enumerate() {
        let base = (target_gib << GIB_SHIFT) | ((i as u64) << BLOCK_2M_SHIFT);
        let d = if i == target_block {
            normal(base) | XN
        } else {
            device(base)
        };
        e.store(d, Ordering::SeqCst);
    }
}

/// Runs `f` with stage-1 translation on, the 2 MiB around `target` mapped
/// as Normal memory (see the module documentation), and returns what it
/// returned. `None` (and `f` not run) if `target` is beyond the 512 GiB the
/// map covers or another vCPU is using the map.
///
/// `f` must not touch memory outside the image and the target's 2 MiB but
/// as Device memory (naturally aligned), as with the MMU off; the console
/// is Device memory as ever.
pub fn with_normal_window<R>(target: u64, f: impl FnOnce() -> R) -> Option<R> {
    if target >= LIMIT || BUSY.swap(true, Ordering::SeqCst) {
        return None;
    }
    let image_gib = crate::image::range().0 as u64 >> GIB_SHIFT;
    build(image_gib, target);
    // IPS = the PA range the core implements (ID_AA64MMFR0_EL1.PARange).
    let ips = (read_sysreg!("id_aa64mmfr0_el1") & 0xf).min(0b110);
    let tcr = TCR | (ips << 32);
    let ttbr = LEVEL1.0.as_ptr() as u64;
    let result = crate::irq::masked(|| {
        let sctlr = read_sysreg!("sctlr_el1");
        let saved = (
            read_sysreg!("tcr_el1"),
            read_sysreg!("mair_el1"),
            read_sysreg!("ttbr0_el1"),
        );
        let on = (sctlr | SCTLR_M) & !(SCTLR_A | SCTLR_C | SCTLR_I);
        // The tables just written (with the MMU off, so straight to
        // memory, which the non-cacheable walks read; `dsb sy` first) map
        // every address the program uses to itself: the image's GiB (code,
        // data, stacks, the tables) as Normal memory, executable, the rest
        // as Device memory, as it was with the MMU off. Turning translation
        // on changes no address Rust uses, only memory types, and with the
        // caches off (C = I = 0, Non-cacheable Normal) no data can be held
        // anywhere but in memory. Interrupts are masked; an exception (a
        // probe's abort) runs the same vectors at the same addresses.
        // SAFETY: an identity map of everything the program uses (above):
        // translation on changes memory types only.
        unsafe {
            core::arch::asm!(
                "dsb sy",
                "msr mair_el1, {mair}",
                "msr tcr_el1, {tcr}",
                "msr ttbr0_el1, {ttbr}",
                "isb",
                "tlbi vmalle1",
                "dsb sy",
                "isb",
                "msr sctlr_el1, {on}",
                "isb",
                mair = in(reg) MAIR,
                tcr = in(reg) tcr,
                ttbr = in(reg) ttbr,
                on = in(reg) on,
                options(nostack, preserves_flags)
            )
        };
        let r = f();
        // Translation off again, the registers as they were. The TLBs are
        // invalidated so no entry of this map outlives it.
        // SAFETY: the identity map means no address Rust uses changes, and
        // nothing was cached (C = I = 0): memory holds everything written.
        unsafe {
            core::arch::asm!(
                "dsb sy",
                "msr sctlr_el1, {sctlr}",
                "isb",
                "msr tcr_el1, {tcr}",
                "msr mair_el1, {mair}",
                "msr ttbr0_el1, {ttbr}",
                "tlbi vmalle1",
                "dsb sy",
                "isb",
                sctlr = in(reg) sctlr,
                tcr = in(reg) saved.0,
                mair = in(reg) saved.1,
                ttbr = in(reg) saved.2,
                options(nostack, preserves_flags)
            )
        };
        r
    });
    BUSY.store(false, Ordering::SeqCst);
    Some(result)
}
