//! Time, from the generic timer's virtual counter.

/// Counter frequency assumed when `CNTFRQ_EL0` reads 0 (QEMU's classic 62.5 MHz).
const FALLBACK_HZ: u64 = 62_500_000;

/// The virtual counter, `CNTVCT_EL0`.
pub fn ticks() -> u64 {
    let value: u64;
    // SAFETY: `isb` (so the read is not hoisted) and a read of the virtual
    // counter, which EL1 may always read; neither touches memory.
    unsafe {
        core::arch::asm!(
            "isb",
            "mrs {}, cntvct_el0",
            out(reg) value,
            options(nomem, nostack, preserves_flags)
        )
    };
    value
}

/// Counter ticks per second (`CNTFRQ_EL0`).
pub fn frequency() -> u64 {
    match crate::sysreg::read_sysreg!("cntfrq_el0") {
        0 => FALLBACK_HZ,
        hz => hz,
    }
}

/// Milliseconds since the counter started (it starts at boot on QEMU).
pub fn uptime_ms() -> u64 {
    (u128::from(ticks()) * 1000 / u128::from(frequency())) as u64
}

/// Busy-waits for `ms` milliseconds.
pub fn delay_ms(ms: u64) {
    let wait = (u128::from(frequency()) * u128::from(ms) / 1000) as u64;
    let start = ticks();
    while ticks().wrapping_sub(start) < wait {
        core::hint::spin_loop();
    }
}
