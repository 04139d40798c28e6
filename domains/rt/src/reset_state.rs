//! The register state the boot vCPU starts with, and a way to leave all of
//! it dirty: for testing that a restart gives the domain the state of a
//! cold boot.
//!
//! `_start` calls `__bulkhead_rt_snapshot` before anything else touches a
//! register it covers (only the stack pointer has been moved, its entry
//! value is passed in x20): every EL1/EL0 system register a domain can
//! write, the virtual timer, and V0-V31, FPCR and FPSR (FP/SIMD is enabled
//! for the snapshot, CPACR_EL1 recorded before). [`entry_dirty`] compares
//! the snapshot with the cold reset state; [`gic_dirty`] does the same for
//! the GIC CPU interface, which must be read before [`crate::gic::init`]
//! sets it up; [`dirty_gic_interface`] and [`dirty_and_call`] leave every
//! one of these registers dirty, the latter right before a PSCI call (it
//! sets the FP/SIMD registers itself, so no compiled code can touch them
//! in between).

use crate::gic::{self, GicInfo, Version};
use crate::psci::Conduit;
use crate::sysreg::{isb, read_sysreg, write_sysreg};
use core::sync::atomic::{AtomicU64, Ordering};

/// SCTLR_EL1 at reset as the partitioner sets it: MMU and caches off,
/// RES1 bits set.
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// The system registers of the snapshot, in its order, with their reset
/// value (everything else resets to zero).
const SYSREGS: [(&str, u64); 28] = [
    ("sctlr_el1", SCTLR_EL1_RESET),
    ("ttbr0_el1", 0),
    ("ttbr1_el1", 0),
    ("tcr_el1", 0),
    ("mair_el1", 0),
    ("amair_el1", 0),
    ("contextidr_el1", 0),
    ("vbar_el1", 0),
    ("cpacr_el1", 0),
    ("sp_el0", 0),
    ("sp_el1", 0),
    ("elr_el1", 0),
    ("spsr_el1", 0),
    ("esr_el1", 0),
    ("far_el1", 0),
    ("par_el1", 0),
    ("afsr0_el1", 0),
    ("afsr1_el1", 0),
    ("cntkctl_el1", 0),
    ("tpidr_el1", 0),
    ("tpidr_el0", 0),
    ("tpidrro_el0", 0),
    ("mdscr_el1", 0),
    ("cntv_ctl_el0", 0),
    ("cntv_cval_el0", 0),
    ("fpcr", 0),
    ("fpsr", 0),
    ("csselr_el1", 0),
];
/// Where the V registers start in the snapshot (in u64 words, 16-byte aligned).
const V_BASE: usize = 32;
const WORDS: usize = V_BASE + 64;

/// The snapshot, written by `__bulkhead_rt_snapshot` (before any Rust runs).
#[repr(C, align(16))]
struct Snapshot([AtomicU64; WORDS]);

#[no_mangle]
static __bulkhead_entry_state: Snapshot = Snapshot([const { AtomicU64::new(0) }; WORDS]);

core::arch::global_asm!(
    r#"
    .section .text.bulkhead_snapshot, "ax"
    .balign 4
    .global __bulkhead_rt_snapshot
    .type __bulkhead_rt_snapshot, %function
// x20 = SP at entry. Clobbers x1-x3 and CPACR_EL1 (FP/SIMD on).
__bulkhead_rt_snapshot:
    adrp    x1, __bulkhead_entry_state
    add     x1, x1, :lo12:__bulkhead_entry_state
    mrs     x2, sctlr_el1
    str     x2, [x1, #0]
    mrs     x2, ttbr0_el1
    str     x2, [x1, #8]
    mrs     x2, ttbr1_el1
    str     x2, [x1, #16]
    mrs     x2, tcr_el1
    str     x2, [x1, #24]
    mrs     x2, mair_el1
    str     x2, [x1, #32]
    mrs     x2, amair_el1
    str     x2, [x1, #40]
    mrs     x2, contextidr_el1
    str     x2, [x1, #48]
    mrs     x2, vbar_el1
    str     x2, [x1, #56]
    mrs     x2, cpacr_el1
    str     x2, [x1, #64]
    mrs     x3, sp_el0
    str     x3, [x1, #72]
    str     x20, [x1, #80]
    mrs     x3, elr_el1
    str     x3, [x1, #88]
    mrs     x3, spsr_el1
    str     x3, [x1, #96]
    mrs     x3, esr_el1
    str     x3, [x1, #104]
    mrs     x3, far_el1
    str     x3, [x1, #112]
    mrs     x3, par_el1
    str     x3, [x1, #120]
    mrs     x3, afsr0_el1
    str     x3, [x1, #128]
    mrs     x3, afsr1_el1
    str     x3, [x1, #136]
    mrs     x3, cntkctl_el1
    str     x3, [x1, #144]
    mrs     x3, tpidr_el1
    str     x3, [x1, #152]
    mrs     x3, tpidr_el0
    str     x3, [x1, #160]
    mrs     x3, tpidrro_el0
    str     x3, [x1, #168]
    mrs     x3, mdscr_el1
    str     x3, [x1, #176]
    mrs     x3, cntv_ctl_el0
    str     x3, [x1, #184]
    mrs     x3, cntv_cval_el0
    str     x3, [x1, #192]
    mrs     x3, csselr_el1
    str     x3, [x1, #216]
    // FP/SIMD on (CPACR_EL1.FPEN = 0b11; its entry value is saved above).
    orr     x2, x2, #(3 << 20)
    msr     cpacr_el1, x2
    isb
    mrs     x3, fpcr
    str     x3, [x1, #200]
    mrs     x3, fpsr
    str     x3, [x1, #208]
    add     x1, x1, #{v_base}
    stp     q0, q1, [x1, #0]
    stp     q2, q3, [x1, #32]
    stp     q4, q5, [x1, #64]
    stp     q6, q7, [x1, #96]
    stp     q8, q9, [x1, #128]
    stp     q10, q11, [x1, #160]
    stp     q12, q13, [x1, #192]
    stp     q14, q15, [x1, #224]
    stp     q16, q17, [x1, #256]
    stp     q18, q19, [x1, #288]
    stp     q20, q21, [x1, #320]
    stp     q22, q23, [x1, #352]
    stp     q24, q25, [x1, #384]
    stp     q26, q27, [x1, #416]
    stp     q28, q29, [x1, #448]
    stp     q30, q31, [x1, #480]
    ret
    .size __bulkhead_rt_snapshot, . - __bulkhead_rt_snapshot

    .section .text.bulkhead_dirty, "ax"
    .balign 4
    .global __bulkhead_dirty_and_call
    .type __bulkhead_dirty_and_call, %function
// x0 = PSCI function, w1 = 1 for SMC (else HVC). Leaves every register of
// the snapshot other than SP_EL1, VBAR_EL1 and CPACR_EL1 (already not at
// reset while the domain runs) away from its reset value, then makes the
// call; should it return, goes to __bulkhead_dirty_call_returned with its x0
// (never back to the caller, whose callee-saved V8-V15 are gone).
__bulkhead_dirty_and_call:
    mrs     x2, sctlr_el1
    orr     x2, x2, #(1 << 26)      // UCI: EL0 cache maintenance
    orr     x2, x2, #(1 << 15)      // UCT: EL0 reads CTR_EL0
    orr     x2, x2, #(1 << 14)      // DZE: EL0 DC ZVA
    msr     sctlr_el1, x2
    mov     x2, #0x1000
    msr     ttbr0_el1, x2
    mov     x2, #0x2000
    msr     ttbr1_el1, x2
    mov     x2, #25
    msr     tcr_el1, x2
    mov     x2, #0xff
    msr     mair_el1, x2
    mov     x2, #1
    msr     amair_el1, x2
    mov     x2, #0x42
    msr     contextidr_el1, x2
    mov     x2, #0x5a0
    msr     sp_el0, x2
    mov     x2, #0xe1e0
    msr     elr_el1, x2
    mov     x2, #0x3c5
    msr     spsr_el1, x2
    mov     x2, #0x56000000
    msr     esr_el1, x2
    mov     x2, #0xfa0
    msr     far_el1, x2
    mov     x2, #0x800
    msr     par_el1, x2
    mov     x2, #1
    msr     afsr0_el1, x2
    msr     afsr1_el1, x2
    mov     x2, #3
    msr     cntkctl_el1, x2
    mov     x2, #0x7101
    msr     tpidr_el1, x2
    mov     x2, #0x7100
    msr     tpidr_el0, x2
    mov     x2, #0x7110
    msr     tpidrro_el0, x2
    mov     x2, #(1 << 12)          // TDCC
    msr     mdscr_el1, x2
    mov     x2, #1                  // cache level 1, instruction
    msr     csselr_el1, x2
    // The virtual timer on, due in about 2^40 ticks (hours): its enable
    // and compare value are what must not survive.
    mrs     x2, cntvct_el0
    mov     x3, #(1 << 40)
    add     x2, x2, x3
    msr     cntv_cval_el0, x2
    mov     x2, #1
    msr     cntv_ctl_el0, x2
    // FP/SIMD: every V register a different non-zero pattern, round
    // towards zero and flush-to-zero, every cumulative exception flag.
    mov     x2, #((3 << 22) | (1 << 24))
    msr     fpcr, x2
    mov     x2, #0x9f
    msr     fpsr, x2
    movi    v0.16b, #1
    movi    v1.16b, #2
    movi    v2.16b, #3
    movi    v3.16b, #4
    movi    v4.16b, #5
    movi    v5.16b, #6
    movi    v6.16b, #7
    movi    v7.16b, #8
    movi    v8.16b, #9
    movi    v9.16b, #10
    movi    v10.16b, #11
    movi    v11.16b, #12
    movi    v12.16b, #13
    movi    v13.16b, #14
    movi    v14.16b, #15
    movi    v15.16b, #16
    movi    v16.16b, #17
    movi    v17.16b, #18
    movi    v18.16b, #19
    movi    v19.16b, #20
    movi    v20.16b, #21
    movi    v21.16b, #22
    movi    v22.16b, #23
    movi    v23.16b, #24
    movi    v24.16b, #25
    movi    v25.16b, #26
    movi    v26.16b, #27
    movi    v27.16b, #28
    movi    v28.16b, #29
    movi    v29.16b, #30
    movi    v30.16b, #31
    movi    v31.16b, #32
    isb
    mov     w4, w1
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    cbnz    w4, 1f
    hvc     #0
    b       2f
1:  smc     #0
2:  mov     x29, xzr
    mov     x30, xzr
    b       __bulkhead_dirty_call_returned
    .size __bulkhead_dirty_and_call, . - __bulkhead_dirty_and_call
"#,
    v_base = const V_BASE * 8,
);

extern "C" {
    fn __bulkhead_dirty_and_call(fid: u64, smc: u32) -> !;
}

/// Where [`dirty_and_call`]'s call goes if it returns: report and halt.
#[no_mangle]
extern "C" fn __bulkhead_dirty_call_returned(ret: u64) -> ! {
    crate::println!(
        "{}: reset-state: the call returned {}",
        crate::name(),
        ret as i32
    );
    crate::halt()
}

/// Names of the V registers, for reports.
const V_NAMES: [&str; 32] = [
    "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14",
    "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27",
    "v28", "v29", "v30", "v31",
];

/// Calls `report(name, value)` for every register of the boot vCPU's entry
/// snapshot that was not at its cold reset value (for a V register, the
/// value is its low 64 bits, or its high ones if those are zero); returns
/// how many.
pub fn entry_dirty(mut report: impl FnMut(&str, u64)) -> usize {
    let s = &__bulkhead_entry_state.0;
    let mut dirty = 0;
    for (i, &(name, reset)) in SYSREGS.iter().enumerate() {
        let v = s[i].load(Ordering::Relaxed);
        if v != reset {
            report(name, v);
            dirty += 1;
        }
    }
    for (n, name) in V_NAMES.iter().enumerate() {
        let lo = s[V_BASE + 2 * n].load(Ordering::Relaxed);
        let hi = s[V_BASE + 2 * n + 1].load(Ordering::Relaxed);
        if lo != 0 || hi != 0 {
            report(name, if lo != 0 { lo } else { hi });
            dirty += 1;
        }
    }
    dirty
}

/// Whether the core has the RAS extension (ID_AA64PFR0_EL1.RAS), and so
/// DISR_EL1.
fn has_ras() -> bool {
    (read_sysreg!("id_aa64pfr0_el1") >> 28) & 0xf != 0
}

/// Whether the domain has its core's PMU: a PMUv3p5 or later
/// (ID_AA64DFR0_EL1.PMUVer >= 6, not 0xf), which Bulkhead gives the domain
/// (on older ones every PMU register traps and reads as zero), with at
/// least one event counter (PMCR_EL0.N).
fn has_own_pmu() -> bool {
    let pmu = (read_sysreg!("id_aa64dfr0_el1") >> 8) & 0xf;
    (6..0xf).contains(&pmu) && (read_sysreg!("pmcr_el0") >> 11) & 0x1f != 0
}

/// Registers outside the entry snapshot, read where the runtime never
/// touches them: the debug claim tags (DBGCLAIMCLR_EL1 reads them), with
/// RAS the deferred interrupt status (DISR_EL1, which a domain's EL1
/// reaches as the partitioner's VDISR_EL2), and with a PMU of its own the
/// first event counter's event type (PMEVTYPER0_EL0). All reset to zero.
/// Reports each one that is not, and returns how many.
pub fn other_dirty(mut report: impl FnMut(&str, u64)) -> usize {
    let mut dirty = 0;
    if has_own_pmu() {
        let t = read_sysreg!("S3_3_C14_C12_0");
        if t != 0 {
            report("pmevtyper0_el0", t);
            dirty += 1;
        }
    }
    let claim = read_sysreg!("S2_0_C7_C9_6") & 0xff;
    if claim != 0 {
        report("dbgclaim", claim);
        dirty += 1;
    }
    if has_ras() {
        let disr = read_sysreg!("S3_0_C12_C1_1");
        if disr != 0 {
            report("disr_el1", disr);
            dirty += 1;
        }
    }
    dirty
}

/// Leaves the registers [`other_dirty`] checks away from their reset
/// values: every claim tag set, (with RAS) DISR_EL1.A with a syndrome,
/// (with its own PMU) event counter 0 counting cycles.
pub fn dirty_other() {
    write_sysreg!("S2_0_C7_C8_6", 0xff); // DBGCLAIMSET_EL1
    if has_own_pmu() {
        write_sysreg!("S3_3_C14_C12_0", 0x11); // PMEVTYPER0_EL0: CPU_CYCLES
    }
    if has_ras() {
        write_sysreg!("S3_0_C12_C1_1", (1 << 31) | 0x11); // DISR_EL1
    }
}

// GICv2 CPU interface registers (the domain's virtual one).
const GICC_BPR: usize = 0x08;
const GICC_RPR: usize = 0x14;
const GICC_ABPR: usize = 0x1c;
const GICC_APR0: usize = 0xd0;
/// GICC_CTLR / ICV_CTLR_EL1 bits that reset to zero: the group enables,
/// AckCtl, FIQEn, CBPR, EOImode (GICv2); CBPR, EOImode (GICv3).
const GICC_CTLR_RESET_MASK: u32 = 0b1_1111 | (1 << 9);
const ICC_CTLR_RESET_MASK: u64 = 0b11;

fn gicc_read(info: &GicInfo, off: usize) -> u32 {
    crate::try_read32((info.cpu_if + off) as u64).unwrap_or(u32::MAX)
}

fn gicc_write(info: &GicInfo, off: usize, v: u32) {
    let _ = crate::try_write32((info.cpu_if + off) as u64, v);
}

/// Whether a binary point register reads at its minimum: a write of 0
/// sets it to its minimum, so it reads back unchanged if it was there.
/// Restores it.
fn bpr_at_min(read: impl Fn() -> u64, write: impl Fn(u64)) -> (bool, u64) {
    let before = read();
    write(0);
    let min = read();
    write(before);
    (before == min, before)
}

/// Calls `report(name, value)` for every register of this vCPU's GIC CPU
/// interface not in its cold reset state (priority mask 0, binary points
/// at their minimum, groups disabled, EOImode 0, no active priority, idle
/// running priority); returns how many. Call before [`crate::gic::init`]
/// (which sets the interface up), with interrupts masked.
pub fn gic_dirty(info: &GicInfo, mut report: impl FnMut(&str, u64)) -> usize {
    let mut dirty = 0;
    let mut check = |name: &str, v: u64, ok: bool| {
        if !ok {
            report(name, v);
            dirty += 1;
        }
    };
    match info.version {
        Version::V3 => {
            let pmr = read_sysreg!("S3_0_C4_C6_0");
            check("icc_pmr_el1", pmr, pmr == 0);
            let ctlr = read_sysreg!("S3_0_C12_C12_4");
            check("icc_ctlr_el1", ctlr, ctlr & ICC_CTLR_RESET_MASK == 0);
            let g0 = read_sysreg!("S3_0_C12_C12_6");
            check("icc_igrpen0_el1", g0, g0 == 0);
            let g1 = read_sysreg!("S3_0_C12_C12_7");
            check("icc_igrpen1_el1", g1, g1 == 0);
            let ap0 = read_sysreg!("S3_0_C12_C8_4");
            check("icc_ap0r0_el1", ap0, ap0 == 0);
            let ap1 = read_sysreg!("S3_0_C12_C9_0");
            check("icc_ap1r0_el1", ap1, ap1 == 0);
            let rpr = read_sysreg!("S3_0_C12_C11_3");
            check("icc_rpr_el1", rpr, rpr == 0xff);
            let (ok, v) = bpr_at_min(
                || read_sysreg!("S3_0_C12_C8_3"),
                |v| {
                    write_sysreg!("S3_0_C12_C8_3", v);
                    isb();
                },
            );
            check("icc_bpr0_el1", v, ok);
            let (ok, v) = bpr_at_min(
                || read_sysreg!("S3_0_C12_C12_3"),
                |v| {
                    write_sysreg!("S3_0_C12_C12_3", v);
                    isb();
                },
            );
            check("icc_bpr1_el1", v, ok);
        }
        Version::V2 => {
            let ctlr = gicc_read(info, gic::regs::GICC_CTLR);
            check("gicc_ctlr", ctlr.into(), ctlr & GICC_CTLR_RESET_MASK == 0);
            let pmr = gicc_read(info, gic::regs::GICC_PMR);
            check("gicc_pmr", pmr.into(), pmr == 0);
            let apr = gicc_read(info, GICC_APR0);
            check("gicc_apr0", apr.into(), apr == 0);
            let rpr = gicc_read(info, GICC_RPR);
            check("gicc_rpr", rpr.into(), rpr == 0xff);
            let (ok, bpr) = bpr_at_min(
                || gicc_read(info, GICC_BPR).into(),
                |v| gicc_write(info, GICC_BPR, v as u32),
            );
            check("gicc_bpr", bpr, ok);
            // The aliased (group 1) binary point resets to one above group
            // 0's minimum. (Not probed: QEMU lets it go lower.)
            let abpr = u64::from(gicc_read(info, GICC_ABPR));
            check("gicc_abpr", abpr, ok && abpr == bpr + 1);
        }
    }
    dirty
}

/// Leaves this vCPU's GIC CPU interface as far from its reset state as a
/// domain can: SGI `sgi` (configured by the caller) sent to itself,
/// acknowledged and never ended (it stays active, its priority in the
/// active priorities), then a restrictive priority mask, the largest binary
/// points, EOImode 1 and the Group 1 enable off (Group 0's on). Call with
/// interrupts masked, after [`crate::gic::init`]. Returns whether the SGI
/// was acknowledged.
pub fn dirty_gic_interface(info: &GicInfo, sgi: u32) -> bool {
    gic::send_sgi(sgi, gic::SgiTarget::Vcpu(crate::cpu::index()));
    let mut acked = false;
    for _ in 0..1_000_000 {
        match gic::ack() {
            Some(a) if a.intid() == sgi => {
                acked = true;
                break;
            }
            // Anything else is ended as usual.
            Some(a) => gic::eoi(a),
            None => core::hint::spin_loop(),
        }
    }
    match info.version {
        Version::V3 => {
            write_sysreg!("S3_0_C4_C6_0", 0x10); // ICC_PMR_EL1
            write_sysreg!("S3_0_C12_C8_3", 7); // ICC_BPR0_EL1
            write_sysreg!("S3_0_C12_C12_3", 7); // ICC_BPR1_EL1
            write_sysreg!("S3_0_C12_C12_4", 0b10); // ICC_CTLR_EL1: EOImode 1
            write_sysreg!("S3_0_C12_C12_6", 1); // ICC_IGRPEN0_EL1
            write_sysreg!("S3_0_C12_C12_7", 0); // ICC_IGRPEN1_EL1
            isb();
        }
        Version::V2 => {
            gicc_write(info, gic::regs::GICC_PMR, 0x10);
            gicc_write(info, GICC_BPR, 7);
            gicc_write(info, GICC_ABPR, 7);
            // EOImode 1 and AckCtl, both groups off.
            gicc_write(info, gic::regs::GICC_CTLR, (1 << 9) | (1 << 2));
        }
    }
    acked
}

/// Leaves every system, timer and FP/SIMD register [`entry_dirty`] checks
/// away from its reset value, then makes PSCI call `fid` through
/// `conduit` at once (SYSTEM_RESET, say). Should the call return, prints
/// `<name>: reset-state: the call returned <ret>` and halts. Call with
/// interrupts masked: ELR_EL1 and SPSR_EL1 are dirtied too.
pub fn dirty_and_call(conduit: Conduit, fid: u32) -> ! {
    let smc = u32::from(conduit == Conduit::Smc);
    // SAFETY: it writes EL1/EL0 registers that affect only EL0, the MMU (left off), state unused with
    // interrupts masked, and FP/SIMD; then one HVC/SMC that changes no memory of ours. It never
    // returns to its caller (V8-V15 destroyed): a returning call goes on to a function that halts.
    unsafe { __bulkhead_dirty_and_call(u64::from(fid), smc) }
}
