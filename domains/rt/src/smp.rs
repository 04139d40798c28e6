//! Secondary vCPUs.
//!
//! [`start`] asks PSCI `CPU_ON` to start vCPU `n` (target MPIDR = `n`, the
//! virtual MPIDR Bulkhead and QEMU `virt` give it) at [`entry`], the
//! runtime's secondary entry, with x0 = `n` as context id. That entry runs
//! at EL1h with the MMU off, like `_start`: it masks interrupts, takes the
//! vCPU index from `MPIDR_EL1.Aff0` (the context id is not trusted for it),
//! sets the stack to that vCPU's own (16 KiB each, after the boot stack;
//! see `bulkhead-domain.ld`), enables FP/SIMD, installs the exception
//! vectors and calls Rust, which sets up this vCPU's GIC interface (if the
//! boot vCPU initialised the GIC) and calls the `fn(usize) -> !` given to
//! [`start`] with the vCPU index. vCPU 0 (the boot vCPU) comes here only
//! when another vCPU starts it again after its CPU_OFF ([`set_main`], then
//! PSCI CPU_ON with [`entry`]): it reuses the boot stack, which its
//! CPU_OFF left unused. Indices from [`MAX_VCPUS`] on never run Rust
//! here: they halt. Each vCPU's context id is kept for [`context`].

use crate::cpu::MAX_VCPUS;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

core::arch::global_asm!(
    r#"
    .section .text.bulkhead_secondary, "ax"
    .balign 4
    .global __bulkhead_secondary_entry
    .type __bulkhead_secondary_entry, %function
__bulkhead_secondary_entry:
    msr     daifset, #0xf
    mov     x20, x0                 // context id
    mrs     x19, mpidr_el1
    and     x19, x19, #0xff         // vCPU index = Aff0
    cmp     x19, #{max_vcpus}
    b.hs    9f
    cbnz    x19, 1f
    // vCPU 0, started again after its CPU_OFF: its boot stack is free.
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    b       2f

    // sp = __secondary_stacks_top - (index - 1) * size
1:  adrp    x1, __secondary_stacks_top
    add     x1, x1, :lo12:__secondary_stacks_top
    mov     x2, #{stack_size}
    sub     x3, x19, #1
    msub    x1, x3, x2, x1
    mov     sp, x1
2:

    // FP/SIMD: CPACR_EL1.FPEN = 0b11.
    mrs     x1, cpacr_el1
    orr     x1, x1, #(3 << 20)
    msr     cpacr_el1, x1
    // Exception vectors (exception.rs).
    adrp    x1, __bulkhead_vectors
    add     x1, x1, :lo12:__bulkhead_vectors
    msr     vbar_el1, x1
    isb

    mov     x0, x19
    mov     x1, x20
    mov     x29, xzr
    mov     x30, xzr
    bl      __bulkhead_rt_secondary
9:  wfi
    b       9b
    .size __bulkhead_secondary_entry, . - __bulkhead_secondary_entry
"#,
    max_vcpus = const MAX_VCPUS,
    stack_size = const SECONDARY_STACK_SIZE,
);

/// Stack of each secondary vCPU; `bulkhead-domain.ld` reserves
/// `(MAX_VCPUS - 1)` of them (the linker script checks the total).
pub const SECONDARY_STACK_SIZE: usize = 16 * 1024;

extern "C" {
    fn __bulkhead_secondary_entry();
    static __secondary_stacks_bottom: u8;
    static __secondary_stacks_top: u8;
}

/// What each secondary vCPU runs: a `fn(usize) -> !` address; 0 = nothing.
static MAIN: [AtomicUsize; MAX_VCPUS] = [const { AtomicUsize::new(0) }; MAX_VCPUS];
/// The context id each vCPU was last started with at [`entry`].
static CONTEXT: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

/// Sets what vCPU `vcpu` runs when it next comes up at [`entry`] (for
/// vCPU 0, or a CPU_ON with a context id of the caller's choosing).
pub fn set_main(vcpu: usize, main: fn(usize) -> !) {
    if let Some(slot) = MAIN.get(vcpu) {
        slot.store(main as usize, Ordering::Release);
    }
}

/// The context id (x0) this vCPU was last started with at [`entry`].
pub fn context() -> u64 {
    CONTEXT[crate::cpu::index() % MAX_VCPUS].load(Ordering::Acquire)
}

/// Address of the secondary entry point, for PSCI `CPU_ON`.
pub fn entry() -> u64 {
    __bulkhead_secondary_entry as *const () as u64
}

/// Starts vCPU `vcpu` (1..[`MAX_VCPUS`]) running `main(vcpu)` on its own
/// stack, with its GIC interface set up if the GIC is. Returns the PSCI
/// `CPU_ON` status (0 on success), or INVALID_PARAMETERS for an index the
/// runtime has no stack for.
pub fn start(vcpu: usize, main: fn(usize) -> !) -> i64 {
    if vcpu == 0 || vcpu >= MAX_VCPUS {
        return crate::psci::INVALID_PARAMETERS;
    }
    let reserved = core::ptr::addr_of!(__secondary_stacks_top) as usize
        - core::ptr::addr_of!(__secondary_stacks_bottom) as usize;
    assert_eq!(
        reserved,
        SECONDARY_STACK_SIZE * (MAX_VCPUS - 1),
        "bulkhead-domain.ld reserves secondary stacks of another size"
    );
    MAIN[vcpu].store(main as usize, Ordering::Release);
    crate::psci::cpu_on(vcpu as u64, entry(), vcpu as u64)
}

/// Rust side of the secondary entry: a vCPU `0..MAX_VCPUS` with its stack,
/// FP/SIMD and vectors set up.
#[no_mangle]
extern "C" fn __bulkhead_rt_secondary(vcpu: usize, context: u64) -> ! {
    CONTEXT[vcpu].store(context, Ordering::Release);
    if crate::gic::present() {
        if let Err(e) = crate::gic::init_cpu() {
            crate::println!("{}: vcpu {vcpu}: GIC setup failed: {e}", crate::name());
        }
    }
    let addr = MAIN[vcpu].load(Ordering::Acquire);
    if addr == 0 {
        crate::println!("{}: vcpu {vcpu} started with nothing to run", crate::name());
        crate::halt();
    }
    // SAFETY: the only non-zero values stored in MAIN are `fn(usize) -> !`
    // pointers converted by `start`; function pointers and `usize` have
    // the same size, and the function lives as long as the program.
    let main = unsafe { core::mem::transmute::<usize, fn(usize) -> !>(addr) };
    main(vcpu)
}
