//! System register access.
//!
//! The GICv3 CPU interface registers go by their encodings
//! `S<op0>_<op1>_C<CRn>_C<CRm>_<op2>` (the `aarch64-cpu` crate lacks them);
//! `gic.rs` names each where it uses it.

/// Reads an AArch64 system register by name or encoding:
/// `read_sysreg!("esr_el1")`, `read_sysreg!("S3_0_C12_C12_0")`.
macro_rules! read_sysreg {
    ($reg:literal) => {{
        let value: u64;
        // SAFETY: `mrs` of an EL1/EL0-readable register only copies its value into a general-purpose register; no memory is
        // touched. (The one read with a side effect, ICC_IAR1_EL1, acknowledges an interrupt: a GIC state change, not a memory
        // one, which the caller owns. Not `nomem`, so that memory accesses stay on their side of such reads.)
        unsafe {
            core::arch::asm!(
                concat!("mrs {}, ", $reg),
                out(reg) value,
                options(nostack, preserves_flags)
            )
        };
        value
    }};
}
pub(crate) use read_sysreg;

/// Writes an AArch64 system register by name or encoding. Not
/// `nomem`: several of these registers (priority mask, group enables,
/// SGI generation, timer control) change when interrupts arrive, and the
/// compiler must not move memory accesses across the write.
macro_rules! write_sysreg {
    ($reg:literal, $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: an `msr` to one of the EL1/EL0 interrupt-controller or timer registers the runtime
        // manages; none of them changes memory Rust owns, translation, or the stack. Their effect
        // (masking, enabling or signalling interrupts) is what the caller asked for.
        unsafe {
            core::arch::asm!(
                concat!("msr ", $reg, ", {}"),
                in(reg) value,
                options(nostack, preserves_flags)
            )
        };
    }};
}
pub(crate) use write_sysreg;

/// Instruction synchronization barrier: later instructions see the
/// effect of earlier system register writes.
pub(crate) fn isb() {
    // SAFETY: a barrier; no memory or register effects.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
}

/// Full-system data synchronization barrier: earlier memory accesses
/// complete before later instructions.
pub(crate) fn dsb_sy() {
    // SAFETY: a barrier; no memory or register effects of its own.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}
