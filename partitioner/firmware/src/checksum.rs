//! CRC-32 of the package with the CPU's CRC32 instructions (FEAT_CRC32:
//! every Cortex-A53/A72 has them), eight bytes per instruction instead of a
//! table look-up per byte. The package of a Linux domain is tens of MiB, so
//! this is most of the partitioner's boot time otherwise. Falls back to the
//! core's table-driven [`crc32_update`] on a CPU without them; both give the
//! same CRC-32 (IEEE 802.3, reflected), which the boot-time check proves on
//! every run by comparing against the checksums the host computed.

use aarch64_cpu::registers::{Readable, ID_AA64ISAR0_EL1};
use bulkhead_core::package::crc32_update;

/// The fastest [`bulkhead_core::package::CrcUpdate`] this CPU has.
pub fn crc32_updater() -> bulkhead_core::package::CrcUpdate {
    // ID_AA64ISAR0_EL1.CRC32, bits 19:16: 1 = CRC32* instructions present.
    if (ID_AA64ISAR0_EL1.get() >> 16) & 0xf != 0 {
        crc32_update_instructions
    } else {
        crc32_update
    }
}

fn crc32_update_instructions(crc: u32, data: &[u8]) -> u32 {
    // SAFETY: only returned by `crc32_updater` when ID_AA64ISAR0_EL1 says
    // the CRC32 instructions exist.
    unsafe { crc32_hw(crc, data) }
}

#[target_feature(enable = "crc")]
unsafe fn crc32_hw(mut crc: u32, data: &[u8]) -> u32 {
    use core::arch::aarch64::{__crc32b, __crc32d};
    // The firmware is built for strict alignment, so eight bytes are read
    // as one aligned word only: bytes up to the first 8-byte boundary, then
    // aligned words two at a time (one `ldp`), then the last bytes.
    // SAFETY: every bit pattern is a valid u64; `align_to` only splits the
    // slice at aligned boundaries.
    let (head, words, tail) = unsafe { data.align_to::<u64>() };
    for &b in head {
        crc = __crc32b(crc, b);
    }
    let mut pairs = words.chunks_exact(2);
    for p in &mut pairs {
        crc = __crc32d(crc, u64::from_le(p[0]));
        crc = __crc32d(crc, u64::from_le(p[1]));
    }
    for &w in pairs.remainder() {
        crc = __crc32d(crc, u64::from_le(w));
    }
    for &b in tail {
        crc = __crc32b(crc, b);
    }
    crc
}
