//! Running a little AArch32 code at EL0, in Thumb state, and coming back.
//!
//! `run_t32` saves the EL1 context (callee-saved registers, the stack
//! pointer, DAIF, where its arguments are) on the EL1 stack, loads
//! `r0..r7` (`x0..x7`) with its arguments and `eret`s into AArch32 User
//! mode with the T bit set, at the code's address. The code ends with an
//! `SVC`: the vector for a synchronous exception from a lower EL using
//! AArch32 (`VBAR_EL1 + 0x600`, see `exception.rs`) recognises it
//! (ESR_EL1.EC 0x11), drops its trap frame and returns from `run_t32` with
//! the EL1 context restored and the code's final `r0..r7`.
//! Any other exception of the EL0 code is unexpected: it is reported and
//! halts the core, like every unexpected exception.
//!
//! The domain runs with stage 1 translation off (SCTLR_EL1.M clear), so
//! nothing at stage 1 stops EL0 from executing or from reaching any of the
//! domain's memory: the EL0 code runs with the domain's full authority, and
//! stage 2 (RAM executable, devices not) is all that applies. Only
//! `run_t32` ever enters EL0, so an SVC from AArch32 always belongs to it.

use crate::sysreg::read_sysreg;

/// ESR_EL1.EC of an SVC executed in AArch32 state.
pub const EC_SVC_AARCH32: u64 = 0x11;

/// SPSR_EL1 for AArch32 User mode (M\[4\] = 1, M\[3:0\] = 0b0000) in Thumb
/// state (T, bit 5), with SError, IRQ and FIQ masked (A, I, F: bits 8..6)
/// so that nothing but the code's own exception comes back to EL1.
pub const SPSR_USR_THUMB_MASKED: u64 = 0x1c0 | (1 << 5) | 0b1_0000;

/// Whether this core can execute AArch32 at EL0: ID_AA64PFR0_EL1.EL0 = 2.
pub fn aarch32_el0() -> bool {
    read_sysreg!("id_aa64pfr0_el1") & 0xf == 2
}

/// How a run of AArch32 EL0 code ended: the SVC it took.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SvcExit {
    /// ESR_EL1 of the SVC (EC 0x11, the immediate in ISS\[15:0\]).
    pub esr: u64,
    /// ELR_EL1: the address after the SVC.
    pub elr: u64,
    /// `r0..r7` at the SVC.
    pub regs: [u32; 8],
}

/// What the assembly returns (in x0, x1); the registers go back through
/// the argument words.
#[repr(C)]
struct RawExit {
    esr: u64,
    elr: u64,
}

impl SvcExit {
    /// The SVC's immediate.
    pub fn imm(&self) -> u16 {
        self.esr as u16
    }
    /// Whether the SVC was a 16-bit instruction (ESR_EL1.IL clear).
    pub fn is_16bit(&self) -> bool {
        self.esr & (1 << 25) == 0
    }
}

core::arch::global_asm!(
    r#"
    .section .text.bulkhead_el0, "ax"
    .balign 4
    .global __bulkhead_el0_t32_call
    .type __bulkhead_el0_t32_call, %function
// x0 = the T32 code's address (below 4 GiB, 2-byte aligned), x1 = the
// address of 8 words for r0..r7, which get r0..r7 at the SVC. Returns
// ESR_EL1 and ELR_EL1 of the SVC in x0, x1.
__bulkhead_el0_t32_call:
    sub     sp, sp, #{ctx}
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x2, daif
    stp     x18, x2, [sp, #160]
    str     x1, [sp, #176]
    // Nothing may take an exception to EL1 (and so overwrite ELR_EL1 and
    // SPSR_EL1) between here and the eret.
    msr     daifset, #0xf
    msr     elr_el1, x0
    mov     x2, #{spsr}
    msr     spsr_el1, x2
    ldp     w2, w3, [x1, #8]
    ldp     w4, w5, [x1, #16]
    ldp     w6, w7, [x1, #24]
    ldp     w0, w1, [x1, #0]
    // r8..r14 (x8..x14) start at zero rather than with EL1 values.
    mov     x8, xzr
    mov     x9, xzr
    mov     x10, xzr
    mov     x11, xzr
    mov     x12, xzr
    mov     x13, xzr
    mov     x14, xzr
    // SP_EL1 stays at the saved context while EL0 runs: the exception
    // that ends it enters the vector with this very stack pointer.
    eret
    dsb     nsh
    isb
    .size __bulkhead_el0_t32_call, . - __bulkhead_el0_t32_call

    .global __bulkhead_el0_t32_return
    .type __bulkhead_el0_t32_return, %function
// Branched to by the lower-EL AArch32 synchronous vector for an SVC, with
// its trap frame ({frame} bytes) on top of the saved context.
__bulkhead_el0_t32_return:
    // r0, r1 are in the frame, r2..r7 still in x2..x7: all to the words.
    ldp     x9, x10, [sp, #0]
    add     sp, sp, #{frame}
    ldr     x11, [sp, #176]
    stp     w9, w10, [x11, #0]
    stp     w2, w3, [x11, #8]
    stp     w4, w5, [x11, #16]
    stp     w6, w7, [x11, #24]
    mrs     x0, esr_el1
    mrs     x1, elr_el1
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    ldp     x18, x2, [sp, #160]
    add     sp, sp, #{ctx}
    msr     daif, x2
    ret
    .size __bulkhead_el0_t32_return, . - __bulkhead_el0_t32_return
"#,
    ctx = const 192,
    frame = const core::mem::size_of::<crate::exception::TrapFrame>(),
    spsr = const SPSR_USR_THUMB_MASKED,
);

extern "C" {
    fn __bulkhead_el0_t32_call(entry: u64, args: *mut [u32; 8]) -> RawExit;
}

/// Runs the T32 code at `code` in AArch32 User mode (EL0, Thumb state), with
/// `r0..r7` = `args` and every other register zero, until it executes an
/// `SVC`; returns how it ended, with `r0..r7` then. IRQs, FIQs and SErrors stay masked
/// throughout. `None` if the core has no AArch32 at EL0, or the code does
/// not lie below 4 GiB (where an AArch32 PC can reach it).
///
/// # Safety
///
/// With stage 1 translation off the code runs with the domain's full
/// authority: the caller vouches that it only touches memory and devices
/// that Rust does not rely on (no stack, no statics), uses no FP/SIMD
/// registers, ends in an `SVC`, and takes no other exception (which would
/// halt the core).
pub(crate) unsafe fn run_t32(code: &'static [u16], args: [u32; 8]) -> Option<SvcExit> {
    let entry = code.as_ptr() as u64;
    if !aarch32_el0() || entry.saturating_add(2 * code.len() as u64) > 1 << 32 {
        return None;
    }
    // The code is part of the image (.rodata), never written at run time:
    // it is in RAM exactly as the partitioner loaded it, like the code EL1
    // runs, so instruction fetches see it without cache maintenance.
    let mut regs = args;
    // SAFETY: the routine saves every callee-saved register, SP (it stays SP_EL1) and DAIF, and the
    // SVC vector restores them before returning like a C function; what the EL0 code does in
    // between is the caller's promise (see above). `regs` lives across the call.
    let raw = unsafe { __bulkhead_el0_t32_call(entry, &mut regs) };
    Some(SvcExit {
        esr: raw.esr,
        elr: raw.elr,
        regs,
    })
}
