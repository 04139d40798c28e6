//! EL2 exception vectors. Every one of the 16 vectors saves the full register
//! state into a [`TrapFrame`] and calls [`el2_trap`], except a domain's IRQ,
//! which handles the vCPU's own timer and the kick of the SGI fast path in
//! assembly (`irq_entry`, `irq_kick_v3`, and GICv2's after `irq_fast_v2`)
//! and otherwise saves only what a Rust call may destroy, and a domain's
//! synchronous exception, which first looks for a GICv3 `ICC_SGI1R_EL1`
//! write or a GICv2 `GICD_SGIR` store the SGI fast path sends in assembly
//! (`sync_entry`, `sgi1r_fast`, `sgir_fast`); nothing is ever taken
//! silently. Traps from a domain go to `crate::domain::handle_*`; anything the
//! partitioner itself takes is reported on the console and stops the core.

use aarch64_cpu::registers::{Readable, ESR_EL2, FAR_EL2};
use bulkhead_core::plan::MAX_CPUS;
use bulkhead_core::trap::Syndrome;
use bulkhead_core::vsgi;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// General-purpose registers, ELR_EL2 and SPSR_EL2 of the interrupted context.
/// For a domain this *is* its vCPU's register state.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    _pad: u64,
}

impl TrapFrame {
    pub const ZERO: TrapFrame = TrapFrame {
        x: [0; 31],
        elr: 0,
        spsr: 0,
        _pad: 0,
    };

    /// Read general-purpose register `n` (31 reads as zero: xzr).
    pub fn reg(&self, n: u8) -> u64 {
        self.x.get(n as usize).copied().unwrap_or(0)
    }

    /// Write general-purpose register `n` (writes to 31, xzr, are dropped).
    pub fn set_reg(&mut self, n: u8, v: u64) {
        if let Some(r) = self.x.get_mut(n as usize) {
            *r = v;
        }
    }
}

const FRAME: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME.is_multiple_of(16));

core::arch::global_asm!(
    r#"
.macro SAVE_X2_X17
    stp     x2, x3, [sp, #16]
    SAVE_X4_X17
.endm

.macro SAVE_X4_X17
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
.endm

.macro RESTORE_X2_X17
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
.endm

// x1 = general-purpose register x0 of the domain (0-30; 31 reads as
// zero), with x0-x7 in the frame and x8-x30 still live; x0 is destroyed.
.macro READ_REG
    adr     x1, 50f
    add     x1, x1, x0, lsl #3
    br      x1
50:
    .irp    n, 0,1,2,3,4,5,6,7
    ldr     x1, [sp, #(\n * 8)]
    b       51f
    .endr
    .irp    n, 8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30
    mov     x1, x\n
    b       51f
    .endr
    mov     x1, xzr                         // 31: xzr
51:
.endm

// Both kicks (x2 = this core's index): to the Rust handler with the kick
// acknowledged if a request waits for the core; else x4-x5 saved and x1 =
// its pending-SGI bitmap (`irq::SGI_PENDING[core]`). x3 destroyed.
.macro KICK_PROLOGUE
    adrp    x1, {cores}
    add     x1, x1, :lo12:{cores}
    mov     x3, #{core_stride}
    madd    x1, x2, x3, x1
    ldr     x1, [x1, #{request}]
    cbnz    x1, irq_slow_acked              // a request: the Rust handler
    stp     x4, x5, [sp, #32]
    adrp    x1, {sgi_pending}
    add     x1, x1, :lo12:{sgi_pending}
    add     x1, x1, x2, lsl #{pending_shift} // &SGI_PENDING[core][0]
.endm

// To `target` if ESR_EL2 & mask == value (32-bit constants, given as
// halves); x0 and x1 destroyed.
.macro ESR_IS mask_lo, mask_hi, value_lo, value_hi, target
    mrs     x0, esr_el2
    mov     w1, #\mask_lo
    movk    w1, #\mask_hi, lsl #16
    and     x1, x0, x1
    mov     w0, #\value_lo
    movk    w0, #\value_hi, lsl #16
    cmp     x1, x0
    b.eq    \target
.endm

// Both SGI fast paths, first: x2-x7 saved (x0-x1 were), x1 = the value
// written (the register ESR_EL2 names at bit `reg_at`, x0-x7 from the
// frame), x3 = this core's `irq::SGI_ROUTE`, x4 = its domain's vCPUs (to
// `sgi1r_slow` while not set), x5 = this vCPU, x7 = its bit.
.macro SGI_PROLOGUE reg_at
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    mrs     x0, esr_el2
    ubfx    x0, x0, #\reg_at, #5
    READ_REG
    mrs     x2, tpidr_el2                   // this core's index
    adrp    x3, {sgi_route}
    add     x3, x3, :lo12:{sgi_route}
    mov     x4, #{route_stride}
    madd    x3, x2, x4, x3                  // x3 = &SGI_ROUTE[core]
    ldr     x4, [x3, #{route_vcpus}]        // x4 = the domain's vCPUs
    cbz     x4, sgi1r_slow
    ldr     x5, [x3, #{route_vcpu}]         // x5 = this vCPU
    mov     x7, #1
    lsl     x7, x7, x5                      // x7 = its bit
.endm

// Both SGI fast paths: whether every target vCPU (bits of x6; x3 = this
// core's `irq::SGI_ROUTE`, x1 = the SGI) has the SGI enabled
// (`irq::SGI_ON`), runs and, with `interface` (GICv2), has its core's CPU
// interface known (`gic::CPU_INTERFACE`); to `sgi1r_slow` if one does not.
// Destroys x0, x2, x4 and x7.
.macro TARGETS_READY interface
    mov     x4, x6
1:  rbit    x2, x4
    clz     x2, x2                          // a target vCPU
    add     x0, x3, x2, lsl #3
    ldr     x2, [x0, #{route_core}]         // its core
    adrp    x0, {sgi_on}
    add     x0, x0, :lo12:{sgi_on}
    ldrh    w0, [x0, x2, lsl #1]
    lsr     w0, w0, w1
    tbz     w0, #0, sgi1r_slow              // disabled: the model latches it
    .if \interface
    adrp    x0, {cpu_interface}
    add     x0, x0, :lo12:{cpu_interface}
    ldrb    w0, [x0, x2]
    cbz     w0, sgi1r_slow                  // its interface not known yet
    .endif
    adrp    x0, {cores}
    add     x0, x0, :lo12:{cores}
    mov     x7, #{core_stride}
    madd    x0, x2, x7, x0
    ldr     x0, [x0, #{core_state}]
    cmp     x0, #{on}
    b.ne    sgi1r_slow                      // not running: the same
    sub     x2, x4, #1
    and     x4, x4, x2
    cbnz    x4, 1b
.endm

// Spectre-BHB: overwrite the branch history the domain left with
// BHB_LOOP taken branches before any partitioner code runs (x0 is free:
// it was just saved).
.macro CLEAR_BHB
    adrp    x0, {bhb_loop}
    ldr     x0, [x0, :lo12:{bhb_loop}]
1:  b       2f
2:  subs    x0, x0, #1
    b.ne    1b
    dsb     nsh
    isb
.endm

// Save x0/x1 and go to the common path with the vector's index; with
// `hardened` (entries from a domain, vectors 8-15), the branch history is
// cleared first.
.macro VECTOR kind, hardened=0
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    .if \hardened
    CLEAR_BHB
    .endif
    mov     x0, #\kind
    b       save_and_dispatch
.endm

// Synchronous exception from a domain (AArch64): the SGI fast path is
// looked for first, see `sync_entry`.
.macro SYNC_VECTOR hardened
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    .if \hardened
    CLEAR_BHB
    .endif
    b       sync_entry
.endm

// IRQ from a domain: the hot path, see `irq_entry`.
.macro IRQ_VECTOR hardened
    .balign 0x80
    sub     sp, sp, #{irq_frame}
    stp     x0, x1, [sp, #0]
    .if \hardened
    CLEAR_BHB
    .endif
    b       irq_entry
.endm

.macro VECTOR_TABLE hardened
    VECTOR 0
    VECTOR 1
    VECTOR 2
    VECTOR 3
    VECTOR 4
    VECTOR 5
    VECTOR 6
    VECTOR 7
    SYNC_VECTOR \hardened
    IRQ_VECTOR \hardened
    VECTOR 10, \hardened
    VECTOR 11, \hardened
    VECTOR 12, \hardened
    VECTOR 13, \hardened
    VECTOR 14, \hardened
    VECTOR 15, \hardened
.endm

    .section .text
    .balign 0x800
    .global el2_vectors
el2_vectors:
    VECTOR_TABLE 0

    // The same table with every entry from a domain hardened (CLEAR_BHB),
    // for cores exposed to Spectre-BHB (see `harden`).
    .balign 0x800
    .global el2_vectors_hardened
el2_vectors_hardened:
    VECTOR_TABLE 1

save_and_dispatch:
    SAVE_X2_X17
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x30, x2, [sp, #240]
    str     x3, [sp, #256]
    mov     x1, sp
    bl      {handler}

    .global exception_return
exception_return:
    ldp     x30, x2, [sp, #240]
    ldr     x3, [sp, #256]
    msr     elr_el2, x2
    msr     spsr_el2, x3
    ldp     x0, x1, [sp, #0]
    RESTORE_X2_X17
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #{frame}
    eret

// A synchronous exception from a domain (AArch64), x0 and x1 saved: a
// GICv3 `MSR ICC_SGI1R_EL1, Xt` (`vsgi::sgi1r_write`) goes to
// `sgi1r_fast`, a 32-bit store that faulted in stage 2
// (`vsgi::word_write`) to `sgir_fast`, anything else to the general path.
sync_entry:
    ESR_IS  {esr_mask_lo}, {esr_mask_hi}, {esr_sgi1r_lo}, {esr_sgi1r_hi}, sgi1r_fast
    ESR_IS  {esr_word_mask_lo}, {esr_word_mask_hi}, {esr_word_write_lo}, {esr_word_write_hi}, sgir_fast
sync_general:
    mov     x0, #8
    b       save_and_dispatch

// The SGI fast path of a GICv3 ICC_SGI1R_EL1 write, in assembly: what
// `domain::sgi_trap` and `irq::send_sgi_fast` do, with this core's
// `irq::SGI_ROUTE` for the plan. Only for SGIs to other vCPUs of the
// domain (one to itself is the Rust path's), all of them the domain's own
// (Aff3.Aff2.Aff1 and the range selector 0, no Aff0 bit beyond its vCPUs;
// or IRM: all the others), each with the SGI enabled (`irq::SGI_ON`) and
// running; then the SGI's bit in each target's `irq::SGI_PENDING` (one
// atomic OR) and the kick to its core; the exit counted (`sysreg`), the
// set/way flag cleared, the MSR stepped over. Anything else, with every
// register as it came, to the general path, which decides again.
sgi1r_fast:
    adrp    x0, {fast_gic}
    ldr     w0, [x0, :lo12:{fast_gic}]
    cmp     w0, #3
    b.ne    sync_general
    SGI_PROLOGUE 5                          // Rt of the MSR
    tbz     x1, #40, 52f
    bic     x6, x4, x7                      // IRM: every other vCPU
    b       53f
52: and     x6, x1, #0xffff                 // the target list
    cbz     x6, 60f                         // nobody
    movz    x0, #0x00ff, lsl #16            // Aff1
    movk    x0, #0xf0ff, lsl #32            // Aff2, RS
    movk    x0, #0x00ff, lsl #48            // Aff3
    tst     x1, x0
    b.ne    sgi1r_slow                      // foreign: the general path reports it
    bics    xzr, x6, x4
    b.ne    sgi1r_slow                      // vCPUs it does not have: the same
53: cbz     x6, 60f
    tst     x6, x7
    b.ne    sgi1r_slow                      // to itself too: the Rust path
    ubfx    x1, x1, #24, #4                 // x1 = the SGI
    TARGETS_READY 0
    // Deliver: the SGI's bit (source 0) in each target's bitmap, the kick.
    mov     x4, #1
    lsl     x4, x4, x1
55: rbit    x5, x6
    clz     x5, x5
    add     x7, x3, x5, lsl #3
    ldr     x0, [x7, #{route_core}]
    adrp    x2, {sgi_pending}
    add     x2, x2, :lo12:{sgi_pending}
    add     x2, x2, x0, lsl #{pending_shift}
56: ldxr    x0, [x2]
    orr     x0, x0, x4
    stlxr   w5, x0, [x2]
    cbnz    w5, 56b
    ldr     x0, [x7, #{route_kick}]
    dsb     ishst
    msr     S3_0_C12_C11_5, x0              // ICC_SGI1R_EL1: the kick
    sub     x5, x6, #1
    and     x6, x6, x5
    cbnz    x6, 55b
60:
// Both SGI fast paths end here, the SGI sent: the exit counted, the
// set/way flag cleared, the 4-byte instruction stepped over, x2-x7
// restored.
sgi_fast_done:
    mrs     x2, tpidr_el2
    // exits::count(this core, Cause::Sgi)
    adrp    x0, {slots}
    add     x0, x0, :lo12:{slots}
    mov     x3, #{slots_stride}
    madd    x0, x2, x3, x0
    ldr     x3, [x0, #{sgi_slot}]
    add     x3, x3, #1
    str     x3, [x0, #{sgi_slot}]
    // CORES[core].set_way = SET_WAY_NONE (an exit other than set/way)
    adrp    x0, {cores}
    add     x0, x0, :lo12:{cores}
    mov     x3, #{core_stride}
    madd    x0, x2, x3, x0
    strb    wzr, [x0, #{set_way}]
    mrs     x0, elr_el2
    add     x0, x0, #4                      // an AArch64 MSR, or see sgir_done
    msr     elr_el2, x0
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{frame}
    eret

sgi1r_slow:
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    b       sync_general

// The SGI fast path of a GICv2 `GICD_SGIR` write (a 32-bit store to the
// virtual distributor's GICD_SGIR, `vsgi::word_write`), in assembly: what
// `domain::sgi_trap` and `irq::send_sgi_fast` do on GICv2, by the rules of
// `vsgi::sgir_targets`: TargetListFilter 0 (the listed vCPUs, all the
// domain's own) or 1 (every other vCPU), never to itself (filter 2, or
// 3, reserved: the Rust path). Each target must have the SGI enabled
// (`irq::SGI_ON`), run and have its CPU interface known; then the SGI's
// bit, with this vCPU as its source (`vsgi::pending_bit`), in each
// target's `irq::SGI_PENDING`, and the kick (`gic::SGI_KICK` through the
// physical GICD_SGIR to its CPU interface). Anything else, a store inside
// an AArch32 IT block included, with every register as it came, to the
// general path.
sgir_fast:
    adrp    x0, {fast_gic}
    ldr     w0, [x0, :lo12:{fast_gic}]
    cmp     w0, #2
    b.ne    sync_general
    // A store of AArch32 EL0 inside an IT block: the general path, whose
    // step also advances ITSTATE (SPSR[26:25] and [15:10]).
    mrs     x0, spsr_el2
    tbz     x0, #4, 61f                     // M[4] clear: AArch64
    tst     x0, #0x6000000
    b.ne    sync_general
    tst     x0, #0xfc00
    b.ne    sync_general
61: mrs     x0, hpfar_el2                   // the address: IPA[47:12] at bit 4
    lsr     x0, x0, #4
    mrs     x1, far_el2
    bfi     x1, x0, #12, #52                // x1 = the fault IPA
    movz    x0, #{vsgir_0}
    movk    x0, #{vsgir_1}, lsl #16
    movk    x0, #{vsgir_2}, lsl #32
    cmp     x1, x0
    b.ne    sync_general
    SGI_PROLOGUE 16                         // SRT of the store
    ubfx    x0, x1, #24, #2                 // TargetListFilter
    cbz     x0, 62f
    cmp     x0, #1
    b.ne    sgi1r_slow                      // itself, or reserved
    bic     x6, x4, x7                      // every other vCPU
    b       63f
62: ubfx    x6, x1, #16, #8                 // CPUTargetList
    bics    xzr, x6, x4
    b.ne    sgi1r_slow                      // vCPUs it does not have: reported there
63: cbz     x6, sgir_done                   // nobody
    tst     x6, x7
    b.ne    sgi1r_slow                      // to itself too: the Rust path
    and     x1, x1, #0xf                    // x1 = the SGI
    TARGETS_READY 1
    // The bit: word source / 4, bit (source % 4) * 16 + SGI.
    and     x0, x5, #3
    add     x1, x1, x0, lsl #4
    mov     x4, #1
    lsl     x4, x4, x1                      // x4 = the bit
    lsr     x5, x5, #2                      // x5 = its word
    adrp    x7, {bases}
    ldr     x7, [x7, :lo12:{bases}]         // GICD
    str     x8, [sp, #64]                   // x8: the exclusive store's status
65: rbit    x2, x6
    clz     x2, x2
    add     x0, x3, x2, lsl #3
    ldr     x0, [x0, #{route_core}]         // the target's core
    adrp    x2, {sgi_pending}
    add     x2, x2, :lo12:{sgi_pending}
    add     x2, x2, x0, lsl #{pending_shift}
    add     x2, x2, x5, lsl #3
66: ldxr    x1, [x2]
    orr     x1, x1, x4
    stlxr   w8, x1, [x2]
    cbnz    w8, 66b
    adrp    x2, {cpu_interface}
    add     x2, x2, :lo12:{cpu_interface}
    ldrb    w1, [x2, x0]
    lsl     w1, w1, #16
    add     w1, w1, #{sgi_kick}
    dsb     ishst
    str     w1, [x7, #{gicd_sgir}]          // the kick
    sub     x2, x6, #1
    and     x6, x6, x2
    cbnz    x6, 65b
    ldr     x8, [sp, #64]
// A store of an AArch32 EL0 may be a 16-bit T32 one (ESR_EL2.IL clear):
// the common ending steps over 4 bytes, so 2 back first.
sgir_done:
    mrs     x0, esr_el2
    tbnz    x0, #25, sgi_fast_done
    mrs     x0, elr_el2
    sub     x0, x0, #2
    msr     elr_el2, x0
    b       sgi_fast_done

// An IRQ from a domain, x0 and x1 saved. The virtual timer of the vCPU
// on this core (the most frequent interrupt by far) is handled right here
// when `irq::TIMER_LR` holds its list register value for this core, nothing
// waits in the core's queue, the acknowledge returns the timer, no list
// register beyond the first four is in use, none holds the timer already
// (see `irq::inject_here`) and one of the four is free: into that list
// register (the physical interrupt stays active until the guest's
// deactivation reaches it, through the entry's HW bit or the EOI
// maintenance interrupt), priority drop, exit counted,
// back to the domain. This is `irq::handle_physical`'s `VTIMER_INTID` case
// and `inject_here`, without a frame or a call. On GICv3 the kick that
// brings an SGI of the SGI fast path is handled here too (`irq_kick_v3`).
// Anything else goes to the Rust handlers, which save what a Rust call may
// destroy.
irq_entry:
    stp     x2, x3, [sp, #16]
    mrs     x2, tpidr_el2                   // this core's index
    adrp    x0, {queued}
    add     x0, x0, :lo12:{queued}
    ldrb    w0, [x0, x2]
    cbnz    w0, irq_slow
    adrp    x0, {fast_gic}
    ldr     w0, [x0, :lo12:{fast_gic}]
    cmp     w0, #2
    b.eq    irq_fast_v2
    cbz     w0, irq_slow                    // (else 3: GICv3)
    adrp    x1, {timer_lr}
    add     x1, x1, :lo12:{timer_lr}
    ldr     x1, [x1, x2, lsl #3]
    mrs     x0, S3_0_C12_C12_0              // ICC_IAR1_EL1: acknowledge
    and     x0, x0, #0xffffff
    cmp     x0, #{vtimer}
    b.ne    15f
    cbz     x1, irq_slow_acked              // the timer is not deliverable now
    mrs     x3, S3_4_C12_C11_5              // ICH_ELRSR_EL2: empty list registers
    // No list register in use beyond the first four, and none of those
    // holding the timer already (the domain cleared its active state
    // behind it: `irq::inject_here` merges it): else the Rust handler.
    // x0 (the timer's INTID) and x2 (this core) serve meanwhile.
    adrp    x0, {lr_mask}
    ldr     x0, [x0, :lo12:{lr_mask}]
    bics    x0, x0, x3                      // list registers in use
    b.eq    9f                              // none (the common case)
    tst     x0, #~0xf
    b.ne    18f
    .irp    n, 0,1,2,3
    tbz     x0, #\n, 17f
    mrs     x2, S3_4_C12_C12_\n             // ICH_LR<n>_EL2
    cmp     w2, #{vtimer}                   // its vINTID
    b.eq    18f
17:
    .endr
    mrs     x2, tpidr_el2
9:  mov     x0, #{vtimer}
    tbnz    x3, #0, 10f
    tbnz    x3, #1, 11f
    tbnz    x3, #2, 12f
    tbnz    x3, #3, 13f
    b       irq_slow_acked
10: msr     S3_4_C12_C12_0, x1              // ICH_LR0_EL2
    b       14f
11: msr     S3_4_C12_C12_1, x1
    b       14f
12: msr     S3_4_C12_C12_2, x1
    b       14f
13: msr     S3_4_C12_C12_3, x1
14: msr     S3_0_C12_C12_1, x0              // ICC_EOIR1_EL1: priority drop (EOImode 1)
irq_fast_done:
    // exits::count(this core, Cause::Irq); x2 = this core's index
    adrp    x0, {slots}
    add     x0, x0, :lo12:{slots}
    mov     x3, #{slots_stride}
    madd    x0, x2, x3, x0
    ldr     x3, [x0, #{irq_slot}]
    add     x3, x3, #1
    str     x3, [x0, #{irq_slot}]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{irq_frame}
    eret

// GICv3, acknowledged (x0), not the timer.
15: cbz     x0, irq_kick_v3                 // gic::SGI_KICK
    b       irq_slow_acked
// The timer acknowledged, not for this path (GICv3 and GICv2).
18: mov     x0, #{vtimer}                   // what the acknowledge returned
    b       irq_slow_acked

// GICv3, the kick (acknowledged: x0 = its INTID, 0; x2 = this core's
// index): another core of the domain sent this vCPU an SGI through the SGI
// fast path (`irq::send_sgi_fast`). The common case is handled here, as
// `irq::take`'s `SGI_KICK` case, `domain::check_requests` and
// `irq::flush_sgis` would: no request left for this core, exactly one SGI
// in its pending-SGI bitmap (`irq::SGI_PENDING`, GICv3: source 0, the
// first word), and list registers that hold no SGI, none beyond the first
// four in use and one of those free (so nothing to merge with). The SGI
// goes into the first free list register with its priority from
// `irq::SGI_PRIORITY` (`vgic::lr_v3`: pending, group 1, software), the
// kick is ended (priority drop, deactivation), the exit counted. An empty
// bitmap (its SGI already taken on an earlier exit) only ends the kick.
// Anything else goes to the Rust handler with the kick acknowledged.
irq_kick_v3:
    KICK_PROLOGUE
    ldr     x3, [x1]
    cbz     x3, 30f                         // nothing left: end the kick
    sub     x4, x3, #1
    tst     x3, x4
    b.ne    irq_kick_slow                   // more than one SGI
    // The list registers: none in use beyond the first four, none of the
    // first four in use holds an SGI (vINTID < 16), one of them free.
    mrs     x4, S3_4_C12_C11_5              // ICH_ELRSR_EL2
    adrp    x5, {lr_mask}
    ldr     x5, [x5, :lo12:{lr_mask}]
    bic     x5, x5, x4                      // list registers in use
    tst     x5, #~0xf
    b.ne    irq_kick_slow
    tbz     x5, #0, 21f
    mrs     x3, S3_4_C12_C12_0
    cmp     w3, #16
    b.lo    irq_kick_slow
21: tbz     x5, #1, 22f
    mrs     x3, S3_4_C12_C12_1
    cmp     w3, #16
    b.lo    irq_kick_slow
22: tbz     x5, #2, 23f
    mrs     x3, S3_4_C12_C12_2
    cmp     w3, #16
    b.lo    irq_kick_slow
23: tbz     x5, #3, 24f
    mrs     x3, S3_4_C12_C12_3
    cmp     w3, #16
    b.lo    irq_kick_slow
24: tst     x4, #0xf
    b.eq    irq_kick_slow                   // none of the four free
    // The bitmap again (x3 held list registers above): still one SGI.
    ldr     x3, [x1]
    cbz     x3, irq_kick_slow
    sub     x5, x3, #1
    tst     x3, x5
    b.ne    irq_kick_slow
    tst     x3, #0xffff
    b.eq    irq_kick_slow                   // (never: GICv3 SGIs are source 0)
    // Take the bitmap, if it still holds just that SGI (senders on other
    // cores may add to it meanwhile; only this core takes).
25: ldaxr   x5, [x1]
    cmp     x5, x3
    b.ne    26f
    stxr    w5, xzr, [x1]
    cbnz    w5, 25b
    rbit    x3, x3
    clz     x3, x3                          // its SGI INTID
    adrp    x5, {sgi_priority}
    add     x5, x5, :lo12:{sgi_priority}
    add     x5, x5, x2, lsl #4
    ldrb    w5, [x5, x3]
    lsl     x5, x5, #48
    orr     x5, x5, x3
    orr     x5, x5, #(1 << 62)              // pending
    orr     x5, x5, #(1 << 60)              // group 1
    tbnz    x4, #0, 40f
    tbnz    x4, #1, 41f
    tbnz    x4, #2, 42f
    msr     S3_4_C12_C12_3, x5
    b       30f
40: msr     S3_4_C12_C12_0, x5
    b       30f
41: msr     S3_4_C12_C12_1, x5
    b       30f
42: msr     S3_4_C12_C12_2, x5
30: ldp     x4, x5, [sp, #32]
    msr     S3_0_C12_C12_1, x0              // ICC_EOIR1_EL1: priority drop
    msr     S3_0_C12_C11_1, x0              // ICC_DIR_EL1: deactivate the kick
    b       irq_fast_done
    // Another SGI arrived between the look and the take: the Rust handler.
26: clrex
irq_kick_slow:
    ldp     x4, x5, [sp, #32]
    mov     x0, #0                          // what the acknowledge returned
    b       irq_slow_acked

// The same on GICv2, through the memory-mapped CPU interface (GICC) and
// hypervisor interface (GICH) at `gic::BASES`.
irq_fast_v2:
    adrp    x1, {timer_lr}
    add     x1, x1, :lo12:{timer_lr}
    ldr     x1, [x1, x2, lsl #3]
    adrp    x3, {bases}
    add     x3, x3, :lo12:{bases}
    ldr     x2, [x3, #8]                    // GICC
    ldr     w0, [x2, #{gicc_iar}]           // acknowledge
    and     w0, w0, #0x1fff                 // INTID and (SGIs) source CPU
    cmp     w0, #{vtimer}
    b.ne    16f
    cbz     x1, irq_slow_acked              // the timer is not deliverable now
    ldr     x2, [x3, #16]                   // GICH
    ldr     w3, [x2, #{gich_elrsr0}]        // empty list registers
    // As on GICv3: none in use beyond the first four, none holding the
    // timer already. x0 (the timer's INTID) and x4 serve meanwhile.
    adrp    x0, {lr_mask}
    ldr     x0, [x0, :lo12:{lr_mask}]
    bics    x0, x0, x3                      // list registers in use
    b.eq    9f                              // none (the common case)
    tst     x0, #~0xf
    b.ne    18b
    str     x4, [sp, #32]
    .irp    n, 0,1,2,3
    tbz     x0, #\n, 17f
    ldr     w4, [x2, #({gich_lr0} + 4 * \n)]
    and     w4, w4, #0x3ff                  // its vINTID
    cmp     w4, #{vtimer}
    b.eq    19f
17:
    .endr
    ldr     x4, [sp, #32]
9:  mov     x0, #{vtimer}
    and     w3, w3, #0xf
    cbz     w3, irq_slow_acked
    rbit    w3, w3
    clz     w3, w3                          // the first empty one
    add     x2, x2, #{gich_lr0}
    str     w1, [x2, x3, lsl #2]
    adrp    x3, {bases}
    add     x3, x3, :lo12:{bases}
    ldr     x2, [x3, #8]
    str     w0, [x2, #{gicc_eoir}]          // priority drop (EOImode 1)
    mrs     x2, tpidr_el2
    b       irq_fast_done
// GICv2, the timer acknowledged and already listed (x4 saved).
19: ldr     x4, [sp, #32]
    b       18b

// GICv2, acknowledged (w0: IAR's INTID and source CPU), not the timer:
// the kick (`gic::SGI_KICK`, from any CPU interface) as `irq_kick_v3`
// takes it, through GICH's list registers. The common case: no request
// for this core, exactly one SGI pending in its bitmap and from sources
// 0-3 (the first word: `vsgi::pending_bit`), no SGI in the list
// registers, none beyond the first four in use, one of those free. The
// list register gets `vgic::lr_v2`'s value for it: pending, its priority
// (`irq::SGI_PRIORITY`, top five bits), its source vCPU as CPUID. The
// kick is ended (priority drop, deactivation, with the value the
// acknowledge returned), the exit counted. Anything else to the Rust
// handler with the kick acknowledged.
16: mrs     x2, tpidr_el2
    tst     w0, #0x3ff
    b.ne    irq_slow_acked                  // not the kick (SGI_KICK is 0)
    KICK_PROLOGUE
    stp     x6, x7, [sp, #48]
    ldr     x3, [x1, #8]
    cbnz    x3, irq_kick_v2_slow            // sources 4-7
    ldr     x3, [x1]
    cbz     x3, 39f                         // nothing left: end the kick
    sub     x4, x3, #1
    tst     x3, x4
    b.ne    irq_kick_v2_slow                // more than one SGI
    adrp    x5, {bases}
    add     x5, x5, :lo12:{bases}
    ldr     x5, [x5, #16]                   // GICH
    ldr     w4, [x5, #{gich_elrsr0}]        // empty list registers
    adrp    x6, {lr_mask}
    ldr     x6, [x6, :lo12:{lr_mask}]
    bic     x6, x6, x4                      // list registers in use
    tst     x6, #~0xf
    b.ne    irq_kick_v2_slow
    .irp    n, 0,1,2,3                      // each in use holds no SGI
    tbz     x6, #\n, 31f
    ldr     w7, [x5, #({gich_lr0} + 4 * \n)]
    and     w7, w7, #0x3ff                  // its vINTID
    cmp     w7, #16
    b.lo    irq_kick_v2_slow
31:
    .endr
    ands    w4, w4, #0xf
    b.eq    irq_kick_v2_slow                // none of the four free
    // Take the bitmap, if it still holds just that SGI.
35: ldaxr   x6, [x1]
    cmp     x6, x3
    b.ne    38f
    stxr    w6, xzr, [x1]
    cbnz    w6, 35b
    rbit    x3, x3
    clz     x3, x3                          // source * 16 + SGI
    and     x6, x3, #0xf                    // the SGI
    lsr     x3, x3, #4                      // its source vCPU
    adrp    x7, {sgi_priority}
    add     x7, x7, :lo12:{sgi_priority}
    add     x7, x7, x2, lsl #4
    ldrb    w7, [x7, x6]
    lsr     w7, w7, #3
    lsl     w7, w7, #23                     // priority
    orr     w7, w7, w6
    orr     w7, w7, w3, lsl #10             // CPUID: the source
    orr     w7, w7, #(1 << 28)              // pending
    rbit    w4, w4
    clz     w4, w4                          // the first free one
    add     x5, x5, #{gich_lr0}
    str     w7, [x5, x4, lsl #2]
39: ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    adrp    x3, {bases}
    add     x3, x3, :lo12:{bases}
    ldr     x3, [x3, #8]                    // GICC
    str     w0, [x3, #{gicc_eoir}]          // priority drop
    str     w0, [x3, #{gicc_dir}]           // deactivate the kick
    b       irq_fast_done
    // Another SGI arrived between the look and the take: the Rust handler.
38: clrex
irq_kick_v2_slow:
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    b       irq_slow_acked

// Nothing acknowledged yet (x2, x3 saved): the general handler, saving
// only what a Rust function may destroy (x0-x18, x30). It runs with every
// exception masked, so ELR_EL2 and SPSR_EL2 stay as the domain left them.
irq_slow:
    SAVE_X4_X17
    stp     x18, x30, [sp, #144]
    bl      {irq_handler}
    b       irq_return

// Acknowledged (x0: what the acknowledge register returned) but not the
// fast path's to handle.
irq_slow_acked:
    SAVE_X4_X17
    stp     x18, x30, [sp, #144]
    bl      {irq_acked_handler}

irq_return:
    ldp     x18, x30, [sp, #144]
    RESTORE_X2_X17
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{irq_frame}
    eret
    "#,
    frame = const FRAME,
    handler = sym el2_trap,
    irq_frame = const IRQ_FRAME,
    irq_handler = sym irq_from_domain,
    irq_acked_handler = sym irq_acknowledged_from_domain,
    bhb_loop = sym BHB_LOOP,
    timer_lr = sym crate::irq::TIMER_LR,
    queued = sym crate::irq::QUEUED,
    fast_gic = sym crate::irq::FAST_PATH_GIC,
    bases = sym crate::gic::BASES,
    slots = sym crate::exits::SLOTS,
    slots_stride = const crate::exits::SLOTS_STRIDE,
    irq_slot = const crate::exits::IRQ_SLOT_OFFSET,
    vtimer = const bulkhead_core::plan::VTIMER_INTID,
    gicc_iar = const crate::gic::GICC_IAR,
    gicc_eoir = const crate::gic::GICC_EOIR,
    gicc_dir = const crate::gic::GICC_DIR,
    gich_elrsr0 = const crate::gic::GICH_ELRSR0,
    gich_lr0 = const crate::gic::GICH_LR0,
    cores = sym crate::domain::CORES,
    core_stride = const crate::domain::CORE_STRIDE,
    request = const crate::domain::REQUEST_OFFSET,
    sgi_pending = sym crate::irq::SGI_PENDING,
    pending_shift = const PENDING_SHIFT,
    sgi_priority = sym crate::irq::SGI_PRIORITY,
    lr_mask = sym crate::irq::LR_MASK,
    esr_mask_lo = const vsgi::SYSREG_MASK & 0xffff,
    esr_mask_hi = const vsgi::SYSREG_MASK >> 16,
    esr_sgi1r_lo = const vsgi::SGI1R_WRITE_ESR & 0xffff,
    esr_sgi1r_hi = const vsgi::SGI1R_WRITE_ESR >> 16,
    esr_word_mask_lo = const vsgi::WORD_WRITE_MASK & 0xffff,
    esr_word_mask_hi = const vsgi::WORD_WRITE_MASK >> 16,
    esr_word_write_lo = const vsgi::WORD_WRITE_ESR & 0xffff,
    esr_word_write_hi = const vsgi::WORD_WRITE_ESR >> 16,
    vsgir_0 = const VSGIR & 0xffff,
    vsgir_1 = const (VSGIR >> 16) & 0xffff,
    vsgir_2 = const (VSGIR >> 32) & 0xffff,
    cpu_interface = sym crate::gic::CPU_INTERFACE,
    sgi_kick = const crate::gic::SGI_KICK,
    gicd_sgir = const crate::gic::GICD_SGIR,
    sgi_route = sym crate::irq::SGI_ROUTE,
    route_stride = const crate::irq::SGI_ROUTE_STRIDE,
    route_vcpus = const crate::irq::SGI_ROUTE_VCPUS,
    route_vcpu = const crate::irq::SGI_ROUTE_VCPU,
    route_core = const crate::irq::SGI_ROUTE_CORE,
    route_kick = const crate::irq::SGI_ROUTE_KICK,
    sgi_on = sym crate::irq::SGI_ON,
    core_state = const crate::domain::STATE_OFFSET,
    on = const crate::domain::ON,
    set_way = const crate::domain::SET_WAY_OFFSET,
    sgi_slot = const crate::exits::SGI_SLOT_OFFSET,
);

/// The guest address of the virtual distributor's GICD_SGIR (GICv2).
const VSGIR: u64 = bulkhead_core::plan::VGICD_IPA + bulkhead_core::vgic::regs::GICD_SGIR;
// `sgir_fast`'s: that address in 48 bits, a word-write syndrome in 32,
// one byte per CPU interface mask, a kick INTID an `orr` can take.
const _: () = assert!(VSGIR >> 48 == 0 && FRAME >= 72);
const _: () = assert!(vsgi::WORD_WRITE_MASK >> 32 == 0 && vsgi::WORD_WRITE_ESR >> 32 == 0);
const _: () = assert!(core::mem::size_of::<core::sync::atomic::AtomicU8>() == 1);
const _: () = assert!(crate::gic::SGI_KICK < 16 && crate::gic::GICD_SGIR < 4096);
// The GICv2 kick's: a core's pending-SGI bitmap is two words, sources 0-3
// in the first (`vsgi::pending_bit`), and GICC_DIR is an offset `str` takes.
const _: () = assert!(bulkhead_core::vsgi::PENDING_WORDS == 2);
const _: () = assert!(bulkhead_core::vsgi::pending_bit(3, 15).0 == 0);
const _: () = assert!(bulkhead_core::vsgi::pending_bit(4, 0).0 == 1);
const _: () = assert!(bulkhead_core::vsgi::pending_bit(1, 2).1 == 1 << 18);
const _: () = assert!(crate::gic::GICC_DIR < 16384 && crate::gic::GICC_DIR.is_multiple_of(4));
// `sgi1r_fast`'s assumptions: 32-bit syndrome constants, a frame with
// room for x0-x7, offsets an immediate reaches, two bytes per `SGI_ON`.
const _: () = assert!(vsgi::SYSREG_MASK >> 32 == 0 && vsgi::SGI1R_WRITE_ESR >> 32 == 0);
const _: () = assert!(FRAME >= 64 && crate::exits::SGI_SLOT_OFFSET < 4096);
const _: () = assert!(crate::irq::SGI_ROUTE_STRIDE < 65536);
const _: () = assert!(crate::irq::SGI_ROUTE_KICK < 4096 && crate::irq::SGI_ROUTE_VCPU < 4096);
const _: () = assert!(core::mem::size_of::<core::sync::atomic::AtomicU16>() == 2);

/// log2 of the bytes of one core's pending-SGI bitmap (`irq::SGI_PENDING`).
const PENDING_SHIFT: u32 = (bulkhead_core::vsgi::PENDING_WORDS * 8).trailing_zeros();
const _: () = assert!(1 << PENDING_SHIFT == bulkhead_core::vsgi::PENDING_WORDS * 8);
// `irq_kick_v3`: one core's SGI priorities are 16 bytes; SGIs of source 0
// are the low 16 bits of the first word.
const _: () = assert!(core::mem::size_of::<[core::sync::atomic::AtomicU8; 16]>() == 16);
const _: () = assert!(bulkhead_core::vsgi::pending_bit(0, 15).0 == 0);
const _: () = assert!(bulkhead_core::vsgi::pending_bit(0, 15).1 == 1 << 15);

// The fast path's layout assumptions.
const _: () = assert!(core::mem::size_of::<core::sync::atomic::AtomicU64>() == 8);
const _: () = assert!(core::mem::size_of::<core::sync::atomic::AtomicBool>() == 1);
const _: () = assert!(core::mem::size_of::<core::sync::atomic::AtomicUsize>() == 8);
const _: () = assert!(crate::exits::SLOTS_STRIDE < 4096 && crate::exits::IRQ_SLOT_OFFSET < 4096);

/// Iterations of the branch-history clearing loop of the hardened vectors
/// (the largest any core needs); never 0 once they are in use.
static BHB_LOOP: AtomicU64 = AtomicU64::new(0);
/// Cores that use the hardened vectors.
static HARDENED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Bytes the IRQ vector saves: x0-x18 and x30.
const IRQ_FRAME: usize = 160;

/// An IRQ taken from a domain: the most frequent exit, so it has its own
/// short path (no [`TrapFrame`]: nothing here reads or changes the domain's
/// registers).
extern "C" fn irq_from_domain() {
    crate::domain::handle_interrupt();
}

/// An IRQ from a domain that the fast path (`irq_entry`) acknowledged
/// (`raw`: what the acknowledge register returned) and leaves to the
/// general handler.
extern "C" fn irq_acknowledged_from_domain(raw: u32) {
    crate::domain::handle_acknowledged_interrupt(raw);
}

unsafe extern "C" {
    static el2_vectors: u8;
    static el2_vectors_hardened: u8;
}

/// Address of this core's vector table, for VBAR_EL2.
pub fn vectors() -> u64 {
    // (Also called before this core knows its index: then not hardened.)
    let hardened = HARDENED
        .get(crate::domain::this_core())
        .is_some_and(|h| h.load(Ordering::Acquire));
    if hardened {
        core::ptr::addr_of!(el2_vectors_hardened) as u64
    } else {
        core::ptr::addr_of!(el2_vectors) as u64
    }
}

/// Address of the hardened vector table.
pub fn hardened_vectors() -> u64 {
    core::ptr::addr_of!(el2_vectors_hardened) as u64
}

/// From now on, entries to EL2 from a domain on this core clear the
/// branch history with (at least) `iterations` taken branches first.
pub fn harden(iterations: u64) {
    BHB_LOOP.fetch_max(iterations, Ordering::AcqRel);
    if let Some(h) = HARDENED.get(crate::domain::this_core()) {
        h.store(true, Ordering::Release);
    }
}

const KINDS: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];

/// Called by the vectors with the vector index (0..16) and the saved state.
extern "C" fn el2_trap(kind: u64, frame: &mut TrapFrame) {
    match kind {
        8 => crate::domain::handle_sync(frame),
        10 => crate::domain::handle_interrupt(),
        11 => crate::domain::handle_serror(frame),
        _ => {
            let origin = match kind / 4 {
                0 => "EL2 with SP_EL0",
                1 => "EL2",
                2 => "a domain (AArch64)",
                _ => "a domain (AArch32)",
            };
            let esr = ESR_EL2.get();
            let far = FAR_EL2.get();
            let core = crate::domain::this_core();
            let overflow = if crate::boot::stack_guards().any(|g| g == far & !0xfff) {
                " (stack overflow)"
            } else {
                ""
            };
            crate::fatal(format_args!(
                "unexpected {} exception from {} on core {}: ESR_EL2={:#x} ({}) ELR_EL2={:#x} FAR_EL2={:#x}{} SPSR_EL2={:#x}",
                KINDS[(kind % 4) as usize],
                origin,
                core,
                esr,
                Syndrome(esr),
                frame.elr,
                far,
                overflow,
                frame.spsr
            ));
        }
    }
}
