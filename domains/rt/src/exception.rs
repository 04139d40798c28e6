//! Exception vectors and the handler behind them.
//!
//! The IRQ vector of the current EL with SP_EL1 (the way the domain always
//! runs) goes to the interrupt path in `irq.rs`. The 15 others save the
//! general-purpose registers, `ELR_EL1` and `SPSR_EL1` in a [`TrapFrame`]
//! on the current stack and call [`__bulkhead_exception`]. It returns (and
//! the vector restores the frame and `eret`s) only for an abort of a
//! `try_*` access or an undefined HVC/SMC of a PSCI probe
//! (`psci::try_call`); every other exception prints a decoded report and
//! halts the core. The synchronous vector of a lower EL using AArch32 first
//! checks for an SVC, which ends a run of EL0 code and returns to the
//! caller of `el0::run_t32` instead.

use crate::sysreg::read_sysreg;
use core::sync::atomic::{AtomicBool, Ordering};

/// Registers saved on exception entry. Layout shared with the assembly below.
#[repr(C)]
pub(crate) struct TrapFrame {
    /// x0..x30.
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    _pad: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 272);

core::arch::global_asm!(
    r#"
    .macro BULKHEAD_VECTOR kind
    .balign 0x80
    sub     sp, sp, #272
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       __bulkhead_trap
    .endm

    .section .text.bulkhead_vectors, "ax"
    .balign 0x800
    .global __bulkhead_vectors
__bulkhead_vectors:
    // Current EL with SP_EL0: synchronous, IRQ, FIQ, SError.
    BULKHEAD_VECTOR 0
    BULKHEAD_VECTOR 1
    BULKHEAD_VECTOR 2
    BULKHEAD_VECTOR 3
    // Current EL with SP_ELx. The IRQ vector has its own path (irq.rs):
    // the counter is read first, for latency measurements.
    BULKHEAD_VECTOR 4
    .balign 0x80
    sub     sp, sp, #{irq_frame}
    stp     x0, x1, [sp, #0]
    mrs     x0, cntvct_el0
    b       __bulkhead_irq_entry
    BULKHEAD_VECTOR 6
    BULKHEAD_VECTOR 7
    // Lower EL, AArch64.
    BULKHEAD_VECTOR 8
    BULKHEAD_VECTOR 9
    BULKHEAD_VECTOR 10
    BULKHEAD_VECTOR 11
    // Lower EL, AArch32. Synchronous: an SVC ends a run of EL0 code
    // (el0.rs) and returns to its caller; anything else is a trap.
    .balign 0x80
    sub     sp, sp, #272
    stp     x0, x1, [sp, #0]
    mrs     x0, esr_el1
    lsr     x0, x0, #26
    cmp     x0, #{ec_svc32}
    b.eq    __bulkhead_el0_t32_return
    mov     x0, #12
    b       __bulkhead_trap
    BULKHEAD_VECTOR 13
    BULKHEAD_VECTOR 14
    BULKHEAD_VECTOR 15

    .balign 0x80
__bulkhead_trap:
    // x0 = vector number; the interrupted x0/x1 are at [sp].
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, elr_el1
    stp     x30, x1, [sp, #240]
    mrs     x1, spsr_el1
    str     x1, [sp, #256]

    mov     x1, sp
    bl      __bulkhead_exception

    ldr     x1, [sp, #256]
    msr     spsr_el1, x1
    ldp     x30, x1, [sp, #240]
    msr     elr_el1, x1
    ldp     x28, x29, [sp, #224]
    ldp     x26, x27, [sp, #208]
    ldp     x24, x25, [sp, #192]
    ldp     x22, x23, [sp, #176]
    ldp     x20, x21, [sp, #160]
    ldp     x18, x19, [sp, #144]
    ldp     x16, x17, [sp, #128]
    ldp     x14, x15, [sp, #112]
    ldp     x12, x13, [sp, #96]
    ldp     x10, x11, [sp, #80]
    ldp     x8, x9, [sp, #64]
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #272
    eret
"#,
    irq_frame = const crate::irq::IRQ_FRAME,
    ec_svc32 = const crate::el0::EC_SVC_AARCH32,
);

/// Vector 4: synchronous exception from the current EL using SP_EL1, the
/// way the domain always runs.
const CURRENT_SPX_SYNC: u64 = 4;

/// Set once an unexpected exception is being reported, so that a fault
/// while reporting cannot loop.
static REPORTING: AtomicBool = AtomicBool::new(false);

/// Called by the vectors with the vector number (0..16) and the saved frame.
#[no_mangle]
extern "C" fn __bulkhead_exception(kind: u64, frame: &mut TrapFrame) {
    let esr = read_sysreg!("esr_el1");
    let far = read_sysreg!("far_el1");
    if kind == CURRENT_SPX_SYNC
        && (crate::probe::handle_abort(esr, far, frame)
            || crate::probe::handle_exec_abort(esr, far, frame)
            || crate::psci::handle_undefined(esr, frame))
    {
        return;
    }
    unexpected(kind, esr, far, frame)
}

/// Reports an IRQ that cannot be handled (`what` says why) and halts.
pub(crate) fn unexpected_irq(what: &str) -> ! {
    if REPORTING.swap(true, Ordering::SeqCst) {
        crate::halt();
    }
    let name = crate::name();
    crate::println!("{name}: UNEXPECTED EXCEPTION: IRQ (current EL, SPx): {what}");
    crate::println!("{name}: core halted");
    crate::halt()
}

fn unexpected(kind: u64, esr: u64, far: u64, frame: &TrapFrame) -> ! {
    if REPORTING.load(Ordering::SeqCst) {
        crate::halt();
    }
    REPORTING.store(true, Ordering::SeqCst);
    let name = crate::name();
    let source = [
        "current EL, SP0",
        "current EL, SPx",
        "lower EL, AArch64",
        "lower EL, AArch32",
    ][(kind as usize / 4) & 3];
    let what = ["synchronous", "IRQ", "FIQ", "SError"][kind as usize & 3];
    let ec = esr >> 26;
    let iss = esr & 0x1ff_ffff;
    crate::print!(
        "{name}: UNEXPECTED EXCEPTION: {what} ({source}) ESR={esr:#x} [EC={ec:#x} {}, ISS={iss:#x}",
        ec_name(ec)
    );
    if matches!(ec, 0x20 | 0x21 | 0x24 | 0x25) {
        let fsc = esr & 0x3f;
        crate::print!(", FSC={fsc:#x} {}", fsc_name(fsc));
        if matches!(ec, 0x24 | 0x25) {
            crate::print!(", {}", if esr & (1 << 6) != 0 { "write" } else { "read" });
        }
    }
    crate::println!(
        "] FAR={far:#x} ELR={:#x} SPSR={:#x} LR={:#x} SP={:#x}",
        frame.elr,
        frame.spsr,
        frame.x[30],
        frame as *const TrapFrame as usize + core::mem::size_of::<TrapFrame>()
    );
    crate::println!("{name}: core halted");
    crate::halt()
}

/// What an exception class (ESR_EL1.EC) is.
pub(crate) fn ec_name(ec: u64) -> &'static str {
    match ec {
        0x00 => "unknown reason",
        0x01 => "WFI/WFE trapped",
        0x07 => "FP/SIMD access trapped",
        0x0e => "illegal execution state",
        0x15 => "SVC",
        0x16 => "HVC",
        0x17 => "SMC",
        0x18 => "MSR/MRS/system instruction trapped",
        0x20 => "instruction abort from lower EL",
        0x21 => "instruction abort",
        0x22 => "PC alignment fault",
        0x24 => "data abort from lower EL",
        0x25 => "data abort",
        0x26 => "SP alignment fault",
        0x2c => "floating-point exception",
        0x2f => "SError",
        0x30 | 0x31 => "breakpoint",
        0x32 | 0x33 => "software step",
        0x34 | 0x35 => "watchpoint",
        0x3c => "BRK instruction",
        _ => "other",
    }
}

/// What an instruction/data fault status code (DFSC/IFSC) is.
pub(crate) fn fsc_name(fsc: u64) -> &'static str {
    match fsc {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault",
        0x08..=0x0b => "access flag fault",
        0x0c..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x11 => "tag check fault",
        0x13..=0x17 => "synchronous external abort on table walk",
        0x18 => "synchronous parity/ECC error",
        0x1b..=0x1f => "synchronous parity/ECC error on table walk",
        0x21 => "alignment fault",
        0x30 => "TLB conflict abort",
        0x31 => "unsupported atomic hardware update",
        0x34 => "implementation defined (lockdown)",
        0x35 => "implementation defined (unsupported exclusive or atomic)",
        _ => "other fault",
    }
}
