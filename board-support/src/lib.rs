//! The boards Bulkhead knows. One module per board; each exports a
//! `bulkhead_core::board::Board` constant. A config names its board
//! (`board = "qemu-virt"`) and `by_name` finds it, so adding a board never
//! touches the core.
#![no_std]
#![forbid(unsafe_code)]

use bulkhead_core::board::Board;

pub mod qemu_virt;

/// Every supported board.
pub const BOARDS: &[&Board] = &[&qemu_virt::BOARD];

/// The board a config names, if supported.
pub fn by_name(name: &str) -> Option<&'static Board> {
    BOARDS.iter().copied().find(|b| b.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_core::board::DeviceUse;

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
