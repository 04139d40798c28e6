//! `_start`, the first code a domain runs.
//!
//! Entered at EL1h with the MMU off and `x0` = the device tree's address.
//! Everything here is position-dependent but uses `adrp`/`add` pairs, so it
//! runs correctly from the link address the partitioner loads it at.

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
    .type _start, %function
_start:
    // Interrupts stay masked until the domain unmasks them (irq::enable).
    msr     daifset, #0xf
    // Keep the device tree address in a callee-saved register, and the
    // stack pointer the domain was entered with (for the snapshot).
    mov     x19, x0
    mov     x20, sp

    // Stack: its own NOLOAD region after .bss (see bulkhead-domain.ld).
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1

    // Zero .bss (16-byte aligned at both ends by the linker script).
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    stp     xzr, xzr, [x1], #16
    b       1b
2:
    // The registers as the domain was entered with them (reset_state.rs),
    // before anything below changes them.
    bl      __bulkhead_rt_snapshot
    // FP/SIMD: CPACR_EL1.FPEN = 0b11 (compiled Rust uses the SIMD registers).
    mrs     x1, cpacr_el1
    orr     x1, x1, #(3 << 20)
    msr     cpacr_el1, x1

    // Exception vectors (exception.rs).
    adrp    x1, __bulkhead_vectors
    add     x1, x1, :lo12:__bulkhead_vectors
    msr     vbar_el1, x1
    isb

    // Into Rust: __bulkhead_rt_start(dtb) never returns.
    mov     x0, x19
    mov     x29, xzr
    mov     x30, xzr
    bl      __bulkhead_rt_start
3:  wfi
    b       3b
    .size _start, . - _start
"#
);
