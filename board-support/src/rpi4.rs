//! Raspberry Pi 4 Model B (BCM2711): 4 × Cortex-A72, a GIC-400, RAM from 0.
//! Facts verified on QEMU 10's `raspi4b` unless marked otherwise; how to
//! flash a real board is in `docs/boards/rpi4.md`.
//!
//! Entry protocol: the GPU firmware (or QEMU) loads Bulkhead as an arm64
//! `Image` at 0x20_0000 (`kernel_address`) and enters it at EL2 on core 0.
//! The other cores wait in the armstub's spin table for an entry address
//! in their mailbox (0xd8, 0xe0, 0xe8, 0xf0) and a `sev`. There is no PSCI
//! (an SMC from EL2 hangs the core on QEMU; the stock armstub makes SMC
//! undefined), unless TF-A's BL31 is the armstub: it then adds a `psci`
//! node to the device tree it passes, and the firmware uses PSCI instead.

use bulkhead_core::board::{
    Board, CpuStart, Device, DeviceUse, Gic, QemuModel, Range, Stage2Leaves, Uart, UartKind,
};
use bulkhead_core::vgic::Deactivation;

const MIB: u64 = 1 << 20;

/// Where the firmware (`kernel_address=0x200000` in `config.txt`) and QEMU
/// (RAM base + 2 MiB) put the image.
pub const LOAD_ADDRESS: u64 = 0x20_0000;

/// The board. Peripheral addresses are the ARM's view in the default
/// ("low peripheral") mode: the VideoCore's 0x7exx_xxxx bus addresses at
/// 0xfexx_xxxx.
pub static BOARD: Board = Board {
    name: "rpi4",
    ram: &[
        // Below 2 MiB: the armstub and its spin table (TF-A's BL31 when it
        // is the armstub). The bank ends where the GPU's memory starts with
        // the firmware's default gpu_mem=76 (DOCUMENTED; QEMU models 64 MiB
        // there).
        Range::new(2 * MIB, 0x3b40_0000 - 2 * MIB),
        // The second GiB, present on every Pi 4 but the 1 GiB one. RAM above
        // 2 GiB (4 and 8 GiB boards) is not used.
        Range::new(0x4000_0000, 1024 * MIB),
    ],
    cpus: &[0x0, 0x1, 0x2, 0x3],
    devices: &[
        Device {
            name: "uart0",
            compatible: "arm,pl011",
            reg: Range::new(0xfe20_1000, 0x1000),
            // INTID 153. On silicon UART2-5 sit in this same page, so
            // none of them can be given to a domain either.
            spis: &[121],
            usage: DeviceUse::Reserved("partitioner console"),
            dma: false,
        },
        Device {
            name: "gpio",
            compatible: "brcm,bcm2711-gpio",
            reg: Range::new(0xfe20_0000, 0x1000),
            spis: &[113, 114, 115, 116],
            usage: DeviceUse::Assignable,
            dma: false,
        },
        Device {
            name: "sdhost",
            compatible: "brcm,bcm2835-sdhost",
            reg: Range::new(0xfe20_2000, 0x1000),
            spis: &[120],
            usage: DeviceUse::Assignable,
            // It moves data through the system DMA engine (its DREQ), which
            // the partitioner keeps: by itself it masters nothing.
            dma: false,
        },
        Device {
            name: "spi0",
            compatible: "brcm,bcm2835-spi",
            reg: Range::new(0xfe20_4000, 0x1000),
            spis: &[118],
            usage: DeviceUse::Assignable,
            dma: false,
        },
        Device {
            // The header's I2C (i2c1). Every BSC controller of the BCM2711
            // raises SPI 117, so only this one is listed: two of them could
            // never go to different domains.
            name: "i2c1",
            compatible: "brcm,bcm2711-i2c",
            reg: Range::new(0xfe80_4000, 0x1000),
            spis: &[117],
            usage: DeviceUse::Assignable,
            dma: false,
        },
        Device {
            // The SD card slot (the Arasan emmc controller at 0xfe300000,
            // wired to the Wi-Fi chip, shares its SPI 126 and is not listed).
            name: "emmc2",
            compatible: "brcm,bcm2711-emmc2",
            reg: Range::new(0xfe34_0000, 0x1000),
            spis: &[126],
            usage: DeviceUse::Assignable,
            // SDHCI ADMA: it reads and writes memory by itself. The BCM2711
            // has no IOMMU.
            dma: true,
        },
        Device {
            name: "usb",
            compatible: "brcm,bcm2835-usb",
            // DWC2 OTG controller (the USB-C port).
            reg: Range::new(0xfe98_0000, 0x1_0000),
            spis: &[73],
            usage: DeviceUse::Assignable,
            // Its host channels master DMA.
            dma: true,
        },
    ],
    gics: &[Gic::V2 {
        distributor: Range::new(0xff84_1000, 0x1000),
        cpu_interface: Range::new(0xff84_2000, 0x2000),
        hyp_interface: Range::new(0xff84_4000, 0x1000),
        virtual_cpu: Range::new(0xff84_6000, 0x2000),
        // QEMU's GICv2 model (hw/intc/arm_gic.c), as on `virt`: see
        // `qemu_virt`. A real GIC-400 deactivates through the list
        // register's hardware bit; the maintenance route works on both.
        deactivation: Deactivation::Maintenance,
    }],
    console: Uart {
        kind: UartKind::Pl011,
        reg: Range::new(0xfe20_1000, 0x1000),
    },
    cpu_start: CpuStart::SpinTable {
        mailboxes: &[0xd8, 0xe0, 0xe8, 0xf0],
    },
    image_base: LOAD_ADDRESS,
    qemu: Some(QemuModel {
        machine: "raspi4b",
        cpu_choice: false,
        // QEMU refuses any other size.
        memory_mib: Some(2048),
        smp: None,
        console_serial: 0,
        // The PL011, then the mini-UART.
        serials: 2,
        args: &[],
    }),
    // 224 interrupt lines (GICD_TYPER 0x66): 192 SPIs.
    spi_count: 192,
    // The BCM2711 has no IOMMU: DMA-capable devices are refused unless a
    // config accepts the risk (`dma = "unprotected"`).
    iommus: &[],
    // The BCM2711's PCIe (the USB 3 controller on the board) is not driven
    // by Bulkhead, nor modelled by QEMU.
    pcie: None,
    stage2: Stage2Leaves::Blocks,
};
