//! The boot plan: a validated configuration with every physical address
//! resolved. Validation (`crate::validate`) produces it; the firmware only
//! executes it, so everything the firmware does is decided (and unit-tested)
//! on the host first.

use crate::board::Range;
use heapless::Vec;

/// Most domains one configuration may hold.
pub const MAX_DOMAINS: usize = 8;
/// Most cores (board-wide and per domain).
pub const MAX_CPUS: usize = 8;
/// Most memory regions per domain.
pub const MAX_REGIONS: usize = 8;
/// Most passthrough devices per domain.
pub const MAX_DEVICES: usize = 8;
/// Most interrupts per passthrough device (a page of QEMU `virt`'s
/// virtio-mmio transports carries 8).
pub const MAX_IRQS: usize = 8;
/// Longest domain name, in bytes.
pub const MAX_NAME: usize = 31;

/// What a domain's fault policy does when the domain touches an address it
/// does not own, or crashes in a way that cannot be reflected to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPolicy {
    /// Inject a synchronous external abort: the domain's own handler runs,
    /// exactly as for a bus error on real hardware. (Default.) A crash that
    /// cannot be reflected stops the domain.
    InjectAbort,
    /// Stop every core of the domain.
    Stop,
    /// Restart the domain: its memory zeroed, its image reloaded from the
    /// pristine copy, its first core restarted (up to [`RESTART_LIMIT`]
    /// times, then it stops).
    Restart,
}

/// How many times a domain may be restarted (by its own SYSTEM_RESET or by
/// the `restart` fault policy) before the partitioner stops it for good,
/// unless its config says otherwise (`restart-limit`).
pub const RESTART_LIMIT: u32 = 8;

/// The kind of memory a stage-2 mapping gives the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemKind {
    /// Normal write-back cacheable RAM, read/write/execute.
    Ram,
    /// Device-nGnRE MMIO, read/write, never executable.
    Device,
}

/// One guest-physical to physical mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Intermediate physical (guest) address.
    pub ipa: u64,
    pub pa: u64,
    pub size: u64,
    pub kind: MemKind,
}

impl Mapping {
    pub fn ipa_range(&self) -> Range {
        Range::new(self.ipa, self.size)
    }
    pub fn pa_range(&self) -> Range {
        Range::new(self.pa, self.size)
    }
}

/// A passthrough device, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePlan {
    /// Node name in the config (and in the guest's device tree).
    pub name: heapless::String<MAX_NAME>,
    /// Board device it refers to, if any (`board-device`).
    pub board_device: Option<&'static str>,
    pub compatible: heapless::String<64>,
    pub mapping: Mapping,
    pub spis: Vec<u32, MAX_IRQS>,
    /// The device can master DMA, no IOMMU covers it, and the config
    /// accepted that (`dma = "unprotected"`): the domain can reach all of
    /// physical memory through it. Reported as a warning by the host check
    /// and at boot.
    pub dma_unprotected: bool,
    /// A PCI function (`pci-function`): its `mapping` (the function's
    /// memory BARs, packed in one naturally aligned block, guest address =
    /// physical address) and `compatible` (`pciVVVV,DDDD`) are filled in at
    /// boot, when the bus is enumerated; until then the mapping is empty.
    /// `spis` holds its legacy interrupt (INTA assumed until the firmware
    /// reads the pin).
    pub pci: Option<crate::pci::Bdf>,
    /// The BAR addresses the config fixes for the function (`bars`),
    /// checked as far as the config can be: the firmware sizes each at
    /// boot and refuses the config if the BAR cannot go there.
    pub pci_bars: Vec<crate::pci::FixedBar, { crate::pci::MAX_FIXED_BARS }>,
}

/// One domain, ready to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainPlan {
    pub name: heapless::String<MAX_NAME>,
    /// Stage-2 VMID, unique, never 0 (0 is left unused).
    pub vmid: u16,
    /// Board core indices, in the order of the domain's virtual CPUs.
    pub cpus: Vec<usize, MAX_CPUS>,
    /// RAM mappings, in config order. The image is loaded into the one that
    /// contains `entry`.
    pub ram: Vec<Mapping, MAX_REGIONS>,
    pub devices: Vec<DevicePlan, MAX_DEVICES>,
    /// Guest address of the first instruction.
    pub entry: u64,
    /// Size of the domain's image in the package.
    pub image_size: u64,
    /// Size of its initial RAM disk (0 = none), placed below its device tree.
    pub initrd_size: u64,
    /// Extra kernel command line / arguments handed to the domain in `/chosen`.
    pub bootargs: heapless::String<128>,
    pub fault_policy: FaultPolicy,
    /// Restarts allowed (SYSTEM_RESET or the `restart` policy) before the
    /// domain is stopped for good.
    pub restart_limit: u32,
    /// Guest address of the mediated (virtual) console, if the domain has one.
    pub virtual_console: Option<u64>,
}

impl DomainPlan {
    /// The RAM mapping holding `ipa`, if any.
    pub fn ram_at(&self, ipa: u64) -> Option<&Mapping> {
        self.ram.iter().find(|m| m.ipa_range().contains_addr(ipa))
    }
    /// Every stage-2 mapping of the domain: RAM, then devices. A PCI
    /// function's mapping is empty, and left out, until the firmware has
    /// placed its BARs (and stays so for a function without memory BARs).
    pub fn mappings(&self) -> impl Iterator<Item = &Mapping> + '_ {
        self.mappings_tagged().map(|(m, _)| m)
    }
    /// [`DomainPlan::mappings`], each with whether it is a PCI function's
    /// BAR block.
    pub fn mappings_tagged(&self) -> impl Iterator<Item = (&Mapping, bool)> + '_ {
        self.ram.iter().map(|m| (m, false)).chain(
            self.devices
                .iter()
                .filter(|d| d.mapping.size > 0)
                .map(|d| (&d.mapping, d.pci.is_some())),
        )
    }
}

/// The whole machine, ready to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub board: &'static str,
    pub domains: Vec<DomainPlan, MAX_DOMAINS>,
}

impl Plan {
    /// The accepted DMA risks: every `(domain, device)` whose device can
    /// master DMA without an IOMMU, in config order.
    pub fn unprotected_dma(&self) -> impl Iterator<Item = (&DomainPlan, &DevicePlan)> + '_ {
        self.domains.iter().flat_map(|d| {
            d.devices
                .iter()
                .filter(|x| x.dma_unprotected)
                .map(move |x| (d, x))
        })
    }
}

/// The warning printed for an accepted DMA risk (the host check and the
/// firmware print the same text).
pub struct DmaWarning<'p>(pub &'p DomainPlan, pub &'p DevicePlan);

impl core::fmt::Display for DmaWarning<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let DmaWarning(d, x) = self;
        write!(f, "domain \"{}\": device \"{}\"", d.name, x.name)?;
        if let Some(b) = x.board_device {
            write!(f, " (board device \"{b}\")")?;
        }
        f.write_str(
            " masters DMA and no IOMMU covers it; accepted by dma = \"unprotected\": \
             the domain can read and write any physical address through it, \
             including other domains' memory and the partitioner",
        )
    }
}

/// Name of a domain's initial RAM disk in the package.
pub fn initrd_name(domain: &str) -> heapless::String<40> {
    package_entry(domain, ".initrd")
}

/// Name of a domain's hand-written device tree in the package. Out of
/// line (three boot-only callers).
#[inline(never)]
pub fn dtb_name(domain: &str) -> heapless::String<40> {
    package_entry(domain, ".dtb")
}

/// `<domain><suffix>`; domain names are at most [`MAX_NAME`] bytes, so it fits.
/// Out of line: boot-only, called from several places.
#[inline(never)]
pub fn package_entry(domain: &str, suffix: &str) -> heapless::String<40> {
    let mut s = heapless::String::new();
    let _ = s.push_str(domain);
    let _ = s.push_str(suffix);
    s
}

/// Guest address of the virtual console of a domain without its own UART:
/// the place the first PL011 sits on QEMU's `virt`, so unmodified guests find it.
pub const VIRTUAL_CONSOLE_IPA: u64 = 0x0900_0000;

/// The virtual console's interrupt, as an SPI number (INTID − 32): SPI 1,
/// INTID 33, on GICv2 and GICv3 alike, the interrupt QEMU `virt` wires to
/// that first PL011. It is purely virtual (its state lives in the
/// partitioner, never in the physical GIC) and each domain with a virtual
/// console has its own. On `qemu-virt` it is the SPI of the partitioner's
/// own console, which no domain can ever be given; on any board the
/// checker refuses a domain with a virtual console a device with this SPI
/// (`console-irq`).
pub const VIRTUAL_CONSOLE_SPI: u32 = 1;

/// Generation of the interrupt controller a domain sees: the same as the
/// board's (found at boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    V2,
    V3,
}

/// Guest address of the emulated GIC distributor (where QEMU virt has it).
pub const VGICD_IPA: u64 = 0x0800_0000;
/// Size of the distributor window.
pub const VGICD_SIZE: u64 = 0x1_0000;
/// GICv3: guest address of the first emulated redistributor; vCPU `n`'s
/// frames (RD_base + SGI_base) are at `VGICR_IPA + n * VGICR_STRIDE`.
pub const VGICR_IPA: u64 = 0x080a_0000;
pub const VGICR_STRIDE: u64 = 0x2_0000;
/// GICv2: guest address of the CPU interface, backed by the physical
/// virtual CPU interface (GICV) in stage 2.
pub const VGICC_IPA: u64 = 0x0801_0000;
pub const VGICC_SIZE: u64 = 0x2000;

/// The guest-address window the virtual GIC of a domain with `vcpus` vCPUs
/// occupies; nothing else of the domain may be mapped there.
pub fn vgic_window(version: GicVersion, vcpus: usize) -> [crate::board::Range; 2] {
    use crate::board::Range;
    match version {
        GicVersion::V2 => [
            Range::new(VGICD_IPA, VGICD_SIZE),
            Range::new(VGICC_IPA, VGICC_SIZE),
        ],
        GicVersion::V3 => [
            Range::new(VGICD_IPA, VGICD_SIZE),
            Range::new(VGICR_IPA, VGICR_STRIDE * vcpus as u64),
        ],
    }
}

/// Virtual timer interrupt (PPI 27): each domain uses the EL1 virtual timer
/// directly; its interrupt is injected into the vCPU it fired on.
pub const VTIMER_INTID: u32 = 27;

/// Builders for the host tests of the modules that read plans.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A passthrough device at `ipa` (identity-mapped) with `spis`.
    pub fn device(name: &str, compatible: &str, ipa: u64, size: u64, spis: &[u32]) -> DevicePlan {
        DevicePlan {
            name: name.try_into().unwrap(),
            board_device: None,
            compatible: compatible.try_into().unwrap(),
            mapping: Mapping {
                ipa,
                pa: ipa,
                size,
                kind: MemKind::Device,
            },
            spis: spis.iter().copied().collect(),
            dma_unprotected: false,
            pci: None,
            pci_bars: Vec::new(),
        }
    }

    /// A domain on cores 0..ncpus, entered at its first RAM region.
    pub fn domain(
        name: &str,
        ncpus: usize,
        rams: &[Mapping],
        devices: &[DevicePlan],
    ) -> DomainPlan {
        DomainPlan {
            name: name.try_into().unwrap(),
            vmid: 1,
            cpus: (0..ncpus).collect(),
            ram: rams.iter().copied().collect(),
            devices: devices.iter().cloned().collect(),
            entry: rams[0].ipa,
            image_size: 0x1_0000,
            initrd_size: 0,
            bootargs: "".try_into().unwrap(),
            fault_policy: FaultPolicy::InjectAbort,
            restart_limit: RESTART_LIMIT,
            virtual_console: None,
        }
    }
}
