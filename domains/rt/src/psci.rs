//! PSCI and SMCCC calls.
//!
//! The conduit is the device tree's `/psci` `method` (`"hvc"` or `"smc"`);
//! without a device tree it is HVC, which is what QEMU `virt` uses for its
//! built-in PSCI when it emulates no EL2 or EL3. Every call goes through a
//! small routine whose one `hvc #0` / `smc #0` instruction is known, so
//! that [`try_call`] can survive a conduit that does not exist (an SMC
//! without EL3 is UNDEFINED): the exception handler then skips the
//! instruction and the call reports [`Undefined`].

use crate::cpu::MAX_VCPUS;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Function identifiers (SMC32 forms unless marked 64).
pub mod fid {
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    /// SMCCC_ARCH_WORKAROUND_1 (Spectre v2 mitigation), as a feature to ask about.
    pub const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
    /// SMCCC_ARCH_WORKAROUND_2 (speculative store bypass).
    pub const SMCCC_ARCH_WORKAROUND_2: u32 = 0x8000_7fff;
    /// SMCCC_ARCH_WORKAROUND_3 (Spectre-BHB).
    pub const SMCCC_ARCH_WORKAROUND_3: u32 = 0x8000_3fff;
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
    pub const CPU_OFF: u32 = 0x8400_0002;
    pub const CPU_ON_64: u32 = 0xc400_0003;
    pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
    pub const MIGRATE_64: u32 = 0xc400_0005;
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    pub const PSCI_FEATURES: u32 = 0x8400_000a;
    pub const SYSTEM_SUSPEND_64: u32 = 0xc400_000e;
}

/// Return codes.
pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const INVALID_PARAMETERS: i64 = -2;
pub const DENIED: i64 = -3;
pub const ALREADY_ON: i64 = -4;

/// `AFFINITY_INFO` answers.
pub const AFFINITY_ON: i64 = 0;
pub const AFFINITY_OFF: i64 = 1;
pub const AFFINITY_ON_PENDING: i64 = 2;

/// How a call reaches the PSCI implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

impl Conduit {
    /// The instruction's name, as the device tree's `method` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Conduit::Hvc => "hvc",
            Conduit::Smc => "smc",
        }
    }
}

/// The call's instruction was UNDEFINED: nothing at that exception level
/// answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Undefined;

/// The conduit found by [`conduit`]: 0 = not looked up yet, 1 = HVC, 2 = SMC.
static CONDUIT: AtomicU8 = AtomicU8::new(0);

/// The conduit the device tree's `/psci` node names (HVC if it names none,
/// or without a device tree).
pub fn conduit() -> Conduit {
    match CONDUIT.load(Ordering::Relaxed) {
        1 => return Conduit::Hvc,
        2 => return Conduit::Smc,
        _ => {}
    }
    let method = crate::dtb::fdt().and_then(|fdt| {
        let node = fdt.find_node("/psci")?;
        node.property("method")?.as_str()
    });
    let conduit = match method {
        Some("smc") => Conduit::Smc,
        _ => Conduit::Hvc,
    };
    CONDUIT.store(
        if conduit == Conduit::Smc { 2 } else { 1 },
        Ordering::Relaxed,
    );
    conduit
}

core::arch::global_asm!(
    r#"
    .section .text.bulkhead_psci, "ax"
    .balign 4
    .global __bulkhead_hvc_call
    .type __bulkhead_hvc_call, %function
__bulkhead_hvc_call:
    .global __bulkhead_hvc_insn
__bulkhead_hvc_insn:
    hvc     #0
    ret
    .size __bulkhead_hvc_call, . - __bulkhead_hvc_call

    .global __bulkhead_smc_call
    .type __bulkhead_smc_call, %function
__bulkhead_smc_call:
    .global __bulkhead_smc_insn
__bulkhead_smc_insn:
    smc     #0
    ret
    .size __bulkhead_smc_call, . - __bulkhead_smc_call
"#
);

extern "C" {
    /// `hvc #0` with x0..x3 = the arguments; returns x0.
    fn __bulkhead_hvc_call(fid: u64, a1: u64, a2: u64, a3: u64) -> u64;
    /// `smc #0` with x0..x3 = the arguments; returns x0.
    fn __bulkhead_smc_call(fid: u64, a1: u64, a2: u64, a3: u64) -> u64;
    static __bulkhead_hvc_insn: u8;
    static __bulkhead_smc_insn: u8;
}

/// Per vCPU: a call is in progress / its instruction was UNDEFINED.
static ARMED: [AtomicBool; MAX_VCPUS] = [const { AtomicBool::new(false) }; MAX_VCPUS];
static UNDEFINED: [AtomicBool; MAX_VCPUS] = [const { AtomicBool::new(false) }; MAX_VCPUS];

/// Makes call `fid` with arguments `args` through `conduit`. The answer is
/// the signed 32-bit value in w0 (every PSCI and SMCCC status and version
/// is one), or [`Undefined`] if the instruction was.
pub fn try_call(conduit: Conduit, fid: u32, args: [u64; 3]) -> Result<i64, Undefined> {
    crate::irq::masked(|| {
        let me = crate::cpu::index() % MAX_VCPUS;
        UNDEFINED[me].store(false, Ordering::SeqCst);
        ARMED[me].store(true, Ordering::SeqCst);
        let [a1, a2, a3] = args;
        let x0 = match conduit {
            // SAFETY: the routine issues one HVC with x0..x3 as given and returns x0, following the C calling convention, which covers every
            // register SMCCC lets the callee change (x0-x17). The partitioner (or QEMU's PSCI) changes no memory of the domain; a CPU_ON
            // starts another vCPU at an entry point the caller chose. If HVC is UNDEFINED, the exception handler skips it.
            Conduit::Hvc => unsafe { __bulkhead_hvc_call(u64::from(fid), a1, a2, a3) },
            // SAFETY: as above, with SMC.
            Conduit::Smc => unsafe { __bulkhead_smc_call(u64::from(fid), a1, a2, a3) },
        };
        ARMED[me].store(false, Ordering::SeqCst);
        if UNDEFINED[me].swap(false, Ordering::SeqCst) {
            Err(Undefined)
        } else {
            Ok(i64::from(x0 as i32))
        }
    })
}

/// Makes a call through the device tree's conduit; an UNDEFINED
/// instruction reads as NOT_SUPPORTED.
pub fn call(fid: u32, args: [u64; 3]) -> i64 {
    try_call(conduit(), fid, args).unwrap_or(NOT_SUPPORTED)
}

/// Called by the exception handler for a synchronous exception from the
/// current EL: if it is an UNDEFINED instruction (EC 0) at an armed call's
/// HVC/SMC, records it, skips the instruction and returns `true`.
pub(crate) fn handle_undefined(esr: u64, frame: &mut crate::exception::TrapFrame) -> bool {
    let hvc = core::ptr::addr_of!(__bulkhead_hvc_insn) as u64;
    let smc = core::ptr::addr_of!(__bulkhead_smc_insn) as u64;
    let me = crate::cpu::index() % MAX_VCPUS;
    if esr >> 26 != 0 || (frame.elr != hvc && frame.elr != smc) || !ARMED[me].load(Ordering::SeqCst)
    {
        return false;
    }
    ARMED[me].store(false, Ordering::SeqCst);
    UNDEFINED[me].store(true, Ordering::SeqCst);
    frame.x[0] = NOT_SUPPORTED as u64;
    frame.elr += 4;
    true
}

/// `PSCI_VERSION`: major in bits \[31:16\], minor in \[15:0\].
pub fn version() -> i64 {
    call(fid::PSCI_VERSION, [0; 3])
}

/// `SMCCC_VERSION`: major in bits \[30:16\], minor in \[15:0\].
pub fn smccc_version() -> i64 {
    call(fid::SMCCC_VERSION, [0; 3])
}

/// `SMCCC_ARCH_FEATURES` of `function`.
pub fn smccc_arch_features(function: u32) -> i64 {
    call(fid::SMCCC_ARCH_FEATURES, [u64::from(function), 0, 0])
}

/// `PSCI_FEATURES` of `function`: 0 (or feature flags) if implemented.
pub fn features(function: u32) -> i64 {
    call(fid::PSCI_FEATURES, [u64::from(function), 0, 0])
}

/// `CPU_ON` (64-bit): start the core `target_mpidr` at `entry` (a physical
/// address, MMU off) with x0 = `context`.
pub fn cpu_on(target_mpidr: u64, entry: u64, context: u64) -> i64 {
    call(fid::CPU_ON_64, [target_mpidr, entry, context])
}

/// `CPU_OFF`: power this core off. Returns only on failure.
pub fn cpu_off() -> i64 {
    call(fid::CPU_OFF, [0; 3])
}

/// `CPU_SUSPEND` (64-bit) with `power_state` (0: standby, which returns
/// at the next interrupt).
pub fn cpu_suspend(power_state: u64) -> i64 {
    call(fid::CPU_SUSPEND_64, [power_state, 0, 0])
}

/// `AFFINITY_INFO` (64-bit) of `target_mpidr` at affinity level 0:
/// [`AFFINITY_ON`], [`AFFINITY_OFF`], [`AFFINITY_ON_PENDING`] or an error.
pub fn affinity_info(target_mpidr: u64) -> i64 {
    call(fid::AFFINITY_INFO_64, [target_mpidr, 0, 0])
}

/// `SYSTEM_OFF`. Returns only on failure.
pub fn system_off() -> i64 {
    call(fid::SYSTEM_OFF, [0; 3])
}

/// `SYSTEM_RESET`. Returns only on failure.
pub fn system_reset() -> i64 {
    call(fid::SYSTEM_RESET, [0; 3])
}
