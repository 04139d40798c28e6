//! Entry points: the arm64 `Image` header the boot loader (QEMU, U-Boot
//! `booti`) reads, the primary core's entry, the entry PSCI `CPU_ON` sends
//! secondary cores to, per-core stacks, and the jump into a domain.

use crate::exceptions::TrapFrame;
use bulkhead_core::plan::MAX_CPUS;

/// Bytes of stack per core: traps, and loading a domain (its deepest path,
/// about 20 KiB with the device-tree buffer). Every test passes with 24 KiB.
pub const STACK_SIZE: usize = 64 * 1024;
/// Bytes of the boot core's stack while it checks the config and builds
/// the plan (149 KiB deep for the test configs, printed at every boot: the
/// plan, the error lists and the parser's state live on it; 128 KiB
/// overflows). It then moves to its own core's stack to run its
/// domain.
pub const BOOT_STACK_SIZE: usize = 256 * 1024;
/// Unmapped guard page below each stack: an overflow faults instead of
/// silently overwriting the data below.
pub const GUARD_SIZE: usize = 4096;
/// Distance between two cores' stacks.
pub const STACK_SLOT: usize = STACK_SIZE + GUARD_SIZE;
const BOOT_STACK_SLOT: usize = BOOT_STACK_SIZE + GUARD_SIZE;

core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    // arm64 Image header (Documentation/arch/arm64/booting.rst).
    b       2f                      // code0: branch to the real entry
    .long   0                       // code1
    .quad   0                       // text_offset: load at a 2 MiB boundary
    .quad   0                       // image_size: patched by `cargo xtask build`
    .quad   8                       // flags: little-endian, page size unspecified, may be anywhere (bit 3: it relocates itself)
    .quad   0                       // res2: package offset, patched by `cargo xtask build`
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5
2:
    mov     x19, x0                 // boot loader's device tree
    // Interrupts and aborts stay masked at EL2.
    msr     daifset, #0xf
    // Refuse to run anywhere but at EL2.
    mrs     x1, CurrentEL
    cmp     x1, #(2 << 2)
    b.ne    .Lwrong_el
    // Linked at 0: the load address is the relocation offset. Stage 1 at
    // EL2 maps 4 KiB pages, so the image must start on one.
    adr     x20, _start
    tst     x20, #0xfff
    b.ne    .Lmisaligned
    // Apply the relocations (all R_AARCH64_RELATIVE: the linker script and
    // `cargo xtask build` see to it) before anything reads a pointer.
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
3:  cmp     x1, x2
    b.hs    4f
    ldp     x3, x4, [x1], #16       // r_offset, r_info
    ldr     x5, [x1], #8            // r_addend
    cmp     x4, #1027               // R_AARCH64_RELATIVE
    b.ne    .Lbad_reloc
    add     x5, x5, x20
    str     x5, [x20, x3]
    b       3b
4:  // The boot stack (whichever core boots).
    adrp    x1, __boot_stack_base
    add     x1, x1, :lo12:__boot_stack_base
    ldr     x2, ={boot_stack_slot}
    add     sp, x1, x2
    // Zero .bss (includes the boot stack, whose depth is measured by its
    // lowest non-zero word; the other cores' stacks are not in it: nothing
    // reads them before writing). With the MMU off, memory is Device: no
    // `dc zva`, so 64 bytes a turn with `stp` (.bss is 4 KiB aligned).
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
5:  cmp     x1, x2
    b.hs    6f
    stp     xzr, xzr, [x1]
    stp     xzr, xzr, [x1, #16]
    stp     xzr, xzr, [x1, #32]
    stp     xzr, xzr, [x1, #48]
    add     x1, x1, #64
    b       5b
6:  // Everything above was written with the MMU (and so the data cache)
    // off: drop any line the loader left cached over the image, so the
    // first cacheable read after the MMU is on sees what is in memory
    // (up to the translation-table frames, which the pool invalidates one
    // by one as it hands them out). Four lines a turn while four fit, then
    // line by line.
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4         // DminLine: log2(words per line)
    mov     x4, #4
    lsl     x4, x4, x3              // bytes per line
    lsl     x5, x4, #2              // four lines
    mov     x1, x20
    adrp    x2, __tables_start
    add     x2, x2, :lo12:__tables_start
10: add     x6, x1, x5
    cmp     x6, x2
    b.hi    11f
    dc      ivac, x1
    add     x1, x1, x4
    dc      ivac, x1
    add     x1, x1, x4
    dc      ivac, x1
    add     x1, x1, x4
    dc      ivac, x1
    add     x1, x1, x4
    b       10b
11: cmp     x1, x2
    b.hs    12f
    dc      ivac, x1
    add     x1, x1, x4
    b       11b
12: dsb     sy
    ic      iallu
    dsb     sy
    isb
    mov     x0, x19
    bl      {primary_main}
    b       .Lhalt

.Lwrong_el:
    adr     x0, .Lmsg_el
    b       .Lpanic_early
.Lmisaligned:
    adr     x0, .Lmsg_align
    b       .Lpanic_early
.Lbad_reloc:
    adr     x0, .Lmsg_reloc
.Lpanic_early:
    // Print a NUL-terminated message on the board's console UART (at its
    // transmit register, `UartKind::tx_offset`), without any set-up.
    // (`adr`, not `adrp`: right even when loaded off a page boundary.)
    adr     x1, {early_uart}
    ldr     x1, [x1]
8:  ldrb    w2, [x0], #1
    cbz     w2, .Lhalt
    str     w2, [x1]
    b       8b
.Lhalt:
    wfi
    b       .Lhalt
.Lmsg_el:
    .asciz  "bulkhead: fatal: not entered at EL2 (the boot loader must start it at EL2; QEMU: virtualization=on)\n"
.Lmsg_align:
    .asciz  "bulkhead: fatal: loaded at an address that is not 4 KiB aligned\n"
.Lmsg_reloc:
    .asciz  "bulkhead: fatal: the image has a relocation other than R_AARCH64_RELATIVE\n"
    .balign 4

    // Secondary cores arrive here from PSCI CPU_ON, MMU off, x0 = core index.
    .section .text
    .global secondary_entry
secondary_entry:
    msr     daifset, #0xf
    adrp    x1, __stacks_base
    add     x1, x1, :lo12:__stacks_base
    ldr     x2, ={stack_slot}
    madd    x1, x0, x2, x1
    add     sp, x1, x2
    bl      {secondary_main}
    b       .Lhalt

    // Spin-table entries: core n's mailbox gets the address of the n-th
    // (each 8 bytes), which enters `secondary_entry` with x0 = n.
    .balign 8
    .global spin_table_entries
spin_table_entries:
    .set    core, 0
    .rept   {max_cpus}
    mov     x0, #core
    b       secondary_entry
    .set    core, core + 1
    .endr

    // run_guest(frame: *const TrapFrame, stack_top: usize) -> !
    // Resets this core's stack, copies the domain's initial registers onto it
    // and leaves through the common exception return path.
    .global run_guest
run_guest:
    mov     sp, x1
    sub     sp, sp, #{frame_size}
    mov     x2, sp
    mov     x3, #({frame_size} / 16)
6:  ldp     x4, x5, [x0], #16
    stp     x4, x5, [x2], #16
    subs    x3, x3, #1
    b.ne    6b
    b       exception_return

    .section .bss.stacks, "aw", @nobits
    .balign 4096
    .global __boot_stack_base
__boot_stack_base:
    .space  {boot_stack_slot}

    // The cores' own stacks: not zeroed at boot (see link.ld).
    .section .stacks, "aw", @nobits
    .balign 4096
    .global __stacks_base
__stacks_base:
    .space  {stack_slot} * {max_cpus}
    "#,
    stack_slot = const STACK_SLOT,
    boot_stack_slot = const BOOT_STACK_SLOT,
    max_cpus = const MAX_CPUS,
    frame_size = const core::mem::size_of::<TrapFrame>(),
    primary_main = sym crate::primary_main,
    early_uart = sym crate::EARLY_UART,
    secondary_main = sym crate::secondary_main,
);

unsafe extern "C" {
    /// PSCI `CPU_ON` entry point of secondary cores.
    pub fn secondary_entry();
    static spin_table_entries: u8;
    fn run_guest(frame: *const TrapFrame, stack_top: usize) -> !;
    static __stacks_base: u8;
    static __boot_stack_base: u8;
    pub static __image_start: u8;
    pub static __text_end: u8;
    pub static __rodata_end: u8;
    pub static __image_end: u8;
}

/// Address of a linker symbol.
macro_rules! symbol_addr {
    ($sym:ident) => {
        core::ptr::addr_of!($crate::boot::$sym) as u64
    };
}
pub(crate) use symbol_addr;

/// The address core `core` is sent to from a spin table.
pub fn spin_table_entry(core: usize) -> u64 {
    core::ptr::addr_of!(spin_table_entries) as u64 + 8 * core as u64
}

/// Start this core afresh at the secondary entry, as a start request does:
/// its stack is dropped.
pub fn restart_secondary(core: usize) -> ! {
    // SAFETY: `secondary_entry` takes the core index in x0, masks
    // interrupts, resets the stack to this core's own and never returns;
    // nothing on the current stack is used again.
    unsafe {
        core::arch::asm!(
            "br {entry}",
            entry = in(reg) secondary_entry as *const () as u64,
            in("x0") core,
            options(noreturn)
        )
    }
}

/// Top of the stack of core `index`.
pub fn stack_top(index: usize) -> usize {
    symbol_addr!(__stacks_base) as usize + (index + 1) * STACK_SLOT
}

/// The guard page below the stack of core `index`.
fn stack_guard(index: usize) -> u64 {
    (symbol_addr!(__stacks_base) as usize + index * STACK_SLOT) as u64
}

/// Bytes of the boot stack used so far: its lowest non-zero word (it is in
/// `.bss`, zeroed before first use, and the deepest frame holds at least a
/// return address).
pub fn boot_stack_used() -> usize {
    let base = symbol_addr!(__boot_stack_base) as usize + GUARD_SIZE;
    let words = BOOT_STACK_SIZE / 8;
    // SAFETY: the boot stack is mapped read/write for the partitioner's
    // whole life; reading words of it below the current stack pointer (dead
    // frames) or in live frames only reads initialised memory.
    let stack = unsafe { core::slice::from_raw_parts(base as *const u64, words) };
    let lowest = stack.iter().position(|&w| w != 0).unwrap_or(words);
    (words - lowest) * 8
}

/// Every stack's guard page, lowest first: the boot stack's, then each
/// core's.
pub fn stack_guards() -> impl Iterator<Item = u64> {
    core::iter::once(symbol_addr!(__boot_stack_base)).chain((0..MAX_CPUS).map(stack_guard))
}

/// Where each core keeps the registers a domain starts with while its stack
/// is reset (a static, so the copy in `run_guest` never overlaps its source).
static START_FRAMES: [spin::Mutex<TrapFrame>; MAX_CPUS] =
    [const { spin::Mutex::new(TrapFrame::ZERO) }; MAX_CPUS];

/// Drop everything on this core's stack and enter the domain with `frame`.
pub fn enter_guest(frame: &TrapFrame, core: usize) -> ! {
    let ptr = {
        let mut slot = START_FRAMES[core].lock();
        *slot = *frame;
        &*slot as *const TrapFrame
    };
    // SAFETY: `ptr` points into a static that only this core writes, so it stays valid and unchanged while `run_guest`
    // copies it onto the top of this core's own stack (no overlap: the static is not on any stack). The caller has set up
    // all EL2 state for the domain, so the `eret` at the end of `run_guest` enters the domain as intended.
    unsafe { run_guest(ptr, stack_top(core)) }
}
