//! Which virtual CPU this is.
//!
//! Bulkhead gives each vCPU a virtual MPIDR whose Aff0 is its index in the
//! domain (every other affinity field zero); QEMU's `virt` numbers its cores
//! the same way (up to 8 of them). The runtime supports vCPUs 0..[`MAX_VCPUS`].

use crate::sysreg::read_sysreg;

/// Most vCPUs the runtime has stacks and per-CPU state for.
pub const MAX_VCPUS: usize = 8;

/// `MPIDR_EL1`.
pub fn mpidr() -> u64 {
    read_sysreg!("mpidr_el1")
}

/// This vCPU's index: `MPIDR_EL1.Aff0`.
pub fn index() -> usize {
    (mpidr() & 0xff) as usize
}

/// This vCPU's affinity as GICv3 writes it in `GICD_IROUTER` and
/// `GICR_TYPER[63:32]`'s layout is derived from: Aff3 in bits \[39:32\],
/// Aff2..Aff0 in bits \[23:0\] (the MPIDR layout without its flag bits).
pub fn affinity() -> u64 {
    mpidr() & 0xff_00ff_ffff
}

/// This vCPU's affinity packed as `Aff3.Aff2.Aff1.Aff0` in 32 bits, the
/// way `GICR_TYPER[63:32]` reports a redistributor's.
pub fn affinity32() -> u32 {
    let m = mpidr();
    ((m & 0xff_ffff) | ((m >> 32 & 0xff) << 24)) as u32
}
