//! Bulkhead's core: everything the partitioner decides, as pure `no_std`
//! code that builds and is unit-tested on the host. The firmware
//! (`partitioner/firmware`) only carries these decisions out.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

pub mod board;
pub mod config;
pub mod console;
pub mod dtb;
pub mod dtb_check;
pub mod entropy;
pub mod error;
pub mod exits;
pub mod fdt_check;
pub mod gicv2;
pub mod lifecycle;
pub mod package;
pub mod pagetable;
pub mod pci;
pub mod plan;
pub mod psci;
pub mod ratelimit;
pub mod setway;
pub mod smmuv3;
pub mod speculation;
pub mod stage2;
pub mod sysregs;
pub mod ticket;
pub mod trap;
pub mod validate;
pub mod vconsole;
pub mod vgic;
pub mod vsgi;

/// Sorts a short list in place by `key`, keeping equal keys in their order.
///
/// The lists the partitioner sorts hold a few dozen entries at most; an
/// insertion sort does that in a few hundred bytes of code, where each use of
/// `core`'s sorts brings its own quicksort, heapsort and small-sort (about
/// 2.7 KB of firmware each).
pub fn sort_by_key<T, K: Ord>(v: &mut [T], key: impl Fn(&T) -> K) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && key(&v[j - 1]) > key(&v[j]) {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// Microseconds in `ticks` of a counter running at `freq` Hz (0 Hz is
/// taken as 1), rounded down, for any `ticks`: `ticks * 1_000_000` would overflow
/// after 2^64 / 10^6 ticks, about 82 hours at 62.5 MHz.
pub fn ticks_to_us(ticks: u64, freq: u64) -> u64 {
    let freq = freq.max(1);
    let (secs, rest) = (ticks / freq, ticks % freq);
    // rest < freq; rest * 10^6 overflows only for counters above 18 THz,
    // where dividing by whole ticks a microsecond is within 1 us.
    let frac = match rest.checked_mul(1_000_000) {
        Some(p) => p / freq,
        None => (rest / (freq / 1_000_000)).min(999_999),
    };
    secs.saturating_mul(1_000_000).saturating_add(frac)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ticks_to_us_is_exact_past_the_u64_product() {
        const HZ: u64 = 62_500_000;
        assert_eq!(super::ticks_to_us(0, HZ), 0);
        assert_eq!(super::ticks_to_us(HZ / 2, HZ), 500_000);
        assert_eq!(super::ticks_to_us(63, HZ), 1);
        assert_eq!(super::ticks_to_us(5, 0), 5_000_000);
        // 100 hours: ticks * 10^6 no longer fits in 64 bits.
        let hours = 100 * 3600 * HZ;
        assert!(hours.checked_mul(1_000_000).is_none());
        assert_eq!(super::ticks_to_us(hours, HZ), 100 * 3600 * 1_000_000);
        assert_eq!(
            super::ticks_to_us(hours + HZ / 1000, HZ),
            100 * 3600 * 1_000_000 + 1000
        );
        assert_eq!(super::ticks_to_us(u64::MAX, 1), u64::MAX);
        assert_eq!(super::ticks_to_us(u64::MAX - 1, u64::MAX), 999_999);
    }

    #[test]
    fn sort_by_key_orders_and_keeps_equal_keys_in_place() {
        let mut v = [(3, 'a'), (1, 'b'), (3, 'c'), (0, 'd'), (1, 'e')];
        super::sort_by_key(&mut v, |e| e.0);
        assert_eq!(v, [(0, 'd'), (1, 'b'), (1, 'e'), (3, 'a'), (3, 'c')]);
        let mut e: [u8; 0] = [];
        super::sort_by_key(&mut e, |x| *x);
        let mut r = [1u64, 5, 2];
        super::sort_by_key(&mut r, |x| core::cmp::Reverse(*x));
        assert_eq!(r, [5, 2, 1]);
    }
}
