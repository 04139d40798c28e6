// The configs whose plans the `dtb_supplied` target checks trees against,
// in order. One list, included by `fuzz/build.rs` (which compiles them) and
// by `xtask/src/fuzz.rs` (which seeds the corpus from their plans).
pub const PLAN_CONFIGS: &[&str] = &[
    "tests/configs/supplied-tree.dts",
    "tests/configs/linux-pair.dts",
    "configs/qemu-virt/isolation.dts",
];
