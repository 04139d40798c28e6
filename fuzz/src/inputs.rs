// What the fuzz targets check configs with: the partitioner's layout and
// the image sizes. One definition, included by `fuzz/src/lib.rs` and by
// `xtask/src/fuzz.rs` (the seeds' plans must be the fuzz targets' plans).

/// The partitioner's layout: at qemu-virt's load address, 2 MiB of
/// firmware and package.
pub fn layout() -> bulkhead_core::validate::Layout {
    bulkhead_core::validate::Layout {
        partitioner: bulkhead_core::board::partitioner_footprint(
            board_support::qemu_virt::LOAD_ADDRESS,
            0x20_0000,
        ),
    }
}

/// Size of a domain's image: missing when its name says so (to reach the
/// missing-image paths), otherwise a size that grows with the name.
pub fn image_size(_domain: &str, image: &str) -> Option<u64> {
    if image.contains("missing") {
        None
    } else if image.ends_with(".dts") || image.ends_with(".dtb") {
        Some(0x800 + image.len() as u64)
    } else {
        Some(0x1_0000 + 0x1000 * image.len() as u64)
    }
}
