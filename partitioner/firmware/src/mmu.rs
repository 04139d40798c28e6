//! Memory management at EL2: the static pool that every translation table
//! comes from, each core's own identity map (code RX, read-only data and the
//! package R, data RW and never executable: no page is both writable and
//! executable; no domain RAM but a core's own domain's, while it loads or
//! cleans it), and installing a domain's stage-2 tables.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    Writeable, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2, VTCR_EL2, VTTBR_EL2,
};
use bulkhead_core::board::{Board, Range};
use bulkhead_core::pagetable::{Attrs, FrameAllocator, MapError, Regime, Tables, PAGE};
use bulkhead_core::plan::{DomainPlan, MAX_CPUS};
use bulkhead_core::sysregs;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

use crate::boot::symbol_addr;

/// Frames available for all translation tables (EL2's and every domain's):
/// each core's EL2 map takes about ten, so the pool grows with the board's
/// cores (96 for four, as before); on a board whose stage 2 maps pages
/// only (`board::Stage2Leaves::Pages`), one more per 2 MiB of its RAM.
const FRAMES: usize = 32 + 16 * crate::BOARD_CPUS + crate::BOARD_STAGE2_PAGE_TABLES;

#[repr(C, align(4096))]
struct Frame([u64; 512]);

/// The frames, in their own section at the end of the image (`.tables` in
/// `link.ld`): mapped like the rest, but neither zeroed with `.bss` nor
/// cache-invalidated by the entry code (most of a large pool is never
/// used); a frame is invalidated and zeroed when it is handed out.
#[link_section = ".tables"]
static mut FRAME_STORE: [Frame; FRAMES] = [const { Frame([0; 512]) }; FRAMES];

struct Pool {
    used: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { used: 0 });

/// Drop the data cache's lines over the 4 KiB frame at `pa`, without writing
/// them back: the frame holds nothing of ours yet.
fn invalidate_frame(pa: u64) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let mut a = pa;
    while a < pa + PAGE {
        // SAFETY: invalidation of a line of a frame the pool has not handed
        // out before (no data of ours to lose; the frame is whole lines, 4 KiB
        // aligned), mapped at EL2 (or the MMU is off).
        unsafe { core::arch::asm!("dc ivac, {}", in(reg) a, options(nostack)) };
        a += line;
    }
    barrier::dsb(barrier::SY);
}

/// Address of the first frame (the frames are reached only through
/// `PoolAlloc`, which holds the pool's lock).
fn frames_base() -> u64 {
    core::ptr::addr_of!(FRAME_STORE) as u64
}

/// The pool, locked, as a [`FrameAllocator`]. Tables are identity mapped, so a
/// frame's physical address is its address.
pub struct PoolAlloc<'a>(spin::MutexGuard<'a, Pool>);

impl PoolAlloc<'_> {
    /// (Not inlined: taken only at boot and around a domain's load.)
    #[inline(never)]
    pub fn lock() -> Self {
        PoolAlloc(POOL.lock())
    }
    pub fn used(&self) -> usize {
        self.0.used
    }
    fn index(&self, pa: u64) -> usize {
        let i = ((pa - frames_base()) / PAGE) as usize;
        assert!(i < self.0.used, "not a frame of the pool: {pa:#x}");
        i
    }
}

impl FrameAllocator for PoolAlloc<'_> {
    fn alloc(&mut self) -> Option<u64> {
        let i = self.0.used;
        if i >= FRAMES {
            return None;
        }
        self.0.used += 1;
        let pa = frames_base() + i as u64 * PAGE;
        // Neither invalidated nor zeroed at boot (`.tables`): done once
        // here, as a frame is handed out once (`used` only grows). First
        // drop any line a loader left cached over it (with the MMU off the
        // zeroes below go to memory, and a stale line would shadow them
        // once it is on), then zero it.
        invalidate_frame(pa);
        self.table(pa).fill(0);
        Some(pa)
    }
    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        let i = self.index(pa);
        // SAFETY: frame `i` has been handed out (`index` checks), and the
        // pool's lock, held by `self`, is the only way to any frame, so this
        // is the one reference to it.
        unsafe { &mut (*core::ptr::addr_of_mut!(FRAME_STORE))[i].0 }
    }
}

/// Each core's own EL2 translation tables (identical but for the window of
/// [`map_domain_ram`]).
static EL2_ROOTS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Build each core's EL2 identity map: the partitioner's image by section,
/// the package read-only, and only its own devices. No domain's RAM: the
/// partitioner is secret-free while domains run, so a speculative gadget at
/// EL2 has no domain memory to reach. A core maps its own domain's RAM, in
/// its own tables, only while it loads, scrubs or cleans it
/// ([`map_domain_ram`]).
pub fn build_el2_map(board: &Board, package: Range) -> Result<(), MapError> {
    for (core, root) in EL2_ROOTS.iter().enumerate().take(board.cpus.len()) {
        let _ = core;
        root.store(build_core_map(board, package)?, Ordering::Release);
    }
    Ok(())
}

fn build_core_map(board: &Board, package: Range) -> Result<u64, MapError> {
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
    let page = |r: Range| {
        Range::new(
            r.base & !(PAGE - 1),
            (r.base + r.size).next_multiple_of(PAGE) - (r.base & !(PAGE - 1)),
        )
    };
    let console = page(board.console.reg);
    t.map(
        &mut a,
        console.base,
        console.base,
        console.size,
        Attrs::DEVICE,
    )?;
    // The IOMMUs' registers and the PCIe host's configuration window for
    // the root bus (1 MiB).
    for i in board.iommus {
        let r = page(i.reg);
        t.map(&mut a, r.base, r.base, r.size, Attrs::DEVICE)?;
    }
    if let Some(p) = board.pcie {
        let bus0 = Range::new(p.ecam.base, p.ecam.size.min(1 << 20));
        t.map(&mut a, bus0.base, bus0.base, bus0.size, Attrs::DEVICE)?;
    }
    // A spin table's mailboxes: written while the cores waiting on them
    // have their MMU (and caches) off, so mapped as device memory, never
    // cached. Several mailboxes may share a page.
    if let bulkhead_core::board::CpuStart::SpinTable { mailboxes } = board.cpu_start {
        let mut pages: heapless::Vec<u64, { MAX_CPUS }> = heapless::Vec::new();
        for &m in mailboxes {
            let p = m & !(PAGE - 1);
            if !pages.contains(&p) {
                let _ = pages.push(p);
                t.map(&mut a, p, p, PAGE, Attrs::DEVICE)?;
            }
        }
    }
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
    Ok(t.root)
}

/// Turn on the EL2 MMU with core `core`'s identity map.
pub fn enable(core: usize) {
    MAIR_EL2.set(sysregs::mair());
    TCR_EL2.set(sysregs::tcr_el2());
    TTBR0_EL2.set(EL2_ROOTS[core].load(Ordering::Acquire));
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
    // SAFETY: TLB invalidation of the EL2 regime has no memory-safety effect;
    // stale entries from before the MMU was on must not survive.
    unsafe { core::arch::asm!("tlbi alle2", "dsb ish", "isb") };
    SCTLR_EL2.set(sysregs::sctlr_el2_mmu_on());
    barrier::isb(barrier::SY);
}

/// Make what core `core` reads with its MMU and caches still off (its
/// translation table root) visible in memory, before it is started.
pub fn publish_for_secondary(core: usize) {
    let at = &EL2_ROOTS[core] as *const AtomicU64 as u64;
    // SAFETY: cleaning a line of the partitioner's own data to the point of
    // coherency writes back what is already there; it changes no value.
    unsafe { core::arch::asm!("dc cvac, {0}", "dsb sy", in(reg) at) };
}

/// This core's EL2 tables.
fn own_tables(core: usize) -> Tables {
    Tables {
        regime: Regime::El2Stage1,
        root: EL2_ROOTS[core].load(Ordering::Acquire),
    }
}

/// Map domain `d`'s RAM read/write (never executable) into this core's own
/// EL2 tables, for loading, scrubbing or cleaning it; undone by
/// [`unmap_domain_ram`]. Other cores never see it: their tables are their
/// own.
pub fn map_domain_ram(d: &DomainPlan) {
    let core = crate::domain::this_core();
    let mut t = own_tables(core);
    let mut a = PoolAlloc::lock();
    for m in d.ram.iter() {
        if let Err(e) = t.map(&mut a, m.pa, m.pa, m.size, Attrs::RAM_RW) {
            drop(a);
            crate::fatal(format_args!(
                "domain \"{}\": cannot map its RAM {:#x}+{:#x} at EL2: {}",
                d.name,
                m.pa,
                m.size,
                crate::debug::MapErr(e)
            ));
        }
    }
    drop(a);
    // New valid entries need no invalidation, only to be visible to the
    // table walker before the first access.
    barrier::dsb(barrier::ISHST);
    barrier::isb(barrier::SY);
}

/// Run `f` on `size` bytes at `base` of RAM that nothing else maps (the boot
/// loader's device tree), mapped read-only in this core's tables for the
/// call only. `None` if the range cannot be mapped.
pub fn with_ram_window<R>(base: u64, size: u64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let mut f = Some(f);
    let mut r = None;
    ram_window(base, size, &mut |bytes| r = f.take().map(|f| f(bytes)));
    r
}

/// [`with_ram_window`] for every `f` (one copy of the mapping code):
/// `f` is called once if the window could be mapped, else not at all.
#[inline(never)]
fn ram_window(base: u64, size: u64, f: &mut dyn FnMut(&[u8])) {
    let core = crate::domain::this_core();
    let mut t = own_tables(core);
    let page = Range::new(
        base & !(PAGE - 1),
        (base + size).next_multiple_of(PAGE) - (base & !(PAGE - 1)),
    );
    let mut a = PoolAlloc::lock();
    // Refuse rather than disturb a page that is mapped already.
    let mut taken = false;
    t.runs(&mut a, |input, _, len, _| {
        taken |= Range::new(input, len).overlaps(&page);
    });
    if taken
        || t.map(&mut a, page.base, page.base, page.size, Attrs::RAM_RO)
            .is_err()
    {
        return;
    }
    drop(a);
    barrier::dsb(barrier::ISHST);
    barrier::isb(barrier::SY);
    // SAFETY: `base..base + size` was just mapped read-only in this core's
    // own tables, and stays mapped until after `f` returns; nothing writes
    // it meanwhile (it is RAM no domain has been given yet).
    let bytes = unsafe { core::slice::from_raw_parts(base as *const u8, size as usize) };
    f(bytes);
    let mut a = PoolAlloc::lock();
    let unmapped = t.unmap(&mut a, page.base, page.size);
    drop(a);
    // SAFETY: forgets this core's translations of the window just removed.
    unsafe { core::arch::asm!("dsb ishst", "tlbi alle2", "dsb nsh", "isb") };
    if let Err(e) = unmapped {
        crate::fatal(format_args!(
            "cannot unmap the boot loader's device tree: {}",
            crate::debug::MapErr(e)
        ));
    }
}

/// Remove the window of [`map_domain_ram`] and forget its translations.
pub fn unmap_domain_ram(d: &DomainPlan) {
    let core = crate::domain::this_core();
    let mut t = own_tables(core);
    let mut a = PoolAlloc::lock();
    for m in d.ram.iter() {
        if let Err(e) = t.unmap(&mut a, m.pa, m.size) {
            drop(a);
            crate::fatal(format_args!(
                "domain \"{}\": cannot unmap its RAM at EL2: {}",
                d.name,
                crate::debug::MapErr(e)
            ));
        }
    }
    drop(a);
    // SAFETY: invalidating this core's EL2 TLB entries only forgets
    // translations (the tables are this core's alone, so no other core can
    // hold them); nothing uses the unmapped range afterwards.
    unsafe { core::arch::asm!("dsb ishst", "tlbi alle2", "dsb nsh", "isb") };
}

/// Whether this core's EL2 tables map any byte of any domain's RAM (the
/// check that the partitioner is secret-free while domains run).
pub fn maps_domain_ram(domains: &[DomainPlan]) -> bool {
    let t = own_tables(crate::domain::this_core());
    let mut a = PoolAlloc::lock();
    let mut found = false;
    t.runs(&mut a, |input, _, size, _| {
        let run = Range::new(input, size);
        found |= domains
            .iter()
            .flat_map(|d| d.ram.iter())
            .any(|m| run.overlaps(&Range::new(m.pa, m.size)));
    });
    found
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
/// Eight lines a turn (the range is usually a domain's whole RAM), then the
/// rest line by line.
pub fn clean_to_poc(base: u64, size: u64) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    // The smallest data cache line of any cache (CTR_EL0.DminLine, in words).
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let mut a = base & !(line - 1);
    let end = base + size;
    while a + 8 * line <= end {
        // SAFETY: cache maintenance by address on memory mapped at EL2 (the
        // eight lines from `a` lie in the caller's range); it changes no
        // data, only where it lives. `a` ends eight lines further on.
        unsafe {
            core::arch::asm!(
                "dc civac, {a}", "add {a}, {a}, {l}",
                "dc civac, {a}", "add {a}, {a}, {l}",
                "dc civac, {a}", "add {a}, {a}, {l}",
                "dc civac, {a}", "add {a}, {a}, {l}",
                "dc civac, {a}", "add {a}, {a}, {l}",
                "dc civac, {a}", "add {a}, {a}, {l}",
                "dc civac, {a}", "add {a}, {a}, {l}",
                "dc civac, {a}", "add {a}, {a}, {l}",
                a = inout(reg) a,
                l = in(reg) line,
                options(nostack)
            )
        };
    }
    while a < end {
        // SAFETY: as above, one line.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) a, options(nostack)) };
        a += line;
    }
    barrier::dsb(barrier::SY);
}

/// Make physical RAM `[pa, pa + size)` read as zero. Each whole 4 KiB page
/// is read first and written (with [`zero_all`]) only if some byte of it is
/// not zero already: a read costs about what a write does on a real core,
/// but an emulator such as QEMU backs guest RAM with host memory that is
/// only allocated when first written, and zeroing a Linux domain's 256 MiB
/// that were never used cost a second of host page faults there. The
/// result is the same either way; [`clean_to_poc`] afterwards makes it
/// what the domain sees before its MMU is on, whatever the caches held.
///
/// # Safety
/// As [`zero_all`].
pub unsafe fn zero(pa: u64, size: u64) {
    let end = pa + size;
    let first = pa.next_multiple_of(PAGE).min(end);
    let last = (end & !(PAGE - 1)).max(first);
    // SAFETY: the head and tail are inside the caller's range.
    unsafe {
        zero_all(pa, first - pa);
        zero_all(last, end - last);
    }
    let mut page = first;
    while page < last {
        // SAFETY: a whole page inside the caller's range.
        if !unsafe { page_is_zero(page) } {
            // SAFETY: as above.
            unsafe { zero_all(page, PAGE) };
        }
        page += PAGE;
    }
    barrier::dsb(barrier::SY);
}

/// Whether the 4 KiB page at `pa` reads as zero: 64 bytes a turn, leaving
/// at the first turn that is not.
///
/// # Safety
/// The page must be RAM mapped as normal memory at EL2.
unsafe fn page_is_zero(pa: u64) -> bool {
    let left: u64;
    // SAFETY: reads of the page only (`left` counts its bytes down to the
    // 64 where a set bit was found, or to zero).
    unsafe {
        core::arch::asm!(
            "2:",
            "ldp {a}, {b}, [{p}], #16",
            "ldp {c}, {d}, [{p}], #16",
            "orr {a}, {a}, {b}",
            "orr {c}, {c}, {d}",
            "ldp {b}, {d}, [{p}], #16",
            "orr {a}, {a}, {b}",
            "orr {c}, {c}, {d}",
            "ldp {b}, {d}, [{p}], #16",
            "orr {a}, {a}, {b}",
            "orr {c}, {c}, {d}",
            "orr {a}, {a}, {c}",
            "cbnz {a}, 3f",
            "subs {n}, {n}, #64",
            "b.ne 2b",
            "3:",
            p = inout(reg) pa => _,
            n = inout(reg) PAGE => left,
            a = out(reg) _,
            b = out(reg) _,
            c = out(reg) _,
            d = out(reg) _,
            options(nostack, readonly)
        )
    };
    left == 0
}

/// Zero physical RAM `[pa, pa + size)` with `DC ZVA` (a cache block per
/// instruction, eight a turn), which is many times faster than stores, on
/// real cores and under emulation alike.
///
/// # Safety
/// The range must be RAM mapped as normal memory at EL2 that nothing else
/// uses meanwhile (a domain's memory while it is not running).
unsafe fn zero_all(pa: u64, size: u64) {
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
        while at + 8 * block <= end {
            // SAFETY: `at` is block aligned and the eight blocks from it lie
            // inside the caller's range of normal memory; `at` ends eight
            // blocks further on.
            unsafe {
                core::arch::asm!(
                    "dc zva, {a}", "add {a}, {a}, {b}",
                    "dc zva, {a}", "add {a}, {a}, {b}",
                    "dc zva, {a}", "add {a}, {a}, {b}",
                    "dc zva, {a}", "add {a}, {a}, {b}",
                    "dc zva, {a}", "add {a}, {a}, {b}",
                    "dc zva, {a}", "add {a}, {a}, {b}",
                    "dc zva, {a}", "add {a}, {a}, {b}",
                    "dc zva, {a}", "add {a}, {a}, {b}",
                    a = inout(reg) at,
                    b = in(reg) block,
                    options(nostack)
                )
            };
        }
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

/// Copy `src` to physical RAM at `pa`: 64 bytes a turn with `ldp`/`stp`
/// when both are 16-byte aligned (a package entry is 4 KiB aligned, a
/// domain's entry point at least 4 KiB), the rest, or everything otherwise,
/// with `copy_from_slice` (which the strict-alignment target compiles to
/// far more instructions per byte).
///
/// # Safety
/// `[pa, pa + src.len())` must be RAM mapped read/write at EL2 that nothing
/// else uses meanwhile and that does not overlap `src`.
#[inline(never)]
pub unsafe fn copy(pa: u64, src: &[u8]) {
    let mut done = 0usize;
    let aligned = (pa | src.as_ptr() as u64).is_multiple_of(16);
    let bulk = src.len() & !63;
    if aligned && bulk > 0 {
        // The loop moves 64 bytes a turn until the count (a multiple of 64)
        // is zero. SAFETY: `bulk` bytes from `src` are readable (a prefix of
        // the slice), `bulk` from `pa` writable (caller's range), both
        // 16-byte aligned.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldp {t0}, {t1}, [{s}], #16",
                "ldp {t2}, {t3}, [{s}], #16",
                "stp {t0}, {t1}, [{d}], #16",
                "stp {t2}, {t3}, [{d}], #16",
                "ldp {t0}, {t1}, [{s}], #16",
                "ldp {t2}, {t3}, [{s}], #16",
                "stp {t0}, {t1}, [{d}], #16",
                "stp {t2}, {t3}, [{d}], #16",
                "subs {n}, {n}, #64",
                "b.ne 2b",
                s = inout(reg) src.as_ptr() => _,
                d = inout(reg) pa => _,
                n = inout(reg) bulk => _,
                t0 = out(reg) _,
                t1 = out(reg) _,
                t2 = out(reg) _,
                t3 = out(reg) _,
                options(nostack)
            )
        };
        done = bulk;
    }
    let rest = &src[done..];
    // SAFETY: the rest of the caller's range, right after what was copied.
    unsafe { core::slice::from_raw_parts_mut((pa + done as u64) as *mut u8, rest.len()) }
        .copy_from_slice(rest);
}
