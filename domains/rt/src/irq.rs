//! Interrupts: the IRQ vector, the handler it calls, and masking.
//!
//! The IRQ vector of the current EL with SP_EL1 (`VBAR_EL1 + 0x280`)
//! reads `CNTVCT_EL0` as its third instruction, right after making room
//! for x0/x1 (the exception entry is context-synchronizing, so the read is
//! not taken early), saves the
//! caller-saved state the AAPCS64 lets a Rust function destroy (x0-x18,
//! x29, x30, q0-q7, q16-q31, FPCR, FPSR) plus `ELR_EL1`/`SPSR_EL1`, and
//! calls `__bulkhead_irq`. That acknowledges interrupts from the GIC one
//! after the other until none is pending, calls the handler registered with
//! [`set_handler`] with each INTID and ends each (EOImode 0). Handlers run
//! with interrupts masked (no nesting).
//!
//! Waiting: [`wait_until`] checks its condition with interrupts masked and
//! only then waits (`wfi`), so an interrupt that makes the condition true
//! cannot slip in between the check and the wait.

use crate::cpu::MAX_VCPUS;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Bytes the IRQ vector saves (shared with the assembly below and the
/// vector in `exception.rs`): x0-x17 at 0, x18/x29 at 144, x30/ELR at 160,
/// SPSR/FPCR at 176, FPSR at 192, q0-q7 at 208, q16-q31 at 336.
pub(crate) const IRQ_FRAME: usize = 592;
const _: () = assert!(IRQ_FRAME.is_multiple_of(16));

core::arch::global_asm!(
    r#"
    .section .text.bulkhead_irq, "ax"
    .balign 4
    .global __bulkhead_irq_entry
    .type __bulkhead_irq_entry, %function
// Entered from the vector with sp lowered by {frame}, x0/x1 saved at [sp]
// and x0 = CNTVCT_EL0 at entry.
__bulkhead_irq_entry:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x29, [sp, #144]
    mrs     x1, elr_el1
    stp     x30, x1, [sp, #160]
    mrs     x1, spsr_el1
    mrs     x2, fpcr
    stp     x1, x2, [sp, #176]
    mrs     x1, fpsr
    str     x1, [sp, #192]
    stp     q0, q1, [sp, #208]
    stp     q2, q3, [sp, #240]
    stp     q4, q5, [sp, #272]
    stp     q6, q7, [sp, #304]
    stp     q16, q17, [sp, #336]
    stp     q18, q19, [sp, #368]
    stp     q20, q21, [sp, #400]
    stp     q22, q23, [sp, #432]
    stp     q24, q25, [sp, #464]
    stp     q26, q27, [sp, #496]
    stp     q28, q29, [sp, #528]
    stp     q30, q31, [sp, #560]

    bl      __bulkhead_irq

    ldp     q30, q31, [sp, #560]
    ldp     q28, q29, [sp, #528]
    ldp     q26, q27, [sp, #496]
    ldp     q24, q25, [sp, #464]
    ldp     q22, q23, [sp, #432]
    ldp     q20, q21, [sp, #400]
    ldp     q18, q19, [sp, #368]
    ldp     q16, q17, [sp, #336]
    ldp     q6, q7, [sp, #304]
    ldp     q4, q5, [sp, #272]
    ldp     q2, q3, [sp, #240]
    ldp     q0, q1, [sp, #208]
    ldr     x1, [sp, #192]
    msr     fpsr, x1
    ldp     x1, x2, [sp, #176]
    msr     spsr_el1, x1
    msr     fpcr, x2
    ldp     x30, x1, [sp, #160]
    msr     elr_el1, x1
    ldp     x18, x29, [sp, #144]
    ldp     x16, x17, [sp, #128]
    ldp     x14, x15, [sp, #112]
    ldp     x12, x13, [sp, #96]
    ldp     x10, x11, [sp, #80]
    ldp     x8, x9, [sp, #64]
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{frame}
    eret
    .size __bulkhead_irq_entry, . - __bulkhead_irq_entry
"#,
    frame = const IRQ_FRAME,
);

/// The registered handler, as a `fn(u32)` address; 0 = none.
static HANDLER: AtomicUsize = AtomicUsize::new(0);
/// `CNTVCT_EL0` at the entry of each vCPU's latest IRQ exception.
static ENTRY_TICKS: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

/// Registers the function every acknowledged interrupt is handed to, with
/// its INTID. It runs with interrupts masked, on the interrupted stack,
/// on whichever vCPU took the interrupt.
pub fn set_handler(handler: fn(u32)) {
    HANDLER.store(handler as usize, Ordering::Release);
}

fn handler() -> Option<fn(u32)> {
    let addr = HANDLER.load(Ordering::Acquire);
    if addr == 0 {
        return None;
    }
    // SAFETY: the only non-zero value ever stored is a `fn(u32)` converted
    // by `set_handler`; function pointers and `usize` have the same size,
    // and the function lives as long as the program.
    Some(unsafe { core::mem::transmute::<usize, fn(u32)>(addr) })
}

/// `CNTVCT_EL0` when the IRQ exception being handled on this vCPU was
/// taken (read by the vector itself, before anything else). Shared by
/// every interrupt acknowledged in that one exception.
pub fn entry_ticks() -> u64 {
    ENTRY_TICKS[crate::cpu::index() % MAX_VCPUS].load(Ordering::Relaxed)
}

/// Called by the IRQ vector with the counter value at entry.
#[no_mangle]
extern "C" fn __bulkhead_irq(entry: u64) {
    ENTRY_TICKS[crate::cpu::index() % MAX_VCPUS].store(entry, Ordering::Relaxed);
    if !crate::gic::present() {
        crate::exception::unexpected_irq("an IRQ without an initialised GIC");
    }
    while let Some(ack) = crate::gic::ack() {
        match handler() {
            Some(h) => h(ack.intid()),
            None => crate::exception::unexpected_irq("an IRQ with no handler registered"),
        }
        crate::gic::eoi(ack);
    }
}

/// Unmasks IRQs on this vCPU (`PSTATE.I = 0`).
pub fn enable() {
    // SAFETY: clearing PSTATE.I lets the IRQ vector run, which saves and
    // restores everything it changes; it touches no memory Rust owns. Not
    // `nomem`: memory accesses must not move across the unmasking.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
}

/// Masks IRQs on this vCPU (`PSTATE.I = 1`).
pub fn disable() {
    // SAFETY: setting PSTATE.I only holds interrupts back. Not `nomem`, as
    // for `enable`.
    unsafe { core::arch::asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}

/// Whether IRQs are unmasked on this vCPU.
pub fn enabled() -> bool {
    crate::sysreg::read_sysreg!("daif") & (1 << 7) == 0
}

/// Runs `f` with IRQs masked, then restores the previous mask.
pub fn masked<R>(f: impl FnOnce() -> R) -> R {
    let was_enabled = enabled();
    disable();
    let result = f();
    if was_enabled {
        enable();
    }
    result
}

/// Waits for an interrupt (`wfi`). Returns at once if one is pending,
/// masked or not.
pub fn wait_for_interrupt() {
    // SAFETY: `wfi` only waits; it touches no memory or registers. Not
    // `nomem`: memory written by an interrupt handler while waiting must be
    // re-read afterwards.
    unsafe { core::arch::asm!("wfi", options(nostack, preserves_flags)) };
}

/// Waits until `done()` holds or the counter passes `deadline` (ticks; no
/// deadline if `None`), sleeping with `wfi` between interrupts. `done` is
/// called with IRQs masked; IRQs are unmasked while waiting and on return.
/// Returns whether `done()` held.
///
/// Only an interrupt ends a `wfi`: without one, a deadline is noticed at
/// the next interrupt, so arm a timer for it (as the `irq` domain does).
pub fn wait_until(mut done: impl FnMut() -> bool, deadline: Option<u64>) -> bool {
    loop {
        disable();
        if done() {
            enable();
            return true;
        }
        if deadline.is_some_and(|d| crate::time::ticks() >= d) {
            enable();
            return false;
        }
        // With IRQs masked, a pending interrupt still ends the wait, and is
        // taken as soon as they are unmasked.
        wait_for_interrupt();
        enable();
    }
}
