//! The domain's own image, as laid out by `bulkhead-domain.ld`.

extern "C" {
    static __image_start: u8;
    static __text_rodata_end: u8;
    static __image_end: u8;
}

/// `[start, end)` of the whole image: code, read-only data, data, `.bss`
/// and the boot stack.
pub fn range() -> (usize, usize) {
    (
        core::ptr::addr_of!(__image_start) as usize,
        core::ptr::addr_of!(__image_end) as usize,
    )
}

/// `[start, end)` of the code and read-only data, which never change after
/// loading. Both ends are 8-byte aligned.
pub fn code_rodata() -> (usize, usize) {
    (
        core::ptr::addr_of!(__image_start) as usize,
        core::ptr::addr_of!(__text_rodata_end) as usize,
    )
}

/// Whether `[start, end)` overlaps the image.
pub fn overlaps(start: usize, end: usize) -> bool {
    let (image_start, image_end) = range();
    start < image_end && image_start < end
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a (64-bit) of the code and read-only data, read afresh (volatile
/// 8-byte loads), so that a change made behind the domain's back shows.
pub fn checksum() -> u64 {
    let (start, end) = code_rodata();
    let mut hash = FNV_OFFSET;
    for at in (start..end).step_by(8) {
        // SAFETY: `at` is an 8-byte aligned address inside this image's code and read-only data (the
        // linker script aligns both ends to 8), which is mapped and readable for the domain's whole
        // life. A volatile read of it creates no reference and changes nothing.
        let word = unsafe { core::ptr::read_volatile(at as *const u64) };
        for byte in word.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    hash
}
