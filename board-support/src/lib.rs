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
