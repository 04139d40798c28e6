//! The device tree the domain was entered with, once checked.

use core::sync::atomic::{AtomicUsize, Ordering};
use fdt::Fdt;

/// Big-endian magic of a flattened device tree.
const FDT_MAGIC: u32 = 0xd00d_feed;
/// Smallest plausible blob: header, terminating reservation entry, end token.
const MIN_SIZE: usize = 40 + 16 + 4;
/// Largest blob accepted (the partitioner's are at most 16 KiB).
const MAX_SIZE: usize = 1 << 20;

/// Address and size of the checked device tree; 0 when there is none.
static ADDR: AtomicUsize = AtomicUsize::new(0);
static SIZE: AtomicUsize = AtomicUsize::new(0);

/// Takes `x0` as the device tree if it plausibly is one: non-zero, 8-byte
/// aligned, starting with the FDT magic, of a sane size, readable from its
/// first to its last byte (checked with aborting-safe reads, so a wild `x0`
/// cannot kill the domain), outside the domain's own image, and with a
/// header the `fdt` crate accepts.
pub(crate) fn init(x0: usize) {
    if let Some(size) = check(x0) {
        SIZE.store(size, Ordering::Relaxed);
        ADDR.store(x0, Ordering::Relaxed);
    }
}

fn check(addr: usize) -> Option<usize> {
    if addr == 0 || !addr.is_multiple_of(8) {
        return None;
    }
    let head = crate::try_read(addr as u64).ok()?.to_le_bytes();
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let size = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if magic != FDT_MAGIC || !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return None;
    }
    let end = addr.checked_add(size)?;
    crate::try_read(((end - 1) & !7) as u64).ok()?;
    if crate::image::overlaps(addr, end) {
        return None;
    }
    // SAFETY: `[addr, addr + size)` was just shown readable at both ends (the partitioner maps guest RAM in whole ranges, so
    // the middle is too), lies outside this image, and nothing in the domain writes it: `try_write` refuses to, and nothing
    // else addresses it. It therefore stays a valid, unchanging byte slice for the rest of the domain's life.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, size) };
    Fdt::new(bytes).ok()?;
    Some(size)
}

/// The device tree's address range `[start, end)`, if there is one.
pub(crate) fn range() -> Option<(usize, usize)> {
    let addr = ADDR.load(Ordering::Relaxed);
    (addr != 0).then(|| (addr, addr + SIZE.load(Ordering::Relaxed)))
}

/// The checked device tree, if there is one.
pub(crate) fn fdt() -> Option<Fdt<'static>> {
    let (start, end) = range()?;
    // SAFETY: `init` only records a range it validated as above; it is
    // readable, immutable and lives as long as the domain.
    let bytes = unsafe { core::slice::from_raw_parts(start as *const u8, end - start) };
    Fdt::new(bytes).ok()
}
