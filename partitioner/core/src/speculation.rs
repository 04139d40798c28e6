//! Speculative-execution exposure of a core, and the truthful answers to a
//! domain's SMCCC_ARCH_FEATURES queries about the Arm workarounds.
//!
//! A domain never shares its core with another domain, but every exit runs
//! partitioner code on that core, and the partitioner can reach every
//! domain's memory. So a core whose branch history a domain can steer
//! (Spectre-BHB) gets a branch-history clearing loop on every entry to EL2
//! from a domain (the `HARDENED` EL2 vectors). What the partitioner cannot
//! mitigate without platform-firmware help (branch-predictor invalidation
//! for Spectre v2 on Cortex-A57/A72/A73/A75, speculative store bypass
//! control) is reported as not supported, never as done. QEMU models no
//! speculation: these answers describe the core QEMU names.

/// Function identifiers of the Arm architecture workarounds.
pub const ARCH_WORKAROUND_1: u32 = 0x8000_8000;
pub const ARCH_WORKAROUND_2: u32 = 0x8000_7fff;
pub const ARCH_WORKAROUND_3: u32 = 0x8000_3fff;

/// SMCCC return values.
pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const NOT_REQUIRED: i64 = -2;

/// How a core is exposed, and what Bulkhead does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exposure {
    /// Spectre v2 (branch target injection) needs a predictor flush that
    /// only platform firmware can do on this core.
    pub branch_target: bool,
    /// Speculative store bypass (Spectre v4) without a control the domain
    /// has itself (PSTATE.SSBS).
    pub store_bypass: bool,
    /// Iterations of the branch-history clearing loop on entry to EL2 from
    /// a domain (0: not needed).
    pub bhb_loop: u8,
    /// Spectre-BHB exposure that needs platform firmware (not a loop).
    pub bhb_firmware: bool,
}

const ARM: u64 = 0x41;
const A35: u64 = 0xd04;
const A53: u64 = 0xd03;
const A55: u64 = 0xd05;
const A57: u64 = 0xd07;
const A72: u64 = 0xd08;
const A73: u64 = 0xd09;
const A75: u64 = 0xd0a;
const A76: u64 = 0xd0b;
const N1: u64 = 0xd0c;
const A77: u64 = 0xd0d;
const V1: u64 = 0xd40;
const A78: u64 = 0xd41;
const X1: u64 = 0xd44;
const A710: u64 = 0xd47;
const X2: u64 = 0xd48;
const N2: u64 = 0xd49;
const A78C: u64 = 0xd4b;
const A76AE: u64 = 0xd0e;
const A78AE: u64 = 0xd42;
const A510: u64 = 0xd46;
const X1C: u64 = 0xd4c;
const A715: u64 = 0xd4d;
const X3: u64 = 0xd4e;
const V2: u64 = 0xd4f;
const A520: u64 = 0xd80;
const A720: u64 = 0xd81;
/// Other implementers' cores with a Spectre-BHB loop.
const QUALCOMM: u64 = 0x51;
const KRYO_4XX_GOLD: u64 = 0x804;
const AMPERE: u64 = 0xc0;
const AMPERE1: u64 = 0xac3;

/// Iterations of the branch-history clearing loop a core needs (Arm's
/// Spectre-BHB guidance, the same lists as Linux's), by implementer and
/// part number; 0 for a core not listed.
fn bhb_loop_for(implementer: u64, part: u64) -> u8 {
    match (implementer, part) {
        (ARM, X3 | V2) => 132,
        (ARM, A715 | A720) => 38,
        (ARM, A78 | A78AE | A78C | X1 | X1C | A710 | X2 | N2 | V1) => 32,
        (ARM, A76 | A76AE | A77 | N1) | (QUALCOMM, KRYO_4XX_GOLD) => 24,
        (AMPERE, AMPERE1) => 11,
        (ARM, A57 | A72) => 8,
        _ => 0,
    }
}

/// The exposure of a core, from MIDR_EL1, ID_AA64PFR0_EL1,
/// ID_AA64PFR1_EL1 and ID_AA64MMFR1_EL1.
pub fn exposure(midr: u64, pfr0: u64, pfr1: u64, mmfr1: u64) -> Exposure {
    let arm = (midr >> 24) & 0xff == ARM;
    let part = if arm { (midr >> 4) & 0xfff } else { 0 };
    let csv2 = (pfr0 >> 56) & 0xf;
    let ssbs = (pfr1 >> 4) & 0xf != 0;
    let ecbhb = (mmfr1 >> 60) & 0xf != 0;
    let in_order = matches!(part, A35 | A53 | A55);
    let branch_target = csv2 == 0 && matches!(part, A57 | A72 | A73 | A75);
    let store_bypass = !ssbs && !in_order && (arm || csv2 == 0);
    // Not exposed to Spectre-BHB: the core says so (ECBHB, CSV2_3), or it
    // is one Arm lists as safe (in-order cores). Any other core either has
    // a known loop or is taken as exposed: a core missing from the lists
    // (a newer one, another implementer's) is never called unaffected.
    let bhb_safe = ecbhb || csv2 >= 3 || matches!(part, A35 | A53 | A55 | A510 | A520);
    let bhb_loop = if bhb_safe {
        0
    } else {
        bhb_loop_for((midr >> 24) & 0xff, (midr >> 4) & 0xfff)
    };
    let bhb_firmware = !bhb_safe && bhb_loop == 0;
    Exposure {
        branch_target,
        store_bypass,
        bhb_loop,
        bhb_firmware,
    }
}

impl core::fmt::Display for Exposure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const FIRMWARE: &str = "exposed (needs platform firmware)";
        match (self.bhb_loop, self.bhb_firmware) {
            (0, false) => write!(f, "Spectre-BHB not affected")?,
            (0, true) => write!(f, "Spectre-BHB {FIRMWARE}")?,
            (k, _) => write!(
                f,
                "Spectre-BHB cleared by a {}-branch loop on every entry from a domain",
                u64::from(k)
            )?,
        }
        let state = |exposed: bool| if exposed { FIRMWARE } else { "not affected" };
        write!(
            f,
            "; Spectre v2 {}; speculative store bypass {}",
            state(self.branch_target),
            state(self.store_bypass)
        )
    }
}

/// SMCCC_ARCH_FEATURES of workaround `fid` on a core with exposure `e`:
/// `SUCCESS` where calling it mitigates (Bulkhead's EL2 entry already
/// does the work, so the call itself is a no-op), `NOT_REQUIRED` where the
/// core is not affected, `NOT_SUPPORTED` where it is affected and Bulkhead
/// cannot mitigate it. `None` for other functions.
pub fn arch_features(fid: u32, e: &Exposure) -> Option<i64> {
    Some(match fid {
        ARCH_WORKAROUND_1 if e.branch_target => NOT_SUPPORTED,
        ARCH_WORKAROUND_1 => NOT_REQUIRED,
        ARCH_WORKAROUND_2 if e.store_bypass => NOT_SUPPORTED,
        ARCH_WORKAROUND_2 => NOT_REQUIRED,
        ARCH_WORKAROUND_3 if e.bhb_firmware => NOT_SUPPORTED,
        ARCH_WORKAROUND_3 if e.bhb_loop != 0 => SUCCESS,
        ARCH_WORKAROUND_3 => NOT_REQUIRED,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A72_MIDR: u64 = 0x410f_d083;
    const A53_MIDR: u64 = 0x410f_d034;
    /// QEMU's `max`: implementer 0, CSV2 = 2... with ECBHB and SSBS.
    const MAX_MIDR: u64 = 0x000f_0510;

    #[test]
    fn cortex_a72_gets_the_bhb_loop_and_honest_answers() {
        let e = exposure(A72_MIDR, 0x2222, 0, 0);
        assert_eq!(e.bhb_loop, 8);
        assert!(e.branch_target && e.store_bypass);
        assert_eq!(arch_features(ARCH_WORKAROUND_1, &e), Some(NOT_SUPPORTED));
        assert_eq!(arch_features(ARCH_WORKAROUND_2, &e), Some(NOT_SUPPORTED));
        assert_eq!(arch_features(ARCH_WORKAROUND_3, &e), Some(SUCCESS));
        assert_eq!(arch_features(0x8000_0000, &e), None);
        extern crate std;
        assert_eq!(
            std::format!("{e}"),
            "Spectre-BHB cleared by a 8-branch loop on every entry from a domain; \
             Spectre v2 exposed (needs platform firmware); \
             speculative store bypass exposed (needs platform firmware)"
        );
    }

    #[test]
    fn unaffected_cores_are_not_required() {
        let a53 = exposure(A53_MIDR, 0x2222, 0, 0);
        for f in [ARCH_WORKAROUND_1, ARCH_WORKAROUND_2, ARCH_WORKAROUND_3] {
            assert_eq!(arch_features(f, &a53), Some(NOT_REQUIRED), "{f:#x}");
        }
        // CSV2 = 3 and ECBHB, SSBS: nothing to do.
        let max = exposure(MAX_MIDR, 3 << 56, 2 << 4, 1 << 60);
        for f in [ARCH_WORKAROUND_1, ARCH_WORKAROUND_2, ARCH_WORKAROUND_3] {
            assert_eq!(arch_features(f, &max), Some(NOT_REQUIRED), "{f:#x}");
        }
        // An A72 revision with CSV2 is not exposed to Spectre v2.
        assert!(!exposure(A72_MIDR, 1 << 56, 0, 0).branch_target);
    }

    #[test]
    fn every_listed_core_gets_its_loop() {
        let midr = |implementer: u64, part: u64| (implementer << 24) | (0xf << 16) | (part << 4);
        for (implementer, part, k) in [
            (ARM, A78AE, 32),
            (ARM, X1C, 32),
            (ARM, A76AE, 24),
            (ARM, A715, 38),
            (ARM, A720, 38),
            (ARM, X3, 132),
            (ARM, V2, 132),
            (QUALCOMM, KRYO_4XX_GOLD, 24),
            (AMPERE, AMPERE1, 11),
        ] {
            let e = exposure(midr(implementer, part), 0, 0, 0);
            assert_eq!(e.bhb_loop, k, "{implementer:#x}:{part:#x}");
            assert_eq!(arch_features(ARCH_WORKAROUND_3, &e), Some(SUCCESS));
        }
        // The core's own word (ECBHB) ends the loop.
        assert_eq!(exposure(midr(ARM, X3), 0, 0, 1 << 60).bhb_loop, 0);
    }

    #[test]
    fn a_core_missing_from_the_lists_is_not_called_unaffected() {
        // Another implementer's core without CSV2_3 or ECBHB.
        let other = exposure(0x4e0f_0040, 0, 0, 0);
        assert_eq!(other.bhb_loop, 0);
        assert!(other.bhb_firmware);
        assert_eq!(
            arch_features(ARCH_WORKAROUND_3, &other),
            Some(NOT_SUPPORTED)
        );
        // The in-order cores Arm lists as safe are.
        for part in [A35, A53, A55, A510, A520] {
            let e = exposure((ARM << 24) | (part << 4), 0, 0, 0);
            assert_eq!(arch_features(ARCH_WORKAROUND_3, &e), Some(NOT_REQUIRED));
        }
    }

    #[test]
    fn firmware_mitigated_bhb_is_not_claimed() {
        let a75 = exposure(0x410f_d0a1, 0, 0, 0);
        assert_eq!(a75.bhb_loop, 0);
        assert_eq!(arch_features(ARCH_WORKAROUND_3, &a75), Some(NOT_SUPPORTED));
    }
}
