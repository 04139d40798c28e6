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
    // SAFETY: these registers only decide which EL1/EL0 accesses trap to
    // EL2 and what the domain reads as its identity; none of them changes
    // memory the partitioner relies on. ZCR_EL2/SMCR_EL2 are written only
    // once CPTR_EL2 no longer traps them (and only where implemented).
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
    // Entries from the domain clear the branch history first where the
    // core needs it (Spectre-BHB).
    let e = exposure();
    if e.bhb_loop != 0 {
        crate::exceptions::harden(u64::from(e.bhb_loop));
    }
    VBAR_EL2.set(crate::exceptions::vectors());
    if !SHOWN[core].swap(true, Ordering::AcqRel) {
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
