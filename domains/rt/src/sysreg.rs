//! System register access.

/// Reads an AArch64 system register by name: `sysreg!("esr_el1")`.
macro_rules! read_sysreg {
    ($reg:literal) => {{
        let value: u64;
        // SAFETY: `mrs` of the named EL1/EL0-readable register only copies
        // its value into a general-purpose register; it has no side effects
        // on memory.
        unsafe {
            core::arch::asm!(
                concat!("mrs {}, ", $reg),
                out(reg) value,
                options(nomem, nostack, preserves_flags)
            )
        };
        value
    }};
}
pub(crate) use read_sysreg;
