//! QEMU `virt` machine (QEMU 10), started with
//! `-M virt,virtualization=on,gic-version=3 -smp 4 -m 1G` (or `gic-version=2`).
//!
//! Entry protocol: QEMU loads Bulkhead as an arm64 `Image` at
//! `0x4020_0000` and enters it at EL2 on core 0; the other cores are held off
//! by QEMU's built-in PSCI (SMC conduit) until `CPU_ON`.

use bulkhead_core::board::{
    Board, Conduit, CpuStart, Device, DeviceUse, Gic, Iommu, PcieHost, QemuModel, Range,
    Stage2Leaves, Uart, UartKind,
};
use bulkhead_core::vgic::{Deactivation, VirtualIrq};

const MIB: u64 = 1 << 20;

/// Where QEMU places the partitioner image (RAM base + 2 MiB, see
/// `load_aarch64_image` in QEMU: a zero text offset is moved past its boot stub).
pub const LOAD_ADDRESS: u64 = 0x4020_0000;

/// The board. Only whole pages are listed as devices: stage 2 maps 4 KiB
/// pages, so devices sharing a page (QEMU's virtio-mmio transports sit 0x200
/// apart) can only be given away together, as one page-sized device.
pub static BOARD: Board = VIRT;

/// The same machine started without the SMMUv3 (plain `-M virt`): its PCIe
/// functions' DMA reaches all of memory, so the checker refuses to give one
/// to a domain unless the config accepts the risk (`dma = "unprotected"`).
pub static BOARD_NO_IOMMU: Board = Board {
    name: "qemu-virt-noiommu",
    iommus: &[],
    pcie: match VIRT.pcie {
        Some(p) => Some(PcieHost { iommu: None, ..p }),
        None => None,
    },
    qemu: Some(QemuModel {
        machine: "virt,virtualization=on,gic-version={gic}",
        ..QEMU_VIRT_MODEL
    }),
    ..VIRT
};

/// The same machine with 8 cores (`-smp 8`): room for eight single-core
/// domains, for the boot-scaling bench (`cargo xtask bench scaling`). QEMU
/// `virt` numbers them Aff0 0..7 on GICv3 and GICv2 alike.
pub static BOARD_8_CORES: Board = Board {
    name: "qemu-virt-8",
    cpus: &[0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7],
    qemu: Some(QemuModel {
        smp: Some(8),
        ..QEMU_VIRT_MODEL
    }),
    ..VIRT
};

const QEMU_VIRT_MODEL: QemuModel = QemuModel {
    machine: "virt,virtualization=on,gic-version={gic},iommu=smmuv3",
    cpu_choice: true,
    memory_mib: None,
    smp: None,
    console_serial: 0,
    serials: 2,
    args: &[],
};

const VIRT: Board = Board {
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
            // A PL011 only signals a DMA controller (QEMU's has none).
            dma: false,
        },
        Device {
            name: "uart1",
            compatible: "arm,pl011",
            reg: Range::new(0x0904_0000, 0x1000),
            spis: &[8],
            usage: DeviceUse::Assignable,
            dma: false,
        },
        Device {
            name: "rtc",
            compatible: "arm,pl031",
            reg: Range::new(0x0901_0000, 0x1000),
            spis: &[2],
            usage: DeviceUse::Assignable,
            dma: false,
        },
        Device {
            name: "fw-cfg",
            compatible: "qemu,fw-cfg-mmio",
            reg: Range::new(0x0902_0000, 0x18),
            spis: &[],
            usage: DeviceUse::Reserved("QEMU firmware configuration"),
            // Its DMA interface (the register at offset 0x10) writes guest
            // memory: one more reason never to give it away.
            dma: true,
        },
        Device {
            name: "gpio",
            compatible: "arm,pl061",
            reg: Range::new(0x0903_0000, 0x1000),
            spis: &[7],
            usage: DeviceUse::Assignable,
            dma: false,
        },
        // The 32 virtio-mmio transports, 0x200 apart from 0x0a00_0000, SPIs
        // 16..47 (QEMU's `virt.c`: VIRT_MMIO, NUM_VIRTIO_TRANSPORTS). Stage 2
        // maps whole pages, so each 4 KiB page (8 transports, 8 SPIs) is one
        // assignable device. A virtio device masters DMA: its queues and
        // buffers are wherever the driver says, anywhere in physical memory.
        virtio_page(0, "virtio-mmio0", &[16, 17, 18, 19, 20, 21, 22, 23]),
        virtio_page(1, "virtio-mmio1", &[24, 25, 26, 27, 28, 29, 30, 31]),
        virtio_page(2, "virtio-mmio2", &[32, 33, 34, 35, 36, 37, 38, 39]),
        virtio_page(3, "virtio-mmio3", &[40, 41, 42, 43, 44, 45, 46, 47]),
    ],
    gics: &[
        Gic::V3 {
            distributor: Range::new(0x0800_0000, 0x1_0000),
            redistributors: Range::new(0x080a_0000, 0xf6_0000),
            virtual_irq: VirtualIrq::Wired,
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
    console: Uart {
        kind: UartKind::Pl011,
        reg: Range::new(0x0900_0000, 0x1000),
    },
    cpu_start: CpuStart::Psci(Conduit::Smc),
    image_base: LOAD_ADDRESS,
    qemu: Some(QEMU_VIRT_MODEL),
    spi_count: 256,
    // The SMMUv3 of `-M virt,iommu=smmuv3` (its model in `qemu` below
    // always asks for it): SPIs 74-77 are its event queue, PRI queue,
    // command-sync and global-error interrupts. Only the PCIe root complex
    // sits behind it (stream ID = requester ID), not the platform devices.
    iommus: &[Iommu {
        name: "smmu",
        reg: Range::new(0x0905_0000, 0x2_0000),
        streams: &[],
        spis: &[74, 75, 76, 77],
    }],
    // QEMU's generic ECAM host bridge (`pcie@10000000` in its device tree):
    // the high ECAM window (256 buses), the 32-bit memory window, the 64-bit
    // one (at 512 GiB: beyond Bulkhead's 39-bit guest address space, so a
    // BAR fixed there is refused as `ipa-range`; it is listed so the checker
    // can tell a BAR outside both windows from one in it), INTA-D on SPIs
    // 3-6.
    pcie: Some(PcieHost {
        name: "pcie",
        ecam: Range::new(0x40_1000_0000, 0x1000_0000),
        mmio32: Range::new(0x1000_0000, 0x2eff_0000),
        mmio64: Some(Range::new(0x80_0000_0000, 0x80_0000_0000)),
        intx_spis: [3, 4, 5, 6],
        iommu: Some("smmu"),
    }),
    // Only ever a QEMU model: pages, not blocks (`Stage2Leaves::Pages`).
    stage2: Stage2Leaves::Pages,
};

/// Page `n` (0..4) of the virtio-mmio transports: transports `8n..8n+8`,
/// with their SPIs `16 + 8n..24 + 8n`.
const fn virtio_page(n: u64, name: &'static str, spis: &'static [u32]) -> Device {
    Device {
        name,
        compatible: "virtio,mmio",
        reg: Range::new(0x0a00_0000 + n * 0x1000, 0x1000),
        spis,
        usage: DeviceUse::Assignable,
        dma: true,
    }
}
