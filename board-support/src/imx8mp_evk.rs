//! NXP i.MX 8M Plus EVK: 4 × Cortex-A53, a GIC-500-class GICv3, RAM from
//! 0x4000_0000. Facts verified on QEMU 10's `imx8mp-evk -smp 4` unless
//! marked otherwise; how to flash a real board is in `docs/boards/imx8mp.md`.
//!
//! Entry protocol: U-Boot's `booti` (or QEMU's `-kernel`) loads Bulkhead as
//! an arm64 `Image` at RAM base + 2 MiB and enters it at EL2 on core 0. The
//! other cores are off until PSCI `CPU_ON` over SMC: TF-A's BL31 answers on
//! the board, QEMU's built-in PSCI under QEMU.
//!
//! Device addresses and SPIs are those of Linux's `imx8mp.dtsi`; every
//! peripheral sits in a 64 KiB AIPS slot of its own, so each can go to a
//! different domain. The SDMA engines (which move the UARTs' and ECSPIs'
//! data when their drivers ask for it) are not listed: they master DMA for
//! every peripheral at once and stay with the partitioner.

use bulkhead_core::board::{
    Board, Conduit, CpuStart, Device, DeviceUse, Gic, QemuModel, Range, Stage2Leaves, Uart,
    UartKind,
};
use bulkhead_core::vgic::VirtualIrq;

const MIB: u64 = 1 << 20;
const SLOT: u64 = 0x1_0000;

/// Where U-Boot's `booti` and QEMU put an `Image` with a zero text offset
/// (RAM base + 2 MiB).
pub const LOAD_ADDRESS: u64 = 0x4020_0000;

/// The EVK's console: UART2 (the USB debug port's second channel; QEMU's
/// `-serial 1`).
const CONSOLE: Range = Range::new(0x3089_0000, SLOT);

/// The board.
pub static BOARD: Board = Board {
    name: "imx8mp-evk",
    // The EVK's 6 GiB of LPDDR4, contiguous from 0x4000_0000 (DOCUMENTED:
    // NXP's U-Boot `imx8mp_evk` PHYS_SDRAM 3 GiB + PHYS_SDRAM_2 3 GiB at
    // 0x1_0000_0000). QEMU models up to 8 GiB there, but its `-kernel`
    // refuses 4 GiB or more without a `-dtb` ("RAM size must be less than
    // 4GB to boot Linux kernel using ATAGS"), so the QEMU model below has
    // 3 GiB: configs run under QEMU must keep their RAM below 0x1_0000_0000
    // (first-fit placement fills from the bottom, so only fixed addresses
    // above it or more than 3 GiB of domains would notice).
    ram: &[Range::new(0x4000_0000, 6 * 1024 * MIB)],
    cpus: &[0x0, 0x1, 0x2, 0x3],
    devices: &[
        Device {
            name: "uart2",
            compatible: "fsl,imx8mp-uart",
            reg: CONSOLE,
            spis: &[27],
            usage: DeviceUse::Reserved("partitioner console"),
            dma: false,
        },
        uart("uart1", 0x3086_0000, &[26]),
        uart("uart3", 0x3088_0000, &[28]),
        uart("uart4", 0x30a6_0000, &[29]),
        gpio("gpio1", 0x3020_0000, &[64, 65]),
        gpio("gpio2", 0x3021_0000, &[66, 67]),
        gpio("gpio3", 0x3022_0000, &[68, 69]),
        gpio("gpio4", 0x3023_0000, &[70, 71]),
        gpio("gpio5", 0x3024_0000, &[72, 73]),
        plain("ecspi1", "fsl,imx8mp-ecspi", 0x3082_0000, &[31]),
        plain("ecspi2", "fsl,imx8mp-ecspi", 0x3083_0000, &[32]),
        plain("ecspi3", "fsl,imx8mp-ecspi", 0x3084_0000, &[33]),
        plain("i2c1", "fsl,imx8mp-i2c", 0x30a2_0000, &[35]),
        plain("i2c2", "fsl,imx8mp-i2c", 0x30a3_0000, &[36]),
        plain("i2c3", "fsl,imx8mp-i2c", 0x30a4_0000, &[37]),
        plain("i2c4", "fsl,imx8mp-i2c", 0x30a5_0000, &[38]),
        plain("i2c5", "fsl,imx8mp-i2c", 0x30ad_0000, &[76]),
        plain("i2c6", "fsl,imx8mp-i2c", 0x30ae_0000, &[77]),
        // uSDHC: ADMA masters memory by itself. The i.MX 8M Plus has no
        // IOMMU in front of it.
        dma("usdhc1", "fsl,imx8mp-usdhc", 0x30b4_0000, &[22]),
        dma("usdhc2", "fsl,imx8mp-usdhc", 0x30b5_0000, &[23]),
        dma("usdhc3", "fsl,imx8mp-usdhc", 0x30b6_0000, &[24]),
        // ENET1 (FEC): its buffer descriptors and frames are DMA.
        dma("fec", "fsl,imx8mp-fec", 0x30be_0000, &[118, 119, 120, 121]),
    ],
    gics: &[Gic::V3 {
        distributor: Range::new(0x3880_0000, SLOT),
        // 0x2_0000 per core, 4 cores.
        redistributors: Range::new(0x3888_0000, 0x8_0000),
        // QEMU 10's `fsl-imx8mp.c` connects the GIC's IRQ and FIQ outputs
        // to the cores but not its virtual IRQ/FIQ: a pending list register
        // never interrupts the vCPU. HCR_EL2.VI stands in for the line
        // (verified: without it no domain ever takes an interrupt). A real
        // i.MX 8M Plus has the line: use `VirtualIrq::Wired` for a board
        // build that is not meant for QEMU (docs/boards/imx8mp.md).
        virtual_irq: VirtualIrq::ViaHcrVi,
    }],
    console: Uart {
        kind: UartKind::Imx,
        reg: CONSOLE,
    },
    cpu_start: CpuStart::Psci(Conduit::Smc),
    image_base: LOAD_ADDRESS,
    qemu: Some(QemuModel {
        machine: "imx8mp-evk",
        cpu_choice: false,
        // QEMU's default is 128 MiB; the most `-kernel` without `-dtb`
        // accepts is below 4 GiB (see `ram` above).
        memory_mib: Some(3 * 1024),
        smp: None,
        // `-serial 0` is UART1; the EVK's console UART2 is `-serial 1`.
        console_serial: 1,
        serials: 4,
        args: &[],
    }),
    // 192 interrupt lines (GICD_TYPER 0x3780005): 160 SPIs.
    spi_count: 160,
    iommus: &[],
    // Its DesignWare PCIe controller is not driven by Bulkhead.
    pcie: None,
    stage2: Stage2Leaves::Blocks,
};

const fn uart(name: &'static str, base: u64, spis: &'static [u32]) -> Device {
    // SDMA can move its data, but SDMA is the partitioner's: the UART
    // itself masters nothing.
    plain(name, "fsl,imx8mp-uart", base, spis)
}

const fn gpio(name: &'static str, base: u64, spis: &'static [u32]) -> Device {
    plain(name, "fsl,imx8mp-gpio", base, spis)
}

const fn plain(
    name: &'static str,
    compatible: &'static str,
    base: u64,
    spis: &'static [u32],
) -> Device {
    Device {
        name,
        compatible,
        reg: Range::new(base, SLOT),
        spis,
        usage: DeviceUse::Assignable,
        dma: false,
    }
}

const fn dma(
    name: &'static str,
    compatible: &'static str,
    base: u64,
    spis: &'static [u32],
) -> Device {
    Device {
        dma: true,
        ..plain(name, compatible, base, spis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_is_uart2_and_kept() {
        let d = BOARD.device("uart2").unwrap();
        assert_eq!(d.reg, BOARD.console.reg);
        assert!(matches!(d.usage, DeviceUse::Reserved(_)));
        assert!(BOARD
            .reserved_mmio()
            .any(|(r, _)| r.contains(&Range::new(0x3089_0000, 0x1000))));
    }

    #[test]
    fn the_image_sits_in_ram_where_booti_and_qemu_put_it() {
        assert!(BOARD.ram[0].contains_addr(BOARD.image_base));
        assert_eq!(BOARD.image_base - BOARD.ram[0].base, 2 * MIB);
        // The QEMU model has the first 3 GiB of it: all QEMU's `-kernel`
        // takes without a device tree (below 4 GiB).
        let q = BOARD.qemu.unwrap();
        let qemu_ram = u64::from(q.memory_mib.unwrap()) * MIB;
        assert!(qemu_ram < 4096 * MIB && qemu_ram <= BOARD.ram[0].size);
        assert_eq!(BOARD.ram[0].base + qemu_ram, 0x1_0000_0000);
    }

    #[test]
    fn only_qemu_needs_the_virtual_irq_quirk() {
        let [Gic::V3 { virtual_irq, .. }] = BOARD.gics else {
            panic!("one GICv3");
        };
        assert_eq!(*virtual_irq, VirtualIrq::ViaHcrVi);
        // One redistributor frame pair per core.
        assert_eq!(BOARD.gics[0].parts()[1].0.size, 0x2_0000 * 4);
    }
}
