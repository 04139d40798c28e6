//! PSCI and SMCCC as a domain sees them: decoding a call and deciding what
//! the answer is. The partitioner answers every call itself and forwards
//! none to the platform firmware; the firmware layer carries out the
//! decisions (starting or stopping cores, restarting a domain).

/// Function identifiers (SMC32 and SMC64 forms where both exist).
pub mod fid {
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
    pub const CPU_OFF: u32 = 0x8400_0002;
    pub const CPU_ON_32: u32 = 0x8400_0003;
    pub const CPU_ON_64: u32 = 0xc400_0003;
    pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
    pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    pub const PSCI_FEATURES: u32 = 0x8400_000a;
}

/// Return codes.
pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const INVALID_PARAMETERS: i64 = -2;
pub const DENIED: i64 = -3;
pub const ALREADY_ON: i64 = -4;
pub const ON_PENDING: i64 = -5;
/// PSCI 1.0 on: the entry point is in no memory the caller has.
pub const INVALID_ADDRESS: i64 = -9;

/// PSCI 1.1.
pub const PSCI_VERSION_VALUE: i64 = 0x1_0001;
/// SMCCC 1.1.
pub const SMCCC_VERSION_VALUE: i64 = 0x1_0001;

/// A call from a domain, decoded from x0..x3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    SmcccVersion,
    /// SMCCC_ARCH_FEATURES of a function: the Arm architecture workarounds
    /// are answered from the core's exposure (`crate::speculation`).
    SmcccArchFeatures(u32),
    Version,
    Features(u32),
    /// Standby or power-down request; answered as standby (wait for an interrupt).
    CpuSuspend,
    CpuOff,
    CpuOn {
        target: u64,
        entry: u64,
        context: u64,
    },
    AffinityInfo {
        target: u64,
        level: u64,
    },
    SystemOff,
    SystemReset,
    /// SMCCC_ARCH_WORKAROUND_1/2/3 (see `crate::speculation`).
    ArchWorkaround(u32),
    /// Anything else: answered NOT_SUPPORTED.
    Unknown(u32),
}

/// Decode a call. SMC32 calls take 32-bit arguments.
pub fn decode(x: [u64; 4]) -> Call {
    let f = x[0] as u32;
    // The upper 32 bits of x0 are ignored for every call (SMCCC: x0 is a W
    // register for the function identifier).
    let arg = |i: usize| {
        if f & 0x4000_0000 == 0 {
            x[i] & 0xffff_ffff
        } else {
            x[i]
        }
    };
    match f {
        fid::SMCCC_VERSION => Call::SmcccVersion,
        fid::SMCCC_ARCH_FEATURES => Call::SmcccArchFeatures(x[1] as u32),
        fid::PSCI_VERSION => Call::Version,
        fid::PSCI_FEATURES => Call::Features(x[1] as u32),
        fid::CPU_SUSPEND_32 | fid::CPU_SUSPEND_64 => Call::CpuSuspend,
        fid::CPU_OFF => Call::CpuOff,
        fid::CPU_ON_32 | fid::CPU_ON_64 => Call::CpuOn {
            target: arg(1),
            entry: arg(2),
            context: arg(3),
        },
        fid::AFFINITY_INFO_32 | fid::AFFINITY_INFO_64 => Call::AffinityInfo {
            target: arg(1),
            level: arg(2),
        },
        fid::SYSTEM_OFF => Call::SystemOff,
        fid::SYSTEM_RESET => Call::SystemReset,
        crate::speculation::ARCH_WORKAROUND_1
        | crate::speculation::ARCH_WORKAROUND_2
        | crate::speculation::ARCH_WORKAROUND_3 => Call::ArchWorkaround(f),
        other => Call::Unknown(other),
    }
}

/// PSCI_FEATURES: 0 for what is implemented, NOT_SUPPORTED otherwise.
pub fn features(f: u32) -> i64 {
    match decode([f as u64, 0, 0, 0]) {
        Call::Unknown(_) | Call::ArchWorkaround(_) => NOT_SUPPORTED,
        // CPU_SUSPEND's feature flags: original power_state format, no OS-initiated mode.
        Call::CpuSuspend => 0,
        _ => SUCCESS,
    }
}

/// The vCPU a domain with `vcpus` vCPUs means by MPIDR `target`: virtual
/// MPIDRs are Aff0 = vCPU index, every other affinity field zero. Anything
/// else names a core the domain does not have.
pub fn vcpu_of(target: u64, vcpus: usize) -> Option<usize> {
    let aff0 = (target & 0xff) as usize;
    let others = target & 0xff_00ff_ff00;
    (others == 0 && aff0 < vcpus).then_some(aff0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_psci_call_and_truncates_smc32_arguments() {
        assert_eq!(
            decode([0x8400_0003, 0xffff_ffff_0000_0001, 0x1_4000_0000, 7]),
            Call::CpuOn {
                target: 1,
                entry: 0x4000_0000,
                context: 7
            }
        );
        assert_eq!(
            decode([0xc400_0003, 1, 0x1_4000_0000, 7]),
            Call::CpuOn {
                target: 1,
                entry: 0x1_4000_0000,
                context: 7
            }
        );
        // x0's upper half does not change the function.
        assert_eq!(decode([0xdead_beef_8400_0008, 0, 0, 0]), Call::SystemOff);
        assert_eq!(decode([0x8400_0009, 0, 0, 0]), Call::SystemReset);
        assert_eq!(
            decode([0xc400_0004, 2, 0, 0]),
            Call::AffinityInfo {
                target: 2,
                level: 0
            }
        );
        assert_eq!(decode([0x8000_0000, 0, 0, 0]), Call::SmcccVersion);
        assert_eq!(decode([0xc200_0000, 0, 0, 0]), Call::Unknown(0xc200_0000));
        assert_eq!(decode([0x8600_0000, 0, 0, 0]), Call::Unknown(0x8600_0000));
    }

    #[test]
    fn features_cover_exactly_the_implemented_calls() {
        for f in [
            fid::SMCCC_VERSION,
            fid::PSCI_VERSION,
            fid::CPU_SUSPEND_64,
            fid::CPU_OFF,
            fid::CPU_ON_64,
            fid::AFFINITY_INFO_64,
            fid::SYSTEM_OFF,
            fid::SYSTEM_RESET,
            fid::PSCI_FEATURES,
        ] {
            assert_eq!(features(f), SUCCESS, "{f:#x}");
        }
        // Vendor-specific, hypervisor-service and migration calls are not offered.
        for f in [
            0xc200_0000,
            0x8600_0000,
            0x8400_0005,
            0x8400_0006,
            0x8400_000c,
        ] {
            assert_eq!(features(f), NOT_SUPPORTED, "{f:#x}");
        }
    }

    #[test]
    fn only_own_vcpus_can_be_named() {
        assert_eq!(vcpu_of(0, 2), Some(0));
        assert_eq!(vcpu_of(1, 2), Some(1));
        assert_eq!(vcpu_of(2, 2), None, "past the last vCPU");
        assert_eq!(vcpu_of(0x100, 2), None, "Aff1 set");
        assert_eq!(vcpu_of(0x1_0000_0000, 2), None, "Aff3 set");
        assert_eq!(
            vcpu_of(0x8000_0000, 2),
            Some(0),
            "bit 31 (RES1 in MPIDR) is ignored"
        );
        // A physical core's MPIDR means nothing special: only the index counts.
        assert_eq!(vcpu_of(3, 2), None);
    }
}
