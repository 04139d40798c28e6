//! This core's EL2 controls while a domain runs: every trap and control
//! register Bulkhead depends on is written explicitly at each vCPU start
//! (values from `bulkhead_core::sysregs`, decided from the core's ID
//! registers), never left at its reset value. See docs/security.md.

use aarch64_cpu::registers::{Writeable, VBAR_EL2};
use bulkhead_core::speculation::{self, Exposure};
use bulkhead_core::sysregs::{self, CpuFeatures, IdRegs};
use core::sync::atomic::{AtomicBool, Ordering};
use log::info;

use bulkhead_core::plan::MAX_CPUS;

macro_rules! mrs {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading an ID or control register at EL2 has no side
        // effects.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

/// The features of the core we run on.
pub fn features() -> CpuFeatures {
    let dfr0 = mrs!("id_aa64dfr0_el1");
    let pmu = (dfr0 >> 8) & 0xf;
    let pfr1 = mrs!("id_aa64pfr1_el1");
    CpuFeatures::from_id(&IdRegs {
        pfr0: mrs!("id_aa64pfr0_el1"),
        pfr1,
        dfr0,
        isar1: mrs!("id_aa64isar1_el1"),
        isar2: mrs!("S3_0_C0_C6_2"),
        mmfr1: mrs!("id_aa64mmfr1_el1"),
        // ID_AA64SMFR0_EL1 exists only with SME.
        smfr0: if (pfr1 >> 24) & 0xf != 0 {
            mrs!("S3_0_C0_C4_5")
        } else {
            0
        },
        // PMCR_EL0 exists only with a PMUv3.
        pmcr: if pmu != 0 && pmu != 0xf {
            mrs!("pmcr_el0")
        } else {
            0
        },
    })
}

/// The speculative-execution exposure of the core we run on.
pub fn exposure() -> Exposure {
    speculation::exposure(
        mrs!("midr_el1"),
        mrs!("id_aa64pfr0_el1"),
        mrs!("id_aa64pfr1_el1"),
        mrs!("id_aa64mmfr1_el1"),
    )
}

static SHOWN: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Program this core's EL2 controls for its domain (HCR_EL2 last: it turns
/// stage 2 and the traps on).
pub fn enter_guest_controls(core: usize) {
    let f = features();
    let midr = mrs!("midr_el1");
    let cptr = sysregs::cptr_el2(&f);
    // SAFETY: these only decide which EL1/EL0 accesses trap to EL2 and what the domain reads as its
    // identity, never memory the partitioner relies on. ZCR_EL2/SMCR_EL2 are written only once
    // CPTR_EL2 no longer traps them (and only where implemented).
    unsafe {
        core::arch::asm!("msr cptr_el2, {}", "isb", in(reg) cptr);
        core::arch::asm!("msr mdcr_el2, {}", in(reg) sysregs::mdcr_el2(&f));
        core::arch::asm!("msr actlr_el2, {}", in(reg) sysregs::ACTLR_EL2);
        core::arch::asm!("msr hstr_el2, {}", in(reg) sysregs::HSTR_EL2);
        core::arch::asm!("msr vpidr_el2, {}", in(reg) midr);
        core::arch::asm!("msr cnthctl_el2, {}", in(reg) sysregs::CNTHCTL_EL2);
        if f.hcx {
            core::arch::asm!("msr S3_4_C1_C2_2, {}", in(reg) sysregs::HCRX_EL2);
        }
        if f.sve {
            core::arch::asm!("msr S3_4_C1_C2_0, {}", in(reg) sysregs::ZCR_EL2);
        }
        if f.sme {
            core::arch::asm!("msr S3_4_C1_C2_6, {}", in(reg) sysregs::smcr_el2(&f));
        }
        core::arch::asm!("isb");
    }
    reset_core_extensions(&f);
    // Entries from the domain clear the branch history first where the
    // core needs it (Spectre-BHB).
    let e = exposure();
    if e.bhb_loop != 0 {
        crate::exceptions::harden(u64::from(e.bhb_loop));
    }
    VBAR_EL2.set(crate::exceptions::vectors());
    if !SHOWN[core].swap(true, Ordering::AcqRel) {
        // Secret-free: this core's EL2 tables hold no domain's RAM now that
        // its domain is loaded (a walk of the tables proves it).
        if crate::mmu::maps_domain_ram(&crate::domain::plan().domains) {
            crate::fatal(format_args!(
                "core {core}: EL2 still maps domain RAM before entering a domain"
            ));
        }
        info!("core {core}: EL2 maps no domain's RAM while domains run (checked)");
        info!(
            "core {core}: speculation: {e}; EL2 vectors {} (VBAR_EL2 read back)",
            if mrs!("vbar_el2") == crate::exceptions::hardened_vectors() {
                "hardened"
            } else {
                "plain"
            }
        );
        info!(
            "core {core}: EL2 controls HCR_EL2={:#x} MDCR_EL2={:#x} CPTR_EL2={:#x} ACTLR_EL2={:#x} HSTR_EL2={:#x} (read back); PMU {}",
            sysregs::hcr_el2_guest(&f),
            mrs!("mdcr_el2"),
            mrs!("cptr_el2"),
            mrs!("actlr_el2"),
            mrs!("hstr_el2"),
            if f.pmu_version == 0 {
                "none"
            } else if f.pmu_for_domains() {
                "the domain's (EL2 not counted)"
            } else {
                "denied (EL2 cannot be kept out of its counters)"
            }
        );
    }
}

/// HCR_EL2 for the domain on this core.
pub fn hcr_el2() -> u64 {
    sysregs::hcr_el2_guest(&features())
}

macro_rules! msr {
    ($name:expr, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: resetting a register of the domain's own core state (PMU,
        // debug, SVE/SME controls) before the domain starts; none of them
        // changes memory the partitioner relies on.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) v, options(nostack)) };
    }};
}

/// Put the core's PMU and SVE/SME state into their cold-boot state, so
/// nothing of a domain's previous life (or of whoever ran on the core
/// before) survives a (re)start: counters stopped and zeroed, their event
/// types and filters cleared, streaming mode and ZA off, every SVE
/// predicate and the first-fault register clear.
/// (The EL1 system registers, debug registers and FP/SIMD are reset by
/// `el1::reset`.)
fn reset_core_extensions(f: &CpuFeatures) {
    if f.pmu_version != 0 {
        // PMCR_EL0: P and C zero every counter; E off.
        msr!("pmcr_el0", 0b110);
        msr!("pmcntenclr_el0", !0);
        msr!("pmintenclr_el1", !0);
        msr!("pmovsclr_el0", !0);
        msr!("pmuserenr_el0", 0);
        msr!("pmccfiltr_el0", 0);
        // Every event counter's event type and filter (PMEVTYPER<n>_EL0,
        // through the selector): a domain with the PMU sets them.
        for n in 0..u64::from(f.pmu_counters) {
            msr!("pmselr_el0", n);
            msr!("pmxevtyper_el0", 0);
        }
        msr!("pmselr_el0", 0);
    }
    if f.sme {
        // SVCR = 0: out of streaming mode (which zeroes the SVE state) and
        // ZA off; SMCR_EL1, SMPRI_EL1 and TPIDR2_EL0 at their reset values.
        msr!("S3_3_C4_C2_2", 0);
        msr!("S3_0_C1_C2_6", 0);
        msr!("S3_0_C1_C2_4", 0);
        msr!("S3_3_C13_C0_5", 0);
    }
    if f.sve {
        msr!("S3_0_C1_C2_0", 0); // ZCR_EL1
                                 // SAFETY: clears the SVE predicate registers and FFR, which only the
                                 // domain (never the partitioner) uses; SVE does not trap at EL2 now.
        unsafe {
            core::arch::asm!(
                ".arch_extension sve",
                "pfalse p0.b",
                "pfalse p1.b",
                "pfalse p2.b",
                "pfalse p3.b",
                "pfalse p4.b",
                "pfalse p5.b",
                "pfalse p6.b",
                "pfalse p7.b",
                "pfalse p8.b",
                "pfalse p9.b",
                "pfalse p10.b",
                "pfalse p11.b",
                "pfalse p12.b",
                "pfalse p13.b",
                "pfalse p14.b",
                "pfalse p15.b",
                "wrffr p0.b",
                options(nomem, nostack)
            )
        };
    }
}
