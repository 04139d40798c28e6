//! A victim's memory pattern: every free 8-byte word of the domain's RAM
//! holds a value derived from its own address, so any change made behind the
//! domain's back (and where) shows at the next check.

/// The value the word at `addr` holds.
pub fn value_at(addr: u64) -> u64 {
    addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xa5a5_5a5a_c3c3_3c3c
}

/// Whether `[start, end)` (8-byte aligned) lies inside the domain's RAM
/// and outside its image and device tree, so it may be filled.
fn fillable(start: usize, end: usize) -> bool {
    start.is_multiple_of(8)
        && end.is_multiple_of(8)
        && start <= end
        && !crate::is_own_memory(start as u64, (end - start) as u64)
        && crate::info()
            .memory()
            .iter()
            .any(|r| r.base as usize <= start && end <= (r.base + r.size) as usize)
}

/// Fills `[start, end)` (8-byte aligned, free RAM of the domain) with the
/// pattern. Returns `false` (and writes nothing) if the range is not free
/// RAM of the domain.
pub fn fill(start: usize, end: usize) -> bool {
    if !fillable(start, end) {
        return false;
    }
    for at in (start..end).step_by(8) {
        // SAFETY: `[start, end)` is inside the domain's RAM and outside its image (code, statics, stacks) and
        // device tree, checked just above; Rust owns no other memory in this heap-less domain, so the store
        // changes nothing the program relies on. `at` is 8-byte aligned.
        unsafe { core::ptr::write_volatile(at as *mut u64, value_at(at as u64)) };
    }
    true
}

/// The first address in `[start, end)` (filled by [`fill`]) whose word no
/// longer holds the pattern.
pub fn check(start: usize, end: usize) -> Option<usize> {
    if !fillable(start, end) {
        return Some(start);
    }
    (start..end).step_by(8).find(|&at| {
        // SAFETY: as in `fill`: an aligned address in the domain's free RAM; a volatile read creates no
        // reference and changes nothing.
        let v = unsafe { core::ptr::read_volatile(at as *const u64) };
        v != value_at(at as u64)
    })
}

/// The domain's free RAM, the parts of its RAM regions outside its image
/// and device tree, as up to `out.len()` ranges; returns how many.
pub fn free_ranges(out: &mut [(usize, usize)]) -> usize {
    let (img_s, img_e) = crate::image::range();
    let (dtb_s, dtb_e) = crate::dtb::range().unwrap_or((0, 0));
    let dtb_s = dtb_s & !7;
    let dtb_e = dtb_e.next_multiple_of(8);
    let img_e = img_e.next_multiple_of(8);
    let img_s = img_s & !7;
    let mut n = 0;
    for r in crate::info().memory() {
        let (mut parts, mut k) = ([(0usize, 0usize); 3], 1);
        parts[0] = (r.base as usize, (r.base + r.size) as usize);
        for (hs, he) in [(img_s, img_e), (dtb_s, dtb_e)] {
            let mut next = [(0usize, 0usize); 3];
            let mut m = 0;
            for &(s, e) in &parts[..k] {
                if he <= s || e <= hs {
                    next[m] = (s, e);
                    m += 1;
                    continue;
                }
                if s < hs && m < 3 {
                    next[m] = (s, hs);
                    m += 1;
                }
                if he < e && m < 3 {
                    next[m] = (he, e);
                    m += 1;
                }
            }
            parts = next;
            k = m;
        }
        for &(s, e) in &parts[..k] {
            if e > s && n < out.len() {
                out[n] = (s, e);
                n += 1;
            }
        }
    }
    n
}
