//! Decisions about a vCPU's start and a domain's restart: the state a vCPU's
//! virtual CPU interface starts with, which optional EL1 registers a CPU
//! has (and so must be reset), and what to do when the platform's PSCI
//! refuses to power a core on.
//!
//! Every vCPU start (a domain's boot or restart, or a PSCI CPU_ON from the
//! domain) must give the domain exactly the state of a cold boot: nothing a
//! previous run (or the vCPU's previous life) left in a register may
//! survive. The firmware's `domain::launch` carries this out.

use crate::plan::GicVersion;

/// Fields of ICH_VMCR_EL2 (GICv3) and GICH_VMCR (GICv2), same positions on
/// both for the ones used here.
pub const VMCR_VFIQEN: u64 = 1 << 3;
const VMCR_VBPR1_SHIFT: u32 = 18;
const VMCR_VBPR0_SHIFT: u32 = 21;

/// ICH_VTR_EL2 / GICH_VTR: PREbits, the number of virtual preemption bits
/// minus one, in bits \[28:26\].
fn preemption_bits(vtr: u64) -> u32 {
    (((vtr >> 26) & 0b111) + 1) as u32
}

/// The smallest binary point of group 0 (and, plus one, of group 1) the
/// virtual CPU interface has: 7 minus its preemption bits. A binary point
/// resets to its minimum.
pub fn min_vbpr0(vtr: u64) -> u64 {
    7u64.saturating_sub(u64::from(preemption_bits(vtr)))
}

/// The value of ICH_VMCR_EL2 (GICv3) or GICH_VMCR (GICv2) a vCPU starts
/// with, as the virtual CPU interface is at a cold reset: both groups
/// disabled, priority mask 0, binary points at their minimum (group 1's one
/// above group 0's), no common binary point, EOImode 0, no AckCtl. GICv3's
/// VFIQEn is set: with system registers (the only interface a GICv3 domain
/// gets) it is RES1.
pub fn vmcr_reset(version: GicVersion, vtr: u64) -> u64 {
    let bpr0 = min_vbpr0(vtr);
    let bprs = (bpr0 << VMCR_VBPR0_SHIFT) | ((bpr0 + 1).min(7) << VMCR_VBPR1_SHIFT);
    match version {
        GicVersion::V3 => bprs | VMCR_VFIQEN,
        GicVersion::V2 => bprs,
    }
}

/// How many active-priority registers of each group the virtual CPU
/// interface has: ICH_AP0R<n>_EL2 / ICH_AP1R<n>_EL2 for n below this on
/// GICv3 (one for 5 preemption bits, two for 6, four for 7); GICv2 has the
/// single GICH_APR.
pub fn active_priority_registers(version: GicVersion, vtr: u64) -> usize {
    match version {
        GicVersion::V3 => match preemption_bits(vtr) {
            0..=5 => 1,
            6 => 2,
            _ => 4,
        },
        GicVersion::V2 => 1,
    }
}

/// Which pointer-authentication keys the CPU has, from ID_AA64ISAR1_EL1
/// (APA \[7:4\], API \[11:8\], GPA \[27:24\], GPI \[31:28\]) and
/// ID_AA64ISAR2_EL1 (GPA3 \[11:8\], APA3 \[15:12\]; it reads as zero on CPUs
/// that predate it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PointerAuth {
    /// APIA, APIB, APDA and APDB keys.
    pub address_keys: bool,
    /// The APGA key.
    pub generic_key: bool,
}

pub fn pointer_auth(isar1: u64, isar2: u64) -> PointerAuth {
    let field = |v: u64, shift: u32| (v >> shift) & 0xf != 0;
    PointerAuth {
        address_keys: field(isar1, 4) || field(isar1, 8) || field(isar2, 12),
        generic_key: field(isar1, 24) || field(isar1, 28) || field(isar2, 8),
    }
}

/// Whether the CPU has the RAS extension, from ID_AA64PFR0_EL1 (RAS
/// \[31:28\]): then a domain's EL1 reads and writes DISR_EL1 as
/// VDISR_EL2 (HCR_EL2.AMO), which a vCPU start must reset.
pub fn has_ras(pfr0: u64) -> bool {
    (pfr0 >> 28) & 0xf != 0
}

/// Number of breakpoint and watchpoint register pairs, from
/// ID_AA64DFR0_EL1 (BRPs \[15:12\] and WRPs \[23:20\], each the count minus one).
pub fn debug_register_pairs(dfr0: u64) -> (usize, usize) {
    (
        ((dfr0 >> 12) & 0xf) as usize + 1,
        ((dfr0 >> 20) & 0xf) as usize + 1,
    )
}

/// PSCI return codes of the platform firmware a power-on can meet.
pub const PLATFORM_ALREADY_ON: i64 = crate::psci::ALREADY_ON;
pub const PLATFORM_ON_PENDING: i64 = crate::psci::ON_PENDING;
/// PSCI INTERNAL_FAILURE: what a domain's CPU_ON gets when its core never
/// came (see [`power_on_outcome`]).
pub const INTERNAL_FAILURE: i64 = -6;

/// What to do after the platform's PSCI CPU_ON of a core answered `ret`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOn {
    /// The core is starting.
    Started,
    /// The core is still on its way off (a vCPU marks itself off just
    /// before its own physical CPU_OFF, so the platform may still see it
    /// on, or its previous power-on pending): try again.
    Retry,
    /// The platform refused for good.
    Failed,
}

/// Most attempts at powering a core on that is still finishing its CPU_OFF.
/// A core takes a few hundred instructions from marking its vCPU off to its
/// CPU_OFF; the firmware waits about a millisecond between attempts, so
/// this allows a core far more than that, even on a loaded host.
pub const POWER_ON_ATTEMPTS: u32 = 5000;

/// Decide on the `attempt`-th (from 1) answer `ret` of the platform's CPU_ON.
pub fn power_on_outcome(ret: i64, attempt: u32) -> PowerOn {
    match ret {
        0 => PowerOn::Started,
        PLATFORM_ALREADY_ON | PLATFORM_ON_PENDING if attempt < POWER_ON_ATTEMPTS => PowerOn::Retry,
        _ => PowerOn::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU's virtual CPU interfaces: 5 priority and 5 preemption bits
    /// (PRIbits = PREbits = 4), GICv3 with 4 list registers.
    const QEMU_VTR: u64 = (4 << 29) | (4 << 26) | 3;

    #[test]
    fn vmcr_resets_to_the_cold_state() {
        let v3 = vmcr_reset(GicVersion::V3, QEMU_VTR);
        assert_eq!(v3 >> 24, 0, "priority mask 0");
        assert_eq!(v3 & 0b11, 0, "both groups disabled");
        assert_eq!(v3 & (1 << 9), 0, "EOImode 0");
        assert_eq!(v3 & (1 << 4), 0, "no common binary point");
        assert_eq!(v3 & (1 << 2), 0, "no AckCtl");
        assert_ne!(v3 & VMCR_VFIQEN, 0, "VFIQEn is RES1 with system registers");
        assert_eq!((v3 >> 21) & 7, 2, "group 0 binary point at its minimum");
        assert_eq!((v3 >> 18) & 7, 3, "group 1 binary point one above");
        let v2 = vmcr_reset(GicVersion::V2, QEMU_VTR);
        assert_eq!(v2, v3 & !VMCR_VFIQEN);
        // 7 preemption bits: binary point 0 possible.
        assert_eq!(min_vbpr0(6 << 26), 0);
        assert_eq!((vmcr_reset(GicVersion::V3, 6 << 26) >> 18) & 0x3f, 1);
    }

    #[test]
    fn active_priority_registers_follow_the_preemption_bits() {
        assert_eq!(active_priority_registers(GicVersion::V3, QEMU_VTR), 1);
        assert_eq!(active_priority_registers(GicVersion::V3, 5 << 26), 2);
        assert_eq!(active_priority_registers(GicVersion::V3, 6 << 26), 4);
        assert_eq!(active_priority_registers(GicVersion::V2, 6 << 26), 1);
    }

    #[test]
    fn pointer_auth_from_id_registers() {
        let none = PointerAuth {
            address_keys: false,
            generic_key: false,
        };
        assert_eq!(pointer_auth(0, 0), none, "cortex-a72");
        // QEMU max: APA = 5 (QARMA5), GPA = 1.
        let max = pointer_auth((5 << 4) | (1 << 24), 0);
        assert!(max.address_keys && max.generic_key);
        // Implementation-defined algorithm (API/GPI) and QARMA3 (ISAR2).
        assert!(pointer_auth(1 << 8, 0).address_keys);
        assert!(pointer_auth(1 << 28, 0).generic_key);
        assert!(pointer_auth(0, 1 << 12).address_keys);
        assert!(pointer_auth(0, 1 << 8).generic_key);
        assert!(!pointer_auth(0, 1 << 8).address_keys);
        // Other fields (e.g. DPB, JSCVT, LRCPC) mean nothing here.
        assert_eq!(pointer_auth(0xf | (0xf << 12) | (0xf << 16), 0), none);
    }

    #[test]
    fn ras_from_pfr0() {
        // cortex-a72: EL0-EL3 AArch64/AArch32, FP, AdvSIMD, no RAS.
        assert!(!has_ras(0x2222));
        // QEMU max: RAS v1p1 (2) among everything else.
        assert!(has_ras(0x1201_1111_1111_2222));
        assert!(has_ras(1 << 28));
        assert!(!has_ras((0xf << 24) | (0xf << 32)), "neighbouring fields");
    }

    #[test]
    fn debug_pairs() {
        // cortex-a72: 6 breakpoints, 4 watchpoints.
        assert_eq!(debug_register_pairs((5 << 12) | (3 << 20)), (6, 4));
        assert_eq!(debug_register_pairs(0), (1, 1));
    }

    #[test]
    fn a_core_still_going_off_is_retried_then_given_up() {
        assert_eq!(power_on_outcome(0, 1), PowerOn::Started);
        assert_eq!(power_on_outcome(-4, 1), PowerOn::Retry);
        assert_eq!(power_on_outcome(-5, 7), PowerOn::Retry);
        assert_eq!(power_on_outcome(-4, POWER_ON_ATTEMPTS - 1), PowerOn::Retry);
        assert_eq!(power_on_outcome(-4, POWER_ON_ATTEMPTS), PowerOn::Failed);
        assert_eq!(
            power_on_outcome(-2, 1),
            PowerOn::Failed,
            "INVALID_PARAMETERS"
        );
        assert_eq!(power_on_outcome(-3, 1), PowerOn::Failed, "DENIED");
    }
}
