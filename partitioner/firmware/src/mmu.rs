//! Memory management at EL2: the static pool that every translation table
//! comes from, the partitioner's own identity map (code RX, read-only data
//! and the package R, everything else RW and never executable: no page is both
//! writable and executable), and installing a domain's stage-2 tables.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    Writeable, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2, VTCR_EL2, VTTBR_EL2,
};
use bulkhead_core::board::{Board, Range};
use bulkhead_core::pagetable::{Attrs, FrameAllocator, MapError, Regime, Tables, PAGE};
use bulkhead_core::sysregs;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

use crate::boot::symbol_addr;

/// Frames available for all translation tables (EL2's and every domain's).
const FRAMES: usize = 96;

#[repr(C, align(4096))]
struct Frame([u64; 512]);

struct Pool {
    frames: [Frame; FRAMES],
    used: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    frames: [const { Frame([0; 512]) }; FRAMES],
    used: 0,
});

/// The pool, locked, as a [`FrameAllocator`]. Tables are identity mapped, so a
/// frame's physical address is its address.
pub struct PoolAlloc<'a>(spin::MutexGuard<'a, Pool>);

impl PoolAlloc<'_> {
    pub fn lock() -> Self {
        PoolAlloc(POOL.lock())
    }
    pub fn used(&self) -> usize {
        self.0.used
    }
    fn index(&self, pa: u64) -> usize {
        let base = self.0.frames.as_ptr() as u64;
        ((pa - base) / PAGE) as usize
    }
}

impl FrameAllocator for PoolAlloc<'_> {
    fn alloc(&mut self) -> Option<u64> {
        let i = self.0.used;
        let frame = self.0.frames.get_mut(i)?;
        frame.0 = [0; 512];
        let pa = frame as *const Frame as u64;
        self.0.used += 1;
        Some(pa)
    }
    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        let i = self.index(pa);
        &mut self.0.frames[i].0
    }
}

static EL2_ROOT: AtomicU64 = AtomicU64::new(0);

/// Build the partitioner's identity map: its image by section, the package
/// read-only, the rest of RAM read/write, and only its own devices.
pub fn build_el2_map(board: &Board, package: Range) -> Result<(), MapError> {
    let mut a = PoolAlloc::lock();
    let mut t = Tables::new(Regime::El2Stage1, &mut a)?;
    let start = symbol_addr!(__image_start);
    let text_end = symbol_addr!(__text_end);
    let ro_end = symbol_addr!(__rodata_end);
    let end = symbol_addr!(__image_end).next_multiple_of(PAGE);
    t.map(&mut a, start, start, text_end - start, Attrs::RAM_RX)?;
    t.map(&mut a, text_end, text_end, ro_end - text_end, Attrs::RAM_RO)?;
    // Data, .bss and stacks read/write, except one unmapped guard page below
    // each core's stack.
    let mut at = ro_end;
    for guard in crate::boot::stack_guards() {
        t.map(&mut a, at, at, guard - at, Attrs::RAM_RW)?;
        at = guard + PAGE;
    }
    t.map(&mut a, at, at, end - at, Attrs::RAM_RW)?;
    let pkg_end = package.end().unwrap_or(package.base).next_multiple_of(PAGE);
    if package.size > 0 {
        t.map(
            &mut a,
            package.base,
            package.base,
            pkg_end - package.base,
            Attrs::RAM_RO,
        )?;
    }
    let taken = Range::new(start, pkg_end.max(end) - start);
    for bank in board.ram {
        // RAM below and above the image, read/write, never executable.
        let bank_end = bank.end().unwrap_or(u64::MAX);
        if !bank.overlaps(&taken) {
            t.map(&mut a, bank.base, bank.base, bank.size, Attrs::RAM_RW)?;
            continue;
        }
        if taken.base > bank.base {
            t.map(
                &mut a,
                bank.base,
                bank.base,
                taken.base - bank.base,
                Attrs::RAM_RW,
            )?;
        }
        let taken_end = taken.base + taken.size;
        if bank_end > taken_end {
            t.map(
                &mut a,
                taken_end,
                taken_end,
                bank_end - taken_end,
                Attrs::RAM_RW,
            )?;
        }
    }
    let page = |r: Range| {
        Range::new(
            r.base & !(PAGE - 1),
            (r.base + r.size).next_multiple_of(PAGE) - (r.base & !(PAGE - 1)),
        )
    };
    let console = page(board.console);
    t.map(
        &mut a,
        console.base,
        console.base,
        console.size,
        Attrs::DEVICE,
    )?;
    // Every GIC the board may have: the mapping is harmless for the one that
    // is absent, and lets the firmware find out which one is there.
    let mut gic_ranges: heapless::Vec<Range, 8> = heapless::Vec::new();
    for g in board.gics {
        for (r, _) in g.parts() {
            let r = page(r);
            if !gic_ranges.contains(&r) {
                let _ = gic_ranges.push(r);
                t.map(&mut a, r.base, r.base, r.size, Attrs::DEVICE)?;
            }
        }
    }
    EL2_ROOT.store(t.root, Ordering::Release);
    Ok(())
}

/// Turn on the EL2 MMU with the identity map (on every core).
pub fn enable() {
    MAIR_EL2.set(sysregs::mair());
    TCR_EL2.set(sysregs::tcr_el2());
    TTBR0_EL2.set(EL2_ROOT.load(Ordering::Acquire));
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
    // SAFETY: TLB invalidation of the EL2 regime has no memory-safety effect;
    // stale entries from before the MMU was on must not survive.
    unsafe { core::arch::asm!("tlbi alle2", "dsb ish", "isb") };
    SCTLR_EL2.set(sysregs::sctlr_el2_mmu_on());
    barrier::isb(barrier::SY);
}

/// Point stage 2 at a domain's tables and forget any stale translation.
pub fn install_stage2(root: u64, vmid: u16) {
    VTCR_EL2.set(sysregs::vtcr_el2());
    VTTBR_EL2.set(sysregs::vttbr_el2(root, vmid));
    barrier::isb(barrier::SY);
    // SAFETY: invalidates stage-1 and stage-2 TLB entries of the VMID just
    // installed, so the domain starts with exactly the tables built for it.
    unsafe { core::arch::asm!("tlbi vmalls12e1", "dsb nsh", "isb") };
}

/// Clean and invalidate a range of memory to the point of coherency, so a
/// domain that starts with its caches off sees what the partitioner wrote.
pub fn clean_to_poc(base: u64, size: u64) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    // The smallest data cache line of any cache (CTR_EL0.DminLine, in words).
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let mut a = base & !(line - 1);
    while a < base + size {
        // SAFETY: cache maintenance by address on memory mapped at EL2; it
        // changes no data, only where it lives.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) a) };
        a += line;
    }
    barrier::dsb(barrier::SY);
}

/// Zero physical RAM `[pa, pa + size)` with `DC ZVA` (a cache block per
/// instruction), which is many times faster than stores, on real cores and
/// under emulation alike.
///
/// # Safety
/// The range must be RAM mapped as normal memory at EL2 that nothing else
/// uses meanwhile (a domain's memory while it is not running).
pub unsafe fn zero(pa: u64, size: u64) {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    let block = 4u64 << (dczid & 0xf);
    let prohibited = dczid & (1 << 4) != 0;
    let mut at = pa;
    let end = pa + size;
    if !prohibited {
        let head = pa.next_multiple_of(block).min(end);
        // SAFETY: inside the caller's range.
        unsafe { core::ptr::write_bytes(at as *mut u8, 0, (head - at) as usize) };
        at = head;
        while at + block <= end {
            // SAFETY: `at` is block aligned and the whole block lies inside
            // the caller's range of normal memory.
            unsafe { core::arch::asm!("dc zva, {}", in(reg) at, options(nostack)) };
            at += block;
        }
    }
    // SAFETY: inside the caller's range.
    unsafe { core::ptr::write_bytes(at as *mut u8, 0, (end - at) as usize) };
    barrier::dsb(barrier::SY);
}
