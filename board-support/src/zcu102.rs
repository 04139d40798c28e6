//! Xilinx Zynq UltraScale+ MPSoC ZCU102 evaluation board (XCZU9EG): 4 ×
//! Cortex-A53, a GIC-400, DDR from 0. Facts verified on QEMU 10's
//! `xlnx-zcu102,virtualization=on` unless marked otherwise; addresses and
//! interrupts of the devices are those of Linux's `zynqmp.dtsi`; how to
//! build a BOOT.BIN for a real board is in `docs/boards/zcu102.md`.
//!
//! Entry protocol: on the board, the FSBL loads Bulkhead (a BOOT.BIN
//! partition, or U-Boot's `booti`) at 0x20_0000 and TF-A's BL31 enters it
//! at EL2 on core 0; QEMU loads the arm64 `Image` at RAM base + 2 MiB and
//! enters it at EL2. The other cores are powered off until PSCI `CPU_ON`
//! over SMC (BL31 with the PMU on the board; QEMU's built-in PSCI).
//!
//! QEMU reads unmodelled addresses as zero instead of faulting (the real
//! SMMU at 0xfd80_0000, for one): a domain's access to anything outside
//! its stage 2 still faults at stage 2 first, so isolation is the same.

use bulkhead_core::board::{
    Board, Conduit, CpuStart, Device, DeviceUse, Gic, QemuModel, Range, Stage2Leaves, Uart,
    UartKind,
};
use bulkhead_core::vgic::Deactivation;

const MIB: u64 = 1 << 20;

/// Where QEMU (RAM base + 2 MiB) and the boot files `cargo xtask image`
/// writes (`load=`/`startup=` in the BIF, U-Boot's `booti`) put the image.
pub const LOAD_ADDRESS: u64 = 0x20_0000;

/// The end of the RAM Bulkhead uses in the low DDR bank: the last 2 MiB
/// below 2 GiB are left to the platform firmware (a BL31 built to run from
/// DDR sits at the end of this bank; Bao leaves 0x16000 there).
const LOW_DDR_END: u64 = 0x8000_0000 - 2 * MIB;

/// A Cadence UART (the ZynqMP's UART0/1).
const CADENCE_UART: &str = "cdns,uart-r1p12";

/// The board.
pub static BOARD: Board = Board {
    name: "zcu102",
    ram: &[
        // The low DDR bank (0..2 GiB): below 2 MiB is left to the boot
        // firmware (FSBL, QEMU's boot stub), the top 2 MiB to BL31. The
        // board's other 2 GiB at 0x8_0000_0000 are not used (QEMU has them
        // only with more than `-m 2G`).
        Range::new(2 * MIB, LOW_DDR_END - 2 * MIB),
    ],
    cpus: &[0x0, 0x1, 0x2, 0x3],
    devices: &[
        Device {
            name: "uart0",
            compatible: CADENCE_UART,
            reg: Range::new(0xff00_0000, 0x1000),
            // INTID 53.
            spis: &[21],
            usage: DeviceUse::Reserved("partitioner console"),
            dma: false,
        },
        Device {
            // The board's second USB-UART channel (QEMU `-serial` 1).
            name: "uart1",
            compatible: CADENCE_UART,
            reg: Range::new(0xff01_0000, 0x1000),
            // INTID 54.
            spis: &[22],
            usage: DeviceUse::Assignable,
            dma: false,
        },
        simple("i2c0", "cdns,i2c-r1p14", 0xff02_0000, &[17]),
        simple("i2c1", "cdns,i2c-r1p14", 0xff03_0000, &[18]),
        simple("spi0", "cdns,spi-r1p6", 0xff04_0000, &[19]),
        simple("spi1", "cdns,spi-r1p6", 0xff05_0000, &[20]),
        simple("gpio", "xlnx,zynqmp-gpio-1.0", 0xff0a_0000, &[16]),
        // The four triple timer counters, three interrupts each.
        simple("ttc0", "cdns,ttc", 0xff11_0000, &[36, 37, 38]),
        simple("ttc1", "cdns,ttc", 0xff12_0000, &[39, 40, 41]),
        simple("ttc2", "cdns,ttc", 0xff13_0000, &[42, 43, 44]),
        simple("ttc3", "cdns,ttc", 0xff14_0000, &[45, 46, 47]),
        // Gigabit Ethernet MACs: descriptor rings and buffers by DMA.
        // (ZCU102's RJ45 is wired to GEM3.)
        dma("gem0", "cdns,gem", 0xff0b_0000, &[57]),
        dma("gem1", "cdns,gem", 0xff0c_0000, &[59]),
        dma("gem2", "cdns,gem", 0xff0d_0000, &[61]),
        dma("gem3", "cdns,gem", 0xff0e_0000, &[63]),
        // SD/eMMC (Arasan SDHCI with ADMA); the SD card slot is sdhci1.
        dma("sdhci0", "arasan,sdhci-8.9a", 0xff16_0000, &[48]),
        dma("sdhci1", "arasan,sdhci-8.9a", 0xff17_0000, &[49]),
        Device {
            // The SMMU-500 (silicon only: QEMU does not model it). Bulkhead
            // has no driver for it, so it protects nothing; kept, so that no
            // domain can program it for other domains' devices.
            name: "smmu",
            compatible: "arm,mmu-500",
            reg: Range::new(0xfd80_0000, 0x2_0000),
            spis: &[155],
            usage: DeviceUse::Reserved("SMMU (no driver)"),
            dma: false,
        },
    ],
    gics: &[Gic::V2 {
        // Its 4 KiB page is aliased 16 times in the 64 KiB block: all kept.
        distributor: Range::new(0xf901_0000, 0x1_0000),
        // GICC and GICV are 4 KiB pages aliased across 64 KiB blocks; the
        // last alias of one page and the first of the next make the
        // contiguous 8 KiB interface (the same on silicon).
        cpu_interface: Range::new(0xf902_f000, 0x2000),
        hyp_interface: Range::new(0xf904_0000, 0x1000),
        virtual_cpu: Range::new(0xf906_f000, 0x2000),
        // QEMU's GICv2 model (hw/intc/arm_gic.c), as on `virt` and `rpi4`.
        // A real GIC-400 deactivates through the list register's hardware
        // bit; the maintenance route works on both.
        deactivation: Deactivation::Maintenance,
    }],
    console: Uart {
        kind: UartKind::Cadence,
        reg: Range::new(0xff00_0000, 0x1000),
    },
    cpu_start: CpuStart::Psci(Conduit::Smc),
    image_base: LOAD_ADDRESS,
    qemu: Some(QemuModel {
        machine: "xlnx-zcu102,virtualization=on",
        cpu_choice: false,
        // The whole low DDR bank (QEMU's default is 128 MiB).
        memory_mib: Some(2048),
        smp: None,
        console_serial: 0,
        // UART0, then UART1.
        serials: 2,
        // No audio backend for the DisplayPort's audio (QEMU complains on
        // stderr without one).
        args: &["-audio", "none"],
    }),
    // 192 interrupt lines (GICD_TYPER 0x65): 160 SPIs.
    spi_count: 160,
    // The SMMU-500 is listed above as reserved, not as an `Iommu`: the
    // partitioner does not program it, so every DMA master is unprotected.
    iommus: &[],
    // Its PCIe controller (PS-GTR) is not modelled by QEMU nor driven by
    // Bulkhead.
    pcie: None,
    stage2: Stage2Leaves::Blocks,
};

/// A device that masters no DMA, in one 4 KiB page.
const fn simple(
    name: &'static str,
    compatible: &'static str,
    base: u64,
    spis: &'static [u32],
) -> Device {
    Device {
        name,
        compatible,
        reg: Range::new(base, 0x1000),
        spis,
        usage: DeviceUse::Assignable,
        dma: false,
    }
}

/// A DMA master in one 4 KiB page.
const fn dma(
    name: &'static str,
    compatible: &'static str,
    base: u64,
    spis: &'static [u32],
) -> Device {
    Device {
        dma: true,
        ..simple(name, compatible, base, spis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gicc_and_gicv_are_the_contiguous_8k_windows() {
        let [Gic::V2 {
            distributor,
            cpu_interface,
            hyp_interface,
            virtual_cpu,
            deactivation,
        }] = BOARD.gics
        else {
            panic!("one GICv2")
        };
        // The partitioner maps GICV where a domain's 8 KiB GICC is: both
        // must be the 8 KiB windows that straddle two 64 KiB alias blocks.
        assert_eq!(*cpu_interface, Range::new(0xf902_f000, 0x2000));
        assert_eq!(*virtual_cpu, Range::new(0xf906_f000, 0x2000));
        assert_eq!(hyp_interface.base, 0xf904_0000);
        assert_eq!(*distributor, Range::new(0xf901_0000, 0x1_0000));
        assert_eq!(*deactivation, Deactivation::Maintenance);
    }

    #[test]
    fn the_console_is_the_reserved_cadence_uart0() {
        assert_eq!(BOARD.console.kind, UartKind::Cadence);
        let uart0 = BOARD.device("uart0").unwrap();
        assert_eq!(uart0.reg, BOARD.console.reg);
        assert_eq!(uart0.spis, &[21]);
        assert!(matches!(uart0.usage, DeviceUse::Reserved(_)));
        let uart1 = BOARD.device("uart1").unwrap();
        assert_eq!(
            (uart1.reg.base, uart1.spis, uart1.usage),
            (0xff01_0000, &[22][..], DeviceUse::Assignable)
        );
        assert_eq!(uart1.compatible, "cdns,uart-r1p12");
    }

    #[test]
    fn dma_masters_are_marked_and_unprotected() {
        for d in BOARD.devices {
            let master = d.name.starts_with("gem") || d.name.starts_with("sdhci");
            assert_eq!(d.dma, master, "{}", d.name);
            assert!(BOARD.iommu_covering(d.name).is_none());
        }
        // Every block is on a 64 KiB boundary.
        assert!(BOARD
            .devices
            .iter()
            .all(|d| d.reg.base.is_multiple_of(0x1_0000)));
    }

    #[test]
    fn ram_is_the_low_ddr_bank_from_the_image_base() {
        assert_eq!(BOARD.ram, &[Range::new(0x20_0000, 0x7fc0_0000)]);
        assert_eq!(BOARD.image_base, 0x20_0000);
        let q = BOARD.qemu.unwrap();
        assert_eq!(q.memory_mib, Some(2048));
        assert!(q.machine.contains("virtualization=on"));
        assert_eq!(BOARD.cpu_start, CpuStart::Psci(Conduit::Smc));
    }
}
