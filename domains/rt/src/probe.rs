//! Accesses that may abort: [`try_read`] and [`try_write`] (8 bytes),
//! [`try_read32`] and [`try_write32`] (4 bytes, for device registers).
//!
//! Each performs exactly one load or store, from a fixed instruction
//! in a small assembly routine. While such an access is in progress (armed),
//! a data abort taken *at that instruction* is recorded by the exception
//! handler (ESR and FAR), the access is skipped (`ELR_EL1 += 4`; a load
//! yields 0) and the routine returns normally; the caller then gets
//! `Err(Abort)`. At most one abort is recorded per access: the handler
//! disarms on the first, so a second abort would be unexpected and halt the
//! core. Any other exception is never mistaken for a probe abort.

use crate::cpu::MAX_VCPUS;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// An abort received instead of completing an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abort {
    /// `ESR_EL1` of the exception.
    pub esr: u64,
    /// `FAR_EL1`: the faulting address.
    pub far: u64,
}

/// ESR_EL1.EC of a data abort taken without a change of exception level.
pub(crate) const EC_DATA_ABORT_SAME_EL: u64 = 0x25;
/// DFSC/IFSC of a synchronous external abort (not on a table walk).
pub const FSC_SYNC_EXTERNAL_ABORT: u64 = 0x10;

impl Abort {
    /// Exception class (ESR bits \[31:26\]).
    pub fn ec(&self) -> u64 {
        self.esr >> 26
    }
    /// Fault status code (ESR bits \[5:0\]).
    pub fn fsc(&self) -> u64 {
        self.esr & 0x3f
    }
    /// Whether this is a synchronous external abort, the way Bulkhead (and
    /// a bus error on real hardware) reports an access to an address the
    /// domain does not own.
    pub fn is_external(&self) -> bool {
        self.fsc() == FSC_SYNC_EXTERNAL_ABORT
    }
    /// Whether the access was a write (ESR.ISS.WnR).
    pub fn is_write(&self) -> bool {
        self.esr & (1 << 6) != 0
    }
    /// What the fault status code means.
    pub fn fsc_description(&self) -> &'static str {
        crate::exception::fsc_name(self.fsc())
    }
}

core::arch::global_asm!(
    r#"
    .section .text.bulkhead_probe, "ax"
    .balign 4
    .global __bulkhead_probe_read
    .type __bulkhead_probe_read, %function
__bulkhead_probe_read:
    .global __bulkhead_probe_read_insn
__bulkhead_probe_read_insn:
    ldr     x0, [x0]
    ret
    .size __bulkhead_probe_read, . - __bulkhead_probe_read

    .global __bulkhead_probe_write
    .type __bulkhead_probe_write, %function
__bulkhead_probe_write:
    .global __bulkhead_probe_write_insn
__bulkhead_probe_write_insn:
    str     x1, [x0]
    ret
    .size __bulkhead_probe_write, . - __bulkhead_probe_write

    .global __bulkhead_probe_read32
    .type __bulkhead_probe_read32, %function
__bulkhead_probe_read32:
    .global __bulkhead_probe_read32_insn
__bulkhead_probe_read32_insn:
    ldr     w0, [x0]
    ret
    .size __bulkhead_probe_read32, . - __bulkhead_probe_read32

    .global __bulkhead_probe_write32
    .type __bulkhead_probe_write32, %function
__bulkhead_probe_write32:
    .global __bulkhead_probe_write32_insn
__bulkhead_probe_write32_insn:
    str     w1, [x0]
    ret
    .size __bulkhead_probe_write32, . - __bulkhead_probe_write32

    .global __bulkhead_probe_exec
    .type __bulkhead_probe_exec, %function
__bulkhead_probe_exec:
    stp     x29, x30, [sp, #-16]!
    mov     x29, sp
    mov     x1, x0
    mov     x0, #1
    blr     x1
    .global __bulkhead_probe_exec_ret
__bulkhead_probe_exec_ret:
    ldp     x29, x30, [sp], #16
    ret
    .size __bulkhead_probe_exec, . - __bulkhead_probe_exec
"#
);

extern "C" {
    /// Loads the 8 bytes at `addr` (x0) into x0.
    fn __bulkhead_probe_read(addr: u64) -> u64;
    /// Stores `value` (x1) to the 8 bytes at `addr` (x0).
    fn __bulkhead_probe_write(addr: u64, value: u64);
    static __bulkhead_probe_read_insn: u8;
    static __bulkhead_probe_write_insn: u8;
    /// Loads the 4 bytes at `addr` (x0) into w0.
    fn __bulkhead_probe_read32(addr: u64) -> u32;
    /// Stores `value` (w1) to the 4 bytes at `addr` (x0).
    fn __bulkhead_probe_write32(addr: u64, value: u32);
    static __bulkhead_probe_read32_insn: u8;
    static __bulkhead_probe_write32_insn: u8;
    /// Branches (with link) to `addr` (x0 = 1 at the branch); returns x0.
    fn __bulkhead_probe_exec(addr: u64) -> u64;
    static __bulkhead_probe_exec_ret: u8;
}

/// ESR_EL1.EC of an instruction abort taken without a change of exception level.
pub(crate) const EC_INSN_ABORT_SAME_EL: u64 = 0x21;
/// Set while a [`try_exec`] is in progress on a vCPU.
static EXEC_ARMED: [AtomicBool; MAX_VCPUS] = [const { AtomicBool::new(false) }; MAX_VCPUS];

/// One vCPU's probe state: an access in progress, and the abort it took.
struct Slot {
    armed: AtomicBool,
    taken: AtomicBool,
    esr: AtomicU64,
    far: AtomicU64,
}

static SLOTS: [Slot; MAX_VCPUS] = [const {
    Slot {
        armed: AtomicBool::new(false),
        taken: AtomicBool::new(false),
        esr: AtomicU64::new(0),
        far: AtomicU64::new(0),
    }
}; MAX_VCPUS];

/// This vCPU's probe state.
fn slot() -> &'static Slot {
    &SLOTS[crate::cpu::index() % MAX_VCPUS]
}

/// Runs `access` (one load or store at a probe instruction) armed, with
/// interrupts masked so that no interrupt handler's own probe can come in
/// between, and reports the abort it took, if any.
fn guarded<T>(access: impl FnOnce() -> T) -> Result<T, Abort> {
    crate::irq::masked(|| {
        let s = slot();
        s.taken.store(false, Ordering::SeqCst);
        s.armed.store(true, Ordering::SeqCst);
        let value = access();
        s.armed.store(false, Ordering::SeqCst);
        if s.taken.swap(false, Ordering::SeqCst) {
            Err(Abort {
                esr: s.esr.load(Ordering::SeqCst),
                far: s.far.load(Ordering::SeqCst),
            })
        } else {
            Ok(value)
        }
    })
}

/// Reads the 8 bytes at `addr` with one volatile load, reporting an abort
/// instead of dying of it.
pub fn try_read(addr: u64) -> Result<u64, Abort> {
    guarded(|| {
        // SAFETY: the routine performs one 8-byte load from `addr` into a register and returns; it follows the C calling convention. The load creates no
        // Rust reference and cannot break any invariant of memory Rust owns (it only copies bytes out). If `addr` is not readable the abort is taken at
        // the routine's load instruction, which the exception handler recognises while armed and skips, so the routine still returns.
        unsafe { __bulkhead_probe_read(addr) }
    })
}

/// Writes `value` to the 8 bytes at `addr` with one volatile store,
/// reporting an abort instead of dying of it.
///
/// # Panics
///
/// If `[addr, addr + 8)` overlaps the domain's own image (code, data, stack)
/// or its device tree: writing there could break the running program.
pub fn try_write(addr: u64, value: u64) -> Result<(), Abort> {
    assert!(
        !crate::is_own_memory(addr, 8),
        "try_write({addr:#x}) refused: the domain's own image or device tree"
    );
    guarded(|| {
        // SAFETY: the routine performs one 8-byte store to `addr` and returns; it follows the C calling convention. `addr` is outside the image (code, statics, stacks)
        // and the device tree, checked just above, and Rust owns no other memory in this heap-less domain, so the store cannot change anything the program relies on. If
        // `addr` is not writable the abort is taken at the routine's store instruction, which the exception handler recognises while armed and skips.
        unsafe { __bulkhead_probe_write(addr, value) }
    })
}

/// Reads the 4 bytes at `addr` (4-byte aligned) with one volatile 32-bit
/// load, reporting an abort instead of dying of it. For device registers
/// that only allow 32-bit accesses.
pub fn try_read32(addr: u64) -> Result<u32, Abort> {
    guarded(|| {
        // SAFETY: as for `try_read`: one 4-byte load into a register from a
        // routine following the C calling convention; an abort at its load
        // instruction is recognised and skipped by the exception handler.
        unsafe { __bulkhead_probe_read32(addr) }
    })
}

/// Writes `value` to the 4 bytes at `addr` (4-byte aligned) with one
/// volatile 32-bit store, reporting an abort instead of dying of it.
///
/// # Panics
///
/// If `[addr, addr + 4)` overlaps the domain's own image or device tree.
pub fn try_write32(addr: u64, value: u32) -> Result<(), Abort> {
    assert!(
        !crate::is_own_memory(addr, 4),
        "try_write32({addr:#x}) refused: the domain's own image or device tree"
    );
    guarded(|| {
        // SAFETY: as for `try_write`: one 4-byte store outside everything
        // Rust owns (checked just above); an abort at the store instruction
        // is recognised and skipped by the exception handler.
        unsafe { __bulkhead_probe_write32(addr, value) }
    })
}

/// Branches to `addr` (an instruction fetch there), reporting the
/// instruction abort instead of dying of it. `Ok(x0)` if the code there ran
/// and returned (x0 as it left it, 1 on entry): the fetch was not stopped.
///
/// # Panics
///
/// If `[addr, addr + 4)` overlaps the domain's own image or device tree.
pub fn try_exec(addr: u64) -> Result<u64, Abort> {
    assert!(
        !crate::is_own_memory(addr, 4),
        "try_exec({addr:#x}) refused: the domain's own image or device tree"
    );
    let me = crate::cpu::index() % MAX_VCPUS;
    let r = guarded(|| {
        EXEC_ARMED[me].store(true, Ordering::SeqCst);
        // SAFETY: the routine saves x29/x30, branches with link to `addr` and returns x0, following the C calling convention. `addr` is outside
        // the domain's own memory (checked above), so it runs none of the program's code out of order. An instruction abort at `addr` is
        // recognised by the exception handler while armed and resumes at the routine's return path, which restores the stack it saved.
        let v = unsafe { __bulkhead_probe_exec(addr) };
        EXEC_ARMED[me].store(false, Ordering::SeqCst);
        v
    });
    EXEC_ARMED[me].store(false, Ordering::SeqCst);
    r
}

/// Called by the exception handler for a synchronous exception from the
/// current EL: if it is the instruction abort of an armed [`try_exec`],
/// records it, resumes at the routine's return path and returns `true`.
pub(crate) fn handle_exec_abort(
    esr: u64,
    far: u64,
    frame: &mut crate::exception::TrapFrame,
) -> bool {
    let me = crate::cpu::index() % MAX_VCPUS;
    let s = slot();
    if esr >> 26 != EC_INSN_ABORT_SAME_EL
        || !EXEC_ARMED[me].load(Ordering::SeqCst)
        || !s.armed.load(Ordering::SeqCst)
    {
        return false;
    }
    EXEC_ARMED[me].store(false, Ordering::SeqCst);
    s.armed.store(false, Ordering::SeqCst);
    s.esr.store(esr, Ordering::SeqCst);
    s.far.store(far, Ordering::SeqCst);
    s.taken.store(true, Ordering::SeqCst);
    frame.x[0] = 0;
    frame.elr = core::ptr::addr_of!(__bulkhead_probe_exec_ret) as u64;
    true
}

/// Called by the exception handler for a synchronous exception from the
/// current EL: if it is a data abort at an armed probe's access instruction,
/// records it, skips the instruction (a load yields 0) and returns `true`.
pub(crate) fn handle_abort(esr: u64, far: u64, frame: &mut crate::exception::TrapFrame) -> bool {
    let read_insn = core::ptr::addr_of!(__bulkhead_probe_read_insn) as u64;
    let write_insn = core::ptr::addr_of!(__bulkhead_probe_write_insn) as u64;
    let read32_insn = core::ptr::addr_of!(__bulkhead_probe_read32_insn) as u64;
    let write32_insn = core::ptr::addr_of!(__bulkhead_probe_write32_insn) as u64;
    let is_read = frame.elr == read_insn || frame.elr == read32_insn;
    let at_probe = is_read || frame.elr == write_insn || frame.elr == write32_insn;
    let s = slot();
    if !s.armed.load(Ordering::SeqCst) || !at_probe || esr >> 26 != EC_DATA_ABORT_SAME_EL {
        return false;
    }
    s.armed.store(false, Ordering::SeqCst);
    s.esr.store(esr, Ordering::SeqCst);
    s.far.store(far, Ordering::SeqCst);
    s.taken.store(true, Ordering::SeqCst);
    if is_read {
        frame.x[0] = 0;
    }
    frame.elr += 4;
    true
}
