//! QEMU `virt` machine (QEMU 10), started with
//! `-M virt,virtualization=on,gic-version=3 -smp 4 -m 1G` (or `gic-version=2`).
//!
//! Entry protocol: QEMU loads Bulkhead as an arm64 `Image` at
//! `0x4020_0000` and enters it at EL2 on core 0; the other cores are held off
//! by QEMU's built-in PSCI (SMC conduit) until `CPU_ON`.

use bulkhead_core::board::{Board, Conduit, Device, DeviceUse, Gic, Range};
use bulkhead_core::vgic::Deactivation;

const MIB: u64 = 1 << 20;

/// Where QEMU places the partitioner image (RAM base + 2 MiB, see
/// `load_aarch64_image` in QEMU: a zero text offset is moved past its boot stub).
pub const LOAD_ADDRESS: u64 = 0x4020_0000;

/// The board. Only whole-page devices are listed: stage 2 maps 4 KiB pages,
/// so a device sharing a page with another (QEMU's virtio-mmio transports sit
/// 0x200 apart) cannot be given to one domain alone.
pub static BOARD: Board = Board {
    name: "qemu-virt",
    ram: &[Range::new(0x4000_0000, 1024 * MIB)],
    cpus: &[0x0, 0x1, 0x2, 0x3],
    devices: &[
        Device {
            name: "uart0",
            compatible: "arm,pl011",
            reg: Range::new(0x0900_0000, 0x1000),
            spis: &[1],
            usage: DeviceUse::Reserved("partitioner console"),
        },
        Device {
            name: "uart1",
            compatible: "arm,pl011",
            reg: Range::new(0x0904_0000, 0x1000),
            spis: &[8],
            usage: DeviceUse::Assignable,
        },
        Device {
            name: "rtc",
            compatible: "arm,pl031",
            reg: Range::new(0x0901_0000, 0x1000),
            spis: &[2],
            usage: DeviceUse::Assignable,
        },
        Device {
            name: "fw-cfg",
            compatible: "qemu,fw-cfg-mmio",
            reg: Range::new(0x0902_0000, 0x18),
            spis: &[],
            usage: DeviceUse::Reserved("QEMU firmware configuration"),
        },
        Device {
            name: "gpio",
            compatible: "arm,pl061",
            reg: Range::new(0x0903_0000, 0x1000),
            spis: &[7],
            usage: DeviceUse::Assignable,
        },
    ],
    gics: &[
        Gic::V3 {
            distributor: Range::new(0x0800_0000, 0x1_0000),
            redistributors: Range::new(0x080a_0000, 0xf6_0000),
        },
        Gic::V2 {
            distributor: Range::new(0x0800_0000, 0x1_0000),
            cpu_interface: Range::new(0x0801_0000, 0x1_0000),
            hyp_interface: Range::new(0x0803_0000, 0x1_0000),
            virtual_cpu: Range::new(0x0804_0000, 0x1_0000),
            // QEMU's GICv2 model (hw/intc/arm_gic.c, still in QEMU 10) clears
            // the physical active state when a hardware list register is
            // EOIed, but does not look again for a pending physical
            // interrupt: a level interrupt that re-asserted while active
            // (a timer whose next deadline has already passed, a UART with
            // more bytes) is then not signalled until some other GIC event
            // on that core, and a vCPU waiting for it hangs. The
            // partitioner's own deactivation (GICC_DIR) does look again.
            deactivation: Deactivation::Maintenance,
        },
    ],
    console: Range::new(0x0900_0000, 0x1000),
    psci: Conduit::Smc,
    spi_count: 256,
};
