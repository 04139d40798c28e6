//! The EL1/EL0 register state every vCPU start gives the domain: that of a
//! cold boot. Called by `domain::launch` on the vCPU's own core, before it
//! enters the domain, whether the domain boots, restarts or starts the vCPU
//! with PSCI CPU_ON. Nothing a previous run left in a register the domain
//! can see survives: system registers, timers, FP/SIMD, the debug claim
//! tags, the deferred SError status (with RAS), the pointer
//! authentication keys the CPU has (decided from its ID registers, as
//! `bulkhead_core::lifecycle` reads them). The virtual CPU interface of the
//! GIC is reset by `gic::reset_virtual_cpu_interface`.

use bulkhead_core::{lifecycle, sysregs};

/// Write zero to each named system register.
macro_rules! zero {
    ($($reg:expr),+ $(,)?) => {
        $(
            // SAFETY: an EL1/EL0 register (or its EL2 access encoding) of the domain about to run
            // here, written while no domain runs here; it controls only what the domain sees and
            // does at EL1/EL0, none of the partitioner's own translation, stack or memory.
            unsafe { core::arch::asm!(concat!("msr ", $reg, ", xzr"), options(nomem, nostack, preserves_flags)) };
        )+
    };
}

fn read_id(which: IdReg) -> u64 {
    let v: u64;
    match which {
        // SAFETY: reading an ID register has no side effect.
        IdReg::Isar1 => unsafe {
            core::arch::asm!("mrs {}, id_aa64isar1_el1", out(reg) v, options(nomem, nostack, preserves_flags))
        },
        // SAFETY: as above.
        IdReg::Dfr0 => unsafe {
            core::arch::asm!("mrs {}, id_aa64dfr0_el1", out(reg) v, options(nomem, nostack, preserves_flags))
        },
        // SAFETY: as above; ID_AA64ISAR2_EL1 (S3_0_C0_C6_2) lies in the ID space, which reads as
        // zero on CPUs that predate the register.
        IdReg::Isar2 => unsafe {
            core::arch::asm!("mrs {}, S3_0_C0_C6_2", out(reg) v, options(nomem, nostack, preserves_flags))
        },
        // SAFETY: as above.
        IdReg::Pfr0 => unsafe {
            core::arch::asm!("mrs {}, id_aa64pfr0_el1", out(reg) v, options(nomem, nostack, preserves_flags))
        },
    }
    v
}

enum IdReg {
    Dfr0,
    Isar1,
    Isar2,
    Pfr0,
}

/// Put every EL1/EL0 register of this core's vCPU in its reset state. Must
/// run with CPTR_EL2.TFP clear (FP/SIMD not trapped at EL2), as `launch` sets it.
pub fn reset() {
    // SAFETY: SCTLR_EL1 with the MMU and caches off, as at reset; it only affects EL1/EL0.
    unsafe {
        core::arch::asm!("msr sctlr_el1, {}", in(reg) sysregs::SCTLR_EL1_RESET, options(nomem, nostack, preserves_flags))
    };
    zero!(
        "ttbr0_el1",
        "ttbr1_el1",
        "tcr_el1",
        "mair_el1",
        "amair_el1",
        "contextidr_el1",
        "vbar_el1",
        "cpacr_el1",
        "csselr_el1",
        "sp_el0",
        "sp_el1",
        "elr_el1",
        "spsr_el1",
        "esr_el1",
        "far_el1",
        "par_el1",
        "afsr0_el1",
        "afsr1_el1",
        "cntkctl_el1",
        "tpidr_el1",
        "tpidr_el0",
        "tpidrro_el0",
        "mdscr_el1",
        // The virtual timer, and the physical one (its accesses from the domain trap, but
        // its state is the domain's core's own).
        "cntv_ctl_el0",
        "cntv_cval_el0",
        "cntp_ctl_el0",
        "cntp_cval_el0",
    );
    let pauth = lifecycle::pointer_auth(read_id(IdReg::Isar1), read_id(IdReg::Isar2));
    if pauth.address_keys {
        // APIAKey, APIBKey, APDAKey, APDBKey (Lo, Hi), by encoding.
        zero!(
            "S3_0_C2_C1_0",
            "S3_0_C2_C1_1",
            "S3_0_C2_C1_2",
            "S3_0_C2_C1_3",
            "S3_0_C2_C2_0",
            "S3_0_C2_C2_1",
            "S3_0_C2_C2_2",
            "S3_0_C2_C2_3",
        );
    }
    if pauth.generic_key {
        // APGAKeyLo, APGAKeyHi.
        zero!("S3_0_C2_C3_0", "S3_0_C2_C3_1");
    }
    let (breakpoints, watchpoints) = lifecycle::debug_register_pairs(read_id(IdReg::Dfr0));
    for n in 0..breakpoints.max(watchpoints) {
        zero_debug_pair(n, n < breakpoints, n < watchpoints);
    }
    // The debug claim tags (set through DBGCLAIMSET_EL1, which EL1 reaches
    // with MDCR_EL2.TDA clear): all eight cleared.
    // SAFETY: DBGCLAIMCLR_EL1 only clears claim tags, software-defined
    // bits with no effect on execution, of the domain about to run here.
    unsafe {
        core::arch::asm!("msr S2_0_C7_C9_6, {}", in(reg) 0xffu64, options(nomem, nostack, preserves_flags))
    };
    // MDCCINT_EL1: the debug communications channel's interrupt enables
    // (RX, TX), EL1's own with MDCR_EL2.TDCC clear. (QEMU models it as
    // read-as-zero, so no test under QEMU sees it kept.)
    zero!("S2_0_C0_C2_0");
    if lifecycle::has_ras(read_id(IdReg::Pfr0)) {
        // VDISR_EL2: what the domain's EL1 reads and writes as DISR_EL1
        // (HCR_EL2.AMO set), a register of its own otherwise untouched.
        zero!("S3_4_C12_C1_1");
    }
    zero_fp_simd();
    // SAFETY: a barrier; the writes above take effect before the domain runs.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
}

/// Breakpoint `n` (DBGBCR<n>_EL1, DBGBVR<n>_EL1) and watchpoint `n`
/// (DBGWCR<n>_EL1, DBGWVR<n>_EL1) disabled and cleared, those the CPU has.
fn zero_debug_pair(n: usize, breakpoint: bool, watchpoint: bool) {
    macro_rules! pair {
        ($($n:literal)+) => {
            match n {
                $($n => {
                    if breakpoint {
                        zero!(concat!("S2_0_C0_C", $n, "_5"), concat!("S2_0_C0_C", $n, "_4"));
                    }
                    if watchpoint {
                        zero!(concat!("S2_0_C0_C", $n, "_7"), concat!("S2_0_C0_C", $n, "_6"));
                    }
                })+
                _ => {}
            }
        };
    }
    pair!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
}

/// V0-V31, FPCR and FPSR to zero. The partitioner itself is built
/// soft-float and never uses them, so they are the domain's alone.
fn zero_fp_simd() {
    // SAFETY: CPTR_EL2.TFP is clear (see `reset`), so these FP/SIMD instructions execute at EL2.
    // They change only FP/SIMD registers, which the soft-float partitioner never uses (the
    // compiler allocates none of them) and which belong to the domain about to run here.
    unsafe {
        core::arch::asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "msr fpcr, xzr",
            "msr fpsr, xzr",
            "movi v0.2d, #0",
            "movi v1.2d, #0",
            "movi v2.2d, #0",
            "movi v3.2d, #0",
            "movi v4.2d, #0",
            "movi v5.2d, #0",
            "movi v6.2d, #0",
            "movi v7.2d, #0",
            "movi v8.2d, #0",
            "movi v9.2d, #0",
            "movi v10.2d, #0",
            "movi v11.2d, #0",
            "movi v12.2d, #0",
            "movi v13.2d, #0",
            "movi v14.2d, #0",
            "movi v15.2d, #0",
            "movi v16.2d, #0",
            "movi v17.2d, #0",
            "movi v18.2d, #0",
            "movi v19.2d, #0",
            "movi v20.2d, #0",
            "movi v21.2d, #0",
            "movi v22.2d, #0",
            "movi v23.2d, #0",
            "movi v24.2d, #0",
            "movi v25.2d, #0",
            "movi v26.2d, #0",
            "movi v27.2d, #0",
            "movi v28.2d, #0",
            "movi v29.2d, #0",
            "movi v30.2d, #0",
            "movi v31.2d, #0",
            options(nomem, nostack, preserves_flags)
        )
    };
}
