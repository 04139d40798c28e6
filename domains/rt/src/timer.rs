//! The EL1 virtual timer: `CNTV_CVAL_EL0`, `CNTV_CTL_EL0` and the counter
//! it compares against, `CNTVCT_EL0` ([`crate::time::ticks`]).
//!
//! The timer's condition is `CNTVCT >= CVAL`; while it holds and the timer
//! is enabled and not masked, its level-sensitive PPI ([`intid`]) is
//! asserted. A handler ends it by moving CVAL into the future or by
//! stopping the timer, before the interrupt's EOI.

use crate::sysreg::{isb, read_sysreg, write_sysreg};

/// `CNTV_CTL_EL0.ENABLE`.
pub const CTL_ENABLE: u64 = 1 << 0;
/// `CNTV_CTL_EL0.IMASK`: condition met, but no interrupt.
pub const CTL_IMASK: u64 = 1 << 1;
/// `CNTV_CTL_EL0.ISTATUS` (read-only): the condition is met.
pub const CTL_ISTATUS: u64 = 1 << 2;

/// The virtual timer's INTID when the device tree does not say (PPI 11).
pub const DEFAULT_INTID: u32 = 27;

/// The virtual timer's INTID: the third specifier of the device tree's
/// `arm,armv8-timer` node (a PPI: its number + 16), or [`DEFAULT_INTID`].
pub fn intid() -> u32 {
    let from_dtb = crate::dtb::fdt().and_then(|fdt| {
        let node = fdt.find_compatible(&["arm,armv8-timer", "arm,armv7-timer"])?;
        let cells = node.property("interrupts")?.value;
        // Three big-endian cells per specifier; the virtual timer is the third.
        let spec = cells.get(24..36)?;
        let cell = |i: usize| u32::from_be_bytes([spec[i], spec[i + 1], spec[i + 2], spec[i + 3]]);
        (cell(0) == 1 && cell(4) < 16).then(|| cell(4) + 16)
    });
    from_dtb.unwrap_or(DEFAULT_INTID)
}

/// Sets the compare value.
pub fn set_compare(cval: u64) {
    write_sysreg!("cntv_cval_el0", cval);
    isb();
}

/// The compare value.
pub fn compare() -> u64 {
    read_sysreg!("cntv_cval_el0")
}

/// Sets `CNTV_CTL_EL0` ([`CTL_ENABLE`], [`CTL_IMASK`]).
pub fn set_control(ctl: u64) {
    write_sysreg!("cntv_ctl_el0", ctl);
    isb();
}

/// `CNTV_CTL_EL0`.
pub fn control() -> u64 {
    read_sysreg!("cntv_ctl_el0")
}

/// Fires (asserts the interrupt) once the counter reaches `cval`.
pub fn arm_at(cval: u64) {
    set_compare(cval);
    set_control(CTL_ENABLE);
}

/// Fires `ticks` counter ticks from now.
pub fn arm_in(ticks: u64) {
    arm_at(crate::time::ticks().wrapping_add(ticks));
}

/// Stops the timer (its interrupt goes away).
pub fn stop() {
    set_control(0);
}
