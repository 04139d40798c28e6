//! The boards Bulkhead knows. One module per board; each exports a
//! `bulkhead_core::board::Board` constant and is listed once in [`BOARDS`].
//! A config names its board (`board = "qemu-virt"`): the host check finds
//! it with [`by_name`], and `cargo xtask build` builds the firmware for it
//! (it sets `BULKHEAD_BOARD`, which the firmware resolves with [`find`] at
//! compile time). Adding a board touches nothing outside this crate.
#![no_std]
#![forbid(unsafe_code)]

use bulkhead_core::board::Board;

pub mod imx8mp_evk;
pub mod qemu_virt;
pub mod rpi4;
pub mod zcu102;

/// Every supported board.
pub const BOARDS: &[&Board] = &[
    &qemu_virt::BOARD,
    &qemu_virt::BOARD_NO_IOMMU,
    &qemu_virt::BOARD_8_CORES,
    &rpi4::BOARD,
    &imx8mp_evk::BOARD,
    &zcu102::BOARD,
];

/// The board a config names, if supported.
pub fn by_name(name: &str) -> Option<&'static Board> {
    find(name)
}

/// [`by_name`] for constant evaluation: the firmware picks its board with
/// it at compile time.
pub const fn find(name: &str) -> Option<&'static Board> {
    let mut i = 0;
    while i < BOARDS.len() {
        if str_eq(BOARDS[i].name, name) {
            return Some(BOARDS[i]);
        }
        i += 1;
    }
    None
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_core::board::DeviceUse;

    #[test]
    fn only_boards_that_exist_only_as_qemu_models_map_stage_2_in_pages() {
        use bulkhead_core::board::Stage2Leaves;
        for b in BOARDS {
            let model_only = b.name.starts_with("qemu-virt");
            assert_eq!(b.stage2 == Stage2Leaves::Pages, model_only, "{}", b.name);
            // The firmware's pool then holds a level-3 table per 2 MiB of RAM.
            let per_2m: u64 = b.ram.iter().map(|r| r.size.div_ceil(2 << 20)).sum();
            let expected = if model_only { per_2m } else { 0 };
            assert_eq!(b.stage2_page_tables() as u64, expected, "{}", b.name);
        }
        assert_eq!(qemu_virt::BOARD.stage2_page_tables(), 512);
    }

    #[test]
    fn every_board_is_well_formed() {
        for b in BOARDS {
            assert_eq!(by_name(b.name).map(|x| x.name), Some(b.name));
            assert!(
                !b.cpus.is_empty() && b.cpus.len() <= bulkhead_core::plan::MAX_CPUS,
                "{}",
                b.name
            );
            for d in b.devices {
                // Assignable devices must own whole pages: stage 2 cannot split one.
                if d.usage == DeviceUse::Assignable {
                    assert_eq!(d.reg.base % 4096, 0, "{} {}", b.name, d.name);
                    assert_eq!(d.reg.size % 4096, 0, "{} {}", b.name, d.name);
                }
                for e in b.devices {
                    if d.name != e.name {
                        assert!(!d.reg.overlaps(&e.reg), "{} {} {}", b.name, d.name, e.name);
                        assert!(
                            d.spis.iter().all(|s| !e.spis.contains(s)),
                            "{} {} {}",
                            b.name,
                            d.name,
                            e.name
                        );
                    }
                }
                assert!(d.spis.iter().all(|&s| s < b.spi_count));
            }
            for r in b.ram {
                assert!(b.ram.iter().filter(|x| x.overlaps(r)).count() == 1);
            }
        }
    }
}
