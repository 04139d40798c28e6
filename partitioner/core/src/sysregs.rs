//! Values of the EL2 control registers the firmware programs, computed here
//! (with `aarch64-cpu`'s field definitions) so they are unit-tested on the host.
//! The firmware writes them verbatim.

use crate::pagetable::{mair_el2, INPUT_BITS, PAGE};
use aarch64_cpu::registers::{HCR_EL2, MDCR_EL2, SCTLR_EL2, TCR_EL2, VTCR_EL2};
use tock_registers::fields::FieldValue;

fn v<R: tock_registers::RegisterLongName>(f: FieldValue<u64, R>) -> u64 {
    f.value
}

/// What the core implements, as far as Bulkhead's EL2 settings depend on
/// it, read from its ID registers (the firmware reads them at each vCPU
/// start; host tests build them from known cores' values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// ID_AA64DFR0_EL1.PMUVer: 0 none, 1 PMUv3, 4 v3p1, 5 v3p4, 6 v3p5, ...
    /// (0xf, an IMPLEMENTATION DEFINED PMU, is stored as 0).
    pub pmu_version: u8,
    /// PMCR_EL0.N: event counters.
    pub pmu_counters: u8,
    pub sve: bool,
    pub sme: bool,
    /// SME's FEAT_SME_FA64 and SME2 (ZT0).
    pub sme_fa64: bool,
    pub sme2: bool,
    /// Pointer authentication (any algorithm, address or generic keys).
    pub pauth: bool,
    pub ras: bool,
    pub amu: bool,
    /// Statistical profiling (FEAT_SPE).
    pub spe: bool,
    /// Trace filter control (FEAT_TRF).
    pub trace_filter: bool,
    /// HCRX_EL2 (FEAT_HCX).
    pub hcx: bool,
}

/// The ID registers [`CpuFeatures::from_id`] reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdRegs {
    pub pfr0: u64,
    pub pfr1: u64,
    pub dfr0: u64,
    pub isar1: u64,
    pub isar2: u64,
    pub mmfr1: u64,
    pub smfr0: u64,
    /// PMCR_EL0 (its N field), read at EL2.
    pub pmcr: u64,
}

fn field(v: u64, lsb: u32) -> u8 {
    ((v >> lsb) & 0xf) as u8
}

impl CpuFeatures {
    pub fn from_id(id: &IdRegs) -> CpuFeatures {
        let pmu = field(id.dfr0, 8);
        let pmu_version = if pmu == 0xf { 0 } else { pmu };
        let sme = field(id.pfr1, 24) != 0;
        CpuFeatures {
            pmu_version,
            pmu_counters: if pmu_version == 0 {
                0
            } else {
                ((id.pmcr >> 11) & 0x1f) as u8
            },
            sve: field(id.pfr0, 32) != 0,
            sme,
            sme_fa64: sme && id.smfr0 & (1 << 63) != 0,
            sme2: sme && field(id.pfr1, 24) >= 2,
            pauth: {
                let p = crate::lifecycle::pointer_auth(id.isar1, id.isar2);
                p.address_keys || p.generic_key
            },
            ras: field(id.pfr0, 28) != 0,
            amu: field(id.pfr0, 44) != 0,
            spe: field(id.dfr0, 32) != 0,
            trace_filter: field(id.dfr0, 40) != 0,
            hcx: field(id.mmfr1, 40) != 0,
        }
    }

    /// A domain may use its core's PMU only where EL2 can keep its own
    /// execution out of every counter: FEAT_PMUv3p5 (MDCR_EL2.HPMD for the
    /// event counters, HCCD for the cycle counter). On older PMUs a domain
    /// could count the partitioner's cycles, including time spent on other
    /// domains' behalf (lock contention), so the PMU is denied there.
    pub fn pmu_for_domains(&self) -> bool {
        self.pmu_version >= 6
    }
}

/// HCR_EL2 while a domain runs: stage 2 on, EL1 is AArch64, physical
/// IRQ/FIQ/SError go to EL2 (so the domain only ever sees the virtual GIC CPU
/// interface), SMC traps (the domain never reaches platform firmware),
/// TLB and cache maintenance broadcast inner shareable. Also trapped:
/// set/way cache maintenance (TSW: on a shared cache it would reach other
/// domains' lines; emulated on the domain's own memory), implementation
/// defined system registers and ACTLR_EL1 (TIDCP, TACR: on Cortex-A53/A72
/// they reach cluster-wide controls such as CPUECTLR.SMPEN and L2CTLR), and
/// RAS error records (TERR: shared error nodes). Pointer authentication is
/// the domain's own (API, APK: its keys are EL1 registers of its own core).
pub fn hcr_el2_guest(f: &CpuFeatures) -> u64 {
    let mut h = HCR_EL2::VM::Enable
        + HCR_EL2::RW::EL1IsAarch64
        + HCR_EL2::IMO::EnableVirtualIRQ
        + HCR_EL2::FMO::EnableVirtualFIQ
        + HCR_EL2::AMO::SET
        + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
        + HCR_EL2::FB::SET
        + HCR_EL2::BSU::InnerShareable
        + HCR_EL2::TSW::SET
        + HCR_EL2::TACR::SET
        + HCR_EL2::TIDCP::SET;
    if f.ras {
        h += HCR_EL2::TERR::SET;
    }
    if f.pauth {
        h += HCR_EL2::API::SET + HCR_EL2::APK::SET;
    }
    v(h)
}

/// MDCR_EL2: the domain's debug and performance monitors.
/// - Every PMU event counter belongs to the domain (HPMN = PMCR_EL0.N) and
///   none counts at EL2 (HPMD, HCCD), where the PMU is FEAT_PMUv3p5 or
///   later; otherwise every PMU register traps (TPM, TPMCR) and reads as
///   zero (see [`CpuFeatures::pmu_for_domains`]).
/// - Self-hosted breakpoints and watchpoints stay the domain's (its core is
///   its own); the OS lock and power-down registers (TDOSA, which reach the
///   core's power controller) and the debug ROM address (TDRA) trap.
/// - Trace filter (TTRF) and statistical profiling (TPMS, buffer owned by
///   EL2) registers trap where implemented.
/// - EL2 itself has no PMU counters (HPME clear) and debug exceptions stay
///   at EL1 (TDE clear).
pub fn mdcr_el2(f: &CpuFeatures) -> u64 {
    let mut m =
        MDCR_EL2::HPMN.val(u64::from(f.pmu_counters)) + MDCR_EL2::TDOSA::SET + MDCR_EL2::TDRA::SET;
    if f.pmu_version != 0 {
        if f.pmu_for_domains() {
            m += MDCR_EL2::HPMD::SET + MDCR_EL2::HCCD::SET;
        } else {
            m += MDCR_EL2::TPM::SET + MDCR_EL2::TPMCR::SET;
        }
    }
    if f.trace_filter {
        m += MDCR_EL2::TTRF::SET;
    }
    if f.spe {
        m += MDCR_EL2::TPMS::SET;
    }
    v(m)
}

/// CPTR_EL2 (without VHE): FP/SIMD never traps (TFP clear; the partitioner
/// is built soft-float and never touches FP state), nor SVE (TZ) or SME
/// (TSM) where the core has them: the core is the domain's alone, and
/// their state is reset at every vCPU start. Trace registers (TTA) and
/// activity monitors (TAM) trap.
pub fn cptr_el2(f: &CpuFeatures) -> u64 {
    // RES1: bits 13, 12 (TSM without SME), 9, 8 (TZ without SVE), 7:0.
    let mut c: u64 = 0x33ff | (1 << 20);
    if f.sve {
        c &= !(1 << 8);
    }
    if f.sme {
        c &= !(1 << 12);
    }
    if f.amu {
        c |= 1 << 30;
    }
    c
}

/// ZCR_EL2 / SMCR_EL2: the domain may use the core's longest vector
/// length (LEN = 15 is constrained to what is implemented); SMCR_EL2 also
/// lets it use the full A64 instruction set in streaming mode (FA64) and
/// ZT0 (SME2) where they exist.
pub const ZCR_EL2: u64 = 0xf;
pub fn smcr_el2(f: &CpuFeatures) -> u64 {
    let mut s = 0xf;
    if f.sme_fa64 {
        s |= 1 << 31;
    }
    if f.sme2 {
        s |= 1 << 30;
    }
    s
}

/// ACTLR_EL2: zero, so EL1 has no write access to the Cortex-A53/A72
/// implementation defined controls (CPUACTLR, CPUECTLR, L2CTLR, L2ECTLR,
/// L2ACTLR: bits 0, 1, 4, 5, 6), whatever the reset value.
pub const ACTLR_EL2: u64 = 0;
/// HSTR_EL2: no AArch32 coprocessor traps (EL1 is AArch64 only).
pub const HSTR_EL2: u64 = 0;
/// HCRX_EL2 (FEAT_HCX): every extended control off.
pub const HCRX_EL2: u64 = 0;

/// VTCR_EL2: 4 KiB granule, 39-bit IPA (walk starts at level 1), 40-bit
/// output, inner-shareable write-back table walks, 16-bit VMID.
pub fn vtcr_el2() -> u64 {
    v(VTCR_EL2::RES1::SET
        + VTCR_EL2::VS::Bits16
        + VTCR_EL2::PS::PA_40B_1TB
        + VTCR_EL2::TG0::Granule4KB
        + VTCR_EL2::SH0::Inner
        + VTCR_EL2::ORGN0::NormalWBRAWA
        + VTCR_EL2::IRGN0::NormalWBRAWA
        + VTCR_EL2::SL0::Granule4KBLevel1
        + VTCR_EL2::T0SZ.val(64 - INPUT_BITS as u64))
}

/// VTTBR_EL2 for a domain: its table root and its VMID. (Computed whole:
/// `aarch64-cpu`'s `set_baddr` would zero the VMID.)
pub fn vttbr_el2(root: u64, vmid: u16) -> u64 {
    debug_assert!(root.is_multiple_of(PAGE));
    ((vmid as u64) << 48) | (root & 0x0000_ffff_ffff_fffe)
}

/// TCR_EL2 for the partitioner's own identity map: same geometry as stage 2.
pub fn tcr_el2() -> u64 {
    // RES1 bits 31 and 23.
    (1 << 31)
        | (1 << 23)
        | v(TCR_EL2::PS::Bits_40
            + TCR_EL2::TG0::KiB_4
            + TCR_EL2::SH0::Inner
            + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL2::T0SZ.val(64 - INPUT_BITS as u64))
}

/// MAIR_EL2, matching the descriptors `pagetable` builds.
pub fn mair() -> u64 {
    mair_el2()
}

/// SCTLR_EL2 with the MMU on: caches on, alignment checks off, stack
/// alignment checks on, and WXN so no writable page is ever executable.
pub fn sctlr_el2_mmu_on() -> u64 {
    // RES1: bits 4, 5, 11, 16, 18, 22, 23, 28, 29.
    let res1 = (1 << 4)
        | (1 << 5)
        | (1 << 11)
        | (1 << 16)
        | (1 << 18)
        | (1 << 22)
        | (1 << 23)
        | (1 << 28)
        | (1 << 29);
    res1 | v(SCTLR_EL2::M::Enable
        + SCTLR_EL2::C::Cacheable
        + SCTLR_EL2::I::Cacheable
        + SCTLR_EL2::SA::Enable
        + SCTLR_EL2::WXN::Enable)
}

/// SCTLR_EL1 a domain starts with: MMU and caches off, RES1 bits set.
pub const SCTLR_EL1_RESET: u64 =
    (1 << 11) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29);

/// CNTHCTL_EL2: EL1 may read the physical counter (EL1PCTEN) but not use
/// the physical timer (EL1PCEN clear: its registers trap to EL2, where they
/// read as zero and ignore writes). Each domain uses its EL1 virtual timer,
/// whose interrupt is passed to the vCPU; with CNTVOFF_EL2 = 0 the virtual
/// counter equals the physical one, so every domain sees the machine's time.
pub const CNTHCTL_EL2: u64 = 0b01;

#[cfg(test)]
mod tests {
    use super::*;

    /// ID register values of QEMU's cortex-a72 (PMUv3, no SVE, no PAuth)
    /// and of `-cpu max` (PMUv3p5+, SVE, SME, PAuth, RAS).
    fn a72() -> CpuFeatures {
        CpuFeatures::from_id(&IdRegs {
            pfr0: 0x0000_0000_0000_2222,
            pfr1: 0,
            dfr0: 0x0000_0000_1030_5106,
            pmcr: 6 << 11,
            ..IdRegs::default()
        })
    }
    fn max() -> CpuFeatures {
        CpuFeatures::from_id(&IdRegs {
            pfr0: 0x1201_1111_1111_2222,
            pfr1: 0x0000_0000_1100_0221,
            dfr0: 0x0000_0000_f010_f709,
            isar1: 0x0011_2110_2123_1121,
            isar2: 0x0000_0000_0000_5000,
            mmfr1: 0x1001_0111_1112_1122,
            smfr0: 1 << 63,
            pmcr: 6 << 11,
        })
    }

    #[test]
    fn features_from_id_registers() {
        let a = a72();
        assert_eq!((a.pmu_version, a.pmu_counters), (1, 6));
        assert!(!a.sve && !a.sme && !a.pauth && !a.ras && !a.hcx);
        assert!(!a.pmu_for_domains());
        let m = max();
        assert!(m.sve && m.sme && m.sme_fa64 && m.pauth && m.ras && m.hcx);
        assert!(m.pmu_for_domains());
    }

    #[test]
    fn hcr_traps_what_isolation_needs() {
        let h = hcr_el2_guest(&a72());
        assert_eq!(h & 1, 1, "VM");
        assert_ne!(h & (1 << 31), 0, "RW: EL1 AArch64");
        assert_eq!(h & (0b111 << 3), 0b111 << 3, "FMO, IMO, AMO");
        assert_ne!(h & (1 << 19), 0, "TSC");
        assert_eq!(h & (1 << 27), 0, "TGE must be off");
        assert_eq!(h & (1 << 34), 0, "E2H must be off");
        assert_ne!(h & (1 << 22), 0, "TSW: set/way maintenance traps");
        assert_ne!(h & (1 << 21), 0, "TACR");
        assert_ne!(h & (1 << 20), 0, "TIDCP");
        assert_eq!(h & (0b11 << 40), 0, "no PAuth: API/APK stay RES0");
        let m = hcr_el2_guest(&max());
        assert_eq!(m & (0b11 << 40), 0b11 << 40, "PAuth is the domain's");
        assert_ne!(m & (1 << 36), 0, "TERR with RAS");
    }

    #[test]
    fn pmu_is_denied_unless_el2_can_be_excluded() {
        let a = mdcr_el2(&a72());
        assert_eq!(a & 0x1f, 6, "HPMN: every counter");
        assert_eq!(a & (0b11 << 5), 0b11 << 5, "TPM and TPMCR on PMUv3");
        assert_eq!(a & (1 << 17), 0, "HPMD is RES0 before PMUv3p1");
        assert_ne!(a & (1 << 10), 0, "TDOSA");
        assert_ne!(a & (1 << 11), 0, "TDRA");
        assert_eq!(a & (0b111 << 7), 0, "TDA, TDE, HPME clear");
        let m = mdcr_el2(&max());
        assert_eq!(m & (0b11 << 5), 0, "the domain's PMU on PMUv3p5");
        assert_ne!(m & (1 << 17), 0, "HPMD");
        assert_ne!(m & (1 << 23), 0, "HCCD");
    }

    #[test]
    fn cptr_gives_fp_sve_sme_and_traps_trace() {
        let a = cptr_el2(&a72());
        assert_eq!(a & (1 << 10), 0, "TFP clear");
        assert_eq!(a & (1 << 8), 1 << 8, "TZ RES1 without SVE");
        assert_ne!(a & (1 << 20), 0, "TTA");
        let m = cptr_el2(&max());
        assert_eq!(m & ((1 << 8) | (1 << 12) | (1 << 10)), 0, "SVE, SME, FP");
        assert_eq!(smcr_el2(&max()) >> 31, 1, "FA64");
    }

    #[test]
    fn vtcr_matches_the_table_format() {
        let t = vtcr_el2();
        assert_eq!(t & 0x3f, 25, "T0SZ for 39 bits");
        assert_eq!((t >> 6) & 3, 1, "SL0: start at level 1");
        assert_eq!((t >> 14) & 3, 0, "4 KiB granule");
        assert_eq!((t >> 16) & 7, 0b010, "40-bit PA");
        assert_ne!(t & (1 << 19), 0, "16-bit VMID");
        assert_ne!(t & (1 << 31), 0, "RES1");
    }

    #[test]
    fn vttbr_keeps_the_vmid() {
        assert_eq!(vttbr_el2(0x4030_5000, 3), (3 << 48) | 0x4030_5000);
        assert_eq!(vttbr_el2(0x4030_5000, 0xffff) >> 48, 0xffff);
    }

    #[test]
    fn el2_mmu_enforces_write_xor_execute() {
        let s = sctlr_el2_mmu_on();
        assert_ne!(s & (1 << 19), 0, "WXN");
        assert_eq!(s & 0b111, 0b101, "M and C on, A off");
        assert_eq!(tcr_el2() & 0x3f, 25);
    }
}
