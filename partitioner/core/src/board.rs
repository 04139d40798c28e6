//! What a board looks like to Bulkhead: its RAM, its cores, the devices that can
//! be passed through to domains, and the resources the partitioner keeps for
//! itself. Concrete boards live in the `board-support` crate.

/// An address range `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub base: u64,
    pub size: u64,
}

impl Range {
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }
    /// One past the last byte, or `None` when the range wraps the address space.
    pub const fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }
    pub fn overlaps(&self, other: &Range) -> bool {
        let (Some(a_end), Some(b_end)) = (self.end(), other.end()) else {
            return true;
        };
        self.size != 0 && other.size != 0 && self.base < b_end && other.base < a_end
    }
    pub fn contains(&self, other: &Range) -> bool {
        match (self.end(), other.end()) {
            (Some(a_end), Some(b_end)) => other.base >= self.base && b_end <= a_end,
            _ => false,
        }
    }
    pub fn contains_addr(&self, addr: u64) -> bool {
        addr >= self.base && self.end().is_none_or(|e| addr < e)
    }
}

/// Interrupt controller generation and the addresses of its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gic {
    /// GICv2 (GIC-400) with the virtualization extensions.
    V2 {
        distributor: Range,
        /// Physical CPU interface (GICC), used by the partitioner.
        cpu_interface: Range,
        /// Virtual interface control (GICH): list registers.
        hyp_interface: Range,
        /// Virtual CPU interface (GICV), mapped into a domain where its
        /// GICC would be.
        virtual_cpu: Range,
        /// How a passed-through interrupt's end reaches the hardware: the
        /// list register's hardware bit where it works, EOI maintenance
        /// where it does not (see `board-support`'s QEMU `virt`).
        deactivation: crate::vgic::Deactivation,
    },
    /// GICv3: CPU interfaces are system registers.
    V3 {
        distributor: Range,
        /// All redistributor frames (128 KiB per core).
        redistributors: Range,
        /// How a pending list register reaches the core: the GIC's virtual
        /// IRQ line, or (a QEMU model that leaves it unconnected, see
        /// `board-support`'s i.MX8M Plus EVK) HCR_EL2.VI driven by the
        /// partitioner.
        virtual_irq: crate::vgic::VirtualIrq,
    },
}

impl Gic {
    /// Architecture version, 2 or 3.
    pub fn version(&self) -> u8 {
        match self {
            Gic::V2 { .. } => 2,
            Gic::V3 { .. } => 3,
        }
    }
    pub fn distributor(&self) -> Range {
        match *self {
            Gic::V2 { distributor, .. } | Gic::V3 { distributor, .. } => distributor,
        }
    }
    /// Every MMIO range of the controller, named, for reservation and mapping.
    pub fn parts(&self) -> heapless::Vec<(Range, &'static str), 4> {
        let mut v = heapless::Vec::new();
        let list: &[(Range, &'static str)] = match self {
            Gic::V2 {
                distributor,
                cpu_interface,
                hyp_interface,
                virtual_cpu,
                ..
            } => &[
                (*distributor, "GIC distributor"),
                (*cpu_interface, "GIC CPU interface"),
                (*hyp_interface, "GIC virtual interface control"),
                (*virtual_cpu, "GIC virtual CPU interface"),
            ],
            Gic::V3 {
                distributor,
                redistributors,
                ..
            } => &[
                (*distributor, "GIC distributor"),
                (*redistributors, "GIC redistributors"),
            ],
        };
        for p in list {
            let _ = v.push(*p);
        }
        v
    }
}

/// How the partitioner talks to the platform firmware (PSCI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Smc,
    Hvc,
}

/// How the partitioner starts the board's other physical cores. Domains
/// always get PSCI from Bulkhead, whatever this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuStart {
    /// The platform firmware's PSCI `CPU_ON`/`CPU_OFF` (TF-A, or QEMU's
    /// built-in PSCI), over this conduit.
    Psci(Conduit),
    /// A spin table (the arm64 boot protocol's `enable-method =
    /// "spin-table"`): core `n` waits, at EL2 with its MMU off, for a
    /// non-zero entry address in the 64-bit mailbox `mailboxes[n]` and a
    /// `sev`. Such a core cannot be powered off again: the partitioner
    /// parks it in a loop of its own. If the boot loader's device tree has
    /// a `psci` node (TF-A's BL31 adds one), its PSCI is used instead.
    SpinTable { mailboxes: &'static [u64] },
}

/// Kind of UART, for the partitioner's console driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    /// Arm PrimeCell PL011.
    Pl011,
    /// NXP i.MX UART (i.MX6/7/8: `fsl,imx6q-uart` and its successors).
    Imx,
    /// Cadence UART (`cdns,uart-r1p12`), the Xilinx Zynq/ZynqMP UART.
    Cadence,
}

impl UartKind {
    /// Offset of the register a byte is written to for transmission (the
    /// entry code prints its fatal messages there, with nothing set up).
    pub const fn tx_offset(self) -> u64 {
        match self {
            UartKind::Pl011 => 0,
            // UTXD.
            UartKind::Imx => 0x40,
            // TX_RX_FIFO.
            UartKind::Cadence => 0x30,
        }
    }
}

/// The partitioner's console UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart {
    pub kind: UartKind,
    /// Its registers (the page the partitioner keeps).
    pub reg: Range,
}

/// How QEMU models the board: what `cargo xtask run` and the tests start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QemuModel {
    /// The `-M` value. `{gic}` is replaced by the GIC version asked for,
    /// on machines that offer a choice.
    pub machine: &'static str,
    /// Whether `-cpu` may be given (some board models fix their cores).
    pub cpu_choice: bool,
    /// `-m` in MiB, for models with a fixed RAM size; `None` to take the
    /// size asked for.
    pub memory_mib: Option<u32>,
    /// `-smp`, for models that need a core count of their own (the board
    /// lists more cores than the usual 4); `None` to take the count asked
    /// for.
    pub smp: Option<u32>,
    /// The `-serial` index of the partitioner's console (QEMU connects
    /// serial ports in an order of its own on some boards).
    pub console_serial: usize,
    /// How many `-serial` ports the model has.
    pub serials: usize,
    /// More arguments, always given.
    pub args: &'static [&'static str],
}

/// Who may use a board device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceUse {
    /// Free to be passed through to exactly one domain.
    Assignable,
    /// Kept by the partitioner; the string says what for ("partitioner console").
    Reserved(&'static str),
}

/// A memory-mapped device of the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    /// The name configs use to refer to it (`board-device = "uart1"`).
    pub name: &'static str,
    /// Device-tree `compatible` string, used when generating guest trees.
    pub compatible: &'static str,
    pub reg: Range,
    /// SPI numbers (GIC INTID - 32) of the device's interrupts.
    pub spis: &'static [u32],
    pub usage: DeviceUse,
    /// Whether the device can master DMA: read and write memory by itself,
    /// at physical addresses it is told. Stage 2 translates only the CPU's
    /// accesses, so such a device given to a domain reaches all of memory
    /// unless an [`Iommu`] of the board stands in front of it.
    pub dma: bool,
}

/// The stream IDs one DMA-capable device emits, as an IOMMU sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuStream {
    /// Name of the board device ([`Device::name`]).
    pub device: &'static str,
    /// Its stream IDs (an SMMU's StreamIDs).
    pub ids: &'static [u32],
}

/// An IOMMU (an Arm SMMUv3) that translates the DMA of some of the board's
/// devices. Listing one is a promise that the partitioner programs it so
/// that each covered device reaches only the memory of the domain that owns
/// it (`firmware/src/iommu/`): today the PCIe functions behind the SMMUv3 of
/// QEMU `virt` ([`PcieHost::iommu`]); `streams` of platform devices are not
/// driven yet, so no board lists any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iommu {
    pub name: &'static str,
    /// Its registers, kept by the partitioner.
    pub reg: Range,
    /// The devices whose DMA it translates.
    pub streams: &'static [IommuStream],
    /// Its interrupts (SPIs), kept by the partitioner; the first is the
    /// event queue's.
    pub spis: &'static [u32],
}

/// A PCI Express host bridge with an ECAM configuration window (the
/// generic `pci-host-ecam-generic` kind). The partitioner keeps it: it
/// enumerates the root bus at boot, places the BARs of the functions
/// domains own, and switches every other function off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcieHost {
    /// Name, as the DMA messages give it.
    pub name: &'static str,
    /// The ECAM window (1 MiB per bus).
    pub ecam: Range,
    /// The 32-bit memory window the functions' BARs are placed in.
    pub mmio32: Range,
    /// The 64-bit memory window, if the host has one: a config may fix a
    /// BAR there (`bars`), the partitioner places none there itself.
    pub mmio64: Option<Range>,
    /// SPIs of the legacy interrupts INTA-INTD of device 0 (the host
    /// bridge swizzles them by device number).
    pub intx_spis: [u32; 4],
    /// The IOMMU in front of the functions' DMA (stream ID = requester
    /// ID), by name ([`Iommu::name`]); `None`: their DMA is unprotected.
    pub iommu: Option<&'static str>,
}

/// Everything Bulkhead needs to know about a board.
#[derive(Clone, Copy, Debug)]
pub struct Board {
    /// Name used in configs (`board = "qemu-virt"`).
    pub name: &'static str,
    /// RAM banks.
    pub ram: &'static [Range],
    /// MPIDR affinity value of each core; a config's core numbers index this list.
    pub cpus: &'static [u64],
    /// Devices, assignable and reserved.
    pub devices: &'static [Device],
    /// The interrupt controllers the board may have (QEMU virt: GICv3 or
    /// GICv2, chosen on the command line). The firmware finds out which one
    /// is there at boot; validation keeps every one of them for itself.
    pub gics: &'static [Gic],
    /// The partitioner's own console UART.
    pub console: Uart,
    /// How the partitioner starts the other physical cores.
    pub cpu_start: CpuStart,
    /// Where the board's boot loader puts an arm64 `Image` with a zero text
    /// offset (the firmware runs wherever it is put; the host check assumes
    /// this address, the firmware checks again with the real one).
    pub image_base: u64,
    /// The board's QEMU model, if QEMU has one.
    pub qemu: Option<QemuModel>,
    /// Number of SPIs the interrupt controller implements.
    pub spi_count: u32,
    /// IOMMUs in front of DMA-capable devices.
    pub iommus: &'static [Iommu],
    /// The PCI Express host bridge, if the board has one Bulkhead drives.
    pub pcie: Option<PcieHost>,
    /// How stage 2 maps domains' memory.
    pub stage2: Stage2Leaves,
}

/// How a board's stage-2 tables map domains' memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Leaves {
    /// 1 GiB and 2 MiB blocks wherever guest and physical addresses are
    /// both aligned, 4 KiB pages elsewhere: the fewest TLB entries and the
    /// shortest walks on real cores.
    Blocks,
    /// 4 KiB pages only, for boards that exist only as QEMU models. QEMU's
    /// TLB keeps a two-stage translation at the larger of its two stages'
    /// sizes, so behind a 2 MiB stage-2 block every TLB invalidation by
    /// address the guest does empties its whole TLB: measured, Linux took
    /// 20-30% longer to reach its init by the wall clock. Costs one table
    /// frame per 2 MiB of RAM mapped (the firmware's pool is sized from
    /// the board's RAM: [`Board::stage2_page_tables`]).
    Pages,
}

impl Board {
    /// How many level-3 tables mapping all of the board's RAM in pages
    /// can take beyond what blocks would ([`Stage2Leaves::Pages`]; 0 for
    /// [`Stage2Leaves::Blocks`]): one per 2 MiB.
    pub const fn stage2_page_tables(&self) -> usize {
        match self.stage2 {
            Stage2Leaves::Blocks => 0,
            Stage2Leaves::Pages => {
                let mut n = 0;
                let mut i = 0;
                while i < self.ram.len() {
                    n += self.ram[i].size.div_ceil(2 << 20) as usize;
                    i += 1;
                }
                n
            }
        }
    }
}

impl Board {
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name)
    }
    /// The IOMMU that translates the DMA of board device `device`, if any.
    pub fn iommu_covering(&self, device: &str) -> Option<&Iommu> {
        self.iommus
            .iter()
            .find(|i| i.streams.iter().any(|s| s.device == device))
    }
    /// Index of the core with this MPIDR (affinity bits only), if on the board.
    pub fn cpu_index(&self, mpidr: u64) -> Option<usize> {
        let aff = mpidr & 0xff_00ff_ffff;
        self.cpus.iter().position(|&m| m == aff)
    }
    /// MMIO ranges the partitioner keeps: its console, the interrupt
    /// controllers, the IOMMUs and the reserved devices.
    pub fn reserved_mmio(&self) -> impl Iterator<Item = (Range, &'static str)> + '_ {
        core::iter::once((self.console.reg, "partitioner console"))
            .chain(self.gics.iter().flat_map(|g| g.parts()))
            .chain(self.iommus.iter().map(|i| (i.reg, "IOMMU")))
            .chain(self.pcie.iter().flat_map(|p| {
                [
                    (p.ecam, "PCIe configuration window"),
                    (p.mmio32, "PCIe memory window (BARs are placed at boot)"),
                ]
            }))
            .chain(self.devices.iter().filter_map(|d| match d.usage {
                DeviceUse::Reserved(why) => Some((d.reg, why)),
                DeviceUse::Assignable => None,
            }))
    }
    /// The first of [`Board::reserved_mmio`] whose range `hit` accepts (not
    /// generic, so that the chain of iterators exists once).
    #[inline(never)]
    pub fn reserved_mmio_find(
        &self,
        hit: &mut dyn FnMut(&Range) -> bool,
    ) -> Option<(Range, &'static str)> {
        self.reserved_mmio().find(|(r, _)| hit(r))
    }
}

/// Granularity of the partitioner's footprint in RAM.
pub const FOOTPRINT_ALIGN: u64 = 2 << 20;

/// RAM the partitioner occupies when an image of `image_len` bytes (firmware
/// with its package) is loaded at `load`: everything up to the next 2 MiB
/// boundary, so domains keep 2 MiB block mappings. The host check and the
/// firmware use this same function, so they always agree.
pub fn partitioner_footprint(load: u64, image_len: u64) -> Range {
    let end = load
        .saturating_add(image_len)
        .next_multiple_of(FOOTPRINT_ALIGN);
    Range::new(load, end - load)
}

/// What the boot loader's device tree says about starting cores: the
/// conduit of its PSCI node, if it has one. TF-A's BL31, used as the
/// Raspberry Pi's armstub, adds `/psci` (`compatible = "arm,psci-1.0"`,
/// `method = "smc"`) to the tree it passes on; the stock armstub adds
/// nothing, and the cores wait in its spin table. A blob that is not a
/// sound device tree says nothing.
pub fn loader_psci(dtb: &[u8]) -> Option<Conduit> {
    let fdt = crate::fdt_check::check(dtb).ok()?;
    let psci = fdt
        .root()
        .children()
        .find(|n| n.name() == "psci" || n.name().starts_with("psci@"))?;
    if psci
        .prop("status")
        .and_then(|p| p.as_str())
        .is_some_and(|s| s != "okay" && s != "ok")
    {
        return None;
    }
    let compatible = psci.prop("compatible")?.as_str_list()?;
    if !compatible.clone().any(|c| c.starts_with("arm,psci")) {
        return None;
    }
    match psci.prop("method")?.as_str()? {
        "smc" => Some(Conduit::Smc),
        "hvc" => Some(Conduit::Hvc),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdt_check::builder::node;

    #[test]
    fn a_psci_node_in_the_loaders_tree_names_the_conduit() {
        let tf_a = node("")
            .str("compatible", "raspberrypi,4-model-b")
            .child(
                node("psci")
                    .str("compatible", "arm,psci-1.0")
                    .str("method", "smc"),
            )
            .blob();
        assert_eq!(loader_psci(&tf_a), Some(Conduit::Smc));
        let hvc = node("")
            .child(
                node("psci")
                    .str("compatible", "arm,psci-0.2")
                    .str("method", "hvc"),
            )
            .blob();
        assert_eq!(loader_psci(&hvc), Some(Conduit::Hvc));
    }

    #[test]
    fn no_usable_psci_node_says_nothing() {
        // The stock armstub's tree: spin tables only.
        let stock = node("")
            .child(node("cpus").child(node("cpu@0").str("enable-method", "spin-table")))
            .blob();
        assert_eq!(loader_psci(&stock), None);
        let disabled = node("")
            .child(
                node("psci")
                    .str("compatible", "arm,psci-1.0")
                    .str("method", "smc")
                    .str("status", "disabled"),
            )
            .blob();
        assert_eq!(loader_psci(&disabled), None);
        let no_method = node("")
            .child(node("psci").str("compatible", "arm,psci-1.0"))
            .blob();
        assert_eq!(loader_psci(&no_method), None);
        let other = node("")
            .child(
                node("psci")
                    .str("compatible", "vendor,thing")
                    .str("method", "smc"),
            )
            .blob();
        assert_eq!(loader_psci(&other), None);
        // Not a device tree at all (QEMU passes an ATAGS address without -dtb).
        assert_eq!(loader_psci(&[0u8; 64]), None);
        assert_eq!(loader_psci(&[]), None);
    }
}
