//! Values of the EL2 control registers the firmware programs, computed here
//! (with `aarch64-cpu`'s field definitions) so they are unit-tested on the host.
//! The firmware writes them verbatim.

use crate::pagetable::{mair_el2, INPUT_BITS, PAGE};
use aarch64_cpu::registers::{HCR_EL2, SCTLR_EL2, TCR_EL2, VTCR_EL2};
use tock_registers::fields::FieldValue;

fn v<R: tock_registers::RegisterLongName>(f: FieldValue<u64, R>) -> u64 {
    f.value
}

/// HCR_EL2 while a domain runs: stage 2 on, EL1 is AArch64, physical
/// IRQ/FIQ/SError go to EL2 (so the domain only ever sees the virtual GIC CPU
/// interface), SMC traps (the domain never reaches platform firmware),
/// TLB and cache maintenance broadcast inner shareable.
pub fn hcr_el2_guest() -> u64 {
    v(HCR_EL2::VM::Enable
        + HCR_EL2::RW::EL1IsAarch64
        + HCR_EL2::IMO::EnableVirtualIRQ
        + HCR_EL2::FMO::EnableVirtualFIQ
        + HCR_EL2::AMO::SET
        + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
        + HCR_EL2::FB::SET
        + HCR_EL2::BSU::InnerShareable)
}

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

    #[test]
    fn hcr_traps_what_isolation_needs() {
        let h = hcr_el2_guest();
        assert_eq!(h & 1, 1, "VM");
        assert_ne!(h & (1 << 31), 0, "RW: EL1 AArch64");
        assert_eq!(h & (0b111 << 3), 0b111 << 3, "FMO, IMO, AMO");
        assert_ne!(h & (1 << 19), 0, "TSC");
        assert_eq!(h & (1 << 27), 0, "TGE must be off");
        assert_eq!(h & (1 << 34), 0, "E2H must be off");
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
