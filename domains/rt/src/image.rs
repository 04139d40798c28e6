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

/// RAM above the image that the domain's own code never uses: a test can
/// fill it before a restart and check that the next run finds it zero.
pub mod scratch {
    /// Bytes of it.
    pub const SIZE: usize = 64 * 1024;
    /// What [`fill`] writes (each word XORed with its address).
    pub const FILL: u64 = 0xa5a5_5a5a_dead_beef;

    /// `[start, end)`: a page above the image's end, if it ends below the
    /// device tree at `dtb` (the partitioner puts the tree at the end of
    /// the RAM mapping that holds the image).
    pub fn range(dtb: Option<usize>) -> Option<(usize, usize)> {
        let start = super::range().1.next_multiple_of(4096) + 4096;
        let end = start + SIZE;
        (end <= dtb?).then_some((start, end))
    }

    /// How many 8-byte words of `[start, end)` (from [`range`]) are not
    /// zero, and the first of them with its address.
    pub fn not_zero(start: usize, end: usize) -> (usize, Option<(usize, u64)>) {
        let mut count = 0;
        let mut first = None;
        for at in (start..end).step_by(8) {
            // SAFETY: `range` gave 8-byte aligned bounds inside the domain's
            // RAM, between its image and its device tree, which nothing uses;
            // a volatile read creates no reference and changes nothing.
            let word = unsafe { core::ptr::read_volatile(at as *const u64) };
            if word != 0 {
                count += 1;
                first.get_or_insert((at, word));
            }
        }
        (count, first)
    }

    /// Fills `[start, end)` (from [`range`]) with [`FILL`], except that
    /// of its last page only the last word is written (a page that is
    /// zero but for its end must be cleared as well as a full one).
    pub fn fill(start: usize, end: usize) {
        let last_page = end - 4096;
        for at in (start..end)
            .step_by(8)
            .filter(|&a| a < last_page || a == end - 8)
        {
            // SAFETY: as in `not_zero`: RAM of the domain that nothing else
            // of it uses, so the write disturbs no object.
            unsafe { core::ptr::write_volatile(at as *mut u64, FILL ^ at as u64) };
        }
    }
}
